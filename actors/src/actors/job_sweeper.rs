//! JobSweeper: deletes finished jobs past `jobs.retention`, with their saved
//! rejects and sent status events, a bounded batch at a time, every
//! `jobs.sweep_interval`; and the files of exports past
//! `exports.retention` (the export stays, saying its files expired). Every `ferry serve` runs one; a transaction-level
//! advisory lock lets one sweep at a time, and the others skip that round.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::export::sink::Sink;
use crate::job::{lifecycle, Work};
use crate::pg;
use crate::settings::{
    DatabaseSettings, ExportSettings, JobSettings, RetrySettings, StorageSettings,
};
use crate::telemetry::JobsSwept;

pub const NAME: &str = "job_sweeper";

/// Jobs deleted per statement: short transactions, however much is due.
const BATCH: i64 = 1000;

pub enum Msg {
    Sweep,
}

#[derive(Clone)]
pub struct Args {
    pub database: DatabaseSettings,
    pub jobs: JobSettings,
    pub exports: ExportSettings,
    pub storage: StorageSettings,
    pub retry: RetrySettings,
}

pub struct State {
    args: Args,
}

pub type JobSweeperRef = ActorRef<Msg>;

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
        myself.send_interval(args.jobs.sweep_interval, || Msg::Sweep);
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
        Ok(())
    }
}

async fn sweep(args: &Args) -> Result<(), String> {
    let mut client = pg::connect(&args.database)
        .await
        .map_err(|e| e.to_string())?;
    let mut deleted = 0;
    loop {
        let swept = lifecycle::sweep(&mut client, args.jobs.retention, BATCH)
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
        retention: args.jobs.retention,
    }
    .emit();
    Ok(())
}

/// Deletes the files of exports that ended more than `exports.retention`
/// ago; each export then says its files expired.
async fn expire_exports(args: &Args) -> Result<(), String> {
    let client = pg::connect(&args.database)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let due = lifecycle::exports_past_retention(&client, args.exports.retention, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        for job in &due {
            let Work::Export(export) = &job.work else {
                continue;
            };
            let sink = Sink::for_spec(&export.spec, &args.storage, &args.exports, &args.retry);
            sink.discard(&export.checkpoint)
                .await
                .map_err(|e| e.to_string())?;
            lifecycle::expired(&client, job.id)
                .await
                .map_err(|e| crate::error::chain(&e))?;
            tracing::info!(job_id = %job.id, files = export.checkpoint.files.len(), "Deleted the files of an export past its retention.");
        }
        if (due.len() as i64) < BATCH {
            return Ok(());
        }
    }
}
