//! Imports (seeds 003 and 004): rows from a file, a set of files or a
//! list of reference ids, into `nodes` or `match_suggestions`.
//!
//! - `kind`: the import as a kind of job (its row, its terminal write, its
//!   pipeline).
//! - `request`: a `NodeExchange` (from Kafka, the API or the CLI) checked
//!   and made a job.
//! - `source`: where an import reads from, and what it may not read;
//!   `files`: a multi-file import's set (a prefix, a glob, a list), kept in
//!   the checkpoint.
//! - `formats`: compression sniffing, CSV rows to nodes, Parquet columns
//!   to match suggestions, input limits, the rejects file.
//! - `batch`: rows packed in one text arena (`NodeBatch`, `MatchBatch`);
//!   dedupe and routing.
//! - `table`: the target tables (`Table`: nodes, match suggestions), the
//!   binary COPY encoder, saved rejects.
//! - `contract`: a group's data contract (a JSON Schema subset), bound to
//!   a file's columns and checked row by row; `drift`: a file's columns
//!   against the group's last import's.
//! - `sync`: a sync import's end, the delete of the group's rows its
//!   input did not hold, and its guard.
//! - `tracker`: out-of-order batch commits → a contiguous checkpoint and
//!   the import's outcome.
//! - `event`: the status event an import's end is announced with (seed
//!   004's `NodesTransferJobExchange`) and the id lists it carries.
//! - `actors`: ImportPipeline → FileFetcher → CsvReader | ParquetReader →
//!   BatchAccumulator → CopyWriter × N.

pub mod actors;
pub mod batch;
pub mod contract;
pub mod drift;
pub mod event;
pub mod files;
pub mod formats;
pub mod kind;
pub mod request;
pub mod source;
pub mod sync;
pub mod table;
pub mod tracker;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use self::event::IdLists;
use tokio_postgres::GenericClient;

use crate::error::JobError;
use crate::job::fence::Fence;
use crate::job::{group_uuid, NewRow, Spec};
use crate::vocab::{Counts, ImportMode, Target, WriteMode};

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
    pub const ALL: [Self; 3] = [Self::Csv, Self::Refs, Self::Parquet];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Refs => "refs",
            Self::Parquet => "parquet",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
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
    pub files: Option<files::FileSet>,
    /// A sync's delete is done (in the transaction that saved this): the
    /// first of the ids it deleted, for the status event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_ids: Option<Vec<String>>,
    /// The input's columns, and their drift from the group's last import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<drift::Drift>,
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

/// What an import was asked: the new job's own columns.
#[derive(Debug, Clone)]
pub struct ImportSpec {
    pub target: Target,
    pub group_key: String,
    pub node_type: String,
    /// A path or URL; [`INLINE_SOURCE`] with `reference_ids`.
    pub source: String,
    pub format: InputFormat,
    /// Ids given inline (stored on the job row, so a restart reads them again).
    pub reference_ids: Option<Vec<String>>,
    pub mode: ImportMode,
    /// A sync deletes even more than `import.sync_max_delete_ratio` of the
    /// group.
    pub force: bool,
}

impl ImportSpec {
    /// An import that reads `source` (a CSV file, or a reference list when
    /// `format` is [`InputFormat::Refs`]).
    pub fn file(
        target: Target,
        group_key: &str,
        node_type: &str,
        source: &str,
        format: InputFormat,
    ) -> Self {
        Self {
            target,
            group_key: group_key.into(),
            node_type: node_type.into(),
            source: source.into(),
            format,
            reference_ids: None,
            mode: ImportMode::Upsert,
            force: false,
        }
    }

    /// The same import, in `mode`.
    pub fn in_mode(self, mode: ImportMode, force: bool) -> Self {
        Self {
            mode,
            force,
            ..self
        }
    }

