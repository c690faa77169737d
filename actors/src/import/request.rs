//! Import requests: a `NodeExchange` (seed 004 §8.3.1), from Kafka or the
//! HTTP API, checked before it becomes a job. Unknown fields are ignored;
//! anything else wrong is a [`Rejected`] that names the field.
//!
//! Its size: a third of it is its tests, one per refusal.

use serde::Deserialize;
use uuid::Uuid;

use super::{ImportSpec, InputFormat, NewImport};
use crate::import::files;
use crate::import::source::{self, Folder, Source};
use crate::job::NewJob;
use crate::settings::{KafkaSettings, StorageSettings};
use crate::vocab::{ImportMode, Target};

/// Why a request cannot become a job: the DLQ's `error` header and the
/// `reason` label of `ferry_kafka_dlq_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    TooLarge,
    MalformedJson,
    MissingField,
    InvalidField,
    Unroutable,
}

impl Reason {
    pub const ALL: [Self; 5] = [
        Self::TooLarge,
        Self::MalformedJson,
        Self::MissingField,
        Self::InvalidField,
        Self::Unroutable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::MalformedJson => "malformed_json",
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
            Self::Unroutable => "unroutable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct Rejected {
    pub reason: Reason,
    pub detail: String,
}

fn rejected(reason: Reason, detail: impl Into<String>) -> Rejected {
    Rejected {
        reason,
        detail: detail.into(),
    }
}

/// How big a request may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_reference_ids: usize,
}

impl Limits {
    pub fn of(kafka: &KafkaSettings) -> Self {
        Self {
            max_bytes: kafka.max_message_bytes,
            max_reference_ids: kafka.max_reference_ids,
        }
    }
}

const MAX_PATH_CHARS: usize = 4096;
const MAX_NODE_TYPE_CHARS: usize = 50;
const MAX_REQUEST_ID_CHARS: usize = 200;

/// The wire form (seed 004's `NodeExchange`, also `POST /v1/imports`'s
/// body): one of `filePath`, `filePaths` or `referenceIds`. Every field is optional to
/// serde so a missing one gets our message, not serde's; the API document
/// says which are required.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = NodeExchange)]
pub struct Wire {
    /// The tenant. Required on Kafka; `POST /v1/imports` takes the API
    /// key's domain when it is left out (another domain is 403).
    #[schema(value_type = uuid::Uuid)]
    domain_id: Option<String>,
    /// The matching group's key.
    #[schema(required = true, value_type = String, min_length = 1, max_length = 255)]
    group_id: Option<String>,
    /// A file to load: a path under `storage.local_root`, `s3://bucket/key`,
    /// or an `http(s)://` URL of the configured object store. Ending in
    /// `/`, every file of the target's format under that prefix; with `*`
    /// or `?` in its last segment, the files that glob matches.
    #[schema(min_length = 1, max_length = 4096)]
    file_path: Option<String>,
    /// Several files, read in this order as one job (each as `filePath`
    /// names one; at most `import.max_files` of them are listed).
    #[schema(min_items = 1, max_items = 10000)]
    file_paths: Option<Vec<String>>,
    /// Instead of a file: the reference ids of the nodes to load.
    #[schema(min_items = 1)]
    reference_ids: Option<Vec<String>>,
    /// ferry's own: the node type (default: the route's).
    #[schema(max_length = 50)]
    node_type: Option<String>,
    /// ferry's own: requests with the same id make one job; without it,
    /// the same payload twice makes one job.
    #[schema(max_length = 200)]
    request_id: Option<String>,
    /// ferry's own: `upsert` (the default) inserts and updates the input's
    /// rows; `sync` then deletes the group's rows the input does not hold,
    /// so the group holds exactly the input's rows.
    #[schema(value_type = Option<ImportMode>)]
    mode: Option<String>,
    /// ferry's own, with `sync`: delete even more than
    /// `import.sync_max_delete_ratio` of the group.
    force: Option<bool>,
}

