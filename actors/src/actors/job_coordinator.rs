//! JobCoordinator: runs jobs, one supervised JobPipeline each. When a
//! pipeline fails it applies the restart policy: a retriable failure
//! restarts the pipeline after a backoff, from the job's checkpoint; a
//! permanent one, or one too many, makes the job FAILED with the reason.
//! While a job runs it renews the job's lease, so no other instance takes
//! the job over; if this process dies, the lease runs out and another
//! instance may resume the job from its checkpoint.
//!
//! In `ferry serve` it also claims work from the queue: woken by `NOTIFY`
//! when a job is created, and by a periodic poll (a missed notification, a
//! lease that ran out), it claims as many jobs as it has free slots. On
//! shutdown it drains: no more claims, running jobs get a while to finish,
//! then they stop at their last checkpoint and their leases are released.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use metrics::{counter, gauge};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use uuid::Uuid;

use super::job_pipeline::{self, startup_error, JobPipeline, FINISHED};
use crate::error::{is_retriable, ImportError};
use crate::job::{Job, JobStatus, Outcome};
use crate::pg::{self, jobs};
use crate::progress::Progress;
use crate::settings::{
    DatabaseSettings, ImportSettings, JobSettings, RetrySettings, StorageSettings,
};
use crate::status::{IdLists, StatusEvent};
use crate::supervision::{Decision, RestartPolicy};
use crate::telemetry::{ActorRestarted, JobFinished};

pub const NAME: &str = "job_coordinator";

pub type JobResult = Result<Job, String>;

pub enum Msg {
    /// Runs a job to its end; the reply is its final row.
    Run {
        job_id: Uuid,
        progress: Arc<Progress>,
        reply: RpcReplyPort<JobResult>,
    },
    /// Starts the next attempt of a job (after a backoff).
    Attempt(Uuid),
    /// Extends the leases of the jobs this coordinator runs.
    RenewLeases,
    /// Claims jobs from the queue up to the free slots (when claiming).
    Claim,
    /// Stops claiming; the reply comes when no job is running any more.
    Drain(RpcReplyPort<()>),
}

pub struct Args {
    pub database: DatabaseSettings,
    pub import: Arc<ImportSettings>,
    pub retry: RetrySettings,
    pub storage: StorageSettings,
    pub jobs: JobSettings,
    /// Whose leases this coordinator holds and renews.
    pub owner: String,
    pub pool: Pool,
    /// Claim jobs from the queue (`ferry serve`); otherwise run only the
    /// jobs it is given.
    pub claim: bool,
}

struct Tracked {
    progress: Arc<Progress>,
    /// Who waits for the job's end: the `ferry import` that asked for it;
    /// nobody for a claimed job.
    reply: Option<RpcReplyPort<JobResult>>,
    policy: RestartPolicy,
    started: Instant,
}

pub struct State {
    args: Args,
    /// The CopyWriters' connections, kept across the jobs run here.
    writers: Pool,
    jobs: HashMap<Uuid, Tracked>,
    pipelines: HashMap<ActorId, Uuid>,
    /// Set once draining: no more claims; answered when `jobs` is empty.
    drained: Option<Vec<RpcReplyPort<()>>>,
    listener: Option<tokio::task::JoinHandle<()>>,
}

pub type JobCoordinatorRef = ActorRef<Msg>;

pub async fn spawn(args: Args) -> Result<JobCoordinatorRef, ractor::SpawnErr> {
    let (r, _) = Actor::spawn(None, JobCoordinator, args).await?;
    Ok(r)
}

pub struct JobCoordinator;

