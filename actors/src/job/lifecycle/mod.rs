//! Every write to a job row, as typed transitions.
//!
//! Only [`claim`] and [`create_held`] hand out a lease, as a [`Held`] job.
//! Only a held job starts an attempt ([`Held::start`]) or is given up on;
//! only a running [`Attempt`] checkpoints (through its [`Fence`]), fails
//! back to held, or finishes. Each of these writes is fenced: it changes
//! the row only while this owner holds the lease and the job is PENDING or
//! RUNNING, so an instance that stalled past its lease, or one whose job was
//! cancelled meanwhile, changes nothing. [`cancel`] is the one write
//! without a lease (the API's), and [`sweep`] deletes what ended long ago.
//!
//! The terminal write exists once ([`end`]): the row, its status event in
//! the outbox, and the `ferry_jobs_total` / duration metrics, whichever way
//! the job ended.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, GenericClient, Transaction};
use uuid::Uuid;

use super::store::{self, from_row, StoreError, COLUMNS};
use super::{
    group_uuid, Checkpoint, Family, Job, JobKind, JobStatus, NewExport, NewJob, Outcome, Work,
};
use crate::export::ExportCheckpoint;
use crate::status::{ExportCompleted, StatusEvent};
use crate::telemetry::JobFinished;

mod users;

use users::end_users_export;

/// The channel a new PENDING job is announced on (payload: its id).
pub const JOBS_CHANNEL: &str = "ferry_jobs";

fn active() -> String {
    JobStatus::sql_list(&JobStatus::ACTIVE)
}

/// What [`create`] did.
#[derive(Debug, Clone)]
pub struct Created {
    pub job: Job,
    /// False when a job with the request's idempotency key already existed:
    /// `job` is that job, and nothing was inserted.
    pub is_new: bool,
    /// False when that job was made by another request with the same key
    /// (their digests differ): a conflict, not a retry.
    pub same_request: bool,
}

/// A request for a job of any kind: the columns its row starts with.
pub trait Request {
    fn domain_id(&self) -> Uuid;
    fn idempotency_key(&self) -> Option<&str>;
    fn request_hash(&self) -> Option<&str>;
    fn columns(&self) -> NewRow<'_>;
}

/// The kind-specific columns of a new job row.
pub struct NewRow<'a> {
    id: Uuid,
    kind: JobKind,
    status_topic: Option<&'a str>,
    origin: Option<&'a serde_json::Value>,
    group_id: Option<Uuid>,
    group_key: Option<&'a str>,
    node_type: Option<&'a str>,
    source: Option<&'a str>,
    format: Option<&'static str>,
    reference_ids: Option<&'a [String]>,
    spec: Option<serde_json::Value>,
}

impl Request for NewJob {
    fn domain_id(&self) -> Uuid {
        self.domain_id
    }

    fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    fn request_hash(&self) -> Option<&str> {
        self.request_hash.as_deref()
    }

    fn columns(&self) -> NewRow<'_> {
        NewRow {
            id: Uuid::now_v7(),
            kind: JobKind::Import(self.target),
            status_topic: self.status_topic.as_deref(),
            origin: self.origin.as_ref(),
            group_id: Some(group_uuid(&self.group_key)),
            group_key: Some(&self.group_key),
            node_type: Some(&self.node_type),
            source: Some(&self.source),
            format: Some(self.format.as_str()),
            reference_ids: self.reference_ids.as_deref(),
            spec: None,
        }
    }
}

impl Request for NewExport {
    fn domain_id(&self) -> Uuid {
        self.domain_id
    }

    fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    fn request_hash(&self) -> Option<&str> {
        self.request_hash.as_deref()
    }

    fn columns(&self) -> NewRow<'_> {
        NewRow {
            id: self.id,
            kind: JobKind::Export,
            status_topic: self.status_topic.as_deref(),
            origin: self.origin.as_ref(),
            group_id: None,
            group_key: None,
            node_type: None,
            source: None,
            format: None,
            reference_ids: None,
            spec: Some(serde_json::to_value(&self.spec).expect("a spec serialises")),
        }
    }
}

/// A PENDING job that any instance may claim, unless one with the same
/// idempotency key exists (a redelivered request): then that one.
pub async fn create(c: &impl GenericClient, new: &impl Request) -> Result<Created, StoreError> {
    if let Some(row) = insert(c, new, None).await? {
        return Ok(Created {
            job: from_row(&row)?,
            is_new: true,
            same_request: true,
        });
    }
    let sql = format!("SELECT {COLUMNS}, request_hash FROM jobs WHERE idempotency_key = $1");
    let row = c.query_one(&sql, &[&new.idempotency_key()]).await?;
    let stored: Option<&str> = row.get("request_hash");
    Ok(Created {
        job: from_row(&row)?,
        is_new: false,
        same_request: stored == new.request_hash(),
    })
}

