//! Exports: rows of one domain out of PostgreSQL, into files in a store.
//!
//! - `kind`: the export as a kind of job (its row, its terminal write, its
//!   pipeline, its files deleted when it fails); `request`: a request (the
//!   API's, the CLI's, the scheduler's) checked and made a spec; `store`:
//!   the API's reads of exports; `event`: `ExportCompleted`.
//! - `actors`: ExportPipeline → ExportReader → Exporter → ObjectWriter, and
//!   the WebhookSender.
//!
//! The plain domain code the export actors run:
//!
//! - `object`: what can be exported (the built-in `node` and
//!   `match_suggestion`, and objects declared in `[[exports.objects]]`),
//!   with columns and types read from the catalog.
//! - `filter`: Voucherify-style filters compiled to SQL, values always bind
//!   parameters, identifiers only the object's known columns.
//! - `sql`: bound values, quoted known identifiers, and what a request
//!   that cannot run gets (`Invalid`).
//! - `plan`: a request checked against its object, and the one query an
//!   export runs (fields, tenant predicate, filters, total order, keyset
//!   continuation).
//! - `value`: PostgreSQL's binary values as text and JSON.
//! - `encode`: rows as CSV, JSON or JSONL, compressed in members that a
//!   part of a file can end on.
//! - `parquet`: rows as Parquet, typed from PostgreSQL's types.
//! - `sink`: where a file's parts go (an S3 multipart upload, or a local
//!   file) and how an unfinished one is picked up again.
//! - `token`: signed download links, and webhook signatures.
//! - `webhook`: which webhook URLs may be called (no SSRF), and one
//!   delivery.

pub mod actors;
pub mod encode;
pub mod event;
pub mod filter;
pub mod kind;
pub mod object;
pub mod parquet;
pub mod plan;
pub mod request;
pub mod sink;
pub mod sql;
pub mod store;
pub mod token;
pub mod value;
pub mod webhook;

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use tokio_postgres::GenericClient;

use crate::error::JobError;
use crate::job::fence::Fence;
use crate::job::{NewJob, NewRow, Spec};
use crate::settings::{ExportSettings, StorageSettings};

/// The encoder for `format`.
pub fn encoder(
    format: Format,
    compression: Compression,
    fields: &[plan::OutField],
    settings: &ExportSettings,
) -> Box<dyn encode::FileEncoder> {
    match format {
        Format::Parquet => Box::new(parquet::ParquetEncoder::new(fields, compression, settings)),
        text => Box::new(encode::TextEncoder::new(
            text,
            fields,
            encode::Member::new(compression, settings),
        )),
    }
}

/// A file format an export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// RFC 4180, with a header row.
    Csv,
    /// One JSON array of objects, streamed.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// Apache Parquet, typed columns, compressed inside (zstd).
    Parquet,
}

impl Format {
    pub const ALL: [Self; 4] = [Self::Csv, Self::Json, Self::Jsonl, Self::Parquet];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Json => "json",
            Self::Jsonl => "jsonl",
            Self::Parquet => "parquet",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv",
            Self::Json => "application/json",
            Self::Jsonl => "application/x-ndjson",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// Whether an unfinished file can be continued after a restart: a
    /// Parquet file's footer describes every row group, so a Parquet file
    /// is written again from its start.
    pub fn resumes_mid_file(self) -> bool {
        !matches!(self, Self::Parquet)
    }
}

/// How a text format is compressed (Parquet compresses inside).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    pub const ALL: [Self; 3] = [Self::Gzip, Self::Zstd, Self::None];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
            Self::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Gzip => ".gz",
            Self::Zstd => ".zst",
            Self::None => "",
        }
    }
}

/// Where an export's files go: the first file at `base`, the n-th (from 2)
/// beside it as `stem-n.ext`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// An object store: `s3://bucket/key`.
    Store { bucket: String, key: String },
    /// A local file.
    Local { path: String },
    /// No file: the rows go as messages on a topic (a NON_COST_BASED
    /// group's reference ids).
    Topic { topic: String },
}

impl Destination {
    /// Where file `index` (from 0) goes: the base itself, then `stem-2.ext`,
    /// `stem-3.ext`, … (the extension is everything from the first dot of
    /// the last path segment, so `users.csv.gz` → `users-2.csv.gz`).
    pub fn file(&self, index: usize) -> Self {
        let numbered = |base: &str| {
            if index == 0 {
                return base.to_string();
            }
            let cut = base.rfind('/').map_or(0, |i| i + 1);
            let dot = base[cut..].find('.').map_or(base.len(), |i| cut + i);
            format!("{}-{}{}", &base[..dot], index + 1, &base[dot..])
        };
        match self {
            Self::Store { bucket, key } => Self::Store {
                bucket: bucket.clone(),
                key: numbered(key),
            },
            Self::Local { path } => Self::Local {
                path: numbered(path),
            },
            Self::Topic { .. } => self.clone(),
        }
    }

