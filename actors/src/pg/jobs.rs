//! The job store: `import_jobs` rows in and out.

use std::time::Duration;

use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::job::{group_uuid, Checkpoint, InputFormat, Job, JobStatus, NewJob, Outcome};
use crate::status::StatusEvent;

const COLUMNS: &str = "id, kind, status, domain_id, group_id, group_key, node_type, source,
    total_rows, processed_rows, inserted_rows, updated_rows, duplicate_rows, rejected_rows,
    rejects_path, failure_reason, checkpoint, attempts,
    created_at::text, updated_at::text, started_at::text, finished_at::text,
    extract(epoch FROM coalesce(finished_at, now()) - started_at)::float8,
    format";

fn from_row(r: &Row) -> Job {
    let checkpoint: Option<serde_json::Value> = r.get(16);
    Job {
        id: r.get(0),
        kind: r.get(1),
        status: JobStatus::parse(r.get(2)).unwrap_or(JobStatus::Failed),
        domain_id: r.get(3),
        group_id: r.get(4),
        group_key: r.get(5),
        node_type: r.get(6),
        source: r.get(7),
        total_rows: r.get(8),
        processed_rows: r.get(9),
        inserted_rows: r.get(10),
        updated_rows: r.get(11),
        duplicate_rows: r.get(12),
        rejected_rows: r.get(13),
        rejects_path: r.get(14),
        failure_reason: r.get(15),
        checkpoint: checkpoint
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
        attempts: r.get(17),
        created_at: r.get(18),
        updated_at: r.get(19),
        started_at: r.get(20),
        finished_at: r.get(21),
        duration_secs: r.get(22),
        format: InputFormat::parse(r.get(23)).unwrap_or(InputFormat::Csv),
    }
}

/// What [`create`] did.
#[derive(Debug, Clone)]
pub struct Created {
    pub job: Job,
    /// False when a job with the request's idempotency key already existed:
    /// `job` is that job, and nothing was inserted.
    pub is_new: bool,
}

/// A PENDING job that any instance may claim, unless one with the same
/// idempotency key exists (a redelivered request): then that one.
pub async fn create(
    c: &impl GenericClient,
    new: &NewJob,
) -> Result<Created, tokio_postgres::Error> {
    if let Some(job) = insert(c, new, None).await? {
        return Ok(Created { job, is_new: true });
    }
    let sql = format!("SELECT {COLUMNS} FROM import_jobs WHERE idempotency_key = $1");
    let row = c.query_one(&sql, &[&new.idempotency_key]).await?;
    Ok(Created {
        job: from_row(&row),
        is_new: false,
    })
}

/// A PENDING job already leased to `owner` (a `ferry import` that runs it
/// itself): no other instance takes it while the lease is renewed.
pub async fn create_held(
    c: &impl GenericClient,
    new: &NewJob,
    owner: &str,
    lease: Duration,
) -> Result<Job, tokio_postgres::Error> {
    let job = insert(c, new, Some((owner, lease))).await?;
    Ok(job.expect("a job without an idempotency key is always inserted"))
}

async fn insert(
    c: &impl GenericClient,
    new: &NewJob,
    held: Option<(&str, Duration)>,
) -> Result<Option<Job>, tokio_postgres::Error> {
    let (owner, lease) = match held {
        Some((owner, lease)) => (Some(owner), Some(lease.as_secs_f64())),
        None => (None, None),
    };
    let sql = format!(
        "INSERT INTO import_jobs (id, kind, status, domain_id, group_id, group_key, node_type, source,
                                  format, reference_ids, lease_owner, lease_expires_at,
                                  idempotency_key, status_topic, origin)
         VALUES ($1, $2, 'PENDING', $3, $4, $5, $6, $7, $8, $9, $10,
                 now() + make_interval(secs => $11), $12, $13, $14)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING {COLUMNS}"
    );
    let row = c
        .query_opt(
            &sql,
            &[
                &Uuid::now_v7(),
                &new.kind.as_str(),
                &new.domain_id,
                &group_uuid(&new.group_key),
                &new.group_key,
                &new.node_type,
                &new.source,
                &new.format.as_str(),
                &new.reference_ids,
                &owner,
                &lease,
                &new.idempotency_key,
                &new.status_topic,
                &new.origin,
            ],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

pub async fn get(c: &impl GenericClient, id: Uuid) -> Result<Option<Job>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLUMNS} FROM import_jobs WHERE id = $1");
    Ok(c.query_opt(&sql, &[&id]).await?.as_ref().map(from_row))
}