/// A PENDING job already leased to `owner` (a `ferry import` or `ferry
/// export` that runs it itself): no other instance takes it while the
/// lease is renewed.
pub async fn create_held(
    c: &impl GenericClient,
    new: &impl Request,
    owner: &str,
    lease: Duration,
) -> Result<Held, StoreError> {
    let row = insert(c, new, Some((owner, lease))).await?;
    let row = row.expect("a job without an idempotency key is always inserted");
    Ok(Held {
        job: from_row(&row)?,
        owner: owner.into(),
    })
}

async fn insert(
    c: &impl GenericClient,
    new: &impl Request,
    held: Option<(&str, Duration)>,
) -> Result<Option<tokio_postgres::Row>, tokio_postgres::Error> {
    let (owner, lease) = match held {
        Some((owner, lease)) => (Some(owner), Some(lease.as_secs_f64())),
        None => (None, None),
    };
    let row = new.columns();
    let sql = format!(
        "INSERT INTO jobs (id, kind, status, domain_id, group_id, group_key, node_type, source,
                           format, reference_ids, lease_owner, lease_expires_at,
                           idempotency_key, status_topic, origin, spec, request_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                 now() + make_interval(secs => $12), $13, $14, $15, $16, $17)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING {COLUMNS}"
    );
    c.query_opt(
        &sql,
        &[
            &row.id,
            &row.kind.as_str(),
            &JobStatus::Pending.as_str(),
            &new.domain_id(),
            &row.group_id,
            &row.group_key,
            &row.node_type,
            &row.source,
            &row.format,
            &row.reference_ids,
            &owner,
            &lease,
            &new.idempotency_key(),
            &row.status_topic,
            &row.origin,
            &row.spec,
            &new.request_hash(),
        ],
    )
    .await
}

