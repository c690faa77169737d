//! Jobs: what is asked, where a job stands, and how it ends.
//!
//! The job row in PostgreSQL is the source of truth. One module writes it,
//! [`lifecycle`], and one reads it, [`store`]. Every kind of job lives the
//! same life:
//!
//! ```text
//!            claim (a lease)        start
//! PENDING ─────────────────▶ held ─────────▶ RUNNING ──finish──▶ COMPLETED | FAILED
//!                             ▲                 │
//!                             └──── fail ───────┘   (a retriable failure: the
//!                                                    next attempt resumes from
//!                                                    the checkpoint)
//! held ──give up──▶ FAILED            PENDING | RUNNING ──cancel──▶ CANCELLED
//! ```
//!
//! A lease that runs out (its instance died) makes the job claimable again,
//! RUNNING, with its checkpoint. Every write but `cancel` is fenced on the
//! lease: an instance that stalled past its lease changes nothing.

pub mod lifecycle;
pub mod store;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::export::{ExportCheckpoint, ExportResult, ExportSpec};
use crate::status::IdLists;

/// Namespace for group ids that are not UUIDs: such a `groupId` maps to
/// `uuid_v5(GROUP_NAMESPACE, groupId)`, the same on every run.
pub const GROUP_NAMESPACE: Uuid = Uuid::from_u128(0x6a1c_9f0e_3b7d_4c25_9e41_8f2b_7d3a_1c05);

/// A seed `groupId` as a UUID: itself if it parses, else its UUIDv5.
pub fn group_uuid(group_key: &str) -> Uuid {
    Uuid::parse_str(group_key.trim())
        .unwrap_or_else(|_| Uuid::new_v5(&GROUP_NAMESPACE, group_key.trim().as_bytes()))
}

/// A lease owner name for this process: `role@host:pid:random`, unique
/// even when a pid is reused.
pub fn lease_owner(role: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let tag = Uuid::new_v4().simple().to_string();
    format!("{role}@{host}:{}:{}", std::process::id(), &tag[..8])
}

/// Where a job stands. The only place its strings are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];
    /// A job in one of these may still run; a lease means something.
    pub const ACTIVE: [Self; 2] = [Self::Pending, Self::Running];
    pub const TERMINAL: [Self; 3] = [Self::Completed, Self::Failed, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        Self::TERMINAL.contains(&self)
    }

    /// `('PENDING', 'RUNNING')`: statuses as an SQL list of literals, which
    /// (unlike a bind parameter) lets the planner use the partial indexes.
    pub fn sql_list(statuses: &[Self]) -> String {
        let quoted: Vec<String> = statuses
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        format!("({})", quoted.join(", "))
    }
}

/// What an import's rows become.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// `nodes` (seed 004), from CSV or a reference list.
    Nodes,
    /// `match_suggestions` (seed 003), from Parquet.
    Matches,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nodes => "nodes",
            Self::Matches => "matches",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "nodes" => Some(Self::Nodes),
            "matches" => Some(Self::Matches),
            _ => None,
        }
    }
}

/// What a job does: the `kind` column. Each kind has its own pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Rows from a file or a list into `target`.
    Import(Target),
    /// Rows of one domain out into files.
    Export,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Import(target) => target.as_str(),
            Self::Export => "export",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "export" => Some(Self::Export),
            s => Target::parse(s).map(Self::Import),
        }
    }
}

impl Serialize for JobKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Kinds of jobs as the API and the CLI list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Imports,
    Exports,
}

impl Family {
    /// An SQL condition on `kind` for the family.
    pub fn sql(self) -> String {
        let export = JobKind::Export.as_str();
        match self {
            Self::Imports => format!("kind <> '{export}'"),
            Self::Exports => format!("kind = '{export}'"),
        }
    }
}

/// How an import's input is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// A header row, then records; one column is the reference id.
    Csv,
    /// One reference id per line, no header (seed 004 UC-2).
    Refs,
    /// Apache Parquet, read row group by row group.
    Parquet,
}

impl InputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Refs => "refs",
            Self::Parquet => "parquet",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "csv" => Some(Self::Csv),
            "refs" => Some(Self::Refs),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }
}

/// How an import's rows reach the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Each batch: COPY into a temp table, then `INSERT … ON CONFLICT DO UPDATE`.
    Upsert,
    /// The group had no rows: each batch tries a plain `INSERT` first and
    /// upserts only if it meets a conflict.
    Fast,
}

