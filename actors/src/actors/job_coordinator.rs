//! JobCoordinator: runs jobs of every kind through the job lifecycle
//! (`job::lifecycle`), one supervised pipeline per attempt, picked by the
//! job's kind. A pipeline only reports how its job ended; the coordinator
//! makes every write: it starts each attempt, applies the restart policy
//! when a pipeline fails (a retriable failure restarts it after a backoff,
//! from the job's checkpoint; a permanent one, or one too many, gives the
//! job up as FAILED), and finishes the job with the pipeline's outcome.
//! While a job runs it renews the job's lease; a job whose lease is lost
//! (taken over after this process stalled, or cancelled) is stopped.
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
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use tokio::sync::oneshot;
use tracing::Instrument;
use uuid::Uuid;

use super::export_pipeline::{self, ExportPipeline};
use super::job_pipeline::{self, startup_error, JobPipeline, FINISHED};
use super::refs_exporter::{self, RefsExporter};
use crate::error::{is_retriable, ImportError};
use crate::export::object::Catalog;
use crate::export::sink::Sink;
use crate::export::users::GroupType;
use crate::job::lifecycle::{self, Attempt, Held, Started};
use crate::job::{Job, Outcome, Work};
use crate::pg;
use crate::progress::Progress;
use crate::settings::{
    DatabaseSettings, ExportSettings, ImportSettings, JobSettings, RetrySettings, StorageSettings,
};
use crate::supervision::{Decision, RestartPolicy};
use crate::telemetry::{ActorRestarted, DbFailed, JobClaimed, JobsHeld, LeaseLost};

pub const NAME: &str = "job_coordinator";

pub type JobResult = Result<Job, String>;