/// Claims up to `limit` jobs that nobody holds: PENDING jobs never
/// leased, and PENDING or RUNNING jobs whose lease expired (their instance
/// died; they resume from their checkpoint). Domains take turns (each
/// domain's oldest job first, then each one's second, …), so one domain's
/// burst does not starve the others. Each is leased to `owner` for
/// `lease`. Concurrent claimers never get the same job.
pub async fn claim(
    c: &impl GenericClient,
    owner: &str,
    lease: Duration,
    limit: i64,
) -> Result<Vec<Held>, StoreError> {
    let claimable = format!(
        "status IN {active} AND (lease_expires_at IS NULL OR lease_expires_at < now())",
        active = active()
    );
    let sql = format!(
        "WITH fair AS (
             SELECT id, created_at,
                    row_number() OVER (PARTITION BY domain_id ORDER BY created_at) AS turn
             FROM jobs WHERE {claimable})
         UPDATE jobs SET lease_owner = $1,
             lease_expires_at = now() + make_interval(secs => $2), updated_at = now()
         WHERE id IN (
             SELECT j.id FROM jobs j JOIN fair f ON f.id = j.id
             WHERE j.{claimable}
             ORDER BY f.turn, f.created_at LIMIT $3
             FOR UPDATE OF j SKIP LOCKED)
         RETURNING {COLUMNS}"
    );
    let rows = c
        .query(&sql, &[&owner, &lease.as_secs_f64(), &limit])
        .await?;
    let owner: Arc<str> = owner.into();
    let mut held = rows
        .iter()
        .map(|r| {
            Ok(Held {
                job: from_row(r)?,
                owner: owner.clone(),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    // Job ids are UUIDv7: their order is creation order.
    held.sort_by_key(|h| h.job.id);
    Ok(held)
}

/// Extends `owner`'s leases on `ids`; returns the ids it still holds or
/// that have finished (COMPLETED or FAILED). A job missing from the answer
/// was taken over, or cancelled: its attempt should stop.
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
    let sql = format!(
        "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3)
         WHERE id = ANY($2) AND lease_owner = $1 AND status IN {active}
         RETURNING id",
        active = active()
    );
    let rows = c.query(&sql, &[&owner, &ids, &lease.as_secs_f64()]).await?;
    let mut held: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    let rest: Vec<Uuid> = ids
        .iter()
        .filter(|id| !held.contains(id))
        .copied()
        .collect();
    if !rest.is_empty() {
        let sql = format!(
            "SELECT id FROM jobs WHERE id = ANY($1) AND status IN {finished}",
            finished = JobStatus::sql_list(&[JobStatus::Completed, JobStatus::Failed])
        );
        let finished = c.query(&sql, &[&rest]).await?;
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
        "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
         WHERE id = ANY($2) AND lease_owner = $1",
        &[&owner, &ids],
    )
    .await
}

/// A job whose lease this process holds, between attempts (or before the
/// first one).
#[derive(Debug, Clone)]
pub struct Held {
    job: Job,
    owner: Arc<str>,
}

/// What [`Held::start`] found.
#[derive(Debug)]
pub enum Started {
    Running(Attempt),
    /// The job is not ours to run any more: it ended (cancelled, say) or
    /// another instance took it over. The row as it is now.
    NotOurs(Job),
}

impl Held {
    /// The job as it was claimed (or as its last attempt started).
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// Starts an attempt: the job is RUNNING and `attempts` counts it. The
    /// attempt gets the row as it is now, with its latest checkpoint.
    pub async fn start(&self, c: &impl GenericClient) -> Result<Started, StoreError> {
        let sql = format!(
            "UPDATE jobs SET status = $3, attempts = attempts + 1,
                 started_at = coalesce(started_at, now()), updated_at = now()
             WHERE id = $1 AND lease_owner = $2 AND status IN {active}
             RETURNING {COLUMNS}",
            active = active()
        );
        let running = JobStatus::Running.as_str();
        let id = self.job.id;
        match c.query_opt(&sql, &[&id, &&*self.owner, &running]).await? {
            Some(row) => Ok(Started::Running(Attempt {
                held: Held {
                    job: from_row(&row)?,
                    owner: self.owner.clone(),
                },
            })),
            None => match store::get(c, id).await? {
                Some(job) => Ok(Started::NotOurs(job)),
                None => Err(StoreError::Unreadable {
                    job: id,
                    column: "id",
                    reason: "the job was deleted while held".into(),
                }),
            },
        }
    }

    /// Gives the job up (a permanent failure, or too many): FAILED, with
    /// what its last checkpoint says was committed. `None`: the job was not
    /// ours any more, and nothing was written.
    pub async fn give_up(&self, c: &mut Client, reason: &str) -> Result<Option<Job>, StoreError> {
        let tx = durable(c).await?;
        let Some(job) = locked(&tx, "id = $1", &[&self.job.id]).await? else {
            return Ok(None);
        };
        let outcome = Outcome::as_checkpointed(&job, reason);
        let ended = end(&tx, &job, Some(&self.owner), JobStatus::Failed, &outcome).await?;
        tx.commit().await?;
        Ok(ended.map(emitted))
    }
}

/// An attempt under way: the only state that checkpoints and finishes.
#[derive(Debug, Clone)]
pub struct Attempt {
    held: Held,
}

impl Attempt {
    /// The job as this attempt started it.
    pub fn job(&self) -> &Job {
        &self.held.job
    }

    /// What the attempt's pipeline writes its checkpoints through.
    pub fn fence(&self) -> Fence {
        Fence {
            job_id: self.held.job.id,
            owner: self.held.owner.clone(),
        }
    }

    /// A failure that will be retried: the reason is noted, the job stays
    /// RUNNING and held for the next attempt. `None`: not ours any more.
    pub async fn fail(
        &self,
        c: &impl GenericClient,
        reason: &str,
    ) -> Result<Option<Held>, tokio_postgres::Error> {
        let sql = format!(
            "UPDATE jobs SET failure_reason = $3, updated_at = now()
             WHERE id = $1 AND lease_owner = $2 AND status IN {active}",
            active = active()
        );
        let id = self.held.job.id;
        let noted = c.execute(&sql, &[&id, &&*self.held.owner, &reason]).await?;
        Ok((noted == 1).then(|| self.held.clone()))
    }

    /// The attempt stopped and its failure could not be noted (the database
    /// was away): the lease is still held, for the next attempt.
    pub fn stopped(&self) -> Held {
        self.held.clone()
    }

    /// The attempt's pipeline reported how the job ended: the terminal
    /// write. `None`: not ours any more, and nothing was written.
    pub async fn finish(
        &self,
        c: &mut Client,
        outcome: &Outcome,
    ) -> Result<Option<Job>, StoreError> {
        let tx = durable(c).await?;
        let job = &self.held.job;
        let ended = end(&tx, job, Some(&self.held.owner), outcome.status(), outcome).await?;
        tx.commit().await?;
        Ok(ended.map(emitted))
    }
}

/// An attempt's right to write its job's progress, for its pipeline.
#[derive(Debug, Clone)]
pub struct Fence {
    job_id: Uuid,
    owner: Arc<str>,
}

impl Fence {
    pub fn job_id(&self) -> Uuid {
        self.job_id
    }

    /// Records committed progress. False: the job is not ours any more
    /// (another instance runs it, or it was cancelled), and nothing was
    /// written.
    pub async fn checkpoint(
        &self,
        c: &impl GenericClient,
        cp: &Checkpoint,
    ) -> Result<bool, tokio_postgres::Error> {
        let json = serde_json::to_value(cp).expect("a checkpoint serialises");
        let n = &cp.counts;
        let sql = format!(
            "UPDATE jobs SET checkpoint = $3, processed_rows = $4, inserted_rows = $5,
                 updated_rows = $6, duplicate_rows = $7, rejected_rows = $8,
                 total_rows = greatest(total_rows, $9), updated_at = now()
             WHERE id = $1 AND lease_owner = $2 AND status IN {active}",
            active = active()
        );
        c.execute(
            &sql,
            &[
                &self.job_id,
                &&*self.owner,
                &json,
                &(n.loaded() as i64),
                &(n.inserted as i64),
                &(n.updated as i64),
                &(n.duplicates as i64),
                &(n.rejected as i64),
                &(n.records as i64),
            ],
        )
        .await
        .map(|n| n == 1)
    }
}

impl Fence {
    /// Records an export's progress: what is stored, and where to go on
    /// from. False: the job is not ours any more.
    pub async fn export_checkpoint(
        &self,
        c: &impl GenericClient,
        cp: &ExportCheckpoint,
    ) -> Result<bool, tokio_postgres::Error> {
        let json = serde_json::to_value(cp).expect("a checkpoint serialises");
        let sql = format!(
            "UPDATE jobs SET checkpoint = $3, processed_rows = $4, total_rows = $5,
                 updated_at = now()
             WHERE id = $1 AND lease_owner = $2 AND status IN {active}",
            active = active()
        );
        let args: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
            &self.job_id,
            &&*self.owner,
            &json,
            &(cp.rows as i64),
            &(cp.total as i64),
        ];
        c.execute(&sql, &args).await.map(|n| n == 1)
    }
}

/// What [`cancel`] did.
#[derive(Debug)]
pub enum Cancel {
    /// The job is CANCELLED now; its attempt, if one runs, stops at its
    /// next checkpoint or lease renewal.
    Cancelled(Job),
    /// It had ended already; nothing changed.
    Ended(Job),
    /// No such job in the domain.
    Missing,
}

/// Cancels a domain's job of `family` (the API's, so without a lease).
/// Like every end, it queues the job's event.
pub async fn cancel(
    c: &mut Client,
    family: Family,
    domain_id: Uuid,
    id: Uuid,
) -> Result<Cancel, StoreError> {
    let tx = durable(c).await?;
    let filter = format!("id = $1 AND domain_id = $2 AND {}", family.sql());
    let Some(job) = locked(&tx, &filter, &[&id, &domain_id]).await? else {
        return Ok(Cancel::Missing);
    };
    if job.status.is_terminal() {
        return Ok(Cancel::Ended(job));
    }
    let outcome = Outcome::as_checkpointed(&job, "cancelled");
    let ended = end(&tx, &job, None, JobStatus::Cancelled, &outcome).await?;
    tx.commit().await?;
    let ended = ended.expect("a locked active job always ends");
    Ok(Cancel::Cancelled(emitted(ended)))
}

/// A transaction whose commit waits for the WAL flush, whatever the
/// session's setting: a crash must not undo a job whose end was announced.
async fn durable(c: &mut Client) -> Result<Transaction<'_>, tokio_postgres::Error> {
    let tx = c.transaction().await?;
    tx.batch_execute("SET LOCAL synchronous_commit = on")
        .await?;
    Ok(tx)
}

