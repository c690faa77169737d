//! JobSweeper: deletes finished jobs past `jobs.retention`, with their saved
//! rejects and sent status events, a bounded batch at a time, every
//! `jobs.sweep_interval`; deletes the files of exports past
//! `exports.retention` (the export stays, saying its files expired); and
//! does again what a job's end left undone (a failed export's files, when
//! the store was away at its end). Every `ferry serve` runs one; a
//! transaction-level advisory lock lets one sweep at a time, and the others
//! skip that round.

use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr};

use crate::export::sink::{discard, FileSink};
use crate::export::store as exports;
use crate::job::lifecycle;
use crate::kinds::{self, Work};
use crate::pg;
use crate::pipeline::Ctx;
use crate::telemetry::JobsSwept;

pub const NAME: &str = "job_sweeper";

/// Jobs deleted per statement: short transactions, however much is due.
const BATCH: i64 = 1000;

pub enum Msg {
    Sweep,
}

#[derive(Clone)]
pub struct Args {
    /// What a job's end may need (its kind's `on_end`), and the settings.
    pub ctx: Ctx,
}

pub struct State {
    args: Args,
}

pub type JobSweeperRef = ActorRef<Msg>;

/// Spawns it under its name (others find it by name), linked to the
/// service's supervisor.
pub async fn spawn_linked(supervisor: ActorCell, args: Args) -> Result<JobSweeperRef, SpawnErr> {
    let name = Some(NAME.to_string());
    let (actor, _) = Actor::spawn_linked(name, JobSweeper, args, supervisor).await?;
    Ok(actor)
}

pub struct JobSweeper;

impl Actor for JobSweeper {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        myself.send_interval(args.ctx.jobs.sweep_interval, || Msg::Sweep);
        myself.cast(Msg::Sweep)?;
        Ok(State { args })
    }

    async fn handle(
        &self,
        _: ActorRef<Msg>,
        Msg::Sweep: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        if let Err(e) = sweep(&state.args).await {
            // The next round tries again.
            tracing::warn!(error = %e, "Sweeping finished jobs failed.");
        }
        if let Err(e) = expire_exports(&state.args).await {
            tracing::warn!(error = %e, "Deleting expired export files failed.");
        }
        if let Err(e) = after_ends(&state.args).await {
            tracing::warn!(error = %e, "Doing what job ends left undone failed.");
        }
        Ok(())
    }
}

async fn sweep(args: &Args) -> Result<(), String> {
    let jobs = &args.ctx.jobs;
    let mut client = pg::connect(&args.ctx.database)
        .await
        .map_err(|e| e.to_string())?;
    let mut deleted = 0;
    loop {
        let swept = lifecycle::sweep(&mut client, jobs.retention, BATCH)
            .await
            .map_err(|e| crate::error::chain(&e))?;
        // `None`: another instance sweeps this round.
        let Some(n) = swept else { break };
        deleted += n;
        if n < BATCH as u64 {
            break;
        }
        // Let other work at the table in between batches.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    JobsSwept {
        jobs: deleted,
        retention: jobs.retention,
    }
    .emit();
    Ok(())
}

/// Deletes the files of exports that ended more than `exports.retention`
/// ago; each export then says its files expired.
async fn expire_exports(args: &Args) -> Result<(), String> {
    let ctx = &args.ctx;
    let client = pg::connect(&ctx.database)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let due = exports::past_retention::<Work>(&client, ctx.exports.retention, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        for job in &due {
            let Some(export) = job.work.export() else {
                continue;
            };
            let sink = FileSink::for_spec(&export.spec, &ctx.storage, &ctx.exports, &ctx.retry);
            discard(&sink, &export.checkpoint)
                .await
                .map_err(|e| e.to_string())?;
            exports::expired(&client, job.id)
                .await
                .map_err(|e| crate::error::chain(&e))?;
            tracing::info!(job_id = %job.id, files = export.checkpoint.files.len(), "Deleted the files of an export past its retention.");
        }
        if (due.len() as i64) < BATCH {
            return Ok(());
        }
    }
}

/// What ended jobs' ends left to do and could not (their kind's
/// `on_end` failed, or the process stopped first), tried again.
async fn after_ends(args: &Args) -> Result<(), String> {
    let ctx = &args.ctx;
    let client = pg::connect(&ctx.database)
        .await
        .map_err(|e| e.to_string())?;
    let due = lifecycle::after_end_due::<Work>(&client, BATCH)
        .await
        .map_err(|e| e.to_string())?;
    for job in &due {
        if let Err(e) = kinds::after_end(job, ctx, &client).await {
            tracing::warn!(job_id = %job.id, error = %e, "What the job's end left to do failed again.");
        }
    }
    Ok(())
}
