//! Events of the import pipeline: batches committed and retried, rows rejected.

use std::time::Duration;

use metrics::{counter, histogram};
use uuid::Uuid;

use crate::vocab::{Target, Written};

/// A CopyWriter committed one shard of a batch.
pub struct BatchCommitted {
    pub target: Target,
    pub written: Written,
    pub elapsed: Duration,
}

impl BatchCommitted {
    pub fn emit(self) {
        let w = self.written;
        counter!("ferry_rows_written_total", "target" => self.target.as_str())
            .increment(w.inserted + w.updated);
        counter!("ferry_rows_unchanged_total", "target" => self.target.as_str())
            .increment(w.unchanged);
        histogram!("ferry_batch_commit_seconds", "target" => self.target.as_str())
            .record(self.elapsed.as_secs_f64());
    }
}

/// A sync ended its load: it deleted the group's rows its input did not
/// hold, or its guard refused to.
pub enum SyncEnded<'a> {
    Deleted {
        job_id: Uuid,
        target: Target,
        rows: u64,
    },
    Refused {
        job_id: Uuid,
        target: Target,
        reason: &'a str,
    },
}

impl SyncEnded<'_> {
    pub fn emit(self) {
        match self {
            Self::Deleted {
                job_id,
                target,
                rows,
            } => {
                tracing::info!(job_id = %job_id, deleted = rows, "Sync deleted the rows its input did not hold.");
                counter!("ferry_rows_deleted_total", "target" => target.as_str()).increment(rows);
            }
            Self::Refused {
                job_id,
                target,
                reason,
            } => {
                tracing::warn!(job_id = %job_id, reason, "Sync refused to delete.");
                counter!("ferry_syncs_refused_total", "target" => target.as_str()).increment(1);
            }
        }
    }
}

/// An import's columns differ from its group's last completed import's.
pub struct SchemaDrifted<'a> {
    pub job_id: Uuid,
    pub target: Target,
    pub added: &'a [String],
    pub removed: &'a [String],
}

impl SchemaDrifted<'_> {
    pub fn emit(self) {
        tracing::warn!(
            job_id = %self.job_id,
            target = self.target.as_str(),
            added = ?self.added,
            removed = ?self.removed,
            "The input's columns drifted from the group's last import."
        );
        counter!("ferry_schema_drift_total", "target" => self.target.as_str()).increment(1);
    }
}

/// A CopyWriter's attempt at a batch failed and will be tried again.
pub struct BatchRetried<'a> {
    pub job_id: Uuid,
    pub writer: usize,
    pub seq: u64,
    pub attempt: u32,
    pub error: &'a str,
}

impl BatchRetried<'_> {
    pub fn emit(self) {
        tracing::warn!(
            job_id = %self.job_id,
            writer = self.writer,
            batch = self.seq,
            attempt = self.attempt,
            error = self.error,
            "Batch failed; retrying on a new connection."
        );
        counter!("ferry_batch_retries_total").increment(1);
    }
}

/// Rows rejected by a reader, counted per reader step, not per row.
pub struct RowsRejected {
    pub target: Target,
    pub rows: u64,
}

impl RowsRejected {
    pub fn emit(self) {
        if self.rows > 0 {
            counter!("ferry_rows_rejected_total", "target" => self.target.as_str())
                .increment(self.rows);
        }
    }
}