    /// `s3://bucket/key`, the path, or `kafka://topic`.
    pub fn uri(&self) -> String {
        match self {
            Self::Store { bucket, key } => format!("s3://{bucket}/{key}"),
            Self::Local { path } => path.clone(),
            Self::Topic { topic } => format!("kafka://{topic}"),
        }
    }
}

impl Destination {
    /// Where `--out` points: `s3://bucket/key` (a bucket of the configured
    /// store, allowed by `storage.allowed_buckets`), or a local path, which
    /// must lie under `storage.local_root` when one is set.
    pub fn output(out: &str, storage: &StorageSettings) -> Result<Self, String> {
        if let Some(rest) = out.strip_prefix("s3://") {
            let (bucket, key) = rest
                .split_once('/')
                .filter(|(b, k)| !b.is_empty() && !k.is_empty() && !k.ends_with('/'))
                .ok_or("expected s3://bucket/key")?;
            if !storage.configured() {
                return Err("no object store is configured (storage.endpoint, AWS_*)".into());
            }
            if !storage.allowed_buckets.is_empty()
                && !storage.allowed_buckets.iter().any(|b| b == bucket)
            {
                return Err(format!(
                    "bucket `{bucket}` is not in storage.allowed_buckets"
                ));
            }
            return Ok(Self::Store {
                bucket: bucket.into(),
                key: key.into(),
            });
        }
        if out.contains("://") {
            return Err("an output is a local path or s3://bucket/key".into());
        }
        let path = confined(Path::new(out), &storage.local_root)?;
        Ok(Self::Local {
            path: path.display().to_string(),
        })
    }

    /// Seed 002's layout, `{prefix}/{domain}/exports/{yyyy}/{mm}/
    /// {object}-{id}.{ext}`, in `exports.bucket` of the configured store,
    /// else under `exports.local_dir`.
    pub fn default_for(
        exports: &ExportSettings,
        storage: &StorageSettings,
        domain: Uuid,
        object: &str,
        id: Uuid,
        format: Format,
        compression: Compression,
    ) -> Self {
        let (year, month) = year_month_now();
        let ext = match format {
            Format::Parquet => ".parquet".to_string(),
            f => format!(".{}{}", f.as_str(), compression.extension()),
        };
        let key = format!("{domain}/exports/{year:04}/{month:02}/{object}-{id}{ext}");
        let key = match exports.prefix.trim_matches('/') {
            "" => key,
            prefix => format!("{prefix}/{key}"),
        };
        if storage.configured() {
            Self::Store {
                bucket: exports.bucket.clone(),
                key,
            }
        } else {
            Self::Local {
                path: exports.local_dir().join(key).display().to_string(),
            }
        }
    }
}

/// The current UTC year and month.
fn year_month_now() -> (i64, u32) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (y, m, _) = value::civil(secs.div_euclid(86_400));
    (y, m)
}

/// `path` made absolute, with `..` refused and its existing part's symlinks
/// resolved, so it cannot lead out of `root` (when a root is set).
fn confined(path: &Path, root: &str) -> Result<PathBuf, String> {
    if path.components().any(|c| c == Component::ParentDir) {
        return Err("an output path may not contain `..`".into());
    }
    let absolute = std::env::current_dir()
        .map_err(|e| e.to_string())?
        .join(path);
    if path.file_name().is_none() {
        return Err("an output path names a file".into());
    }
    // The deepest folder that exists, resolved; the rest is created.
    let mut existing = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut rest = vec![absolute.file_name().expect("checked above").to_owned()];
    while !existing.exists() {
        let Some(name) = existing.file_name() else {
            break;
        };
        rest.push(name.to_owned());
        existing.pop();
    }
    let mut real =
        std::fs::canonicalize(&existing).map_err(|e| format!("{}: {e}", existing.display()))?;
    real.extend(rest.iter().rev());
    if !root.is_empty() {
        let root = std::fs::canonicalize(root).map_err(|e| format!("storage.local_root: {e}"))?;
        if !real.starts_with(&root) {
            return Err("the output path is outside storage.local_root".into());
        }
    }
    Ok(real)
}

