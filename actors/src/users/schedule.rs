//! The users export's schedule (seed 000) and its runs: when ticks fire,
//! and what one tick starts.
//!
//! A tick is a row of `export_runs`, unique per schedule and fire time: the
//! instance whose insert makes it starts one export job per enabled group,
//! in the same transaction; every other instance finds the row and does
//! nothing, however late it comes. A group whose previous export is still
//! waiting or running is not started again (seed 000: "Scheduler triggers
//! regardless of previous run completion").

use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio_postgres::Client;
use uuid::Uuid;

use super::{GroupExport, GroupType, NewUsersExport, Planned};
use crate::error::StoreError;
use crate::export::object::Catalog;
use crate::job::lifecycle::{self, Held};
use crate::job::{JobStatus, Kind, NewJob};
use crate::pg::groups::{self, MatchingGroup};
use crate::settings::{CatchUp, ExportSettings, StorageSettings, UsersExportSettings};
use crate::telemetry::{UsersGroupScheduled, UsersRunStarted};

/// The schedule's name in `export_runs`.
pub const USERS_SCHEDULE: &str = "users";
/// Runs asked for by hand (`ferry export users --now`).
pub const MANUAL: &str = "manual";

/// When the users export fires: a cron expression read in a time zone.
#[derive(Debug, Clone)]
pub struct Ticks {
    cron: cron::Schedule,
    tz: Tz,
}