/// The job `filter` selects, locked for the rest of the transaction.
async fn locked(
    tx: &Transaction<'_>,
    filter: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<Job>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE {filter} FOR UPDATE");
    tx.query_opt(&sql, params)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// The terminal write, the one place a job ends: the row, fenced on
/// `owner`'s lease when given, and in the same statement its event in the
/// outbox (so the event exists if and only if the job ended). An import's
/// saved rejects go once its rejects file holds them (`rejects_path` is
/// set); an import given up on before writing one keeps them. `None`: the
/// job was not active or not ours, and nothing was written.
async fn end(
    tx: &Transaction<'_>,
    job: &Job,
    owner: Option<&str>,
    status: JobStatus,
    outcome: &Outcome,
) -> Result<Option<Job>, StoreError> {
    let fence = end_fence();
    let queue = QUEUE;
    let finished = FINISHED;
    let key = job.id.to_string();
    let row = match (&job.work, outcome) {
        (Work::Import(import), Outcome::Import(o)) => {
            let event = StatusEvent::new(job, import, status, o);
            let payload = serde_json::to_string(&event).expect("a status event serialises");
            let n = &o.counts;
            let sql = format!(
                "WITH done AS (
                     UPDATE jobs SET {finished}, total_rows = $6, processed_rows = $7,
                         inserted_rows = $8, updated_rows = $9, duplicate_rows = $10,
                         rejected_rows = $11, rejects_path = $12, failure_reason = $13
                     {fence} RETURNING {COLUMNS}),
                 written AS (
                     DELETE FROM import_rejects
                     WHERE job_id = $1 AND $12::text IS NOT NULL AND EXISTS (SELECT FROM done)),
                 {queue}
                 SELECT * FROM done"
            );
            let args: [&(dyn tokio_postgres::types::ToSql + Sync); 13] = [
                &job.id,
                &owner,
                &status.as_str(),
                &key,
                &payload,
                &(n.records as i64),
                &(n.loaded() as i64),
                &(n.inserted as i64),
                &(n.updated as i64),
                &(n.duplicates as i64),
                &(n.rejected as i64),
                &o.rejects_path,
                &o.failure_reason,
            ];
            tx.query_opt(&sql, &args).await?
        }
        (Work::Export(export), Outcome::Export(o)) => {
            if let Some(users) = &export.spec.users {
                return end_users_export(tx, job, users, owner, status, o).await;
            }
            let event = ExportCompleted::new(job, export, status, o);
            let payload = serde_json::to_string(&event).expect("an event serialises");
            let result = serde_json::to_value(&o.result).expect("a result serialises");
            // The webhook gets the same payload, queued in the same statement.
            let done = export_done();
            let sql = format!(
                "WITH {done},
                 {queue},
                 hooked AS (
                     INSERT INTO webhook_deliveries (job_id, url, payload)
                     SELECT id, $9, $5 FROM done WHERE $9::text IS NOT NULL)
                 SELECT * FROM done"
            );
            let args: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
                &job.id,
                &owner,
                &status.as_str(),
                &key,
                &payload,
                &result,
                &(o.result.rows as i64),
                &o.failure_reason,
                &export.spec.webhook_url,
            ];
            tx.query_opt(&sql, &args).await?
        }
        _ => {
            return Err(StoreError::Unreadable {
                job: job.id,
                column: "kind",
                reason: "an outcome of another kind of job".into(),
            })
        }
    };
    row.as_ref().map(from_row).transpose()
}

