//! The SQL that moves nodes in (see [`super`] for the scheme).

use tokio_postgres::{Error, Transaction};
use uuid::Uuid;

use super::copy::CopyEncoder;
use super::{Group, Table};
use crate::import::batch::NodeBatch;

/// The `nodes` of one job: its constant columns.
#[derive(Debug, Clone)]
pub struct Nodes {
    pub group: Group,
    pub node_type: String,
    /// A node whose metadata changes is changed for the users export (its
    /// `changed_xid` moves, so it is unsent until its group's next export).
    pub resend_changed: bool,
}

impl Table for Nodes {
    type Batch = NodeBatch;

    const NAME: &'static str = "nodes";

    const TARGET: crate::vocab::Target = crate::vocab::Target::Nodes;

    const CREATE_STAGE: &'static str = "CREATE TEMP TABLE IF NOT EXISTS ferry_stage_nodes
        (id uuid, reference_id text, metadata jsonb) ON COMMIT DELETE ROWS";

    const COPY_STAGE: &'static str =
        "COPY ferry_stage_nodes (id, reference_id, metadata) FROM STDIN (FORMAT binary)";

    const GROUP_IS_EMPTY: &'static str =
        "SELECT NOT EXISTS (SELECT 1 FROM node_rows WHERE group_id = $1 AND domain_id = $2)";

    const SEEN: &'static str = "sync_seen_nodes";

    const MARK_SEEN: &'static str = "INSERT INTO sync_seen_nodes (job_id, reference_id)
        SELECT $1, reference_id FROM ferry_stage_nodes";

    const DELETE_UNSEEN: &'static str = "WITH gone AS (
            DELETE FROM node_rows n
            WHERE n.group_id = $1 AND n.domain_id = $2
              AND NOT EXISTS (SELECT FROM sync_seen_nodes s
                              WHERE s.job_id = $3 AND s.reference_id = n.reference_id)
            RETURNING n.reference_id)
        SELECT (SELECT count(*) FROM gone),
               ARRAY(SELECT reference_id FROM gone ORDER BY reference_id LIMIT $4)";

    fn group(&self) -> Group {
        self.group
    }

    fn encode(batch: &NodeBatch, i: u32, enc: &mut CopyEncoder) {
        let row = &batch.rows()[i as usize];
        enc.row(3);
        enc.uuid(&Uuid::now_v7());
        enc.text(batch.reference(row));
        enc.jsonb(batch.metadata(row));
    }

    async fn insert_staged(&self, tx: &Transaction<'_>) -> Result<u64, Error> {
        tx.execute(
            "INSERT INTO node_rows (id, reference_id, group_id, domain_id, type, metadata, created_at, updated_at)
             SELECT id, reference_id, $1, $2, $3, metadata, now(), now()
             FROM ferry_stage_nodes ORDER BY reference_id",
            &[&self.group.group_id, &self.group.domain_id, &self.node_type],
        )
        .await
    }

    /// A row that carries no metadata (a reference list, a one-column file)
    /// leaves the existing node's metadata as it was; one that changes it
    /// changes the node for the users export, when `resend_changed`. A
    /// node whose type and metadata are the same is not written.
    async fn upsert_staged(&self, tx: &Transaction<'_>) -> Result<(u64, u64), Error> {
        let row = tx
            .query_one(
                "WITH up AS (
                     INSERT INTO node_rows AS n (id, reference_id, group_id, domain_id, type, metadata,
                                             created_at, updated_at)
                     SELECT id, reference_id, $1, $2, $3, metadata, now(), now()
                     FROM ferry_stage_nodes ORDER BY reference_id
                     ON CONFLICT (group_id, domain_id, reference_id) DO UPDATE
                     SET type = EXCLUDED.type,
                         metadata = CASE WHEN EXCLUDED.metadata = '{}' THEN n.metadata
                                         ELSE EXCLUDED.metadata END,
                         changed_xid = CASE WHEN $4 AND EXCLUDED.metadata <> '{}'
                                                 AND EXCLUDED.metadata <> n.metadata
                                            THEN pg_current_xact_id() ELSE n.changed_xid END,
                         updated_at = now()
                     WHERE n.type IS DISTINCT FROM EXCLUDED.type
                        OR (EXCLUDED.metadata <> '{}' AND n.metadata IS DISTINCT FROM EXCLUDED.metadata)
                     RETURNING (xmax = 0) AS inserted)
                 SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up",
                &[
                    &self.group.group_id,
                    &self.group.domain_id,
                    &self.node_type,
                    &self.resend_changed,
                ],
            )
            .await?;
        Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
    }
}