impl Ticks {
    /// The schedule of `[exports.users]`; a bad expression or zone is an
    /// error naming the key.
    pub fn new(settings: &UsersExportSettings) -> Result<Self, String> {
        let cron = cron::Schedule::from_str(&settings.schedule).map_err(|e| {
            format!(
                "exports.users.schedule `{}`: {e} (sec min hour day month weekday)",
                settings.schedule
            )
        })?;
        let tz = Tz::from_str(&settings.timezone).map_err(|_| {
            format!(
                "exports.users.timezone `{}` is not an IANA time zone",
                settings.timezone
            )
        })?;
        Ok(Self { cron, tz })
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first tick after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .after(&t.with_timezone(&self.tz))
            .next()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The last tick in `(after, now]`, if any (a tick missed while no
    /// instance ran).
    pub fn latest_between(
        &self,
        after: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        self.cron
            .after(&after.with_timezone(&self.tz))
            .take_while(|d| d.with_timezone(&Utc) <= now)
            .last()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The next `n` ticks after `t`, in the schedule's zone.
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Tz>> {
        self.cron
            .after(&t.with_timezone(&self.tz))
            .take(n)
            .collect()
    }
}

/// What the scheduler does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Run this tick now: one missed while no instance ran, or while this
    /// one was busy with the last (`catch_up = "latest"`).
    Fire(DateTime<Utc>),
    /// Wait for this tick.
    Wait(DateTime<Utc>),
    /// The schedule has no tick to come.
    Idle,
}

/// What comes after the schedule last ran at `last` (`None`: never; a new
/// install does not fire at once), at `now`: the latest tick missed since,
/// if catching up, else the next one.
pub fn next(
    ticks: &Ticks,
    catch_up: CatchUp,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Next {
    let missed = last.and_then(|last| ticks.latest_between(last, now));
    match missed {
        Some(at) if catch_up == CatchUp::Latest => Next::Fire(at),
        _ => match ticks.next_after(last.map_or(now, |last| last.max(now))) {
            Some(at) => Next::Wait(at),
            None => Next::Idle,
        },
    }
}

/// Whether a tick at `at` whose run could not be started is tried again
/// at `retry_at`: only before the next tick, which would run it anyway.
pub fn retries(ticks: &Ticks, at: DateTime<Utc>, retry_at: DateTime<Utc>) -> bool {
    ticks.next_after(at).is_some_and(|next| retry_at < next)
}

/// What a run needs to plan its groups' exports.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub users: UsersExportSettings,
    pub exports: ExportSettings,
    pub storage: StorageSettings,
    /// The broker's limit (`kafka.max_message_bytes`).
    pub max_message_bytes: usize,
}

/// Which groups a run takes.
#[derive(Debug, Clone, Default)]
pub struct Only {
    pub domain: Option<Uuid>,
    pub group_key: Option<String>,
}

/// How the run's jobs are created: PENDING for any instance to claim, or
/// already held by this process (`ferry export users --now`).
pub enum Claim<'a> {
    Queue,
    Held { owner: &'a str, lease: Duration },
}

/// What one tick started.
#[derive(Debug)]
pub struct Run<K> {
    pub id: Uuid,
    pub fire_at: String,
    /// The jobs (held ones for [`Claim::Held`]).
    pub jobs: Vec<Uuid>,
    pub held: Vec<Held<K>>,
    /// Groups not started: their previous export still runs …
    pub overlapped: Vec<String>,
    /// … they had no new users …
    pub empty: Vec<String>,
    /// … or a type ferry does not know.
    pub invalid: Vec<String>,
}

/// Starts the tick of `schedule` at `fire_at`, unless an instance did.
/// `None`: the tick has a run already.
pub async fn start_run<K: Kind>(
    c: &mut Client,
    settings: &RunSettings,
    schedule: &str,
    fire_at: DateTime<Utc>,
    only: &Only,
    claim: Claim<'_>,
) -> Result<Option<Run<K>>, StoreError> {
    let clock = Instant::now();
    let tx = c.transaction().await?;
    let id = Uuid::now_v7();
    let made = tx
        .query_opt(
            "INSERT INTO export_runs (id, schedule, fire_at) VALUES ($1, $2, $3::text::timestamptz)
             ON CONFLICT (schedule, fire_at) DO NOTHING
             RETURNING to_char(fire_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
            &[&id, &schedule, &fire_at.to_rfc3339()],
        )
        .await?;
    let Some(made) = made else {
        return Ok(None);
    };
    let mut run = Run {
        id,
        fire_at: made.get(0),
        jobs: Vec::new(),
        held: Vec::new(),
        overlapped: Vec::new(),
        empty: Vec::new(),
        invalid: Vec::new(),
    };
    let catalog =
        Catalog::load(&tx, &settings.exports)
            .await
            .map_err(|e| StoreError::Unreadable {
                job: id,
                column: "export objects",
                reason: e.to_string(),
            })?;
    let planned = Planned {
        catalog: &catalog,
        users: &settings.users,
        exports: &settings.exports,
        storage: &settings.storage,
        max_message_bytes: settings.max_message_bytes,
    };
    let groups: Vec<MatchingGroup> = groups::list(&tx, only.domain)
        .await?
        .into_iter()
        .filter(|g| g.enabled && only.group_key.as_ref().is_none_or(|k| *k == g.group_key))
        .collect();
    for group in groups {
        let name = format!("{}/{}", group.domain_id, group.group_key);
        let Some(group_type) = group.kind() else {
            tracing::warn!(run_id = %id, domain_id = %group.domain_id, group = %group.group_key,
                group_type = %group.group_type, "Unknown group type; the group is skipped.");
            UsersGroupScheduled {
                group_type: "",
                outcome: "invalid",
            }
            .emit();
            run.invalid.push(name);
            continue;
        };
        if !group.consistent() {
            tracing::warn!(run_id = %id, domain_id = %group.domain_id, group = %group.group_key,
                group_id = %group.group_id, key_uuid = %crate::job::group_uuid(&group.group_key),
                "The group's row names a group_id that is not its key's UUID; its users are read by the stored group_id.");
        }
        let outcome = if still_running(&tx, &group).await? {
            tracing::warn!(run_id = %id, domain_id = %group.domain_id, group = %group.group_key,
                "The group's previous export still runs; not started again for this tick.");
            run.overlapped.push(name);
            "overlapped"
        } else if group.unsent == 0 {
            tracing::info!(run_id = %id, domain_id = %group.domain_id, group = %group.group_key,
                "No new users; nothing to send.");
            run.empty.push(name);
            "empty"
        } else {
            let columns = match group_type {
                GroupType::CostBased => settings.users.columns.clone(),
                GroupType::NonCostBased => Vec::new(),
            };
            let export = GroupExport {
                domain_id: group.domain_id,
                group_key: &group.group_key,
                group_id: group.group_id,
                group_type,
                run_id: id,
                columns,
            };
            let job_id = Uuid::now_v7();
            let spec = match export.spec(&planned, job_id) {
                Ok(spec) => spec,
                Err(e) => {
                    tracing::warn!(run_id = %id, domain_id = %group.domain_id, group = %group.group_key,
                        error = %e, "The group's export cannot be planned; the group is skipped.");
                    UsersGroupScheduled {
                        group_type: group_type.as_str(),
                        outcome: "invalid",
                    }
                    .emit();
                    run.invalid.push(name);
                    continue;
                }
            };
            let new: NewUsersExport = NewJob {
                id: job_id,
                ..NewJob::new(group.domain_id, spec)
            }
            .from_origin(serde_json::json!({
                "schedule": schedule, "runId": id, "fireAt": run.fire_at,
            }));
            // A COST_BASED group's message is its job's status event.
            let new = match group_type {
                GroupType::CostBased => new.reporting_to(settings.users.topic.clone()),
                GroupType::NonCostBased => new,
            };
            match claim {
                Claim::Queue => {
                    let created = lifecycle::create::<K, _>(&tx, &new).await?;
                    run.jobs.push(created.job.id);
                }
                Claim::Held { owner, lease } => {
                    let held = lifecycle::create_held(&tx, &new, owner, lease).await?;
                    run.jobs.push(held.job().id);
                    run.held.push(held);
                }
            }
            tracing::info!(run_id = %id, domain_id = %group.domain_id, group = %group.group_key,
                group_type = group_type.as_str(), "Users export started.");
            "started"
        };
        UsersGroupScheduled {
            group_type: group_type.as_str(),
            outcome,
        }
        .emit();
    }
    tx.execute(
        "UPDATE export_runs SET started = $2, overlapped = $3, invalid = $4 WHERE id = $1",
        &[
            &id,
            &(run.jobs.len() as i32),
            &(run.overlapped.len() as i32),
            &(run.invalid.len() as i32),
        ],
    )
    .await?;
    tx.commit().await?;
    UsersRunStarted {
        elapsed: clock.elapsed(),
    }
    .emit();
    tracing::info!(run_id = %id, schedule, fire_at = %run.fire_at, started = run.jobs.len(),
        overlapped = run.overlapped.len(), empty = run.empty.len(), invalid = run.invalid.len(),
        "Users export run started.");
    Ok(Some(run))
}

/// Whether the group's last export is still waiting or running.
async fn still_running(
    c: &impl tokio_postgres::GenericClient,
    group: &MatchingGroup,
) -> Result<bool, tokio_postgres::Error> {
    let sql = format!(
        "SELECT EXISTS (SELECT FROM jobs
         WHERE kind IN {kinds} AND status IN {active} AND domain_id = $1
           AND spec -> 'users' ->> 'group_key' = $2)",
        kinds = super::sql_list(),
        active = JobStatus::sql_list(&JobStatus::ACTIVE)
    );
    let row = c
        .query_one(&sql, &[&group.domain_id, &group.group_key])
        .await?;
    Ok(row.get(0))
}

/// The last tick a schedule ran, if any.
pub async fn last_fire(
    c: &impl tokio_postgres::GenericClient,
    schedule: &str,
) -> Result<Option<DateTime<Utc>>, tokio_postgres::Error> {
    let row = c
        .query_one(
            "SELECT to_char(max(fire_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
             FROM export_runs WHERE schedule = $1",
            &[&schedule],
        )
        .await?;
    Ok(row
        .get::<_, Option<String>>(0)
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc)))
}