/// The fence of a terminal write: `$1` the job, `$2` the lease owner (or
/// NULL: any).
fn end_fence() -> String {
    format!(
        "WHERE id = $1 AND ($2::text IS NULL OR lease_owner = $2) AND status IN {active}",
        active = active()
    )
}

/// An export's terminal write of its row: `$6` its result, `$7` its rows,
/// `$8` why it failed.
fn export_done() -> String {
    format!(
        "done AS (
             UPDATE jobs SET {FINISHED}, result = $6, processed_rows = $7, failure_reason = $8
             {fence} RETURNING {COLUMNS})",
        fence = end_fence()
    )
}

/// A terminal write's row: `$3` the status.
const FINISHED: &str = "status = $3, finished_at = now(), updated_at = now(),
                 lease_owner = NULL, lease_expires_at = NULL";

/// A terminal write's event: `$5` on the job's topic, keyed `$4`, if both
/// are set.
const QUEUE: &str = "queued AS (
             INSERT INTO status_outbox (job_id, topic, message_key, payload)
             SELECT id, status_topic, $4, $5 FROM done
             WHERE status_topic IS NOT NULL AND $5::text IS NOT NULL)";

/// Counts and logs a job that ended (once its end is committed).
fn emitted(job: Job) -> Job {
    let rows = match &job.work {
        Work::Import(import) => import.counts.records,
        Work::Export(export) => export
            .result
            .as_ref()
            .map_or(export.checkpoint.rows, |r| r.rows),
    };
    JobFinished {
        job_id: job.id,
        kind: job.kind().as_str(),
        status: job.status.as_str(),
        rows,
        elapsed: Duration::from_secs_f64(job.duration_secs.unwrap_or(0.0).max(0.0)),
        reason: job.failure_reason.as_deref(),
    }
    .emit();
    job
}

