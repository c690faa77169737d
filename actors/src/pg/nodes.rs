//! The SQL that moves nodes in.
//!
//! Every batch is staged with binary COPY into a per-connection temp table
//! `(row_no, id, reference_id, metadata)`; the job's constant columns
//! (group, domain, type) are bound once per statement instead of per row.
//! Then, in the same transaction:
//!
//! - Upsert mode: `INSERT … ON CONFLICT DO UPDATE`.
//! - Fast mode, for a group that had no rows when the job started (checked
//!   under an exclusive per-group advisory lock the job holds to its end): a
//!   plain `INSERT`, which skips the conflict checks, in a savepoint. If it
//!   meets a unique violation (a key repeated in an earlier batch of the
//!   same file, or a batch replayed after a restart) the savepoint is rolled
//!   back and the batch upserted instead, so the last row of a key still
//!   wins and a replay is still idempotent.

use bytes::Bytes;
use tokio_postgres::{Client, CopyInSink, Transaction};
use uuid::Uuid;

use crate::batch::NodeBatch;
use crate::pg::copy::copy_rows;

/// The job's constant columns.
#[derive(Debug, Clone)]
pub struct NodeTarget {
    pub domain_id: Uuid,
    pub group_id: Uuid,
    pub node_type: String,
}

pub const TEMP_STAGE: &str = "ferry_stage_nodes";

/// Run once per writer connection, outside a transaction.
pub const CREATE_TEMP_STAGE: &str = "CREATE TEMP TABLE IF NOT EXISTS ferry_stage_nodes
    (row_no int8, id uuid, reference_id text, metadata jsonb) ON COMMIT DELETE ROWS";

/// The COPY statement that [`copy_shard`] feeds.
pub fn copy_statement(table: &str) -> String {
    format!("COPY {table} (row_no, id, reference_id, metadata) FROM STDIN (FORMAT binary)")
}

/// COPYs the listed rows of `batch` into a started [`copy_statement`].
pub async fn copy_shard(
    sink: CopyInSink<Bytes>,
    batch: &NodeBatch,
    rows: &[u32],
) -> Result<u64, tokio_postgres::Error> {
    copy_rows(sink, rows.iter().copied(), |enc, i| {
        let row = &batch.rows()[i as usize];
        enc.row(4);
        enc.int8(row.row_no as i64);
        enc.uuid(&Uuid::now_v7());
        enc.text(batch.reference(row));
        enc.jsonb(batch.metadata(row));
    })
    .await
}

/// Inserts the temp table's rows with no conflict handling; returns the
/// row count. Fails with a unique violation if any key exists.
pub async fn insert_staged(
    tx: &Transaction<'_>,
    t: &NodeTarget,
) -> Result<u64, tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO nodes (id, reference_id, group_id, domain_id, type, metadata, created_at, updated_at)
         SELECT id, reference_id, $1, $2, $3, metadata, now(), now()
         FROM ferry_stage_nodes ORDER BY reference_id",
        &[&t.group_id, &t.domain_id, &t.node_type],
    )
    .await
}

/// Upserts the temp table's rows; returns (inserted, updated). A row that
/// carries no metadata (a reference list, a one-column file) leaves the
/// existing node's metadata as it was.
pub async fn upsert_staged(
    tx: &Transaction<'_>,
    t: &NodeTarget,
) -> Result<(u64, u64), tokio_postgres::Error> {
    let row = tx
        .query_one(
            "WITH up AS (
                 INSERT INTO nodes AS n (id, reference_id, group_id, domain_id, type, metadata,
                                         created_at, updated_at)
                 SELECT id, reference_id, $1, $2, $3, metadata, now(), now()
                 FROM ferry_stage_nodes ORDER BY reference_id
                 ON CONFLICT (group_id, domain_id, reference_id) DO UPDATE
                 SET type = EXCLUDED.type,
                     metadata = CASE WHEN EXCLUDED.metadata = '{}' THEN n.metadata
                                     ELSE EXCLUDED.metadata END,
                     updated_at = now()
                 RETURNING (xmax = 0) AS inserted)
             SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up",
            &[&t.group_id, &t.domain_id, &t.node_type],
        )
        .await?;
    Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
}

/// The advisory lock key of a group: the first 8 bytes of a UUIDv5 over
/// (domain, group), so it is the same in every process.
pub fn group_lock_key(t: &NodeTarget) -> i64 {
    let mut name = [0u8; 32];
    name[..16].copy_from_slice(t.domain_id.as_bytes());
    name[16..].copy_from_slice(t.group_id.as_bytes());
    let h = Uuid::new_v5(&Uuid::NAMESPACE_OID, &name);
    i64::from_be_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// Takes the group's lock exclusively if nobody holds it, and says whether
/// the group is empty. The lock is kept only when both are true: that is the
/// fast path's licence. Otherwise a shared lock is taken (waiting for a
/// fast-path job of the same group to finish).
pub async fn lock_group(
    c: &Client,
    t: &NodeTarget,
    want_fast: bool,
) -> Result<bool, tokio_postgres::Error> {
    let key = group_lock_key(t);
    if want_fast {
        let got: bool = c
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await?
            .get(0);
        if got {
            let empty: bool = c
                .query_one(
                    "SELECT NOT EXISTS (SELECT 1 FROM nodes WHERE group_id = $1 AND domain_id = $2)",
                    &[&t.group_id, &t.domain_id],
                )
                .await?
                .get(0);
            if empty {
                return Ok(true);
            }
            c.execute("SELECT pg_advisory_unlock($1)", &[&key]).await?;
        }
    }
    c.execute("SELECT pg_advisory_lock_shared($1)", &[&key])
        .await?;
    Ok(false)
}

/// Takes the group lock exclusively, waiting for it: a resumed fast-path job
/// must hold it again before it goes on.
pub async fn lock_group_exclusive(c: &Client, t: &NodeTarget) -> Result<(), tokio_postgres::Error> {
    c.execute("SELECT pg_advisory_lock($1)", &[&group_lock_key(t)])
        .await?;
    Ok(())
}