/// A run, as `ferry schedules` shows it.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub id: Uuid,
    pub fire_at: String,
    pub started: i32,
    pub overlapped: i32,
    pub invalid: i32,
}

/// The schedule's latest run.
pub async fn last_run(
    c: &impl tokio_postgres::GenericClient,
    schedule: &str,
) -> Result<Option<RunSummary>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT id, to_char(fire_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    started, overlapped, invalid
             FROM export_runs WHERE schedule = $1 ORDER BY fire_at DESC LIMIT 1",
            &[&schedule],
        )
        .await?;
    Ok(row.map(|r| RunSummary {
        id: r.get(0),
        fire_at: r.get(1),
        started: r.get(2),
        overlapped: r.get(3),
        invalid: r.get(4),
    }))
}

/// A group's latest users export.
#[derive(Debug, Clone)]
pub struct GroupLast {
    pub domain_id: Uuid,
    pub group_key: String,
    pub status: String,
    pub rows: i64,
    pub finished_at: Option<String>,
}

/// Each group's latest users export, by domain and group.
pub async fn last_exports(
    c: &impl tokio_postgres::GenericClient,
) -> Result<Vec<GroupLast>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT DISTINCT ON (domain_id, spec -> 'users' ->> 'group_key')
                domain_id, spec -> 'users' ->> 'group_key', status, processed_rows,
                to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
         FROM jobs WHERE kind IN {kinds}
         ORDER BY domain_id, spec -> 'users' ->> 'group_key', created_at DESC",
        kinds = super::sql_list()
    );
    let rows = c.query(&sql, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| GroupLast {
            domain_id: r.get(0),
            group_key: r.get(1),
            status: r.get(2),
            rows: r.get(3),
            finished_at: r.get(4),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_hour() -> Ticks {
        Ticks::new(&UsersExportSettings {
            schedule: "0 0 * * * *".into(),
            timezone: "UTC".into(),
            ..UsersExportSettings::default()
        })
        .unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_missed_tick_runs_once_and_then_the_next_is_awaited() {
        let t = every_hour();
        let now = at("2026-12-02T10:30:00Z");
        assert_eq!(
            next(&t, CatchUp::Latest, None, now),
            Next::Wait(at("2026-12-02T11:00:00Z")),
            "a schedule that never ran has missed nothing"
        );
        let last = Some(at("2026-12-02T07:00:00Z"));
        assert_eq!(
            next(&t, CatchUp::Latest, last, now),
            Next::Fire(at("2026-12-02T10:00:00Z")),
            "the latest missed tick, not each of them"
        );
        assert_eq!(
            next(&t, CatchUp::None, last, now),
            Next::Wait(at("2026-12-02T11:00:00Z"))
        );
        // The tick that just ran, on time: wait for the next.
        let ran = Some(at("2026-12-02T10:00:00Z"));
        assert_eq!(
            next(&t, CatchUp::Latest, ran, at("2026-12-02T10:00:02Z")),
            Next::Wait(at("2026-12-02T11:00:00Z"))
        );
        // A run that took past the next tick: that one runs at once.
        assert_eq!(
            next(&t, CatchUp::Latest, ran, at("2026-12-02T11:00:05Z")),
            Next::Fire(at("2026-12-02T11:00:00Z"))
        );
    }

    #[test]
    fn a_tick_that_could_not_start_is_retried_until_the_next_one() {
        let t = every_hour();
        let tick = at("2026-12-02T10:00:00Z");
        assert!(retries(&t, tick, at("2026-12-02T10:00:05Z")));
        assert!(!retries(&t, tick, at("2026-12-02T11:00:00Z")));
    }
}
