//! JobCoordinator: runs jobs of every kind through the job lifecycle
//! (`job::lifecycle`), one supervised pipeline per attempt, spawned by the
//! job's kind (`crate::kinds`). A pipeline only reports how its job ended;
//! the coordinator makes every write: it starts each attempt, applies the
//! restart policy when a pipeline fails (a retriable failure restarts it
//! after a backoff, from the job's checkpoint; a permanent one, or one too
//! many, gives the job up as FAILED), and finishes the job with the
//! pipeline's outcome, then does what the end leaves to do (a failed
//! export's files deleted). While a job runs it renews the job's lease; a
//! job whose lease is lost (taken over after this process stalled, or
//! cancelled) is stopped.
//!
//! In `ferry serve` it also claims work from the queue: woken by `NOTIFY`
//! when a job is created, and by a periodic poll (a missed notification, a
//! lease that ran out), it claims as many jobs as it has free slots. On
//! shutdown it drains: no more claims, running jobs get a while to finish,
//! then they stop at their last checkpoint and their leases are released.
//!
//! Its size: it is the lifecycle's one driver (start, fail, restart, give
//! up, finish, lose, drain), kept in one file so that every transition a job
//! can take here reads in one place; it holds no kind's logic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use deadpool_postgres::{Object, Pool};
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr,
    SupervisionEvent,
};
use tokio::sync::oneshot;
use tracing::Instrument;
use uuid::Uuid;

use super::service_supervisor::SHUTDOWN;
use crate::error::{DbError, JobError};
use crate::job::lifecycle::{self, JOBS_CHANNEL};
use crate::job::{store, Kind, Report, Run};
use crate::kinds::{self, Attempt, Held, Job, Outcome, Work};
use crate::pipeline::Ctx;
use crate::progress::Progress;
use crate::service::worker::Wakeups;
use crate::supervision::{Decision, RestartPolicy};
use crate::telemetry::{DbFailed, JobClaimed, JobRestarted, JobsHeld, LeaseLost};

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
    /// What every pipeline is spawned with (and the settings of the queue).
    pub ctx: Ctx,
    /// Whose leases this coordinator holds and renews.
    pub owner: String,
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

/// Where a tracked job is in its life: the lifecycle's states, and the
/// pipeline an attempt runs.
enum Stage {
    /// Held, with no attempt running: before the first, or in a backoff.
    Held(Held),
    Running(Attempt, Pipeline),
}

/// An attempt's pipeline.
struct Pipeline {
    root: ActorCell,
    /// The root's `NAME`, for a failure that names no stage.
    name: &'static str,
    /// What it reports before it stops.
    outcome: oneshot::Receiver<Outcome>,
    /// Stopped because the job's lease was lost.
    lost: bool,
}

pub struct State {
    args: Args,
    jobs: HashMap<Uuid, Tracked>,
    pipelines: HashMap<ActorId, Uuid>,
    /// Set once draining: no more claims; answered when `jobs` is empty.
    drained: Option<Vec<RpcReplyPort<()>>>,
    /// Claims are woken while this lives.
    _claims: Option<Wakeups>,
}

pub type JobCoordinatorRef = ActorRef<Msg>;

