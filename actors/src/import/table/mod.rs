//! What a target table must provide for the CopyWriters: a temp stage that
//! binary COPY fills, the statements that move the stage into the table,
//! and the group lock that licenses the fast path.
//!
//! Every batch is staged into a per-connection temp table; the job's
//! constant columns (group, domain, …) are bound once per statement instead
//! of per row. Then, in the same transaction:
//!
//! - Upsert mode: `INSERT … ON CONFLICT DO UPDATE … WHERE` the row
//!   differs, so a row the table holds already, the same, is not written.
//! - Sync mode, on top of either: the batch's keys are also kept as seen
//!   by the job, so that at its end it can delete the group's rows it did
//!   not see (see [`crate::import::sync`]).
//! - Fast mode, for a group that had no rows when the job started (checked
//!   under an exclusive per-group advisory lock the job holds to its end): a
//!   plain `INSERT`, which skips the conflict checks, in a savepoint. If it
//!   meets a unique violation (a key repeated in an earlier batch of the
//!   same file, or a batch replayed after a restart) the savepoint is rolled
//!   back and the batch upserted instead, so the last row of a key still
//!   wins and a replay is still idempotent.

pub mod copy;
pub mod matches;
pub mod nodes;
pub mod rejects;

use std::future::Future;

use tokio_postgres::{Client, Error, Transaction};
use uuid::Uuid;

use self::copy::CopyEncoder;
use crate::import::batch::Batch;
use crate::vocab::WriteMode;

/// The tenant and matching group a job writes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    pub domain_id: Uuid,
    pub group_id: Uuid,
}

pub trait Table: Clone + Send + Sync + 'static {
    type Batch: Batch;

    /// The table's name in metrics, and its namespace for group locks.
    const NAME: &'static str;
    /// What a job that writes this table imports (the metrics' `target`).
    const TARGET: crate::vocab::Target;
    /// Creates the temp stage; run once per connection, outside a
    /// transaction.
    const CREATE_STAGE: &'static str;
    /// The `COPY … FROM STDIN (FORMAT binary)` that [`Table::encode`] feeds.
    const COPY_STAGE: &'static str;
    /// `$1` group, `$2` domain: whether the group has no rows.
    const GROUP_IS_EMPTY: &'static str;
    /// The table a sync job's seen keys are kept in (by `job_id`).
    const SEEN: &'static str;
    /// `$1` job: records the stage's keys as seen by a sync job, in the
    /// batch's transaction.
    const MARK_SEEN: &'static str;
    /// `$1` group, `$2` domain, `$3` job, `$4` a cap: deletes the group's
    /// rows the job did not see; their count, and up to `$4` of their ids.
    const DELETE_UNSEEN: &'static str;

    fn group(&self) -> Group;

    /// Encodes row `i` of `batch` in the stage's column order.
    fn encode(batch: &Self::Batch, i: u32, enc: &mut CopyEncoder);

    /// Inserts the stage's rows with no conflict handling; returns the row
    /// count. Fails with a unique violation if any key exists.
    fn insert_staged(
        &self,
        tx: &Transaction<'_>,
    ) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Upserts the stage's rows, writing only those that are new or differ
    /// from the stored row (an unchanged row keeps its version, `xmin`
    /// and all); returns (inserted, updated).
    fn upsert_staged(
        &self,
        tx: &Transaction<'_>,
    ) -> impl Future<Output = Result<(u64, u64), Error>> + Send;
}

/// The advisory lock key of a group of a table: the first 8 bytes of a
/// UUIDv5 over (table, domain, group), so it is the same in every process.
pub fn group_lock_key(table: &str, g: Group) -> i64 {
    let mut name = Vec::with_capacity(32 + table.len());
    name.extend_from_slice(g.domain_id.as_bytes());
    name.extend_from_slice(g.group_id.as_bytes());
    name.extend_from_slice(table.as_bytes());
    let h = Uuid::new_v5(&Uuid::NAMESPACE_OID, &name);
    i64::from_be_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// Takes the group's lock exclusively if nobody holds it, and says whether
/// the group is empty. The lock is kept only when both are true: that is the
/// fast path's licence. Otherwise the lock is taken shared (waiting for a
/// fast-path job of the same group to finish), or exclusively when
/// `exclusive` (a sync, which must see the group alone).
async fn lock_group<T: Table>(
    c: &Client,
    t: &T,
    want_fast: bool,
    exclusive: bool,
) -> Result<bool, Error> {
    let g = t.group();
    let key = group_lock_key(T::NAME, g);
    if want_fast {
        let got: bool = c
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await?
            .get(0);
        if got {
            let empty: bool = c
                .query_one(T::GROUP_IS_EMPTY, &[&g.group_id, &g.domain_id])
                .await?
                .get(0);
            if empty {
                return Ok(true);
            }
            if exclusive {
                return Ok(false);
            }
            c.execute("SELECT pg_advisory_unlock($1)", &[&key]).await?;
        }
    }
    let lock = match exclusive {
        true => "SELECT pg_advisory_lock($1)",
        false => "SELECT pg_advisory_lock_shared($1)",
    };
    c.execute(lock, &[&key]).await?;
    Ok(false)
}

/// Picks upsert or fast mode under the group lock, which `c` holds for the
/// job's life. A resumed job keeps the mode it started in, and takes its
/// lock again: exclusively in fast mode, or for a sync (`exclusive`),
/// shared otherwise. A new one gets the fast path when `fast_path` allows
/// it and the group is empty.
pub async fn choose_mode<T: Table>(
    c: &Client,
    resumed: Option<WriteMode>,
    table: &T,
    fast_path: bool,
    exclusive: bool,
) -> Result<WriteMode, Error> {
    Ok(match resumed {
        Some(WriteMode::Upsert) => {
            lock_group(c, table, false, exclusive).await?;
            WriteMode::Upsert
        }
        Some(WriteMode::Fast) => {
            lock_group(c, table, false, true).await?;
            WriteMode::Fast
        }
        None if lock_group(c, table, fast_path, exclusive).await? => WriteMode::Fast,
        None => WriteMode::Upsert,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_table_locks_its_groups_apart() {
        let g = Group {
            domain_id: Uuid::from_u128(1),
            group_id: Uuid::from_u128(2),
        };
        assert_eq!(group_lock_key("nodes", g), group_lock_key("nodes", g));
        assert_ne!(
            group_lock_key("nodes", g),
            group_lock_key("match_suggestions", g)
        );
    }
}