/// A checked request.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRequest {
    pub domain_id: Uuid,
    pub group_key: String,
    pub input: Input,
    pub node_type: Option<String>,
    pub request_id: Option<String>,
    pub mode: ImportMode,
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// One file, or a prefix or glob (see [`files::is_many`]).
    File(String),
    Files(Vec<String>),
    ReferenceIds(Vec<String>),
    /// A file of reference ids, one per line (the CLI's `--refs-file`).
    RefsFile(String),
}

/// Who asked, which says what a local path may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// A message or an API call: a local path only under
    /// `storage.local_root`.
    Remote,
    /// The operator, on the command line: any local path they can read,
    /// and any source is checked when the job reads it (its report says
    /// why it could not).
    Operator,
}

/// Most entries a `filePaths` list may have; `import.max_files` is
/// checked when the job lists them.
const MAX_FILE_PATHS: usize = 10_000;

/// Parses and checks one request.
pub fn parse(bytes: &[u8], limits: Limits) -> Result<ImportRequest, Rejected> {
    parse_in(bytes, limits, None)
}

/// [`parse`], with the domain a request that names none is for (an API
/// key's).
pub fn parse_in(
    bytes: &[u8],
    limits: Limits,
    domain: Option<Uuid>,
) -> Result<ImportRequest, Rejected> {
    if bytes.len() > limits.max_bytes {
        return Err(rejected(
            Reason::TooLarge,
            format!(
                "{} bytes, over the limit of {}",
                bytes.len(),
                limits.max_bytes
            ),
        ));
    }
    let wire: Wire = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => rejected(Reason::InvalidField, e.to_string()),
        _ => rejected(Reason::MalformedJson, e.to_string()),
    })?;
    let domain_id = match (wire.domain_id, domain) {
        (Some(given), _) => Uuid::parse_str(given.trim()).map_err(|_| {
            rejected(
                Reason::InvalidField,
                format!("domainId {:?} is not a UUID", excerpt(&given)),
            )
        })?,
        (None, Some(domain)) => domain,
        (None, None) => return Err(rejected(Reason::MissingField, "domainId is required")),
    };
    let group_key = wire
        .group_id
        .ok_or_else(|| rejected(Reason::MissingField, "groupId is required"))?;
    let input = match (wire.file_path, wire.reference_ids, wire.file_paths) {
        (None, None, Some(paths)) => Input::Files(paths),
        (Some(path), None, None) => Input::File(path),
        (None, Some(ids), None) => Input::ReferenceIds(ids),
        (None, None, None) => {
            return Err(rejected(
                Reason::MissingField,
                "filePath, filePaths or referenceIds is required",
            ))
        }
        _ => {
            return Err(rejected(
                Reason::InvalidField,
                "give one of filePath, filePaths or referenceIds",
            ))
        }
    };
    let mode = match wire.mode.as_deref().map(str::trim) {
        None => ImportMode::Upsert,
        Some(given) => ImportMode::parse(given).ok_or_else(|| {
            rejected(
                Reason::InvalidField,
                format!("mode {:?} is not upsert or sync", excerpt(given)),
            )
        })?,
    };
    ImportRequest {
        domain_id,
        group_key,
        input,
        node_type: wire.node_type,
        request_id: wire.request_id,
        mode,
        force: wire.force.unwrap_or(false),
    }
    .checked(limits)
}