/// What an export was asked to do, as stored on its job: checked against
/// its object when it was created, and planned again at each attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSpec {
    /// The object's name (`node`, `match_suggestion`, a declared one).
    pub object: String,
    /// The output's columns, in order (the object's defaults when the
    /// request named none).
    pub fields: Vec<String>,
    /// `field` or `-field`; `None`: the primary key's order.
    pub order: Option<String>,
    /// The request's filters, as given.
    pub filters: Option<serde_json::Value>,
    pub format: Format,
    pub compression: Compression,
    pub destination: Destination,
    /// Who asked (a JWT's subject), for the completion event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Where the completion is POSTed, signed (checked when the export was
    /// asked for, and again before each delivery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// Who asked for it: `API`, `CLI`, `SCHEDULE`.
    #[serde(default = "default_channel")]
    pub channel: String,
    /// A metadata field's column is named by its key alone (`city`, not
    /// `metadata.city`), as an import of the file names it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bare_metadata_names: bool,
}

fn default_channel() -> String {
    "API".into()
}

impl Spec for ExportSpec {
    fn kind(&self) -> &'static str {
        kind::KIND
    }

    fn columns(&self, row: &mut NewRow) {
        row.set(
            "spec",
            serde_json::to_value(self).expect("a spec serialises"),
        );
    }
}

/// A request for an export.
pub type NewExport = NewJob<ExportSpec>;

/// An export: what was asked, how far it got, what it made.
#[derive(Debug, Clone)]
pub struct Export {
    pub spec: ExportSpec,
    pub checkpoint: ExportCheckpoint,
    /// Set once it ended DONE.
    pub result: Option<ExportResult>,
    /// When its files were deleted, past `exports.retention`.
    pub expired_at: Option<String>,
}

impl Export {
    /// What it made so far, as its last checkpoint says.
    pub fn checkpointed(&self) -> ExportResult {
        ExportResult {
            rows: self.checkpoint.rows,
            bytes: self.checkpoint.bytes(),
            files: self.checkpoint.files.clone(),
            data_as_of: self.checkpoint.data_as_of.clone(),
        }
    }
}

/// How an export ended.
#[derive(Debug, Clone)]
pub struct ExportOutcome {
    /// What it made (so far, when it failed).
    pub result: ExportResult,
    /// `None`: COMPLETED (the API says DONE).
    pub failure_reason: Option<String>,
    /// The snapshot every row was read from, when one was (an export that
    /// was read from one snapshot start to end: see `Resume::FromStart`).
    pub snapshot: Option<String>,
}

impl ExportOutcome {
    /// An export given up on (or cancelled): what its last checkpoint says
    /// it made, and why it ended.
    pub fn as_checkpointed(export: &Export, reason: &str) -> Self {
        Self {
            result: export.checkpointed(),
            failure_reason: Some(reason.to_string()),
            snapshot: None,
        }
    }
}

/// A file an export finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDone {
    pub location: Destination,
    pub rows: u64,
    pub bytes: u64,
}

/// A part of an unfinished file that is in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartDone {
    pub number: i32,
    /// The store's tag for the part (S3's ETag; empty for a local file).
    pub etag: String,
    pub bytes: u64,
}

/// The keyset position after a row: the text of its order key (when the
/// export has one) and of its primary key columns.
pub type Position = Vec<Option<String>>;

/// The file being written, as far as its parts are in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFile {
    pub index: usize,
    pub location: Destination,
    /// The S3 multipart upload, once started.
    pub upload_id: Option<String>,
    pub parts: Vec<PartDone>,
    /// Rows in the parts above.
    pub rows: u64,
    /// Where the file began: rows before it, and the position after the
    /// last of them (a file that cannot be continued is written again from
    /// here).
    pub start_rows: u64,
    pub start: Option<Position>,
}

impl OpenFile {
    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }
}

/// How far an export got: every row before `position` is in a finished
/// file or a stored part of the open one. A restart continues after it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportCheckpoint {
    /// When the first attempt's snapshot was taken.
    pub data_as_of: Option<String>,
    /// The last attempt's snapshot (`pg_current_snapshot()`), for an
    /// export that marks what it read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Rows every snapshot so far counted (the progress total).
    pub total: u64,
    pub rows: u64,
    pub position: Option<Position>,
    pub files: Vec<FileDone>,
    pub open: Option<OpenFile>,
}

impl ExportCheckpoint {
    /// Bytes in finished files and stored parts.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum::<u64>()
            + self.open.as_ref().map_or(0, OpenFile::bytes)
    }
}

/// What the ObjectWriter stored, in the order it stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A file began (or goes on): its upload is open.
    Begun(OpenFile),
    /// The next part of the open file, with the rows that end in it and
    /// the position after the last of them.
    Part {
        part: PartDone,
        rows: u64,
        position: Option<Position>,
    },
    /// The open file is complete.
    File {
        file: FileDone,
        start_rows: u64,
        position: Option<Position>,
    },
}

