//! The terminal write of a group's users export (seed 000): the group's
//! watermark moved to the export's snapshot and its messages queued, with
//! the job's end, in one statement; announced once the statement is
//! committed.

use std::time::Duration;

use uuid::Uuid;

use super::ids::PARTS_UNKNOWN;
use super::{now, FileMessage, GroupType, Users};
use crate::error::StoreError;
use crate::export::kind::ended_export;
use crate::export::{ExportOutcome, ExportResult};
use crate::job::terminal::End;
use crate::job::{Announce, Job, JobStatus};
use crate::telemetry::{UsersExported, UsersRunEnded};

/// When it COMPLETED, in the same statement as the job's end: the group's
/// watermark becomes the export's snapshot (what it saw is sent; a user
/// changed since is not), and its messages go to the outbox (a COST_BASED
/// group's one, about the file; a NON_COST_BASED group's pending ones,
/// numbered). Either way its pending messages go. A group with no new
/// users sends nothing. The watermark does not move back, nor past a reset
/// its snapshot did not see. The statement also returns what is announced
/// after the commit: whether the watermark moved, the messages queued, and
/// the run's duration when this was its last export.
pub fn end(job: &Job<Users>, status: JobStatus, o: &ExportOutcome, end: &mut End) {
    let users = &job.work.delivery;
    // A NON_COST_BASED group's output is its messages, not a file.
    let refs;
    let o = match users.group_type {
        GroupType::CostBased => o,
        GroupType::NonCostBased => {
            refs = ExportOutcome {
                result: ExportResult {
                    files: Vec::new(),
                    ..o.result.clone()
                },
                ..o.clone()
            };
            &refs
        }
    };
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
                exported_at: now(),
            })
        }
        _ => None,
    };
    let dead_letters = Some(users.dead_letter_topic.clone());
    let key = users.message_key(job.domain_id);
    if let Some(m) = message {
        let payload = serde_json::to_string(&m).expect("a message serialises");
        end.event(key, payload, dead_letters.clone());
    }
    ended_export(end, o);
    let (job_id, done) = (End::JOB, End::STATUS);
    let domain = end.bind(job.domain_id);
    let group = end.bind(users.group_id);
    let snapshot = end.bind(o.snapshot.clone().filter(|_| completed));
    let parts = end.bind(PARTS_UNKNOWN);
    let dlq = end.bind(dead_letters);
    let run = end.bind(users.run_id);
    end.with(format!(
        "moved AS (
             INSERT INTO group_watermarks AS w (domain_id, group_id, snapshot, sent_at, job_id)
             SELECT {domain}, {group}, {snapshot}::text::pg_snapshot, now(), {job_id}
             WHERE {snapshot} IS NOT NULL AND EXISTS (SELECT FROM done)
             ON CONFLICT (domain_id, group_id) DO UPDATE
             SET snapshot = EXCLUDED.snapshot, sent_at = EXCLUDED.sent_at, job_id = EXCLUDED.job_id
             WHERE (w.reset_xid IS NULL OR pg_visible_in_snapshot(w.reset_xid, EXCLUDED.snapshot))
               AND (w.snapshot IS NULL
                    OR pg_snapshot_xmax(w.snapshot) <= pg_snapshot_xmax(EXCLUDED.snapshot))
             RETURNING 1)"
    ));
    end.with(format!(
        "released AS (
             INSERT INTO status_outbox (job_id, topic, message_key, payload, dead_letter_topic)
             SELECT job_id, topic, message_key,
                    replace(payload, {parts}, '\"parts\":' || (SELECT count(*) FROM pending_messages WHERE job_id = {job_id})),
                    {dlq}
             FROM pending_messages
             WHERE job_id = {job_id} AND {done} = 'COMPLETED' AND EXISTS (SELECT FROM done)
             ORDER BY seq
             RETURNING 1)"
    ));
    end.with(format!(
        "cleared AS (DELETE FROM pending_messages WHERE job_id = {job_id} AND EXISTS (SELECT FROM done))"
    ));
    end.output("EXISTS (SELECT FROM moved) AS moved".into());
    end.output(format!(
        "(SELECT count(*) FROM released) + (SELECT count(*) FROM {}) AS messages",
        End::QUEUED
    ));
    // The run's duration from its tick, when no other export of it is
    // still waiting or running (seed 000's `users_export_duration`).
    end.output(format!(
        "(SELECT extract(epoch FROM clock_timestamp() - r.fire_at)::float8
          FROM export_runs r
          WHERE r.id = {run} AND NOT EXISTS (
              SELECT FROM jobs j
              WHERE j.kind IN {kinds} AND j.status IN {active} AND j.id <> {job_id}
                AND j.spec -> 'users' ->> 'run_id' = {run}::text)) AS run_secs",
        kinds = super::sql_list(),
        active = JobStatus::sql_list(&JobStatus::ACTIVE),
    ));
}

/// What the committed end announces: the delivery logged, the users
/// export's metrics, and the run's end when this was its last export.
pub fn ended(
    job: &Job<Users>,
    status: JobStatus,
    o: &ExportOutcome,
    row: &tokio_postgres::Row,
) -> Result<Announce, StoreError> {
    let moved: bool = row.try_get("moved")?;
    let messages: i64 = row.try_get("messages")?;
    let run_secs: Option<f64> = row.try_get("run_secs")?;
    let users = job.work.delivery.clone();
    let (job_id, domain_id, exported) = (job.id, job.domain_id, o.result.rows);
    let completed = status == JobStatus::Completed;
    let files = o.result.files.len() as u64;
    let elapsed = Duration::from_secs_f64(job.duration_secs.unwrap_or(0.0).max(0.0));
    let run_id: Uuid = users.run_id;
    Ok(Announce::default().then(move || {
        match (completed, moved) {
            (true, true) => tracing::info!(
                job_id = %job_id, run_id = %run_id, domain_id = %domain_id,
                group = %users.group_key, group_type = users.group_type.as_str(),
                exported, messages,
                "Users export delivered; the group's watermark is its snapshot."
            ),
            (true, false) => tracing::info!(
                job_id = %job_id, run_id = %run_id, domain_id = %domain_id,
                group = %users.group_key, group_type = users.group_type.as_str(),
                exported, messages,
                "Users export delivered; the group was reset while it read, so its watermark stays cleared."
            ),
            (false, _) => {}
        }
        UsersExported {
            group_type: users.group_type.as_str(),
            outcome: status.as_str(),
            users: if completed { exported } else { 0 },
            files: if completed { files } else { 0 },
            messages: messages as u64,
            elapsed,
        }
        .emit();
        if let Some(secs) = run_secs {
            UsersRunEnded {
                run_id,
                elapsed: Duration::from_secs_f64(secs.max(0.0)),
            }
            .emit();
        }
    }))
}
