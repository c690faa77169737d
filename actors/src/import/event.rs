//! An import's status event: how its end is announced on Kafka, in the
//! shape of seed 004's `NodesTransferJobExchange`, and the ids it lists.
//! The event is written to the outbox with the job's terminal statement;
//! the StatusPublisher sends it.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Import, ImportOutcome};
use crate::job::Job;
use crate::vocab::{Counts, JobStatus};

/// `NodesTransferJobExchange`, plus the counts, the rejects file and flags
/// that say whether a list was cut at `jobs.max_status_ids`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusEvent {
    pub job_id: Uuid,
    /// The request's `groupId`, as it was sent.
    pub group_id: String,
    pub domain_id: Uuid,
    /// `nodes` or `matches`.
    pub kind: String,
    pub status: JobStatus,
    /// Rows loaded (inserted, updated, unchanged, or merged as duplicates).
    pub processed: u64,
    /// Rows read: processed plus rejected.
    pub total: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Rows the table held already, the same: not written.
    pub unchanged: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Rows of the group a sync deleted: its input did not hold them.
    #[serde(default)]
    pub deleted: u64,
    pub success_list: Vec<String>,
    pub failed_list: Vec<String>,
    pub success_list_truncated: bool,
    pub failed_list_truncated: bool,
    /// The ids a sync deleted (a match suggestion's as `participant →
    /// matched participant`), up to `jobs.max_status_ids`.
    #[serde(default)]
    pub deleted_list: Vec<String>,
    #[serde(default)]
    pub deleted_list_truncated: bool,
    /// The input's columns that the group's last completed import did not
    /// have, and those it had that this one lacks (schema drift).
    #[serde(default)]
    pub columns_added: Vec<String>,
    #[serde(default)]
    pub columns_removed: Vec<String>,
    /// Every rejected row, with its reason.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rejects_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub failure_reason: Option<String>,
}

impl StatusEvent {
    /// The event of an import that ended as `status`, with `outcome`.
    pub fn new(job: &Job<Import>, status: JobStatus, outcome: &ImportOutcome) -> Self {
        let (counts, lists) = (&outcome.counts, outcome.lists.clone());
        let drift = outcome.drift.clone().unwrap_or_default();
        Self {
            job_id: job.id,
            group_id: job.work.group_key.clone(),
            domain_id: job.domain_id,
            kind: job.work.target.as_str().to_string(),
            status,
            processed: counts.loaded(),
            total: counts.records,
            inserted: counts.inserted,
            updated: counts.updated,
            unchanged: counts.unchanged,
            duplicates: counts.duplicates,
            rejected: counts.rejected,
            deleted: counts.deleted,
            success_list: lists.success,
            failed_list: lists.failed,
            success_list_truncated: lists.success_truncated,
            failed_list_truncated: lists.failed_truncated,
            deleted_list: lists.deleted,
            deleted_list_truncated: lists.deleted_truncated,
            columns_added: drift.added,
            columns_removed: drift.removed,
            rejects_path: outcome.rejects_path.clone(),
            failure_reason: outcome.failure_reason.clone(),
        }
    }

    /// Events of one job share a key, so they keep their order in a partition.
    pub fn message_key(&self) -> String {
        self.job_id.to_string()
    }
}

/// The ids a status event lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdLists {
    pub success: Vec<String>,
    pub failed: Vec<String>,
    pub success_truncated: bool,
    pub failed_truncated: bool,
    pub deleted: Vec<String>,
    pub deleted_truncated: bool,
}

impl IdLists {
    /// Counts only (a job given up on): a list is "truncated" when it has
    /// rows to list.
    pub fn counts_only(counts: &Counts) -> Self {
        let mut lists = Self::of_file(counts, Vec::new(), 0);
        lists.deleted(Vec::new(), counts.deleted);
        lists
    }

    /// The first ids of the `count` a sync deleted.
    pub fn deleted(&mut self, ids: Vec<String>, count: u64) {
        self.deleted_truncated = (ids.len() as u64) < count;
        self.deleted = ids;
    }

