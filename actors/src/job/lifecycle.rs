//! Every write to a job row, as typed transitions.
//!
//! Only [`claim`] and [`create_held`] hand out a lease, as a [`Held`] job.
//! Only a held job starts an attempt ([`Held::start`]) or is given up on;
//! only a running [`Attempt`] checkpoints (through its [`Fence`]), fails
//! back to held, or finishes. Each of these writes is fenced: it changes
//! the row only while this owner holds the lease and the job is PENDING or
//! RUNNING, so an instance that stalled past its lease, or one whose job was
//! cancelled meanwhile, changes nothing. Each returns the next state, or
//! [`Fenced`]: not ours any more ([`Fenced::Lost`]), or the store failed.
//! [`cancel`] is the one write without a lease (the API's), and [`sweep`]
//! deletes what ended long ago.
//!
//! The terminal write exists once ([`end`]): the row, its status event in
//! the outbox, what its kind adds, and then, once committed, the
//! `ferry_jobs_total` / duration metrics, whichever way the job ended.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, Transaction};
use uuid::Uuid;

use super::fence::Fence;
use super::store::{self, from_row, COLUMNS};
use super::terminal::{End, Writes};
use super::{Family, Job, JobStatus, Kind, NewJob, Spec};
use crate::error::{Fenced, StoreError};
use crate::telemetry::JobFinished;

/// The channel a new PENDING job is announced on (payload: its id).
pub const JOBS_CHANNEL: &str = "ferry_jobs";

fn active() -> String {
    JobStatus::sql_list(&JobStatus::ACTIVE)
}

/// What [`create`] did.
#[derive(Debug, Clone)]
pub struct Created<K> {
    pub job: Job<K>,
    /// False when a job with the request's idempotency key already existed:
    /// `job` is that job, and nothing was inserted.
    pub is_new: bool,
    /// False when that job was made by another request with the same key
    /// (their digests differ): a conflict, not a retry.
    pub same_request: bool,
}

/// A PENDING job that any instance may claim, unless one with the same
/// idempotency key exists (a redelivered request): then that one.
pub async fn create<K: Kind, S: Spec>(
    c: &impl GenericClient,
    new: &NewJob<S>,
) -> Result<Created<K>, StoreError> {
    if let Some(row) = insert(c, new, None).await? {
        return Ok(Created {
            job: from_row(&row)?,
            is_new: true,
            same_request: true,
        });
    }
    let key = new.idempotency_key.as_deref().unwrap_or_default();
    existing(c, key, new.request_hash.as_deref())
        .await?
        .ok_or_else(|| StoreError::Unreadable {
            job: new.id,
            column: "idempotency_key",
            reason: "the job that holds this key was deleted meanwhile".into(),
        })
}

/// The job an idempotency key already made, if any: a retry of the same
/// request (the same `request_hash`) gets it back before any limit is
/// counted; another request with the key is a conflict (`same_request`
/// false).
pub async fn existing<K: Kind>(
    c: &impl GenericClient,
    key: &str,
    request_hash: Option<&str>,
) -> Result<Option<Created<K>>, StoreError> {
    let sql = format!("SELECT {COLUMNS}, request_hash FROM jobs WHERE idempotency_key = $1");
    let Some(row) = c.query_opt(&sql, &[&key]).await? else {
        return Ok(None);
    };
    let stored: Option<&str> = row.get("request_hash");
    Ok(Some(Created {
        job: from_row(&row)?,
        is_new: false,
        same_request: stored == request_hash,
    }))
}

/// A PENDING job already leased to `owner` (a `ferry import` or `ferry
/// export` that runs it itself): no other instance takes it while the
/// lease is renewed.
pub async fn create_held<K: Kind, S: Spec>(
    c: &impl GenericClient,
    new: &NewJob<S>,
    owner: &str,
    lease: Duration,
) -> Result<Held<K>, StoreError> {
    let row = insert(c, new, Some((owner, lease))).await?;
    let row = row.expect("a job without an idempotency key is always inserted");
    Ok(Held {
        job: from_row(&row)?,
        owner: owner.into(),
    })
}