impl ImportRequest {
    /// The request with its fields trimmed and checked (the same from every
    /// channel): a group key and a node type of bounded length, paths of
    /// bounded length, a bounded list of ids, no NUL anywhere (PostgreSQL's
    /// text cannot hold one).
    pub fn checked(self, limits: Limits) -> Result<Self, Rejected> {
        no_nul(&self.group_key, "groupId")?;
        let group_key = crate::job::group_key(&self.group_key)
            .map_err(|e| rejected(Reason::InvalidField, format!("groupId: {e}")))?
            .to_string();
        let input = match self.input {
            Input::Files(paths) => {
                if paths.is_empty() || paths.len() > MAX_FILE_PATHS {
                    return Err(rejected(
                        Reason::InvalidField,
                        format!("filePaths must list 1 to {MAX_FILE_PATHS} files"),
                    ));
                }
                let paths = paths
                    .iter()
                    .enumerate()
                    .map(|(i, path)| file_path(path, &format!("filePaths[{i}]")))
                    .collect::<Result<_, _>>()?;
                Input::Files(paths)
            }
            Input::File(path) => Input::File(file_path(&path, "filePath")?),
            Input::RefsFile(path) => Input::RefsFile(file_path(&path, "filePath")?),
            Input::ReferenceIds(ids) => {
                if ids.is_empty() || ids.len() > limits.max_reference_ids {
                    return Err(rejected(
                        Reason::InvalidField,
                        format!(
                            "referenceIds must list 1 to {} ids, not {}",
                            limits.max_reference_ids,
                            ids.len()
                        ),
                    ));
                }
                for (i, id) in ids.iter().enumerate() {
                    no_nul(id, &format!("referenceIds[{i}]"))?;
                }
                Input::ReferenceIds(ids)
            }
        };
        if self.force && self.mode != ImportMode::Sync {
            return Err(rejected(
                Reason::InvalidField,
                "force applies only to a sync (\"mode\": \"sync\")",
            ));
        }
        Ok(ImportRequest {
            mode: self.mode,
            force: self.force,
            domain_id: self.domain_id,
            group_key,
            input,
            node_type: bounded(self.node_type, "nodeType", MAX_NODE_TYPE_CHARS)?,
            request_id: bounded(self.request_id, "requestId", MAX_REQUEST_ID_CHARS)?,
        })
    }
}

/// Whether ferry may read what `field` names: an object (`object`) with a
/// store configured, a local path with a `storage.local_root`.
fn served(object: bool, storage: &StorageSettings, field: &str) -> Result<(), Rejected> {
    if object && !storage.configured() {
        return Err(rejected(
            Reason::InvalidField,
            format!("{field}: no object store is configured (storage.endpoint)"),
        ));
    }
    if !object && storage.local_root.is_empty() {
        return Err(rejected(
            Reason::InvalidField,
            format!("{field}: local paths are accepted only under storage.local_root"),
        ));
    }
    Ok(())
}

/// Whether a remote asker may have ferry read the file `field` names (an
/// operator's is checked when the job reads it).
fn readable(
    path: &str,
    storage: &StorageSettings,
    asker: Asker,
    field: &str,
) -> Result<(), Rejected> {
    if asker == Asker::Operator {
        return Ok(());
    }
    let source = Source::parse(path, storage)
        .map_err(|e| rejected(Reason::InvalidField, format!("{field}: {e}")))?;
    served(matches!(source, Source::S3 { .. }), storage, field)
}

/// PostgreSQL's text cannot hold NUL: such a field is the request's
/// mistake, the same over Kafka and HTTP (never a database error).
fn no_nul(value: &str, field: &str) -> Result<(), Rejected> {
    match value.contains('\0') {
        true => Err(rejected(
            Reason::InvalidField,
            format!("{field} contains a NUL character"),
        )),
        false => Ok(()),
    }
}

fn bounded(value: Option<String>, field: &str, max: usize) -> Result<Option<String>, Rejected> {
    let value = value.map(|v| v.trim().to_string());
    if let Some(v) = &value {
        no_nul(v, field)?;
    }
    match value {
        Some(v) if v.is_empty() || v.chars().count() > max => Err(rejected(
            Reason::InvalidField,
            format!("{field} must have 1 to {max} characters"),
        )),
        v => Ok(v),
    }
}

/// Nodes are not read from Parquet.
fn fits(target: Target, path: &str, field: &str) -> Result<(), Rejected> {
    if target == Target::Nodes && source::is_parquet(path) {
        return Err(rejected(
            Reason::InvalidField,
            format!("{field}: nodes are imported from CSV; Parquet files hold match suggestions (a matches topic, `--target matches`)"),
        ));
    }
    Ok(())
}

/// A file's path, trimmed: no NUL, 1 to `MAX_PATH_CHARS` characters.
fn file_path(path: &str, field: &str) -> Result<String, Rejected> {
    let path = path.trim();
    no_nul(path, field)?;
    if path.is_empty() || path.chars().count() > MAX_PATH_CHARS {
        return Err(rejected(
            Reason::InvalidField,
            format!("{field} must have 1 to {MAX_PATH_CHARS} characters"),
        ));
    }
    Ok(path.to_string())
}

