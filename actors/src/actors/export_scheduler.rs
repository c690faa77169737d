//! ExportScheduler: fires the users export (seed 000) at each tick of
//! `[exports.users] schedule`. Every `ferry serve` runs one; each tick runs
//! once across all of them (see [`crate::export::schedule`]), and its
//! groups' exports are jobs of the queue, claimed by any instance.
//!
//! A tick missed while no instance ran is run once when one starts
//! (`catch_up = "latest"`), and so is one that passed while this instance
//! was busy with the last. A tick whose run cannot be started (the
//! database is away) is tried again until it is, or until the next tick.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::export::schedule::{self, Claim, Only, RunSettings, Ticks, USERS_SCHEDULE};
use crate::pg;
use crate::settings::{CatchUp, DatabaseSettings};

pub const NAME: &str = "export_scheduler";

/// How soon a tick whose run could not be started is tried again.
const RETRY: Duration = Duration::from_secs(5);

pub enum Msg {
    /// Catches up on a missed tick, then waits for the next.
    Start,
    Fire(DateTime<Utc>),
}

#[derive(Clone)]
pub struct Args {
    pub database: DatabaseSettings,
    pub ticks: Ticks,
    pub run: RunSettings,
}

pub struct State {
    args: Args,
}

pub type ExportSchedulerRef = ActorRef<Msg>;

pub struct ExportScheduler;

impl Actor for ExportScheduler {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        myself.cast(Msg::Start)?;
        Ok(State { args })
    }

    async fn handle(
        &self,
        myself: ActorRef<Msg>,
        msg: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let args = &state.args;
        let now = Utc::now();
        match msg {
            Msg::Start => {
                if args.run.users.catch_up == CatchUp::Latest {
                    match missed(args, now).await {
                        Ok(Some(at)) => {
                            tracing::info!(fire_at = %at, "Running a users export tick missed while no instance ran.");
                            if fire(&myself, args, at).await {
                                return Ok(());
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "Could not look for missed ticks; trying again.");
                            myself.send_after(RETRY, || Msg::Start);
                            return Ok(());
                        }
                    }
                }
                wait_for_next(&myself, args, now);
            }
            Msg::Fire(at) => {
                if fire(&myself, args, at).await {
                    return Ok(());
                }
                // A tick that passed while this one ran (a slow database)
                // is not skipped: the latest of them fires now.
                let missed = args.ticks.latest_between(at, Utc::now());
                match missed.filter(|_| args.run.users.catch_up == CatchUp::Latest) {
                    Some(missed) => myself.cast(Msg::Fire(missed))?,
                    None => wait_for_next(&myself, args, at.max(now)),
                }
            }
        }
        Ok(())
    }
}

/// The latest tick since the schedule last ran, if one was missed. A
/// schedule that never ran has missed nothing (a new install does not
/// fire at once).
async fn missed(args: &Args, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, String> {
    let client = pg::connect(&args.database)
        .await
        .map_err(|e| e.to_string())?;
    let last = schedule::last_fire(&client, USERS_SCHEDULE)
        .await
        .map_err(|e| crate::error::chain(&e))?;
    Ok(last.and_then(|last| args.ticks.latest_between(last, now)))
}

/// Starts the tick's run, unless another instance has. True: it could not
/// be started and is tried again shortly (that `Fire` then waits for the
/// next tick).
async fn fire(myself: &ActorRef<Msg>, args: &Args, at: DateTime<Utc>) -> bool {
    let started = async {
        let mut client = pg::connect(&args.database)
            .await
            .map_err(|e| e.to_string())?;
        schedule::start_run(
            &mut client,
            &args.run,
            USERS_SCHEDULE,
            at,
            &Only::default(),
            Claim::Queue,
        )
        .await
        .map_err(|e| e.to_string())
    }
    .await;
    let e = match started {
        Ok(Some(_)) => return false,
        Ok(None) => {
            tracing::debug!(fire_at = %at, "Another instance runs this tick.");
            return false;
        }
        Err(e) => e,
    };
    let retry_at = Utc::now() + chrono::Duration::from_std(RETRY).unwrap_or_default();
    if args
        .ticks
        .next_after(at)
        .is_some_and(|next| retry_at < next)
    {
        tracing::warn!(fire_at = %at, error = %e, "Could not start the users export run; trying again.");
        myself.send_after(RETRY, move || Msg::Fire(at));
        return true;
    }
    tracing::error!(fire_at = %at, error = %e, "Could not start the users export run before the next tick; it is skipped.");
    false
}

/// Sends `Fire` for the first tick after `after`.
fn wait_for_next(myself: &ActorRef<Msg>, args: &Args, after: DateTime<Utc>) {
    let Some(next) = args.ticks.next_after(after) else {
        tracing::warn!("The users export schedule has no next tick.");
        return;
    };
    let wait = (next - Utc::now()).to_std().unwrap_or_default();
    tracing::debug!(fire_at = %next, wait_ms = wait.as_millis() as u64, "Next users export tick.");
    myself.send_after(wait, move || Msg::Fire(next));
}
