//! ExportScheduler: fires the users export (seed 000) at each tick of
//! `[exports.users] schedule`. Every `ferry serve` runs one; each tick runs
//! once across all of them (see [`crate::users::schedule`]), and its
//! groups' exports are jobs of the queue, claimed by any instance.
//!
//! A tick missed while no instance ran is run once when one starts
//! (`catch_up = "latest"`), and so is one that passed while this instance
//! was busy with the last ([`schedule::next`] decides). A tick whose run
//! cannot be started (the database is away) is tried again until it is,
//! or until the next tick.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr};

use crate::pg;
use crate::settings::{CatchUp, DatabaseSettings};
use crate::users::schedule::{self, Claim, Next, Only, RunSettings, Ticks, USERS_SCHEDULE};
use crate::users::Users;

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

pub async fn spawn_linked(
    supervisor: ActorCell,
    args: Args,
) -> Result<ExportSchedulerRef, SpawnErr> {
    let name = Some(NAME.to_string());
    let (scheduler, _) = Actor::spawn_linked(name, ExportScheduler, args, supervisor).await?;
    Ok(scheduler)
}

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
        let catch_up = args.run.users.catch_up;
        let last = match msg {
            // Without catching up, what ran before does not matter.
            Msg::Start if catch_up == CatchUp::None => None,
            Msg::Start => match last_fire(args).await {
                Ok(last) => last,
                Err(e) => {
                    tracing::warn!(error = %e, "Could not look for missed ticks; trying again.");
                    myself.send_after(RETRY, || Msg::Start);
                    return Ok(());
                }
            },
            Msg::Fire(at) => {
                if fire(&myself, args, at).await {
                    return Ok(());
                }
                Some(at)
            }
        };
        match schedule::next(&args.ticks, catch_up, last, Utc::now()) {
            Next::Fire(at) => {
                tracing::info!(fire_at = %at, "Running a users export tick that was missed.");
                myself.cast(Msg::Fire(at))?;
            }
            Next::Wait(at) => {
                let wait = (at - Utc::now()).to_std().unwrap_or_default();
                tracing::debug!(fire_at = %at, wait_ms = wait.as_millis() as u64, "Next users export tick.");
                myself.send_after(wait, move || Msg::Fire(at));
            }
            Next::Idle => tracing::warn!("The users export schedule has no next tick."),
        }
        Ok(())
    }
}

/// The last tick the schedule ran.
async fn last_fire(args: &Args) -> Result<Option<DateTime<Utc>>, String> {
    let client = pg::connect(&args.database)
        .await
        .map_err(|e| e.to_string())?;
    schedule::last_fire(&client, USERS_SCHEDULE)
        .await
        .map_err(|e| crate::error::chain(&e))
}

/// Starts the tick's run, unless another instance has. True: it could not
/// be started and is tried again shortly (that `Fire` then decides what
/// comes next).
async fn fire(myself: &ActorRef<Msg>, args: &Args, at: DateTime<Utc>) -> bool {
    let started = async {
        let mut client = pg::connect(&args.database)
            .await
            .map_err(|e| e.to_string())?;
        schedule::start_run::<Users>(
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
    if schedule::retries(&args.ticks, at, retry_at) {
        tracing::warn!(fire_at = %at, error = %e, "Could not start the users export run; trying again.");
        myself.send_after(RETRY, move || Msg::Fire(at));
        return true;
    }
    tracing::error!(fire_at = %at, error = %e, "Could not start the users export run before the next tick; it is skipped.");
    false
}