/// A job as its domain sees it: another domain's job does not exist.
pub async fn get_in_domain(
    c: &impl GenericClient,
    domain_id: Uuid,
    id: Uuid,
) -> Result<Option<Job>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLUMNS} FROM import_jobs WHERE id = $1 AND domain_id = $2");
    Ok(c.query_opt(&sql, &[&id, &domain_id])
        .await?
        .as_ref()
        .map(from_row))
}

/// One page of a domain's jobs, newest first: those created before the
/// job `before` (keyset pagination on the time-ordered ids).
pub async fn page_in_domain(
    c: &impl GenericClient,
    domain_id: Uuid,
    status: Option<JobStatus>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Job>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM import_jobs
         WHERE domain_id = $1 AND ($2::text IS NULL OR status = $2)
           AND ($3::uuid IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4"
    );
    let status = status.map(JobStatus::as_str);
    let rows = c
        .query(&sql, &[&domain_id, &status, &before, &limit])
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// The ids of an inline reference-list job (read apart from the job row,
/// which is listed often and should stay small).
pub async fn reference_ids(
    c: &impl GenericClient,
    id: Uuid,
) -> Result<Option<Vec<String>>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT reference_ids FROM import_jobs WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(row.and_then(|r| r.get(0)))
}

/// The channel a new PENDING job is announced on (payload: its id).
pub const JOBS_CHANNEL: &str = "ferry_jobs";

/// Claims up to `limit` jobs that nobody holds, oldest first: PENDING jobs
/// never leased, and PENDING or RUNNING jobs whose lease expired (their
/// instance died; they resume from their checkpoint). Each is leased to
/// `owner` for `lease`. Concurrent claimers never get the same job.
pub async fn claim(
    c: &impl GenericClient,
    owner: &str,
    lease: Duration,
    limit: i64,
) -> Result<Vec<Job>, tokio_postgres::Error> {
    let sql = format!(
        "UPDATE import_jobs SET lease_owner = $1,
             lease_expires_at = now() + make_interval(secs => $2), updated_at = now()
         WHERE id IN (
             SELECT id FROM import_jobs
             WHERE status IN ('PENDING', 'RUNNING')
               AND (lease_expires_at IS NULL OR lease_expires_at < now())
             ORDER BY created_at LIMIT $3
             FOR UPDATE SKIP LOCKED)
         RETURNING {COLUMNS}"
    );
    let rows = c
        .query(&sql, &[&owner, &lease.as_secs_f64(), &limit])
        .await?;
    let mut jobs: Vec<Job> = rows.iter().map(from_row).collect();
    // Job ids are UUIDv7: their order is creation order.
    jobs.sort_by_key(|j| j.id);
    Ok(jobs)
}

/// Extends `owner`'s leases on `ids`; returns the ids it still holds or
/// that have finished (a job missing from the answer was taken over).
///
/// Finished jobs are looked up in a second statement: a job finishing
/// while the update runs is not renewed (the update waits for the finish,
/// then sees the job ended), yet the update's own snapshot, taken before
/// the finish committed, would still show it running.
pub async fn renew(
    c: &impl GenericClient,
    owner: &str,
    ids: &[Uuid],
    lease: Duration,
) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    let rows = c
        .query(
            "UPDATE import_jobs SET lease_expires_at = now() + make_interval(secs => $3)
             WHERE id = ANY($2) AND lease_owner = $1 AND status IN ('PENDING', 'RUNNING')
             RETURNING id",
            &[&owner, &ids, &lease.as_secs_f64()],
        )
        .await?;
    let mut held: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    let rest: Vec<Uuid> = ids
        .iter()
        .filter(|id| !held.contains(id))
        .copied()
        .collect();
    if !rest.is_empty() {
        let finished = c
            .query(
                "SELECT id FROM import_jobs WHERE id = ANY($1) AND status IN ('COMPLETED', 'FAILED')",
                &[&rest],
            )
            .await?;
        held.extend(finished.iter().map(|r| r.get::<_, Uuid>(0)));
    }
    Ok(held)
}

/// Gives `owner`'s leases on `ids` up, so another instance can claim those
/// jobs at once (a graceful shutdown).
pub async fn release(
    c: &impl GenericClient,
    owner: &str,
    ids: &[Uuid],
) -> Result<u64, tokio_postgres::Error> {
    c.execute(
        "UPDATE import_jobs SET lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
         WHERE id = ANY($2) AND lease_owner = $1",
        &[&owner, &ids],
    )
    .await
}

