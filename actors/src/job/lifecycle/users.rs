//! The terminal write of a scheduled users export (seed 000): its users
//! marked sent and its messages queued, with the job's end, in one
//! statement.

use std::time::Duration;

use tokio_postgres::Transaction;
use uuid::Uuid;

use super::{active, export_done};
use crate::export::users::{mark_sent_sql, FileMessage, GroupType, UsersDelivery, PARTS_UNKNOWN};
use crate::job::store::{from_row, StoreError};
use crate::job::{ExportOutcome, Job, JobStatus};
use crate::telemetry::{UsersExported, UsersRunEnded};

/// A scheduled users export's terminal write (seed 000). When it COMPLETED,
/// in the same statement: its users are marked sent (exactly the row
/// versions its snapshot saw), and its messages go to the outbox (a
/// COST_BASED group's one, about the file; a NON_COST_BASED group's
/// pending ones, numbered). Either way its pending messages go. A group
/// with no new users sends nothing.
pub(super) async fn end_users_export(
    tx: &Transaction<'_>,
    job: &Job,
    users: &UsersDelivery,
    owner: Option<&str>,
    status: JobStatus,
    o: &ExportOutcome,
) -> Result<Option<Job>, StoreError> {
    let completed = status == JobStatus::Completed;
    let message = match (&o.result.files[..], users.group_type) {
        ([file], GroupType::CostBased) if completed && file.rows > 0 => {
            let uri = file.location.uri();
            Some(FileMessage {
                domain_id: job.domain_id,
                group_id: users.group_key.clone(),
                file_name: uri.rsplit('/').next().unwrap_or_default().to_string(),
                file_path: uri,
                content_type: "text/csv".into(),
                group_type: users.group_type,
                rows: file.rows,
                bytes: file.bytes,
                run_id: users.run_id,
                exported_at: crate::export::users::now(),
            })
        }
        _ => None,
    };
    let payload = message.map(|m| serde_json::to_string(&m).expect("a message serialises"));
    let result = serde_json::to_value(&o.result).expect("a result serialises");
    let snapshot = o.snapshot.as_deref().filter(|_| completed);
    let mark = mark_sent_sql("$9", "$10", "$11");
    let sql = format!(
        "WITH {done},
         queued AS (
             INSERT INTO status_outbox (job_id, topic, message_key, payload, dead_letter_topic)
             SELECT id, status_topic, $4, $5, $13 FROM done
             WHERE status_topic IS NOT NULL AND $5::text IS NOT NULL
             RETURNING 1),
         marked AS ({mark} AND EXISTS (SELECT FROM done) RETURNING 1),
         released AS (
             INSERT INTO status_outbox (job_id, topic, message_key, payload, dead_letter_topic)
             SELECT job_id, topic, message_key,
                    replace(payload, $12, '\"parts\":' || (SELECT count(*) FROM pending_messages WHERE job_id = $1)),
                    $13
             FROM pending_messages
             WHERE job_id = $1 AND $3 = 'COMPLETED' AND EXISTS (SELECT FROM done)
             ORDER BY seq
             RETURNING 1),
         cleared AS (DELETE FROM pending_messages WHERE job_id = $1 AND EXISTS (SELECT FROM done))
         SELECT *, (SELECT count(*) FROM marked) AS marked,
                (SELECT count(*) FROM released) + (SELECT count(*) FROM queued) AS messages
         FROM done",
        done = export_done(),
    );
    let key = users.message_key(job.domain_id);
    let args: [&(dyn tokio_postgres::types::ToSql + Sync); 13] = [
        &job.id,
        &owner,
        &status.as_str(),
        &key,
        &payload,
        &result,
        &(o.result.rows as i64),
        &o.failure_reason,
        &job.domain_id,
        &users.group_id,
        &snapshot,
        &PARTS_UNKNOWN,
        &users.dead_letter_topic,
    ];
    let Some(row) = tx.query_opt(&sql, &args).await? else {
        return Ok(None);
    };
    let marked: i64 = row.try_get("marked")?;
    let messages: i64 = row.try_get("messages")?;
    let ended = from_row(&row)?;
    if completed {
        tracing::info!(
            job_id = %job.id, run_id = %users.run_id, domain_id = %job.domain_id,
            group = %users.group_key, group_type = users.group_type.as_str(),
            exported = o.result.rows, marked, changed_since_read = o.result.rows.saturating_sub(marked as u64),
            messages, "Users export delivered; its users are marked sent."
        );
    }
    run_ended(tx, job.id, users.run_id).await?;
    UsersExported {
        group_type: users.group_type.as_str(),
        outcome: status.as_str(),
        users: if completed { o.result.rows } else { 0 },
        files: if completed {
            o.result.files.len() as u64
        } else {
            0
        },
        messages: messages as u64,
        elapsed: Duration::from_secs_f64(ended.duration_secs.unwrap_or(0.0).max(0.0)),
    }
    .emit();
    Ok(Some(ended))
}

/// When the last of a run's exports ends, the run's duration from its
/// tick (seed 000's `users_export_duration`).
async fn run_ended(tx: &Transaction<'_>, job_id: Uuid, run_id: Uuid) -> Result<(), StoreError> {
    let sql = format!(
        "SELECT extract(epoch FROM clock_timestamp() - r.fire_at)::float8
         FROM export_runs r
         WHERE r.id = $1 AND NOT EXISTS (
             SELECT FROM jobs j
             WHERE j.kind = 'export' AND j.status IN {active} AND j.id <> $2
               AND j.spec -> 'users' ->> 'run_id' = $1::text)",
        active = active()
    );
    if let Some(row) = tx.query_opt(&sql, &[&run_id, &job_id]).await? {
        UsersRunEnded {
            run_id,
            elapsed: Duration::from_secs_f64(row.get::<_, f64>(0).max(0.0)),
        }
        .emit();
    }
    Ok(())
}
