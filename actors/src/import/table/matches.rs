//! The SQL that moves match suggestions in (seed 003; see [`super::table`]
//! for the scheme).

use tokio_postgres::{Error, Transaction};

use super::copy::CopyEncoder;
use super::{Group, Table};
use crate::import::batch::MatchBatch;

/// The `match_suggestions` of one job's group.
#[derive(Debug, Clone)]
pub struct Matches {
    pub group: Group,
}

impl Table for Matches {
    type Batch = MatchBatch;

    const NAME: &'static str = "match_suggestions";

    const TARGET: crate::vocab::Target = crate::vocab::Target::Matches;

    const CREATE_STAGE: &'static str = "CREATE TEMP TABLE IF NOT EXISTS ferry_stage_matches
        (participant_id text, matched_participant_id text,
         compatibility_score float8, rank int4) ON COMMIT DELETE ROWS";

    const COPY_STAGE: &'static str = "COPY ferry_stage_matches
        (participant_id, matched_participant_id, compatibility_score, rank)
        FROM STDIN (FORMAT binary)";

    const GROUP_IS_EMPTY: &'static str = "SELECT NOT EXISTS
        (SELECT 1 FROM match_suggestions WHERE group_id = $1 AND domain_id = $2)";

    const SEEN: &'static str = "sync_seen_matches";

    const MARK_SEEN: &'static str =
        "INSERT INTO sync_seen_matches (job_id, participant_id, matched_participant_id)
         SELECT $1, participant_id, matched_participant_id FROM ferry_stage_matches";

    /// A suggestion is listed as `participant → matched participant`.
    const DELETE_UNSEEN: &'static str = "WITH gone AS (
            DELETE FROM match_suggestions m
            WHERE m.group_id = $1 AND m.domain_id = $2
              AND NOT EXISTS (SELECT FROM sync_seen_matches s
                              WHERE s.job_id = $3 AND s.participant_id = m.participant_id
                                AND s.matched_participant_id = m.matched_participant_id)
            RETURNING m.participant_id, m.matched_participant_id)
        SELECT (SELECT count(*) FROM gone),
               ARRAY(SELECT participant_id || ' → ' || matched_participant_id FROM gone
                     ORDER BY participant_id, matched_participant_id LIMIT $4)";

    fn group(&self) -> Group {
        self.group
    }

    fn encode(batch: &MatchBatch, i: u32, enc: &mut CopyEncoder) {
        let row = &batch.rows()[i as usize];
        enc.row(4);
        enc.text(batch.participant(row));
        enc.text(batch.matched(row));
        match row.score {
            Some(v) => enc.float8(v),
            None => enc.null(),
        }
        match row.rank {
            Some(v) => enc.int4(v),
            None => enc.null(),
        }
    }

    async fn insert_staged(&self, tx: &Transaction<'_>) -> Result<u64, Error> {
        tx.execute(
            "INSERT INTO match_suggestions (group_id, domain_id, participant_id,
                 matched_participant_id, compatibility_score, rank, created_at, updated_at)
             SELECT $1, $2, participant_id, matched_participant_id, compatibility_score, rank,
                    now(), now()
             FROM ferry_stage_matches ORDER BY participant_id, matched_participant_id",
            &[&self.group.group_id, &self.group.domain_id],
        )
        .await
    }

    async fn upsert_staged(&self, tx: &Transaction<'_>) -> Result<(u64, u64), Error> {
        let row = tx
            .query_one(
                "WITH up AS (
                     INSERT INTO match_suggestions AS m (group_id, domain_id, participant_id,
                         matched_participant_id, compatibility_score, rank, created_at, updated_at)
                     SELECT $1, $2, participant_id, matched_participant_id, compatibility_score,
                            rank, now(), now()
                     FROM ferry_stage_matches ORDER BY participant_id, matched_participant_id
                     ON CONFLICT (group_id, domain_id, participant_id, matched_participant_id)
                     DO UPDATE SET compatibility_score = EXCLUDED.compatibility_score,
                                   rank = EXCLUDED.rank,
                                   updated_at = now()
                     WHERE m.compatibility_score IS DISTINCT FROM EXCLUDED.compatibility_score
                        OR m.rank IS DISTINCT FROM EXCLUDED.rank
                     RETURNING (xmax = 0) AS inserted)
                 SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up",
                &[&self.group.group_id, &self.group.domain_id],
            )
            .await?;
        Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
    }
}