/// The first 64 characters of a value, for a message.
fn excerpt(s: &str) -> String {
    s.chars().take(64).collect()
}

impl ImportRequest {
    /// The job this request asks for, importing into `target`. A file must
    /// be one the storage settings allow; a local path only when
    /// `storage.local_root` confines them.
    pub fn into_job(
        self,
        target: Target,
        default_node_type: &str,
        storage: &StorageSettings,
        asker: Asker,
    ) -> Result<NewImport, Rejected> {
        let (domain_id, mode, force) = (self.domain_id, self.mode, self.force);
        self.into_spec(target, default_node_type, storage, asker)
            .map(|spec| NewJob::new(domain_id, spec.in_mode(mode, force)))
    }

    fn into_spec(
        self,
        target: Target,
        default_node_type: &str,
        storage: &StorageSettings,
        asker: Asker,
    ) -> Result<ImportSpec, Rejected> {
        let node_type = match target {
            Target::Nodes => self
                .node_type
                .unwrap_or_else(|| default_node_type.to_string()),
            Target::Matches => String::new(),
        };
        let source = match (target, self.input) {
            (Target::Nodes, Input::ReferenceIds(ids)) => {
                let spec = ImportSpec::inline_refs(&self.group_key, &node_type, ids);
                return Ok(spec);
            }
            (Target::Matches, Input::ReferenceIds(_) | Input::RefsFile(_)) => {
                return Err(rejected(
                    Reason::InvalidField,
                    "match suggestions are imported from a Parquet filePath, not referenceIds",
                ))
            }
            (Target::Nodes, Input::RefsFile(path)) => {
                readable(&path, storage, asker, "filePath")?;
                let spec = ImportSpec::file(
                    target,
                    &self.group_key,
                    &node_type,
                    &path,
                    InputFormat::Refs,
                );
                return Ok(spec);
            }
            (_, Input::Files(paths)) => {
                for (i, path) in paths.iter().enumerate() {
                    let field = format!("filePaths[{i}]");
                    if files::is_many(path) {
                        return Err(rejected(
                            Reason::InvalidField,
                            format!("{field}: a list names files, not a prefix or a glob"),
                        ));
                    }
                    readable(path, storage, asker, &field)?;
                    fits(target, path, &field)?;
                }
                files::list_source(&paths)
            }
            (_, Input::File(path)) if files::is_many(&path) => {
                if asker == Asker::Remote {
                    let (dir, _) = files::split_glob(&path);
                    let folder = Folder::parse(dir, storage)
                        .map_err(|e| rejected(Reason::InvalidField, format!("filePath: {e}")))?;
                    served(matches!(folder, Folder::S3 { .. }), storage, "filePath")?;
                }
                path
            }
            (_, Input::File(path)) => {
                readable(&path, storage, asker, "filePath")?;
                fits(target, &path, "filePath")?;
                path
            }
        };
        let format = match target {
            Target::Matches => InputFormat::Parquet,
            Target::Nodes => InputFormat::Csv,
        };
        let spec = ImportSpec::file(target, &self.group_key, &node_type, &source, format);
        Ok(spec)
    }
}

