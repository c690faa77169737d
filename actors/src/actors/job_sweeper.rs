//! JobSweeper: deletes finished jobs past `jobs.retention`, with their saved
//! rejects and sent status events, a bounded batch at a time, every
//! `jobs.sweep_interval`. Every `ferry serve` runs one; a transaction-level
//! advisory lock lets one sweep at a time, and the others skip that round.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::job::lifecycle;
use crate::pg;
use crate::settings::{DatabaseSettings, JobSettings};
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