    /// An import of ids given inline; they become nodes.
    pub fn inline_refs(group_key: &str, node_type: &str, ids: Vec<String>) -> Self {
        Self {
            reference_ids: Some(ids),
            ..Self::file(
                Target::Nodes,
                group_key,
                node_type,
                INLINE_SOURCE,
                InputFormat::Refs,
            )
        }
    }
}

impl Spec for ImportSpec {
    fn kind(&self) -> &'static str {
        self.target.as_str()
    }

    fn columns(&self, row: &mut NewRow) {
        row.set("group_id", group_uuid(&self.group_key));
        row.set("group_key", self.group_key.clone());
        row.set("node_type", self.node_type.clone());
        row.set("source", self.source.clone());
        row.set("format", self.format.as_str());
        row.set("reference_ids", self.reference_ids.clone());
        row.set("import_mode", self.mode.as_str());
        row.set("sync_force", self.force);
    }
}

/// A request for an import.
pub type NewImport = crate::job::NewJob<ImportSpec>;

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
    pub mode: ImportMode,
    pub force: bool,
    /// As of the last checkpoint, or as the job ended.
    pub counts: Counts,
    pub rejects_path: Option<String>,
    pub checkpoint: Checkpoint,
}

impl Import {
    /// Its input's columns and their drift (none before a header was read).
    pub fn drift(&self) -> drift::Drift {
        self.checkpoint.drift.clone().unwrap_or_default()
    }

    /// The file the job reads now: its one file, or the current one of its
    /// set.
    pub fn current_source(
        &self,
        storage: &crate::settings::StorageSettings,
    ) -> Result<source::Source, crate::error::JobError> {
        match &self.checkpoint.files {
            Some(set) => {
                let file = set
                    .current()
                    .ok_or_else(|| crate::error::JobError::Source {
                        uri: self.source.clone(),
                        reason: "every file was read".into(),
                        retriable: false,
                    })?;
                source::Source::parse(&file.uri, storage)
            }
            None => source::Source::parse(&self.source, storage),
        }
    }
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
    /// The input's columns and their drift, once a header was read.
    pub drift: Option<drift::Drift>,
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
            drift: import.checkpoint.drift.clone(),
        }
    }
}

/// Records an import's committed progress: its checkpoint, and the counts
/// its row shows while it runs.
pub async fn save(c: &impl GenericClient, fence: &Fence, cp: &Checkpoint) -> Result<(), JobError> {
    let n = cp.counts;
    fence
        .checkpoint(c, cp, |row| {
            row.set("processed_rows", n.loaded() as i64);
            row.set("inserted_rows", n.inserted as i64);
            row.set("updated_rows", n.updated as i64);
            row.set("unchanged_rows", n.unchanged as i64);
            row.set("duplicate_rows", n.duplicates as i64);
            row.set("rejected_rows", n.rejected as i64);
            row.set("deleted_rows", n.deleted as i64);
            row.set_to("total_rows", "greatest(total_rows, {})", n.records as i64);
        })
        .await
        .map_err(JobError::from)
}

/// The ids of an inline reference-list job (read apart from the job row,
/// which is listed often and should stay small).
pub async fn inline_ids(
    c: &impl GenericClient,
    id: Uuid,
) -> Result<Option<Vec<String>>, tokio_postgres::Error> {
    let row = c
        .query_opt("SELECT reference_ids FROM jobs WHERE id = $1", &[&id])
        .await?;
    Ok(row.and_then(|r| r.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_reads_what_earlier_versions_wrote() {
        let old = serde_json::json!({
            "mode": "fast", "records": 10, "rejected": 1,
            "inserted": 7, "updated": 1, "duplicates": 1
        });
        let cp: Checkpoint = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(cp.mode, Some(WriteMode::Fast));
        assert_eq!(cp.counts.loaded(), 9);
        // Written again, it says how many were unchanged or deleted: none
        // then.
        let mut again = old;
        again["unchanged"] = 0.into();
        again["deleted"] = 0.into();
        assert_eq!(serde_json::to_value(&cp).unwrap(), again);
    }
}