pub async fn spawn(args: Args) -> Result<JobCoordinatorRef, SpawnErr> {
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
        let jobs = &args.ctx.jobs;
        let every = (jobs.lease / 3).max(Duration::from_millis(100));
        myself.send_interval(every, || Msg::RenewLeases);
        let claims = args.claim.then(|| {
            Wakeups::start(&myself, &args.ctx.database, JOBS_CHANNEL, jobs.poll, || {
                Msg::Claim
            })
        });
        Ok(State {
            args,
            jobs: HashMap::new(),
            pipelines: HashMap::new(),
            drained: None,
            _claims: claims,
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
        state._claims = None;
        myself
            .stop_children_and_wait(Some(SHUTDOWN.into()), Some(Duration::from_secs(10)))
            .await;
        let ids: Vec<Uuid> = state.jobs.keys().copied().collect();
        if ids.is_empty() {
            return Ok(());
        }
        let released = async {
            let c = client(&state.args.ctx.pool).await?;
            Ok::<_, JobError>(lifecycle::release(&**c, &state.args.owner, &ids).await?)
        };
        match released.await {
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
            Msg::RenewLeases => {
                if let Err(e) = renew_leases(&myself, state).await {
                    tracing::warn!(error = %e, "Could not renew job leases.");
                }
            }
            Msg::Claim => {
                if let Err(e) = claim(&myself, state).await {
                    tracing::warn!(error = %e, "Claiming jobs failed.");
                }
            }
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
        let (who, failure) = match event {
            SupervisionEvent::ActorTerminated(who, ..) => (who, None),
            SupervisionEvent::ActorFailed(who, err) => (who, Some(err)),
            _ => return Ok(()),
        };
        let Some(job_id) = state.pipelines.remove(&who.get_id()) else {
            return Ok(());
        };
        let Some(Tracked {
            stage: Stage::Running(_, pipeline),
            ..
        }) = state.jobs.get_mut(&job_id)
        else {
            return Ok(());
        };
        let (name, lost) = (pipeline.name, pipeline.lost);
        let outcome = pipeline.outcome.try_recv();
        match (failure, outcome) {
            _ if lost => self::lost(myself.get_cell(), state, job_id).await,
            (Some(err), _) => failed(&myself, state, job_id, JobError::of_actor(err, name)).await,
            (None, Ok(outcome)) => finish(&myself, state, job_id, outcome).await,
            (None, Err(_)) => {
                let err = JobError::Stage {
                    stage: name,
                    reason: "the pipeline stopped without reporting how its job ended".into(),
                    retriable: true,
                };
                failed(&myself, state, job_id, err).await
            }
        }
        Ok(())
    }
}

/// A connection from the pool.
async fn client(pool: &Pool) -> Result<Object, JobError> {
    pool.get()
        .await
        .map_err(|e| DbError::Pool(e.to_string()).into())
}

fn track(
    state: &mut State,
    held: Held,
    progress: Arc<Progress>,
    reply: Option<RpcReplyPort<JobResult>>,
) {
    let policy = RestartPolicy::new(state.args.ctx.retry.clone());
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
async fn claim(myself: &ActorRef<Msg>, state: &mut State) -> Result<(), JobError> {
    let free = state
        .args
        .ctx
        .jobs
        .concurrency
        .saturating_sub(state.jobs.len());
    if !state.args.claim || state.drained.is_some() || free == 0 {
        return Ok(());
    }
    let (owner, lease) = (&state.args.owner, state.args.ctx.jobs.lease);
    let claimed = lifecycle::claim(
        &**client(&state.args.ctx.pool).await?,
        owner,
        lease,
        free as i64,
    )
    .await?;
    for held in claimed {
        let job = held.job();
        tracing::info!(
            job_id = %job.id,
            kind = job.kind(),
            status = job.status.as_str(),
            owner = %state.args.owner,
            "Claimed a job."
        );
        JobClaimed.emit();
        let job_id = job.id;
        track(state, held, Arc::default(), None);
        attempt(myself, state, job_id).await;
    }
    Ok(())
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
async fn renew_leases(myself: &ActorRef<Msg>, state: &mut State) -> Result<(), JobError> {
    let ids: Vec<Uuid> = state.jobs.keys().copied().collect();
    if ids.is_empty() {
        return Ok(());
    }
    let (owner, lease) = (&state.args.owner, state.args.ctx.jobs.lease);
    let held = lifecycle::renew(&**client(&state.args.ctx.pool).await?, owner, &ids, lease).await?;
    for job_id in ids.into_iter().filter(|id| !held.contains(id)) {
        match state.jobs.get_mut(&job_id).map(|t| &mut t.stage) {
            // Its end comes back as the pipeline's termination.
            Some(Stage::Running(_, pipeline)) => {
                pipeline.lost = true;
                pipeline.root.stop(None);
            }
            Some(Stage::Held(_)) => lost(myself.get_cell(), state, job_id).await,
            None => {}
        }
    }
    Ok(())
}

/// Starts one attempt of a held job: the lifecycle marks it RUNNING, and
/// the pipeline of its kind is spawned, linked to us.
async fn attempt(myself: &ActorRef<Msg>, state: &mut State, job_id: Uuid) {
    let Some(Tracked {
        stage: Stage::Held(held),
        progress,
        ..
    }) = state.jobs.get(&job_id)
    else {
        return;
    };
    let progress = progress.clone();
    let started =
        async { Ok::<_, JobError>(held.start(&**client(&state.args.ctx.pool).await?).await?) };
    let attempt = match started.await {
        Ok(attempt) => attempt,
        Err(JobError::Lost(_)) => return lost(myself.get_cell(), state, job_id).await,
        Err(e) => return failed(myself, state, job_id, e).await,
    };
    let (report, outcome) = oneshot::channel();
    let run = Run {
        job: attempt.job().clone(),
        fence: attempt.fence(),
        report: Report::new(move |o| {
            let _ = report.send(o);
        }),
        progress,
    };
    let span = job_span(attempt.job());
    let spawned = Work::spawn(run, myself.get_cell(), &state.args.ctx)
        .instrument(span)
        .await;
    match spawned {
        Ok(spawned) => {
            state.pipelines.insert(spawned.root.get_id(), job_id);
            let pipeline = Pipeline {
                root: spawned.root,
                name: spawned.name,
                outcome,
                lost: false,
            };
            if let Some(tracked) = state.jobs.get_mut(&job_id) {
                tracked.stage = Stage::Running(attempt, pipeline);
            }
        }
        Err(e) => {
            // The attempt began on the row: it ends before it ran.
            match note_failure(&state.args.ctx.pool, &attempt, &e.told()).await {
                Some(held) => {
                    if let Some(tracked) = state.jobs.get_mut(&job_id) {
                        tracked.stage = Stage::Held(held);
                    }
                    failed(myself, state, job_id, e).await
                }
                None => lost(myself.get_cell(), state, job_id).await,
            }
        }
    }
}

/// The span a job's pipeline is spawned in: every actor of its subtree,
/// and every line they log, carries the job's id (and a users export's
/// run), so one job's story is one filter away in JSON logs.
fn job_span(job: &Job) -> tracing::Span {
    let run_id = match &job.work {
        Work::Users(users) => Some(users.delivery.run_id.to_string()),
        _ => None,
    };
    tracing::info_span!(
        "job",
        job_id = %job.id,
        kind = job.kind(),
        run_id = run_id.as_deref(),
    )
}

/// Notes a failed attempt on the job row; the job is held again, for the
/// next attempt. `None`: the job is not ours any more.
async fn note_failure(pool: &Pool, attempt: &Attempt, reason: &str) -> Option<Held> {
    let noted = async { Ok::<_, JobError>(attempt.fail(&**client(pool).await?, reason).await?) };
    match noted.await {
        Ok(held) => Some(held),
        Err(JobError::Lost(_)) => None,
        Err(e) => {
            let job_id = attempt.job().id;
            tracing::warn!(job_id = %job_id, error = %e, "Could not note the failure on the job.");
            Some(attempt.stopped())
        }
    }
}

/// A pipeline reported how its job ended: the terminal write.
async fn finish(myself: &ActorRef<Msg>, state: &mut State, job_id: Uuid, outcome: Outcome) {
    let Some(Tracked {
        stage: Stage::Running(attempt, _),
        ..
    }) = state.jobs.get(&job_id)
    else {
        return;
    };
    let attempt = attempt.clone();
    let finished = async {
        let mut c = client(&state.args.ctx.pool).await?;
        Ok::<_, JobError>(attempt.finish(&mut c, &outcome).await?)
    };
    match finished.await {
        Ok(job) => ended(myself, state, job).await,
        Err(JobError::Lost(_)) => lost(myself.get_cell(), state, job_id).await,
        // The next attempt resumes from the last checkpoint, at the end:
        // it reads nothing and reports the same outcome.
        Err(e) => failed(myself, state, job_id, e).await,
    }
}

/// A job ended: what its end leaves to do outside the database goes on in
/// the background (the sweeper tries again if it fails), and its caller is
/// answered.
async fn ended(myself: &ActorRef<Msg>, state: &mut State, job: Job) {
    if Work::leaves_work(&job, job.status) {
        let (ended, ctx) = (job.clone(), state.args.ctx.clone());
        tokio::spawn(async move {
            let done = async {
                let c = client(&ctx.pool).await.map_err(|e| e.to_string())?;
                kinds::after_end(&ended, &ctx, &**c).await
            };
            if let Err(e) = done.await {
                tracing::warn!(job_id = %ended.id, error = %e, "What the job's end leaves to do failed; the sweeper tries again.");
            }
        });
    }
    let job_id = job.id;
    reply(myself, state, job_id, Ok(job));
}

/// The job's lease was lost: it is another instance's (or cancelled), so
/// its row is left alone. Its caller gets the row when it ended.
async fn lost(myself: ActorCell, state: &mut State, job_id: Uuid) {
    LeaseLost { job_id }.emit();
    let row = async {
        Ok::<_, JobError>(store::get::<Work>(&**client(&state.args.ctx.pool).await?, job_id).await?)
    };
    let result = match row.await {
        Ok(Some(job)) if job.status.is_terminal() => Ok(job),
        _ => Err(JobError::Lost(job_id).to_string()),
    };
    let myself: ActorRef<Msg> = myself.into();
    reply(&myself, state, job_id, result);
}

/// An attempt failed (or could not start): restart after a backoff, or
/// give up.
async fn failed(myself: &ActorRef<Msg>, state: &mut State, job_id: Uuid, err: JobError) {
    if let JobError::Lost(_) = err {
        return lost(myself.get_cell(), state, job_id).await;
    }
    if let JobError::Database(e) = &err {
        DbFailed { error: e }.emit();
    }
    let reason = err.told();
    // Back to held, the failure noted on the row if an attempt ran.
    let (held, stage) = match state.jobs.get(&job_id).map(|t| &t.stage) {
        None => return,
        Some(Stage::Held(held)) => (Some(held.clone()), err.stage().unwrap_or(NAME)),
        Some(Stage::Running(attempt, pipeline)) => {
            let attempt = attempt.clone();
            let stage = err.stage().unwrap_or(pipeline.name);
            (
                note_failure(&state.args.ctx.pool, &attempt, &reason).await,
                stage,
            )
        }
    };
    let Some(held) = held else {
        return lost(myself.get_cell(), state, job_id).await;
    };
    let Some(tracked) = state.jobs.get_mut(&job_id) else {
        return;
    };
    let decision = match err.is_retriable() {
        true => tracked.policy.on_failure(Instant::now()),
        false => Decision::GiveUp,
    };
    tracked.stage = Stage::Held(held.clone());
    match decision {
        Decision::Restart { after } => {
            JobRestarted {
                stage,
                job_id,
                attempt: held.job().attempts,
                backoff: after,
                reason: &reason,
            }
            .emit();
            myself.send_after(after, move || Msg::Attempt(job_id));
        }
        Decision::GiveUp => {
            let given_up = async {
                let mut c = client(&state.args.ctx.pool).await?;
                Ok::<_, JobError>(held.give_up(&mut c, &reason).await?)
            };
            match given_up.await {
                Ok(job) => ended(myself, state, job).await,
                Err(JobError::Lost(_)) => lost(myself.get_cell(), state, job_id).await,
                Err(e) => {
                    tracing::error!(job_id = %job_id, error = %e, "Could not give the job up; its lease runs out and it is tried again.");
                    reply(myself, state, job_id, Err(e.to_string()))
                }
            }
        }
    }
}

/// Forgets the job and answers its caller, if one waits, with `result`.
fn reply(myself: &ActorRef<Msg>, state: &mut State, job_id: Uuid, result: JobResult) {
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
    if let Some(reply) = tracked.reply {
        let _ = reply.send(result);
    }
}