impl Actor for JobCoordinator {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        let every = (args.jobs.lease / 3).max(Duration::from_millis(100));
        myself.send_interval(every, || Msg::RenewLeases);
        let listener = args.claim.then(|| {
            myself.send_interval(args.jobs.poll, || Msg::Claim);
            pg::wake_on(
                args.database.clone(),
                jobs::JOBS_CHANNEL,
                myself.clone(),
                || Msg::Claim,
            )
        });
        // Connections are made when first needed, up to every writer of
        // every job that can run at once.
        let writers = pg::writer_pool(
            &args.database,
            args.jobs.concurrency.max(1) * args.import.writers.max(1),
        )?;
        Ok(State {
            args,
            writers,
            jobs: HashMap::new(),
            pipelines: HashMap::new(),
            drained: None,
            listener,
        })
    }

    /// Stops the running jobs at their last checkpoint and releases their
    /// leases, so another instance (or this one, restarted) resumes them at
    /// once instead of after the lease runs out.
    async fn post_stop(
        &self,
        myself: ActorRef<Msg>,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(listener) = state.listener.take() {
            listener.abort();
        }
        myself
            .stop_children_and_wait(Some("shutdown".into()), Some(Duration::from_secs(10)))
            .await;
        let ids: Vec<Uuid> = state.jobs.keys().copied().collect();
        if ids.is_empty() {
            return Ok(());
        }
        let released = match state.args.pool.get().await {
            Ok(c) => jobs::release(&**c, &state.args.owner, &ids)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match released {
            Ok(n) => tracing::info!(released = n, "Released the leases of unfinished jobs."),
            Err(e) => {
                tracing::warn!(error = %e, "Could not release job leases; they run out instead.")
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Msg>,
        msg: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Run {
                job_id,
                progress,
                reply,
            } => {
                track(state, job_id, progress, Some(reply));
                attempt(&myself, state, job_id).await;
            }
            Msg::Attempt(job_id) => attempt(&myself, state, job_id).await,
            Msg::RenewLeases => renew_leases(state).await,
            Msg::Claim => claim(&myself, state).await,
            Msg::Drain(reply) => {
                state.drained.get_or_insert_with(Vec::new).push(reply);
                answer_drained(state);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Msg>,
        event: SupervisionEvent,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(who, _, reason) => {
                let Some(job_id) = state.pipelines.remove(&who.get_id()) else {
                    return Ok(());
                };
                if reason.as_deref() == Some(FINISHED) {
                    reply(&myself, state, job_id, None).await;
                } else {
                    let err: ActorProcessingErr =
                        format!("pipeline stopped: {}", reason.unwrap_or_default()).into();
                    failed(&myself, state, job_id, err).await;
                }
            }
            SupervisionEvent::ActorFailed(who, err) => {
                if let Some(job_id) = state.pipelines.remove(&who.get_id()) {
                    failed(&myself, state, job_id, err).await;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn track(
    state: &mut State,
    job_id: Uuid,
    progress: Arc<Progress>,
    reply: Option<RpcReplyPort<JobResult>>,
) {
    let policy = RestartPolicy::new(state.args.retry.clone());
    state.jobs.insert(
        job_id,
        Tracked {
            progress,
            reply,
            policy,
            started: Instant::now(),
        },
    );
    gauge!("ferry_jobs_running").set(state.jobs.len() as f64);
}

/// Claims jobs for the free slots and starts them.
async fn claim(myself: &ActorRef<Msg>, state: &mut State) {
    let free = state.args.jobs.concurrency.saturating_sub(state.jobs.len());
    if !state.args.claim || state.drained.is_some() || free == 0 {
        return;
    }
    let claimed = match state.args.pool.get().await {
        Ok(c) => jobs::claim(&**c, &state.args.owner, state.args.jobs.lease, free as i64).await,
        Err(e) => {
            tracing::debug!(error = %e, "Cannot claim jobs: no database connection.");
            return;
        }
    };
    let claimed = match claimed {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::warn!(error = %e, "Claiming jobs failed.");
            return;
        }
    };
    for job in claimed {
        tracing::info!(
            job_id = %job.id,
            kind = %job.kind,
            status = job.status.as_str(),
            resume_from = job.checkpoint.records,
            owner = %state.args.owner,
            "Claimed a job."
        );
        counter!("ferry_jobs_claimed_total").increment(1);
        track(state, job.id, Arc::default(), None);
        attempt(myself, state, job.id).await;
    }
}

fn answer_drained(state: &mut State) {
    if state.jobs.is_empty() {
        for reply in state.drained.iter_mut().flat_map(std::mem::take) {
            let _ = reply.send(());
        }
    }
}

/// Renews the leases of every job being run. A job whose lease is gone was
/// taken over by another instance after this one stalled past its lease.
async fn renew_leases(state: &State) {
    let ids: Vec<Uuid> = state.jobs.keys().copied().collect();
    if ids.is_empty() {
        return;
    }
    let renewed = match state.args.pool.get().await {
        Ok(c) => jobs::renew(&**c, &state.args.owner, &ids, state.args.jobs.lease).await,
        Err(e) => {
            tracing::warn!(error = %e, "Could not renew job leases: no database connection.");
            return;
        }
    };
    match renewed {
        Ok(held) => {
            for lost in ids.iter().filter(|id| !held.contains(id)) {
                tracing::warn!(job_id = %lost, owner = %state.args.owner, "Lost the lease of a running job.");
            }
        }
        Err(e) => tracing::warn!(error = %e, "Could not renew job leases."),
    }
}

/// Starts one attempt of a job: counts it on the job row, spawns its
/// pipeline linked to us.
async fn attempt(myself: &ActorRef<Msg>, state: &mut State, job_id: Uuid) {
    let Some(tracked) = state.jobs.get(&job_id) else {
        return;
    };
    let job = match load_and_start(&state.args.pool, job_id).await {
        Ok(job) => job,
        Err(e) => return failed(myself, state, job_id, e.into()).await,
    };
    if job.status.is_terminal() {
        return reply(myself, state, job_id, Some(Ok(job))).await;
    }
    let args = job_pipeline::Args {
        job,
        database: state.args.database.clone(),
        writers: state.writers.clone(),
        import: state.args.import.clone(),
        retry: state.args.retry.clone(),
        storage: state.args.storage.clone(),
        progress: tracked.progress.clone(),
        owner: state.args.owner.clone(),
        max_status_ids: state.args.jobs.max_status_ids,
    };
    match Actor::spawn_linked(None, JobPipeline, args, myself.get_cell()).await {
        Ok((pipeline, _)) => {
            state.pipelines.insert(pipeline.get_id(), job_id);
        }
        Err(e) => failed(myself, state, job_id, startup_error(e)).await,
    }
}

async fn load_and_start(pool: &Pool, job_id: Uuid) -> Result<Job, ImportError> {
    let client = pool
        .get()
        .await
        .map_err(|e| crate::pg::DbError::Pool(e.to_string()))?;
    let job = jobs::get(&**client, job_id)
        .await?
        .ok_or_else(|| ImportError::Stage {
            actor: NAME,
            reason: format!("job {job_id} does not exist"),
            retriable: false,
        })?;
    if !job.status.is_terminal() {
        jobs::start_attempt(&**client, job_id).await?;
    }
    Ok(job)
}

/// An attempt failed: restart after a backoff, or give up.
async fn failed(myself: &ActorRef<Msg>, state: &mut State, job_id: Uuid, err: ActorProcessingErr) {
    let reason = err.to_string();
    let actor = match err.downcast_ref::<ImportError>() {
        Some(ImportError::Stage { actor, .. }) => *actor,
        _ => job_pipeline::NAME,
    };
    let Some(tracked) = state.jobs.get_mut(&job_id) else {
        return;
    };
    if let Some(ImportError::LeaseLost(_)) = err.downcast_ref::<ImportError>() {
        // The job is another instance's now: leave its row alone.
        tracing::warn!(job_id = %job_id, owner = %state.args.owner, "Stopped a job whose lease was lost.");
        return reply(myself, state, job_id, Some(Err(reason))).await;
    }
    let decision = if is_retriable(&err) {
        tracked.policy.on_failure(Instant::now())
    } else {
        Decision::GiveUp
    };
    match decision {
        Decision::Restart { after } => {
            let attempt = match state.args.pool.get().await {
                Ok(c) => jobs::record_failure(&**c, job_id, &reason)
                    .await
                    .unwrap_or(0),
                Err(_) => 0,
            };
            ActorRestarted {
                actor,
                job_id,
                attempt,
                backoff: after,
                reason: &reason,
            }
            .emit();
            myself.send_after(after, move || Msg::Attempt(job_id));
        }
        Decision::GiveUp => {
            let started = tracked.started;
            let given_up = give_up(&state.args, job_id, &reason, started).await;
            reply(myself, state, job_id, given_up.err().map(Err)).await;
        }
    }
}

/// Marks the job FAILED with what its checkpoint says was committed.
async fn give_up(args: &Args, job_id: Uuid, reason: &str, started: Instant) -> Result<(), String> {
    let client = args.pool.get().await.map_err(|e| e.to_string())?;
    let job = stored(&client, job_id).await?;
    let cp = &job.checkpoint;
    let outcome = Outcome {
        status: JobStatus::Failed,
        total: cp.records,
        inserted: cp.inserted,
        updated: cp.updated,
        duplicates: cp.duplicates,
        rejected: cp.rejected,
        rejects_path: job.rejects_path.clone(),
        failure_reason: Some(reason.to_string()),
    };
    let event = StatusEvent::new(&job, &outcome, IdLists::counts_only(&outcome));
    let finished = jobs::finish(&**client, job_id, &args.owner, &outcome, &event)
        .await
        .map_err(|e| e.to_string())?;
    if !finished {
        return Err(ImportError::LeaseLost(job_id).to_string());
    }
    JobFinished {
        job_id,
        kind: &job.kind,
        status: JobStatus::Failed.as_str(),
        rows: outcome.total,
        elapsed: started.elapsed(),
        reason: Some(reason),
    }
    .emit();
    Ok(())
}

/// The job row as stored.
async fn stored(client: &tokio_postgres::Client, job_id: Uuid) -> JobResult {
    jobs::get(client, job_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("job {job_id} disappeared"))
}

/// Answers the job's caller with `result`, or with the job row as stored.
async fn reply(myself: &ActorRef<Msg>, state: &mut State, job_id: Uuid, result: Option<JobResult>) {
    let Some(tracked) = state.jobs.remove(&job_id) else {
        return;
    };
    gauge!("ferry_jobs_running").set(state.jobs.len() as f64);
    answer_drained(state);
    // A slot is free.
    let _ = myself.cast(Msg::Claim);
    let Some(reply) = tracked.reply else {
        return;
    };
    let result = match result {
        Some(r) => r,
        None => match state.args.pool.get().await {
            Ok(c) => stored(&c, job_id).await,
            Err(e) => Err(e.to_string()),
        },
    };
    let _ = reply.send(result);
}
