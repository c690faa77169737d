//! A sync import's end: once every row of its input is committed, the rows
//! of its group that the input did not hold are deleted, so the group
//! holds exactly the input's rows.
//!
//! Each batch's writer keeps the batch's keys as seen by the job, in the
//! batch's own transaction (`Table::MARK_SEEN`), so the seen keys are
//! exactly the committed rows, across restarts. The delete, the checkpoint
//! that records it and the forgetting of the seen keys are one
//! transaction: a job killed before it commits deletes at its resumed end,
//! one killed after it finds the delete done in its checkpoint. The job
//! holds its group's lock exclusively, so nothing else writes the group
//! meanwhile.
//!
//! A sync deletes only after a whole load (no rejected row: its key would
//! be unseen, and its stored row deleted), and only up to
//! `import.sync_max_delete_ratio` of the group unless the request forces
//! it: a truncated file must not wipe a group.

use tokio_postgres::{Client, Transaction};
use uuid::Uuid;

use super::table::Table;
use super::{save, Checkpoint};
use crate::error::JobError;
use crate::job::fence::Fence;

/// How much of its group a sync may delete.
#[derive(Debug, Clone, Copy)]
pub struct Guard {
    /// Of the rows the group had before the job.
    pub max_delete_ratio: f64,
    /// The request's `force`: delete however many.
    pub force: bool,
}

impl Guard {
    /// Why deleting `deleted` of the `before` rows the group had is
    /// refused, if it is.
    pub fn refusal(&self, deleted: u64, before: u64) -> Option<String> {
        if self.force || deleted == 0 || (deleted as f64) <= self.max_delete_ratio * before as f64 {
            return None;
        }
        Some(format!(
            "the sync would delete {deleted} of the group's {before} rows ({:.1}%), more than \
             import.sync_max_delete_ratio ({:.1}%) allows: nothing was deleted; send \
             \"force\": true to delete them",
            100.0 * deleted as f64 / before.max(1) as f64,
            100.0 * self.max_delete_ratio,
        ))
    }
}

/// What the delete did.
pub enum Synced {
    /// Deleted, and recorded in the checkpoint returned.
    Deleted(Box<Checkpoint>),
    /// Refused by the guard (the reason); nothing was deleted.
    Refused(String),
}

/// Deletes the rows of `table`'s group that job `job_id` did not see, and
/// saves `cp` with the count and the first `cap` of their ids, in one
/// transaction.
pub async fn delete_unseen<T: Table>(
    c: &mut Client,
    fence: &Fence,
    table: &T,
    job_id: Uuid,
    cp: &Checkpoint,
    guard: Guard,
    cap: usize,
) -> Result<Synced, JobError> {
    let g = table.group();
    let mut tx = c.transaction().await?;
    // Every committed batch marked its rows (a replayed one twice): fewer
    // keys mean the server lost them (a crash empties an unlogged table),
    // and the rows behind them would be deleted.
    let marked: i64 = tx
        .query_one(
            &format!("SELECT count(*) FROM {} WHERE job_id = $1", T::SEEN),
            &[&job_id],
        )
        .await?
        .get(0);
    let n = &cp.counts;
    let committed = n.inserted + n.updated + n.unchanged;
    if (marked as u64) < committed {
        return Err(JobError::permanent(
            "sync",
            format!(
                "the database lost the keys this sync had seen ({marked} of {committed}; it \
                 restarted or failed over): nothing was deleted; send the request again, with a \
                 new requestId"
            ),
        ));
    }
    // The seen keys' statistics are older than the keys: the anti join
    // must hash, not loop over them.
    tx.batch_execute("SET LOCAL enable_nestloop = off").await?;
    let row = tx
        .query_one(
            T::DELETE_UNSEEN,
            &[&g.group_id, &g.domain_id, &job_id, &(cap as i64)],
        )
        .await?;
    let deleted = row.get::<_, i64>(0) as u64;
    // The group before the job: the rows of it the input held (updated or
    // unchanged; a key repeated across batches counts again) and those it
    // did not.
    let before = n.updated + n.unchanged + deleted;
    if let Some(reason) = guard.refusal(deleted, before) {
        tx.rollback().await?;
        return Ok(Synced::Refused(reason));
    }
    forget(&mut tx, T::SEEN, job_id).await?;
    let mut cp = cp.clone();
    cp.counts.deleted = deleted;
    cp.deleted_ids = Some(row.get(1));
    save(&tx, fence, &cp).await?;
    tx.commit().await?;
    Ok(Synced::Deleted(Box::new(cp)))
}

/// Forgets the keys job `job_id` saw: the whole table is truncated, at no
/// cost, when it holds no other job's (and no other sync is writing it);
/// else the job's rows are deleted.
async fn forget(tx: &mut Transaction<'_>, seen: &str, job_id: Uuid) -> Result<(), JobError> {
    let alone = tx.savepoint("forget").await?;
    let locked = alone
        .batch_execute(&format!(
            "LOCK TABLE {seen} IN ACCESS EXCLUSIVE MODE NOWAIT"
        ))
        .await;
    if locked.is_ok() {
        let others: bool = alone
            .query_one(
                &format!("SELECT EXISTS (SELECT FROM {seen} WHERE job_id <> $1)"),
                &[&job_id],
            )
            .await?
            .get(0);
        if !others {
            alone.batch_execute(&format!("TRUNCATE {seen}")).await?;
            alone.commit().await?;
            return Ok(());
        }
    }
    alone.rollback().await?;
    tx.execute(&format!("DELETE FROM {seen} WHERE job_id = $1"), &[&job_id])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_refuses_more_than_its_share_unless_forced() {
        let guard = Guard {
            max_delete_ratio: 0.5,
            force: false,
        };
        assert_eq!(guard.refusal(500, 1000), None, "half is allowed");
        let reason = guard.refusal(501, 1000).expect("over half");
        assert!(
            reason.starts_with("the sync would delete 501 of the group's 1000 rows (50.1%)"),
            "{reason}"
        );
        assert!(reason.contains("nothing was deleted"), "{reason}");
        assert_eq!(guard.refusal(0, 0), None, "nothing to delete");
        let forced = Guard {
            force: true,
            ..guard
        };
        assert_eq!(forced.refusal(1000, 1000), None);
    }
}