impl ExportCheckpoint {
    /// The checkpoint once `stored` is in the store; returns the rows that
    /// it made durable. A file that can be continued counts its rows with
    /// each part; one that cannot (Parquet, whose footer lists every row
    /// group) once it is complete. `Err`: a part of no open file.
    pub fn apply(&mut self, stored: Stored, resumes_mid_file: bool) -> Result<u64, String> {
        match stored {
            Stored::Begun(open) => {
                self.open = Some(open);
                Ok(0)
            }
            Stored::Part {
                part,
                rows,
                position,
            } => {
                let open = self.open.as_mut().ok_or("a part of no open file")?;
                open.parts.push(part);
                open.rows += rows;
                if !resumes_mid_file {
                    return Ok(0);
                }
                self.rows += rows;
                self.position = position;
                Ok(rows)
            }
            Stored::File {
                file,
                start_rows,
                position,
            } => {
                let rows = file.rows;
                if !resumes_mid_file {
                    self.rows = start_rows + rows;
                    self.position = position;
                }
                self.open = None;
                self.files.push(file);
                Ok(if resumes_mid_file { 0 } else { rows })
            }
        }
    }
}

/// Records an export's progress: what is stored, where to go on from, and
/// the rows its row shows.
pub async fn save(
    c: &impl GenericClient,
    fence: &Fence,
    cp: &ExportCheckpoint,
) -> Result<(), JobError> {
    let (rows, total) = (cp.rows as i64, cp.total as i64);
    fence
        .checkpoint(c, cp, |row| {
            row.set("processed_rows", rows);
            row.set("total_rows", total);
        })
        .await
        .map_err(JobError::from)
}

/// What a finished export made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportResult {
    pub files: Vec<FileDone>,
    pub rows: u64,
    pub bytes: u64,
    /// When the snapshot the rows were read from was taken (the first
    /// one, for an export resumed after a restart).
    pub data_as_of: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored_parts(resumes: bool) -> (ExportCheckpoint, Vec<u64>) {
        let location = Destination::Local { path: "/x".into() };
        let open = OpenFile {
            index: 0,
            location: location.clone(),
            upload_id: None,
            parts: Vec::new(),
            rows: 0,
            start_rows: 0,
            start: None,
        };
        let part = |n: i32| PartDone {
            number: n,
            etag: String::new(),
            bytes: 10,
        };
        let at = |k: &str| Some(vec![Some(k.to_string())]);
        let mut cp = ExportCheckpoint::default();
        let counted = [
            Stored::Begun(open),
            Stored::Part {
                part: part(1),
                rows: 3,
                position: at("c"),
            },
            Stored::Part {
                part: part(2),
                rows: 2,
                position: at("e"),
            },
            Stored::File {
                file: FileDone {
                    location,
                    rows: 5,
                    bytes: 20,
                },
                start_rows: 0,
                position: at("e"),
            },
        ]
        .into_iter()
        .map(|s| cp.apply(s, resumes).unwrap())
        .collect();
        (cp, counted)
    }

    #[test]
    fn rows_count_with_each_part_or_once_the_file_is_whole() {
        let (text, counted) = stored_parts(true);
        assert_eq!(counted, [0, 3, 2, 0]);
        assert_eq!((text.rows, text.files.len(), text.open), (5, 1, None));
        assert_eq!(text.position, Some(vec![Some("e".into())]));
        let (parquet, counted) = stored_parts(false);
        assert_eq!(counted, [0, 0, 0, 5], "a Parquet file counts when whole");
        assert_eq!(parquet.rows, 5);
        assert_eq!(parquet.bytes(), 20);
        let mut none = ExportCheckpoint::default();
        let stray = Stored::Part {
            part: PartDone {
                number: 1,
                etag: String::new(),
                bytes: 1,
            },
            rows: 1,
            position: None,
        };
        assert!(none.apply(stray, true).is_err());
    }

    #[test]
    fn files_after_the_first_are_numbered_before_the_extension() {
        let d = Destination::Store {
            bucket: "b".into(),
            key: "acme/exports/2026/11/node-1.v2.csv.gz".into(),
        };
        assert_eq!(d.file(0), d);
        assert_eq!(
            d.file(1).uri(),
            "s3://b/acme/exports/2026/11/node-1-2.v2.csv.gz"
        );
        let local = Destination::Local {
            path: "/tmp/out.d/users".into(),
        };
        assert_eq!(local.file(2).uri(), "/tmp/out.d/users-3");
    }
}