/// What became of an import's rows. The one spelling of these counters:
/// checkpoints, outcomes, job rows, status events and reports all hold one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Data records consumed: loaded, merged as duplicates, or rejected.
    pub records: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Rows merged into another row of the same key (last row wins).
    pub duplicates: u64,
    pub rejected: u64,
}

impl Counts {
    /// Rows stored: inserted, updated, or merged as duplicates.
    pub fn loaded(&self) -> u64 {
        self.inserted + self.updated + self.duplicates
    }
}

/// What an import has committed: a restarted pipeline skips this far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub mode: Option<WriteMode>,
    #[serde(flatten)]
    pub counts: Counts,
    /// How far through its file the job had read, to show progress by (a
    /// resumed job resumes by `counts`, not by this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRead>,
    /// A multi-file job's files, listed at its first start, and which one
    /// it is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<crate::files::FileSet>,
}

/// Bytes of the source file read (as stored, compressed) of its size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceRead {
    pub bytes_read: u64,
    pub bytes_total: u64,
}

/// The `source` of a job whose reference ids came inline.
pub const INLINE_SOURCE: &str = "inline";

/// A request for an import.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub target: Target,
    pub domain_id: Uuid,
    pub group_key: String,
    pub node_type: String,
    /// A path or URL; [`INLINE_SOURCE`] with `reference_ids`.
    pub source: String,
    pub format: InputFormat,
    /// Ids given inline (stored on the job row, so a restart reads them again).
    pub reference_ids: Option<Vec<String>>,
    /// A second request with the same key gets the first one's job.
    pub idempotency_key: Option<String>,
    /// A digest of the request, kept with its key: a second request with
    /// the key but another digest is a conflict, not the first one again.
    pub request_hash: Option<String>,
    /// Where the job's terminal status event is published; `None`: nowhere.
    pub status_topic: Option<String>,
    /// Where the request came from (a Kafka message's coordinates, the API).
    pub origin: Option<serde_json::Value>,
}

impl NewJob {
    /// A job that reads `source` (a CSV file, or a reference list when
    /// `format` is [`InputFormat::Refs`]).
    pub fn file(
        target: Target,
        domain_id: Uuid,
        group_key: &str,
        node_type: &str,
        source: &str,
        format: InputFormat,
    ) -> Self {
        Self {
            target,
            domain_id,
            group_key: group_key.into(),
            node_type: node_type.into(),
            source: source.into(),
            format,
            reference_ids: None,
            idempotency_key: None,
            request_hash: None,
            status_topic: None,
            origin: None,
        }
    }

    /// A job over ids given inline; they become nodes.
    pub fn inline_refs(
        domain_id: Uuid,
        group_key: &str,
        node_type: &str,
        ids: Vec<String>,
    ) -> Self {
        Self {
            source: INLINE_SOURCE.into(),
            reference_ids: Some(ids),
            ..Self::file(
                Target::Nodes,
                domain_id,
                group_key,
                node_type,
                "",
                InputFormat::Refs,
            )
        }
    }

    /// The same request, deduplicated by `key`.
    pub fn keyed(self, key: String) -> Self {
        Self {
            idempotency_key: Some(key),
            ..self
        }
    }

    /// The same request, with a digest of what it asked for.
    pub fn hashed(self, hash: String) -> Self {
        Self {
            request_hash: Some(hash),
            ..self
        }
    }

    /// The same request, announcing its end on `topic` from `origin`.
    pub fn reporting_to(self, topic: String, origin: serde_json::Value) -> Self {
        Self {
            status_topic: Some(topic),
            origin: Some(origin),
            ..self
        }
    }
}

/// A job row: the lifecycle every kind shares, and the kind's own work.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: Uuid,
    pub status: JobStatus,
    pub domain_id: Uuid,
    pub attempts: i32,
    pub failure_reason: Option<String>,
    /// Where the terminal status event goes, if anywhere.
    pub status_topic: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Seconds from the first attempt's start to the finish (or to now,
    /// while running).
    pub duration_secs: Option<f64>,
    pub work: Work,
}

/// What a job does, with what it has done so far.
#[derive(Debug, Clone)]
pub enum Work {
    Import(Box<Import>),
    Export(Box<Export>),
}

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

/// A request for an export.
#[derive(Debug, Clone)]
pub struct NewExport {
    /// The job's id, chosen first: the default file names hold it.
    pub id: Uuid,
    pub domain_id: Uuid,
    pub spec: ExportSpec,
    /// A second request with the same key gets the first one's job.
    pub idempotency_key: Option<String>,
    /// A digest of the request, kept with its key.
    pub request_hash: Option<String>,
    /// Where its end is announced; `None`: nowhere.
    pub status_topic: Option<String>,
    pub origin: Option<serde_json::Value>,
}