/// Newest first.
pub async fn list(
    c: &impl GenericClient,
    status: Option<JobStatus>,
    limit: i64,
) -> Result<Vec<Job>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM import_jobs WHERE ($1::text IS NULL OR status = $1)
         ORDER BY created_at DESC, id DESC LIMIT $2"
    );
    let status = status.map(JobStatus::as_str);
    let rows = c.query(&sql, &[&status, &limit]).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// An attempt starts: the job is RUNNING and `attempts` counts it.
pub async fn start_attempt(c: &impl GenericClient, id: Uuid) -> Result<i32, tokio_postgres::Error> {
    let row = c
        .query_one(
            "UPDATE import_jobs SET status = 'RUNNING', attempts = attempts + 1,
                 started_at = coalesce(started_at, now()), updated_at = now()
             WHERE id = $1 RETURNING attempts",
            &[&id],
        )
        .await?;
    Ok(row.get(0))
}

/// Records committed progress. Called after every batch that moves the
/// contiguous watermark. Fenced: only the lease's holder writes; false
/// means the lease was lost (another instance runs the job now).
pub async fn save_checkpoint(
    c: &impl GenericClient,
    id: Uuid,
    owner: &str,
    cp: &Checkpoint,
) -> Result<bool, tokio_postgres::Error> {
    let json = serde_json::to_value(cp).expect("a checkpoint serialises");
    let loaded = (cp.inserted + cp.updated + cp.duplicates) as i64;
    c.execute(
        "UPDATE import_jobs SET checkpoint = $2, processed_rows = $3, inserted_rows = $4,
             updated_rows = $5, duplicate_rows = $6, rejected_rows = $7,
             total_rows = greatest(total_rows, $8), updated_at = now()
         WHERE id = $1 AND lease_owner = $9 AND status IN ('PENDING', 'RUNNING')",
        &[
            &id,
            &json,
            &loaded,
            &(cp.inserted as i64),
            &(cp.updated as i64),
            &(cp.duplicates as i64),
            &(cp.rejected as i64),
            &(cp.records as i64),
            &owner,
        ],
    )
    .await
    .map(|n| n == 1)
}

/// Notes a failed attempt that will be retried; returns the attempts so far.
pub async fn record_failure(
    c: &impl GenericClient,
    id: Uuid,
    reason: &str,
) -> Result<i32, tokio_postgres::Error> {
    let row = c
        .query_one(
            "UPDATE import_jobs SET failure_reason = $2, updated_at = now()
             WHERE id = $1 RETURNING attempts",
            &[&id, &reason],
        )
        .await?;
    Ok(row.get(0))
}

/// The terminal update, fenced like [`save_checkpoint`] (false: the lease
/// was lost and nothing was written). A job with a status topic gets its
/// status event in the outbox in the same statement, so the event exists
/// if and only if the job ended. The job's saved rejects go once its
/// rejects file holds them (`rejects_path` is set); a job given up on
/// before writing one keeps them.
pub async fn finish(
    c: &impl GenericClient,
    id: Uuid,
    owner: &str,
    o: &Outcome,
    event: &StatusEvent,
) -> Result<bool, tokio_postgres::Error> {
    let loaded = (o.inserted + o.updated + o.duplicates) as i64;
    let payload = serde_json::to_string(event).expect("a status event serialises");
    let row = c
        .query_one(
            "WITH done AS (
             UPDATE import_jobs SET status = $2, total_rows = $3, processed_rows = $4,
                 inserted_rows = $5, updated_rows = $6, duplicate_rows = $7, rejected_rows = $8,
                 rejects_path = $9, failure_reason = $10, finished_at = now(), updated_at = now(),
                 lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1 AND lease_owner = $11 AND status IN ('PENDING', 'RUNNING')
             RETURNING id, status_topic),
         written AS (
             DELETE FROM import_rejects
             WHERE job_id = $1 AND $9::text IS NOT NULL AND EXISTS (SELECT FROM done)),
         queued AS (
             INSERT INTO status_outbox (job_id, topic, message_key, payload)
             SELECT id, status_topic, $12, $13 FROM done WHERE status_topic IS NOT NULL)
         SELECT count(*) FROM done",
            &[
                &id,
                &o.status.as_str(),
                &(o.total as i64),
                &loaded,
                &(o.inserted as i64),
                &(o.updated as i64),
                &(o.duplicates as i64),
                &(o.rejected as i64),
                &o.rejects_path,
                &o.failure_reason,
                &owner,
                &event.message_key(),
                &payload,
            ],
        )
        .await?;
    Ok(row.get::<_, i64>(0) == 1)
}

/// Jobs per status, for the `ferry_jobs{status}` gauge.
pub async fn count_by_status(
    c: &impl GenericClient,
) -> Result<Vec<(String, i64)>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT status, count(*) FROM import_jobs GROUP BY status",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
