//! Import jobs: what is asked, where a job stands, and how it ends.
//!
//! The job row in PostgreSQL is the source of truth; these are its types.
//! A job moves PENDING → RUNNING → COMPLETED | FAILED; a restart keeps it
//! RUNNING and resumes from its checkpoint.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Pending,
    Running,
    Completed,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PENDING" => Self::Pending,
            "RUNNING" => Self::Running,
            "COMPLETED" => Self::Completed,
            "FAILED" => Self::Failed,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// How a job's rows reach the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Each batch: COPY into a temp table, then `INSERT … ON CONFLICT DO UPDATE`.
    Upsert,
    /// The group had no rows: each batch tries a plain `INSERT` first and
    /// upserts only if it meets a conflict.
    Fast,
}

/// What has been committed: a restarted pipeline skips this far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub mode: Option<WriteMode>,
    /// Data records consumed (loaded, merged as duplicates, or rejected).
    pub records: u64,
    pub rejected: u64,
    pub inserted: u64,
    pub updated: u64,
    pub duplicates: u64,
}

/// What an import's rows become.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// `nodes` (seed 004), from CSV or a reference list.
    Nodes,
    /// `match_suggestions` (seed 003), from Parquet.
    Matches,
}

impl Target {
    /// The job's `kind`.
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

/// How a job's input is laid out.
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

/// The `source` of a job whose reference ids came inline.
pub const INLINE_SOURCE: &str = "inline";

/// A request for an import.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: Target,
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
    /// Where the job's terminal status event is published; `None`: nowhere.
    pub status_topic: Option<String>,
    /// Where the request came from (a Kafka message's coordinates, the API).
    pub origin: Option<serde_json::Value>,
}

impl NewJob {
    /// A job that reads `source` (a CSV file, or a reference list when
    /// `format` is [`InputFormat::Refs`]).
    pub fn file(
        kind: Target,
        domain_id: Uuid,
        group_key: &str,
        node_type: &str,
        source: &str,
        format: InputFormat,
    ) -> Self {
        Self {
            kind,
            domain_id,
            group_key: group_key.into(),
            node_type: node_type.into(),
            source: source.into(),
            format,
            reference_ids: None,
            idempotency_key: None,
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
            format: InputFormat::Refs,
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
}

impl NewJob {
    /// The same request, deduplicated by `key`.
    pub fn keyed(self, key: String) -> Self {
        Self {
            idempotency_key: Some(key),
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

/// A job row.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: Uuid,
    pub kind: String,
    pub status: JobStatus,
    pub domain_id: Uuid,
    pub group_id: Uuid,
    pub group_key: String,
    pub node_type: String,
    pub source: String,
    pub format: InputFormat,
    pub total_rows: i64,
    pub processed_rows: i64,
    pub inserted_rows: i64,
    pub updated_rows: i64,
    pub duplicate_rows: i64,
    pub rejected_rows: i64,
    pub rejects_path: Option<String>,
    pub failure_reason: Option<String>,
    pub checkpoint: Checkpoint,
    pub attempts: i32,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Seconds from start to finish (or to now, while running).
    pub duration_secs: Option<f64>,
}

impl Job {
    /// What the job's rows become; `None` for a kind this build does not know.
    pub fn target(&self) -> Option<Target> {
        Target::parse(&self.kind)
    }
}

/// How a pipeline ended, as the job row will record it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: JobStatus,
    pub total: u64,
    pub inserted: u64,
    pub updated: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub rejects_path: Option<String>,
    pub failure_reason: Option<String>,
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
}