/// Deletes a domain's job of `family` that has ended (the API's DELETE of
/// an export, once its files are gone). False: no such ended job.
pub async fn forget(
    c: &impl GenericClient,
    family: Family,
    domain_id: Uuid,
    id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let sql = format!(
        "WITH gone AS (
             DELETE FROM jobs WHERE id = $1 AND domain_id = $2 AND {} AND status IN {}
             RETURNING id),
         hooks AS (DELETE FROM webhook_deliveries WHERE job_id IN (SELECT id FROM gone))
         SELECT count(*) FROM gone",
        family.sql(),
        JobStatus::sql_list(&JobStatus::TERMINAL)
    );
    let n: i64 = c.query_one(&sql, &[&id, &domain_id]).await?.get(0);
    Ok(n == 1)
}

/// Up to `limit` exports that ended DONE more than `retention` ago and
/// still have their files.
pub async fn exports_past_retention(
    c: &impl GenericClient,
    retention: Duration,
    limit: i64,
) -> Result<Vec<Job>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs
         WHERE {} AND status = $3 AND expired_at IS NULL
           AND finished_at < now() - make_interval(secs => $1)
         ORDER BY finished_at LIMIT $2",
        Family::Exports.sql()
    );
    let done = JobStatus::Completed.as_str();
    let rows = c
        .query(&sql, &[&retention.as_secs_f64(), &limit, &done])
        .await?;
    store::from_rows(&rows)
}

/// Notes that an export's files are gone.
pub async fn expired(c: &impl GenericClient, id: Uuid) -> Result<(), tokio_postgres::Error> {
    c.execute("UPDATE jobs SET expired_at = now() WHERE id = $1", &[&id])
        .await
        .map(drop)
}

/// Lock id for the retention sweep: "sweep" in ASCII.
pub const SWEEP_LOCK: i64 = 0x0073_7765_6570;

/// Deletes up to `limit` jobs that ended more than `retention` ago, with
/// their saved rejects and their sent status events; a job whose event is
/// still unsent stays until it is sent. Also the users export's runs past
/// `retention` (each schedule keeps its latest, which catch-up reads), and
/// pending messages no active job will release (a stale attempt's).
/// Returns how many jobs went, or `None` when another instance is
/// sweeping.
pub async fn sweep(
    c: &mut Client,
    retention: Duration,
    limit: i64,
) -> Result<Option<u64>, tokio_postgres::Error> {
    let tx = c.transaction().await?;
    let mine: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&SWEEP_LOCK])
        .await?
        .get(0);
    if !mine {
        return Ok(None);
    }
    let sql = format!(
        "WITH gone AS (
             DELETE FROM jobs WHERE id IN (
                 SELECT id FROM jobs j
                 WHERE status IN {terminal}
                   AND finished_at < now() - make_interval(secs => $1)
                   AND NOT EXISTS (SELECT FROM status_outbox o
                                   WHERE o.job_id = j.id AND o.sent_at IS NULL)
                 ORDER BY finished_at LIMIT $2)
             RETURNING id),
         events AS (DELETE FROM status_outbox WHERE job_id IN (SELECT id FROM gone)),
         hooks AS (DELETE FROM webhook_deliveries WHERE job_id IN (SELECT id FROM gone)),
         runs AS (
             DELETE FROM export_runs r
             WHERE r.created_at < now() - make_interval(secs => $1)
               AND r.fire_at < (SELECT max(fire_at) FROM export_runs l WHERE l.schedule = r.schedule)),
         orphans AS (
             DELETE FROM pending_messages p
             WHERE NOT EXISTS (SELECT FROM jobs j WHERE j.id = p.job_id AND j.status IN {active}))
         SELECT count(*) FROM gone",
        active = active(),
        terminal = JobStatus::sql_list(&JobStatus::TERMINAL)
    );
    let gone: i64 = tx
        .query_one(&sql, &[&retention.as_secs_f64(), &limit])
        .await?
        .get(0);
    tx.commit().await?;
    Ok(Some(gone as u64))
}