async fn insert<S: Spec>(
    c: &impl GenericClient,
    new: &NewJob<S>,
    held: Option<(&str, Duration)>,
) -> Result<Option<tokio_postgres::Row>, tokio_postgres::Error> {
    let (owner, lease) = match held {
        Some((owner, lease)) => (Some(owner), Some(lease.as_secs_f64())),
        None => (None, None),
    };
    let mut row = Writes::from(11);
    new.spec.columns(&mut row);
    let (names, values) = row.insert_lists();
    let sql = format!(
        "INSERT INTO jobs (id, kind, status, domain_id, lease_owner, lease_expires_at,
                           idempotency_key, status_topic, origin, request_hash{names})
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6), $7, $8, $9, $10{values})
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING {COLUMNS}"
    );
    let kind = new.spec.kind();
    let status = JobStatus::Pending.as_str();
    let head: [&(dyn ToSql + Sync); 10] = [
        &new.id,
        &kind,
        &status,
        &new.domain_id,
        &owner,
        &lease,
        &new.idempotency_key,
        &new.status_topic,
        &new.origin,
        &new.request_hash,
    ];
    let params: Vec<&(dyn ToSql + Sync)> = head.into_iter().chain(row.params()).collect();
    c.query_opt(&sql, &params).await
}

/// Claims up to `limit` jobs that nobody holds: PENDING jobs never
/// leased, and PENDING or RUNNING jobs whose lease expired (their instance
/// died; they resume from their checkpoint). Domains take turns, counted
/// from the jobs each one has running already: a domain with two running
/// has its oldest waiting job at turn 3, behind another domain's first,
/// so one domain's burst does not starve the others. Each is leased to
/// `owner` for `lease`. Concurrent claimers never get the same job.
pub async fn claim<K: Kind>(
    c: &impl GenericClient,
    owner: &str,
    lease: Duration,
    limit: i64,
) -> Result<Vec<Held<K>>, StoreError> {
    let claimable = format!(
        "status IN {active} AND (lease_expires_at IS NULL OR lease_expires_at < now())",
        active = active()
    );
    let sql = format!(
        "WITH running AS (
             SELECT domain_id, count(*) AS n FROM jobs
             WHERE status IN {active} AND lease_expires_at >= now()
             GROUP BY domain_id),
         fair AS (
             SELECT j.id, j.created_at,
                    coalesce(r.n, 0)
                        + row_number() OVER (PARTITION BY j.domain_id ORDER BY j.created_at)
                        AS turn
             FROM jobs j LEFT JOIN running r ON r.domain_id = j.domain_id
             WHERE j.{claimable})
         UPDATE jobs SET lease_owner = $1,
             lease_expires_at = now() + make_interval(secs => $2), updated_at = now()
         WHERE id IN (
             SELECT j.id FROM jobs j JOIN fair f ON f.id = j.id
             WHERE j.{claimable}
             ORDER BY f.turn, f.created_at LIMIT $3
             FOR UPDATE OF j SKIP LOCKED)
         RETURNING {COLUMNS}",
        active = active()
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
pub struct Held<K> {
    job: Job<K>,
    owner: Arc<str>,
}

impl<K: Kind> Held<K> {
    /// The job as it was claimed (or as its last attempt started).
    pub fn job(&self) -> &Job<K> {
        &self.job
    }

    /// Starts an attempt: the job is RUNNING and `attempts` counts it. The
    /// attempt gets the row as it is now, with its latest checkpoint.
    pub async fn start(&self, c: &impl GenericClient) -> Result<Attempt<K>, Fenced> {
        let sql = format!(
            "UPDATE jobs SET status = $3, attempts = attempts + 1,
                 started_at = coalesce(started_at, now()), updated_at = now()
             WHERE id = $1 AND lease_owner = $2 AND status IN {active}
             RETURNING {COLUMNS}",
            active = active()
        );
        let running = JobStatus::Running.as_str();
        let id = self.job.id;
        let row = c.query_opt(&sql, &[&id, &&*self.owner, &running]).await?;
        let row = row.ok_or(Fenced::Lost(id))?;
        Ok(Attempt {
            held: Held {
                job: from_row(&row)?,
                owner: self.owner.clone(),
            },
        })
    }

    /// Gives the job up (a permanent failure, or too many): FAILED, with
    /// what its last checkpoint says was done.
    pub async fn give_up(&self, c: &mut Client, reason: &str) -> Result<Job<K>, Fenced> {
        let tx = durable(c).await?;
        let id = self.job.id;
        let job = locked::<K>(&tx, "id = $1", &[&id])
            .await?
            .ok_or(Fenced::Lost(id))?;
        let outcome = K::given_up(&job, reason);
        let ended = end(&tx, &job, Some(&self.owner), JobStatus::Failed, &outcome).await?;
        commit(tx, ended).await?.ok_or(Fenced::Lost(id))
    }
}

/// An attempt under way: the only state that checkpoints and finishes.
#[derive(Debug, Clone)]
pub struct Attempt<K> {
    held: Held<K>,
}

impl<K: Kind> Attempt<K> {
    /// The job as this attempt started it.
    pub fn job(&self) -> &Job<K> {
        &self.held.job
    }

    /// What the attempt's pipeline writes its progress through.
    pub fn fence(&self) -> Fence {
        Fence::new(self.held.job.id, self.held.owner.clone())
    }

    /// A failure that will be retried: the reason is noted, the job stays
    /// RUNNING and held for the next attempt.
    pub async fn fail(&self, c: &impl GenericClient, reason: &str) -> Result<Held<K>, Fenced> {
        let sql = format!(
            "UPDATE jobs SET failure_reason = $3, updated_at = now()
             WHERE id = $1 AND lease_owner = $2 AND status IN {active}",
            active = active()
        );
        let id = self.held.job.id;
        match c.execute(&sql, &[&id, &&*self.held.owner, &reason]).await? {
            1 => Ok(self.held.clone()),
            _ => Err(Fenced::Lost(id)),
        }
    }

    /// The attempt stopped and its failure could not be noted (the database
    /// was away): the lease is still held, for the next attempt.
    pub fn stopped(&self) -> Held<K> {
        self.held.clone()
    }

    /// The attempt's pipeline reported how the job ended: the terminal
    /// write.
    pub async fn finish(&self, c: &mut Client, outcome: &K::Outcome) -> Result<Job<K>, Fenced> {
        let tx = durable(c).await?;
        let job = &self.held.job;
        let status = match K::failure_reason(outcome) {
            None => JobStatus::Completed,
            Some(_) => JobStatus::Failed,
        };
        let ended = end(&tx, job, Some(&self.held.owner), status, outcome).await?;
        commit(tx, ended).await?.ok_or(Fenced::Lost(job.id))
    }
}

/// What [`cancel`] did.
#[derive(Debug)]
pub enum Cancel<K> {
    /// The job is CANCELLED now; its attempt, if one runs, stops at its
    /// next checkpoint or lease renewal.
    Cancelled(Job<K>),
    /// It had ended already; nothing changed.
    Ended(Job<K>),
    /// No such job in the domain.
    Missing,
}

/// Cancels a domain's job of `family` (the API's, so without a lease).
/// Like every end, it queues the job's event.
pub async fn cancel<K: Kind>(
    c: &mut Client,
    family: Family,
    domain_id: Uuid,
    id: Uuid,
) -> Result<Cancel<K>, StoreError> {
    let tx = durable(c).await?;
    let filter = format!("id = $1 AND domain_id = $2 AND {}", family.sql::<K>());
    let Some(job) = locked::<K>(&tx, &filter, &[&id, &domain_id]).await? else {
        return Ok(Cancel::Missing);
    };
    if job.status.is_terminal() {
        return Ok(Cancel::Ended(job));
    }
    let outcome = K::given_up(&job, "cancelled");
    let ended = end(&tx, &job, None, JobStatus::Cancelled, &outcome).await?;
    let ended = commit(tx, ended).await?;
    Ok(Cancel::Cancelled(
        ended.expect("a locked active job always ends"),
    ))
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
async fn locked<K: Kind>(
    tx: &Transaction<'_>,
    filter: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Job<K>>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE {filter} FOR UPDATE");
    tx.query_opt(&sql, params)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// A terminal write that was made, and what it announces once committed.
struct Ended<K> {
    job: Job<K>,
    announce: super::kind::Announce,
}

/// The terminal write, the one place a job ends: the row, fenced on
/// `owner`'s lease when given, its event in the outbox and what its kind
/// adds, in one statement. `None`: the job was not active or not ours, and
/// nothing was written.
async fn end<K: Kind>(
    tx: &Transaction<'_>,
    job: &Job<K>,
    owner: Option<&str>,
    status: JobStatus,
    outcome: &K::Outcome,
) -> Result<Option<Ended<K>>, StoreError> {
    let mut end = End::new(job.id, owner, status);
    K::end(job, status, outcome, &mut end);
    if !K::leaves_work(job, status) {
        end.writes().set_sql("after_end_at", "now()");
    }
    let Some(row) = tx.query_opt(&end.sql(), &end.params()).await? else {
        return Ok(None);
    };
    let ended: Job<K> = from_row(&row)?;
    let announce = K::ended(job, status, outcome, &row)?;
    Ok(Some(Ended {
        job: ended,
        announce,
    }))
}

/// Commits a terminal write, then announces it: counts and logs the job's
/// end, and runs what its kind announces.
async fn commit<K: Kind>(
    tx: Transaction<'_>,
    ended: Option<Ended<K>>,
) -> Result<Option<Job<K>>, StoreError> {
    tx.commit().await?;
    let Some(Ended { job, announce }) = ended else {
        return Ok(None);
    };
    JobFinished {
        job_id: job.id,
        kind: job.kind(),
        status: job.status,
        rows: job.work.rows(),
        elapsed: Duration::from_secs_f64(job.duration_secs.unwrap_or(0.0).max(0.0)),
        reason: job.failure_reason.as_deref(),
    }
    .emit();
    announce.run();
    Ok(Some(job))
}

/// Deletes a domain's job of `family` that has ended (the API's DELETE of
/// an export, once its files are gone). False: no such ended job.
pub async fn forget<K: Kind>(
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
        family.sql::<K>(),
        JobStatus::sql_list(&JobStatus::TERMINAL)
    );
    let n: i64 = c.query_one(&sql, &[&id, &domain_id]).await?.get(0);
    Ok(n == 1)
}

/// Lock id for the retention sweep: "sweep" in ASCII.
pub const SWEEP_LOCK: i64 = 0x0073_7765_6570;

/// Deletes up to `limit` jobs that ended more than `retention` ago, with
/// their saved rejects and their sent status events; a job whose event is
/// still unsent stays until it is sent, and so does one whose end left
/// work outside the database undone (`after_end_at IS NULL`: its files to
/// delete, say). Also the users export's runs past `retention` (each
/// schedule keeps its latest, which catch-up reads), and pending messages
/// no active job will release (a stale attempt's). Returns how many jobs
/// went, or `None` when another instance is sweeping.
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
                   AND after_end_at IS NOT NULL
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

/// Up to `limit` ended jobs whose end left work undone outside the
/// database ([`Kind::on_end`] has not said it is done), oldest first.
pub async fn after_end_due<K: Kind>(
    c: &impl GenericClient,
    limit: i64,
) -> Result<Vec<Job<K>>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs
         WHERE status IN {terminal} AND after_end_at IS NULL
         ORDER BY finished_at LIMIT $1",
        terminal = JobStatus::sql_list(&JobStatus::TERMINAL)
    );
    store::from_rows(&c.query(&sql, &[&limit]).await?)
}

/// Notes that what a job's end left to do is done ([`Kind::on_end`] said
/// so), so the sweeper does not try again.
pub async fn after_end_done(c: &impl GenericClient, id: Uuid) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "UPDATE jobs SET after_end_at = now() WHERE id = $1 AND after_end_at IS NULL",
        &[&id],
    )
    .await
    .map(drop)
}