pub enum Msg {
    /// Runs a job this process holds to its end; the reply is its final row.
    Run {
        held: Box<Held>,
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
    pub exports: Arc<ExportSettings>,
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
    stage: Stage,
}

/// Where a tracked job is in its life, as far as this process is concerned.
enum Stage {
    /// Held, with no attempt running: before the first, or in a backoff.
    Held(Held),
    /// An attempt runs; its pipeline sends the outcome before it stops.
    Running {
        attempt: Attempt,
        pipeline: ActorCell,
        outcome: oneshot::Receiver<Outcome>,
    },
}

pub struct State {
    args: Args,
    /// The CopyWriters' connections, kept across the jobs run here.
    writers: Pool,
    /// What exports may read, from the catalog at start.
    catalog: Arc<Catalog>,
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

/// The stop reason of a pipeline whose job's lease was lost.
const LEASE_LOST: &str = "lease lost";

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
                lifecycle::JOBS_CHANNEL,
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
        let catalog = {
            let client = args.pool.get().await?;
            Arc::new(Catalog::load(&**client, &args.exports).await?)
        };
        Ok(State {
            args,
            writers,
            catalog,
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
            Ok(c) => lifecycle::release(&**c, &state.args.owner, &ids)
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
                held,
                progress,
                reply,
            } => {
                let job_id = held.job().id;
                track(state, *held, progress, Some(reply));
                attempt(&myself, state, job_id).await;
            }
            Msg::Attempt(job_id) => attempt(&myself, state, job_id).await,
            Msg::RenewLeases => renew_leases(&myself, state).await,
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
                match reason.as_deref() {
                    Some(FINISHED) => finish(&myself, state, job_id).await,
                    Some(LEASE_LOST) => lost(&myself, state, job_id).await,
                    reason => {
                        let reason = reason.unwrap_or_default();
                        let err = format!("pipeline stopped: {reason}").into();
                        failed(&myself, state, job_id, err).await;
                    }
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
    held: Held,
    progress: Arc<Progress>,
    reply: Option<RpcReplyPort<JobResult>>,
) {
    let policy = RestartPolicy::new(state.args.retry.clone());
    state.jobs.insert(
        held.job().id,
        Tracked {
            progress,
            reply,
            policy,
            stage: Stage::Held(held),
        },
    );
    JobsHeld {
        jobs: state.jobs.len(),
    }
    .emit();
}

/// Claims jobs for the free slots and starts them.
async fn claim(myself: &ActorRef<Msg>, state: &mut State) {
    let free = state.args.jobs.concurrency.saturating_sub(state.jobs.len());
    if !state.args.claim || state.drained.is_some() || free == 0 {
        return;
    }
    let claimed = match state.args.pool.get().await {
        Ok(c) => lifecycle::claim(&**c, &state.args.owner, state.args.jobs.lease, free as i64)
            .await
            .map_err(|e| e.to_string()),
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
    for held in claimed {
        let job = held.job();
        tracing::info!(
            job_id = %job.id,
            kind = job.kind().as_str(),
            status = job.status.as_str(),
            owner = %state.args.owner,
            "Claimed a job."
        );
        JobClaimed.emit();
        let job_id = job.id;
        track(state, held, Arc::default(), None);
        attempt(myself, state, job_id).await;
    }
}

fn answer_drained(state: &mut State) {
    if state.jobs.is_empty() {
        for reply in state.drained.iter_mut().flat_map(std::mem::take) {
            let _ = reply.send(());
        }
    }
}

/// Renews the leases of every job being run. A job whose lease is gone
/// (another instance took it over after this one stalled past its lease,
/// or it was cancelled) is stopped: its row is not ours to write.
async fn renew_leases(myself: &ActorRef<Msg>, state: &mut State) {
    let ids: Vec<Uuid> = state.jobs.keys().copied().collect();
    if ids.is_empty() {
        return;
    }
    let renewed = match state.args.pool.get().await {
        Ok(c) => lifecycle::renew(&**c, &state.args.owner, &ids, state.args.jobs.lease).await,
        Err(e) => {
            tracing::warn!(error = %e, "Could not renew job leases: no database connection.");
            return;
        }
    };
    let held = match renewed {
        Ok(held) => held,
        Err(e) => return tracing::warn!(error = %e, "Could not renew job leases."),
    };
    for job_id in ids.into_iter().filter(|id| !held.contains(id)) {
        match state.jobs.get(&job_id).map(|t| &t.stage) {
            // Its end comes back as the pipeline's termination.
            Some(Stage::Running { pipeline, .. }) => pipeline.stop(Some(LEASE_LOST.into())),
            Some(Stage::Held(_)) => lost(myself, state, job_id).await,
            None => {}
        }
    }
}

/// Starts one attempt of a held job: the lifecycle marks it RUNNING, and
/// the pipeline for its kind is spawned, linked to us.
async fn attempt(myself: &ActorRef<Msg>, state: &mut State, job_id: Uuid) {
    let Some(Tracked {
        stage: Stage::Held(held),
        ..
    }) = state.jobs.get(&job_id)
    else {
        return;
    };
    let started = match state.args.pool.get().await {
        Ok(c) => held.start(&**c).await.map_err(ImportError::from),
        Err(e) => Err(pg::DbError::Pool(e.to_string()).into()),
    };
    let attempt = match started {
        Ok(Started::Running(attempt)) => attempt,
        Ok(Started::NotOurs(job)) => return reply(myself, state, job_id, not_ours(job)).await,
        Err(e) => return failed(myself, state, job_id, e.into()).await,
    };
    let (report, outcome) = oneshot::channel();
    let progress = state.jobs[&job_id].progress.clone();
    let job = attempt.job().clone();
    let span = job_span(&job);
    let spawned = match &job.work {
        Work::Import(import) => {
            let args = job_pipeline::Args {
                import: (**import).clone(),
                job,
                fence: attempt.fence(),
                report: Some(report),
                database: state.args.database.clone(),
                writers: state.writers.clone(),
                settings: state.args.import.clone(),
                retry: state.args.retry.clone(),
                storage: state.args.storage.clone(),
                progress,
                max_status_ids: state.args.jobs.max_status_ids,
            };
            Actor::spawn_linked(None, JobPipeline, args, myself.get_cell())
                .instrument(span.clone())
                .await
                .map(|(pipeline, _)| pipeline.get_cell())
        }
        Work::Export(export) => {
            let read_database = match state.args.exports.read_url.as_str() {
                "" => state.args.database.clone(),
                url => DatabaseSettings {
                    url: url.to_string(),
                    ..state.args.database.clone()
                },
            };
            let refs_only = export
                .spec
                .users
                .as_ref()
                .is_some_and(|u| u.group_type == GroupType::NonCostBased);
            if refs_only {
                let args = refs_exporter::Args {
                    export: (**export).clone(),
                    job,
                    fence: attempt.fence(),
                    report: Some(report),
                    database: state.args.database.clone(),
                    read_database,
                    progress,
                };
                Actor::spawn_linked(None, RefsExporter, args, myself.get_cell())
                    .instrument(span.clone())
                    .await
                    .map(|(pipeline, _)| pipeline.get_cell())
            } else {
                let args = export_pipeline::Args {
                    export: (**export).clone(),
                    sink: export_sink(&state.args, export),
                    job,
                    fence: attempt.fence(),
                    report: Some(report),
                    catalog: state.catalog.clone(),
                    settings: state.args.exports.clone(),
                    database: state.args.database.clone(),
                    read_database,
                    progress,
                };
                Actor::spawn_linked(None, ExportPipeline, args, myself.get_cell())
                    .instrument(span.clone())
                    .await
                    .map(|(pipeline, _)| pipeline.get_cell())
            }
        }
    };
    match spawned {
        Ok(pipeline) => {
            state.pipelines.insert(pipeline.get_id(), job_id);
            if let Some(tracked) = state.jobs.get_mut(&job_id) {
                tracked.stage = Stage::Running {
                    attempt,
                    pipeline,
                    outcome,
                };
            }
        }
        Err(e) => {
            // The attempt began on the row: it ends before it ran.
            let err = startup_error(e);
            match note_failure(&state.args.pool, &attempt, &err.to_string()).await {
                Some(held) => {
                    if let Some(tracked) = state.jobs.get_mut(&job_id) {
                        tracked.stage = Stage::Held(held);
                    }
                    failed(myself, state, job_id, err).await
                }
                None => lost(myself, state, job_id).await,
            }
        }
    }
}

/// The span a job's pipeline is spawned in: every actor of its subtree,
/// and every line they log, carries the job's id (and a users export's
/// run), so one job's story is one filter away in JSON logs.
fn job_span(job: &Job) -> tracing::Span {
    let run_id = match &job.work {
        Work::Export(export) => export.spec.users.as_ref().map(|u| u.run_id.to_string()),
        Work::Import(_) => None,
    };
    tracing::info_span!(
        "job",
        job_id = %job.id,
        kind = job.kind().as_str(),
        run_id = run_id.as_deref(),
    )
}

/// Notes a failed attempt on the job row; the job is held again, for the
/// next attempt. `None`: the job is not ours any more.
async fn note_failure(pool: &Pool, attempt: &Attempt, reason: &str) -> Option<Held> {
    let noted = match pool.get().await {
        Ok(c) => attempt.fail(&**c, reason).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    noted.unwrap_or_else(|e| {
        let job_id = attempt.job().id;
        tracing::warn!(job_id = %job_id, error = %e, "Could not note the failure on the job.");
        Some(attempt.stopped())
    })
}

/// The reply for a job that is not ours to run: its row when it has ended
/// (cancelled while waiting for a retry, say), else the lease was lost.
fn not_ours(job: Job) -> Option<JobResult> {
    Some(match job.status.is_terminal() {
        true => Ok(job),
        false => Err(ImportError::LeaseLost(job.id).to_string()),
    })
}

/// A pipeline stopped after reporting its outcome: the terminal write.
async fn finish(myself: &ActorRef<Msg>, state: &mut State, job_id: Uuid) {
    let Some(Tracked {
        stage: Stage::Running {
            attempt, outcome, ..
        },
        ..
    }) = state.jobs.get_mut(&job_id)
    else {
        return;
    };
    let (attempt, outcome) = (attempt.clone(), outcome.try_recv());
    let Ok(outcome) = outcome else {
        let err = "the pipeline finished without an outcome".into();
        return failed(myself, state, job_id, err).await;
    };
    let finished = match state.args.pool.get().await {
        Ok(mut c) => attempt
            .finish(&mut c, &outcome)
            .await
            .map_err(ImportError::from),
        Err(e) => Err(pg::DbError::Pool(e.to_string()).into()),
    };
    match finished {
        Ok(Some(job)) => reply(myself, state, job_id, Some(Ok(job))).await,
        Ok(None) => lost(myself, state, job_id).await,
        // The next attempt resumes from the last checkpoint, at the end:
        // it reads nothing and reports the same outcome.
        Err(e) => failed(myself, state, job_id, e.into()).await,
    }
}

/// The job's lease was lost: it is another instance's (or cancelled), so
/// its row is left alone.
async fn lost(myself: &ActorRef<Msg>, state: &mut State, job_id: Uuid) {
    LeaseLost { job_id }.emit();
    let result = match state.args.pool.get().await {
        Ok(c) => match crate::job::store::get(&**c, job_id).await {
            Ok(Some(job)) => not_ours(job),
            _ => None,
        },
        Err(_) => None,
    };
    let result = result.or_else(|| Some(Err(ImportError::LeaseLost(job_id).to_string())));
    reply(myself, state, job_id, result).await;
}

/// An attempt failed (or could not start): restart after a backoff, or
/// give up.
async fn failed(myself: &ActorRef<Msg>, state: &mut State, job_id: Uuid, err: ActorProcessingErr) {
    if let Some(ImportError::LeaseLost(_)) = err.downcast_ref::<ImportError>() {
        return lost(myself, state, job_id).await;
    }
    if let Some(ImportError::Database(e)) = err.downcast_ref::<ImportError>() {
        DbFailed { error: e }.emit();
    }
    let reason = err.to_string();
    let actor = match err.downcast_ref::<ImportError>() {
        Some(ImportError::Stage { actor, .. }) => *actor,
        _ => job_pipeline::NAME,
    };
    // Back to held, the failure noted on the row if an attempt ran.
    let held = match state.jobs.get(&job_id).map(|t| &t.stage) {
        None => return,
        Some(Stage::Held(held)) => Some(held.clone()),
        Some(Stage::Running { attempt, .. }) => {
            let attempt = attempt.clone();
            note_failure(&state.args.pool, &attempt, &reason).await
        }
    };
    let Some(held) = held else {
        return lost(myself, state, job_id).await;
    };
    let Some(tracked) = state.jobs.get_mut(&job_id) else {
        return;
    };
    let decision = if is_retriable(&err) {
        tracked.policy.on_failure(Instant::now())
    } else {
        Decision::GiveUp
    };
    tracked.stage = Stage::Held(held.clone());
    match decision {
        Decision::Restart { after } => {
            ActorRestarted {
                actor,
                job_id,
                attempt: held.job().attempts,
                backoff: after,
                reason: &reason,
            }
            .emit();
            myself.send_after(after, move || Msg::Attempt(job_id));
        }
        Decision::GiveUp => {
            let given_up = match state.args.pool.get().await {
                Ok(mut c) => held
                    .give_up(&mut c, &reason)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match given_up {
                Ok(Some(job)) => {
                    discard_files(&state.args, &job);
                    reply(myself, state, job_id, Some(Ok(job))).await
                }
                Ok(None) => lost(myself, state, job_id).await,
                Err(e) => {
                    tracing::error!(job_id = %job_id, error = %e, "Could not give the job up; its lease runs out and it is tried again.");
                    reply(myself, state, job_id, Some(Err(e))).await
                }
            }
        }
    }
}

/// Forgets the job and answers its caller with `result`, or with the job
/// row as stored.
async fn reply(myself: &ActorRef<Msg>, state: &mut State, job_id: Uuid, result: Option<JobResult>) {
    let Some(tracked) = state.jobs.remove(&job_id) else {
        return;
    };
    JobsHeld {
        jobs: state.jobs.len(),
    }
    .emit();
    answer_drained(state);
    // A slot is free.
    let _ = myself.cast(Msg::Claim);
    let Some(reply) = tracked.reply else {
        return;
    };
    let result = match result {
        Some(r) => r,
        None => match state.args.pool.get().await {
            Ok(c) => match crate::job::store::get(&**c, job_id).await {
                Ok(Some(job)) => Ok(job),
                Ok(None) => Err(format!("job {job_id} disappeared")),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        },
    };
    let _ = reply.send(result);
}

/// Where an export's files go.
fn export_sink(args: &Args, export: &crate::job::Export) -> Sink {
    Sink::for_spec(&export.spec, &args.storage, &args.exports, &args.retry)
}

/// A failed export's files are incomplete: they go, with the parts of an
/// unfinished one, so no partial export is mistaken for a whole one.
fn discard_files(args: &Args, job: &Job) {
    let Work::Export(export) = &job.work else {
        return;
    };
    let sink = export_sink(args, export);
    let (checkpoint, job_id) = (export.checkpoint.clone(), job.id);
    tokio::spawn(async move {
        if let Err(e) = sink.discard(&checkpoint).await {
            tracing::warn!(job_id = %job_id, error = %e, "Could not delete a failed export's files.");
        }
    });
}