    /// A file job: the reference ids of its rejected rows, as seed 004 asks
    /// ("add to failed list"), up to `cap`; its stored rows are counted,
    /// not listed (a file may hold millions). The rejects file has every
    /// rejected row, with or without an id.
    pub fn of_file(counts: &Counts, mut failed: Vec<String>, cap: usize) -> Self {
        failed.truncate(cap);
        Self {
            success: Vec::new(),
            success_truncated: counts.loaded() > 0,
            failed_truncated: (failed.len() as u64) < counts.rejected,
            failed,
            ..Self::default()
        }
    }

    /// A reference list (seed 004 UC-2): the ids stored and the ids
    /// rejected (all of them, as the rejects file lists them), each list
    /// cut at `cap`.
    /// `rejected` counts every rejected id: one that is empty has nothing to
    /// list, and makes `failedList` "truncated" like a cut list.
    pub fn of_reference_list(
        ids: &[String],
        mut failed: Vec<String>,
        cap: usize,
        rejected: u64,
    ) -> Self {
        let failed_ids: HashSet<&str> = failed.iter().map(String::as_str).collect();
        let mut seen = HashSet::new();
        let mut success = Vec::new();
        let mut success_truncated = false;
        for id in ids {
            let id = id.trim();
            // An empty id is rejected, with nothing to list.
            if id.is_empty() || failed_ids.contains(id) || !seen.insert(id) {
                continue;
            }
            if success.len() == cap {
                success_truncated = true;
                break;
            }
            success.push(id.to_string());
        }
        let failed_truncated = failed.len() > cap || (failed.len() as u64) < rejected;
        failed.truncate(cap);
        Self {
            success,
            failed,
            success_truncated,
            failed_truncated,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_reference_list_lists_stored_and_rejected_ids_once() {
        let lists = IdLists::of_reference_list(
            &ids(&["a", "b", "a", "", "x\0", "c"]),
            ids(&["x\0"]),
            10,
            1,
        );
        assert_eq!(lists.success, ids(&["a", "b", "c"]));
        assert_eq!(lists.failed, ids(&["x\0"]));
        assert!(!lists.success_truncated && !lists.failed_truncated);
    }

    #[test]
    fn lists_are_cut_at_the_cap_and_say_so() {
        let lists = IdLists::of_reference_list(&ids(&["a", "b", "c"]), ids(&["x", "y", "z"]), 2, 3);
        assert_eq!(lists.success, ids(&["a", "b"]));
        assert_eq!(lists.failed, ids(&["x", "y"]));
        assert!(lists.success_truncated && lists.failed_truncated);
        let exact = IdLists::of_reference_list(&ids(&["a", "b"]), Vec::new(), 2, 0);
        assert!(!exact.success_truncated);
        let blank = IdLists::of_reference_list(&ids(&["a", ""]), Vec::new(), 2, 1);
        assert!(
            blank.failed.is_empty() && blank.failed_truncated,
            "an empty id was rejected"
        );
    }

    fn counts(inserted: u64, rejected: u64) -> Counts {
        Counts {
            records: inserted + rejected,
            inserted,
            rejected,
            ..Counts::default()
        }
    }

    #[test]
    fn a_file_lists_its_rejected_ids_and_says_when_some_are_missing() {
        // Three rejected rows, one of them without an id.
        let lists = IdLists::of_file(&counts(5, 3), ids(&["r1", "r2"]), 10);
        assert_eq!(lists.failed, ids(&["r1", "r2"]));
        assert!(lists.failed_truncated, "one reject has no id to list");
        assert!(lists.success.is_empty() && lists.success_truncated);

        let all = IdLists::of_file(&counts(5, 2), ids(&["r1", "r2"]), 10);
        assert!(!all.failed_truncated);
        let capped = IdLists::of_file(&counts(5, 2), ids(&["r1", "r2"]), 1);
        assert_eq!(capped.failed, ids(&["r1"]));
        assert!(capped.failed_truncated);
        let clean = IdLists::counts_only(&counts(0, 0));
        assert!(!clean.success_truncated && !clean.failed_truncated);
    }
}