/// The key that makes a request one job however often it is delivered:
/// its `requestId` within its domain, else a hash of what it asks
/// (`target` and the payload's bytes).
pub fn idempotency_key(request: &ImportRequest, target: Target, payload: &[u8]) -> String {
    match &request.request_id {
        Some(id) => format!("request:{}:{id}", request.domain_id),
        None => crate::job::digest(target.as_str(), payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bytes: 4096,
        max_reference_ids: 3,
    };
    const DOMAIN: &str = "0b5c3f4e-8f0a-4c1e-9f6e-2d7a4b1c3e5f";

    fn reason(payload: &str) -> Reason {
        parse(payload.as_bytes(), LIMITS).unwrap_err().reason
    }

    #[test]
    fn a_seed_request_parses_and_unknown_fields_are_ignored() {
        let payload = format!(
            r#"{{"domainId":"{DOMAIN}","groupId":"mentors","filePath":"s3://b/k.csv.gz",
                "fileName":"k.csv.gz","contentType":"application/gzip","extra":{{"x":1}}}}"#
        );
        let r = parse(payload.as_bytes(), LIMITS).unwrap();
        assert_eq!(r.group_key, "mentors");
        assert_eq!(r.input, Input::File("s3://b/k.csv.gz".into()));
    }

    #[test]
    fn a_request_is_an_upsert_unless_it_asks_for_a_sync() {
        let with = |extra: &str| {
            let payload = format!(
                r#"{{"domainId":"{DOMAIN}","groupId":"g","filePath":"s3://b/k.csv"{extra}}}"#
            );
            parse(payload.as_bytes(), LIMITS)
        };
        assert_eq!(with("").unwrap().mode, ImportMode::Upsert);
        let sync = with(r#","mode":"sync","force":true"#).unwrap();
        assert_eq!((sync.mode, sync.force), (ImportMode::Sync, true));
        let unknown = with(r#","mode":"replace""#).unwrap_err();
        assert_eq!(unknown.reason, Reason::InvalidField);
        assert!(
            unknown.detail.contains("\"replace\" is not upsert or sync"),
            "{unknown}"
        );
        let forced = with(r#","force":true"#).unwrap_err();
        assert!(
            forced.detail.contains("force applies only to a sync"),
            "{forced}"
        );
        assert_eq!(
            with(r#","force":"yes""#).unwrap_err().reason,
            Reason::InvalidField
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert_eq!(reason("{not json"), Reason::MalformedJson);
        assert_eq!(
            reason(r#"{"groupId":"g","filePath":"x"}"#),
            Reason::MissingField
        );
        assert_eq!(
            reason(r#"{"domainId":"nope","groupId":"g","filePath":"x"}"#),
            Reason::InvalidField
        );
        let d = DOMAIN;
        assert_eq!(
            reason(&format!(r#"{{"domainId":"{d}","filePath":"x"}}"#)),
            Reason::MissingField
        );
        assert_eq!(
            reason(&format!(r#"{{"domainId":"{d}","groupId":"g"}}"#)),
            Reason::MissingField
        );
        assert_eq!(
            reason(&format!(
                r#"{{"domainId":"{d}","groupId":"g","filePath":"x","referenceIds":["a"]}}"#
            )),
            Reason::InvalidField
        );
        assert_eq!(
            reason(&format!(
                r#"{{"domainId":"{d}","groupId":"g","referenceIds":["a","b","c","d"]}}"#
            )),
            Reason::InvalidField
        );
        assert_eq!(
            reason(&format!(
                r#"{{"domainId":"{d}","groupId":"g","referenceIds":[1]}}"#
            )),
            Reason::InvalidField
        );
        for list in [
            r#""filePaths":[]"#.to_string(),
            r#""filePaths":["a.csv","  "]"#.to_string(),
            format!(
                r#""filePaths":["a.csv","{}"]"#,
                "x".repeat(MAX_PATH_CHARS + 1)
            ),
            r#""filePaths":["a.csv"],"filePath":"b.csv""#.to_string(),
            r#""filePaths":"a.csv""#.to_string(),
        ] {
            let payload = format!(r#"{{"domainId":"{d}","groupId":"g",{list}}}"#);
            let big = Limits {
                max_bytes: 1 << 20,
                ..LIMITS
            };
            let err = parse(payload.as_bytes(), big).unwrap_err();
            assert_eq!(err.reason, Reason::InvalidField, "{list}");
        }
        let listed =
            format!(r#"{{"domainId":"{d}","groupId":"g","filePaths":[" a.csv ","b.csv"]}}"#);
        assert_eq!(
            parse(listed.as_bytes(), LIMITS).unwrap().input,
            Input::Files(vec!["a.csv".into(), "b.csv".into()])
        );
        assert_eq!(reason(&" ".repeat(5000)), Reason::TooLarge);
        for nul in [
            format!(r#"{{"domainId":"{d}","groupId":"g\u0000","referenceIds":["a"]}}"#),
            format!(r#"{{"domainId":"{d}","groupId":"g","referenceIds":["a","b\u0000"]}}"#),
            format!(r#"{{"domainId":"{d}","groupId":"g","filePath":"x\u0000.csv"}}"#),
            format!(
                r#"{{"domainId":"{d}","groupId":"g","referenceIds":["a"],"nodeType":"\u0000"}}"#
            ),
        ] {
            let err = parse(nul.as_bytes(), LIMITS).unwrap_err();
            assert_eq!(err.reason, Reason::InvalidField, "{nul}");
            assert!(err.detail.contains("NUL"), "{err}");
        }
    }

    #[test]
    fn the_same_payload_has_the_same_key_and_a_request_id_wins() {
        let payload = format!(r#"{{"domainId":"{DOMAIN}","groupId":"g","referenceIds":["a"]}}"#);
        let r = parse(payload.as_bytes(), LIMITS).unwrap();
        let k1 = idempotency_key(&r, Target::Nodes, payload.as_bytes());
        assert_eq!(k1, idempotency_key(&r, Target::Nodes, payload.as_bytes()));
        assert_ne!(k1, idempotency_key(&r, Target::Matches, payload.as_bytes()));
        let with_id = ImportRequest {
            request_id: Some("r1".into()),
            ..r
        };
        assert_eq!(
            idempotency_key(&with_id, Target::Nodes, b"other bytes"),
            format!("request:{DOMAIN}:r1")
        );
    }

    #[test]
    fn a_request_must_fit_its_target_and_the_storage_rules() {
        let storage = StorageSettings {
            endpoint: "http://minio:9000".into(),
            ..StorageSettings::default()
        };
        let request = |input| ImportRequest {
            domain_id: Uuid::nil(),
            group_key: "g".into(),
            input,
            node_type: None,
            request_id: None,
            mode: ImportMode::Upsert,
            force: false,
        };
        let refs = request(Input::ReferenceIds(vec!["a".into()]));
        assert!(refs
            .clone()
            .into_job(Target::Nodes, "USER", &storage, Asker::Remote)
            .is_ok());
        assert!(refs
            .into_job(Target::Matches, "USER", &storage, Asker::Remote)
            .is_err());
        let local = request(Input::File("/etc/passwd".into()));
        let err = local
            .into_job(Target::Nodes, "USER", &storage, Asker::Remote)
            .unwrap_err();
        assert!(err.detail.contains("local_root"), "{err}");
        let metadata = request(Input::File("http://169.254.169.254/latest/x".into()));
        assert!(metadata
            .into_job(Target::Nodes, "USER", &storage, Asker::Remote)
            .is_err());
        let parquet = request(Input::File("s3://b/m.parquet".into()));
        assert!(parquet
            .clone()
            .into_job(Target::Nodes, "USER", &storage, Asker::Remote)
            .is_err());
        let job = parquet
            .clone()
            .into_job(Target::Matches, "USER", &storage, Asker::Remote)
            .unwrap();
        assert_eq!(job.spec.format, InputFormat::Parquet);
        let unconfigured = StorageSettings::default();
        let err = parquet
            .into_job(Target::Matches, "USER", &unconfigured, Asker::Remote)
            .unwrap_err();
        assert!(
            err.detail.contains("no object store is configured"),
            "{err}"
        );
        // A list's entries: files, each of the target's format.
        let list =
            |paths: &[&str]| request(Input::Files(paths.iter().map(|p| p.to_string()).collect()));
        let ok = list(&["s3://b/a.csv", "s3://b/b.csv.gz"]);
        assert!(ok
            .into_job(Target::Nodes, "USER", &storage, Asker::Remote)
            .is_ok());
        for (paths, want) in [
            (
                &["s3://b/a.csv", "s3://b/daily/"][..],
                "filePaths[1]: a list names files",
            ),
            (
                &["s3://b/part-*.csv"][..],
                "filePaths[0]: a list names files",
            ),
            (
                &["s3://b/a.csv", "s3://b/m.parquet"][..],
                "filePaths[1]: nodes are imported from CSV",
            ),
        ] {
            let err = list(paths)
                .into_job(Target::Nodes, "USER", &storage, Asker::Remote)
                .unwrap_err();
            assert!(err.detail.contains(want), "{err}");
        }
    }
}