/// An import: where it reads, where its rows go, how far it got.
#[derive(Debug, Clone)]
pub struct Import {
    pub target: Target,
    pub group_id: Uuid,
    /// The request's `groupId`, as it was sent.
    pub group_key: String,
    pub node_type: String,
    pub source: String,
    pub format: InputFormat,
    /// As of the last checkpoint, or as the job ended.
    pub counts: Counts,
    pub rejects_path: Option<String>,
    pub checkpoint: Checkpoint,
}

impl Job {
    pub fn kind(&self) -> JobKind {
        match &self.work {
            Work::Import(import) => JobKind::Import(import.target),
            Work::Export(_) => JobKind::Export,
        }
    }
}

/// How a job's attempt ended, as its pipeline reports it (or as the
/// coordinator makes it up when it gives the job up, or the API when it
/// cancels it). The lifecycle turns it into the terminal row and the event.
#[derive(Debug, Clone)]
pub enum Outcome {
    Import(ImportOutcome),
    Export(ExportOutcome),
}

impl Outcome {
    pub fn status(&self) -> JobStatus {
        match self.failure_reason() {
            None => JobStatus::Completed,
            Some(_) => JobStatus::Failed,
        }
    }

    /// `None`: COMPLETED.
    pub fn failure_reason(&self) -> Option<&str> {
        match self {
            Self::Import(o) => o.failure_reason.as_deref(),
            Self::Export(o) => o.failure_reason.as_deref(),
        }
    }

    /// A job given up on (or cancelled): what its last checkpoint says was
    /// done, and why it ended.
    pub fn as_checkpointed(job: &Job, reason: &str) -> Self {
        match &job.work {
            Work::Import(import) => Self::Import(ImportOutcome::as_checkpointed(import, reason)),
            Work::Export(export) => Self::Export(ExportOutcome {
                result: ExportResult {
                    rows: export.checkpoint.rows,
                    bytes: export.checkpoint.bytes(),
                    files: export.checkpoint.files.clone(),
                    data_as_of: export.checkpoint.data_as_of.clone(),
                },
                failure_reason: Some(reason.to_string()),
                snapshot: None,
            }),
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
    /// marks what it read: see `ExportSpec::one_snapshot`).
    pub snapshot: Option<String>,
}

/// How an import ended.
#[derive(Debug, Clone)]
pub struct ImportOutcome {
    pub counts: Counts,
    pub rejects_path: Option<String>,
    /// `None`: COMPLETED.
    pub failure_reason: Option<String>,
    /// The ids the status event lists.
    pub lists: IdLists,
}

impl ImportOutcome {
    /// An import given up on (or cancelled): what its last checkpoint says
    /// was committed, and why it ended.
    pub fn as_checkpointed(import: &Import, reason: &str) -> Self {
        let counts = import.checkpoint.counts;
        Self {
            counts,
            rejects_path: import.rejects_path.clone(),
            failure_reason: Some(reason.to_string()),
            lists: IdLists::counts_only(&counts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_map_to_uuids() {
        let u = "0b5c3f4e-8f0a-4c1e-9f6e-2d7a4b1c3e5f";
        assert_eq!(group_uuid(u).to_string(), u);
        assert_eq!(group_uuid("mentors-2024"), group_uuid(" mentors-2024 "));
        assert_ne!(group_uuid("mentors-2024"), group_uuid("mentees-2024"));
        assert_eq!(group_uuid("mentors-2024").get_version_num(), 5);
    }

    #[test]
    fn statuses_are_spelled_once() {
        for status in JobStatus::ALL {
            assert_eq!(JobStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(JobStatus::parse("running"), None);
        assert_eq!(
            JobStatus::sql_list(&JobStatus::ACTIVE),
            "('PENDING', 'RUNNING')"
        );
    }

    #[test]
    fn a_checkpoint_reads_what_earlier_versions_wrote() {
        let old = serde_json::json!({
            "mode": "fast", "records": 10, "rejected": 1,
            "inserted": 7, "updated": 1, "duplicates": 1
        });
        let cp: Checkpoint = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(cp.mode, Some(WriteMode::Fast));
        assert_eq!(cp.counts.loaded(), 9);
        assert_eq!(serde_json::to_value(&cp).unwrap(), old);
    }
}
