//! `ferry export users`: one run of seed 000's users export, now. With
//! `--now` its groups' exports run in this process and their messages are
//! shown; without, they are queued for the `ferry serve` instances.

use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::Utc;
use clap::Subcommand;
use ferry_actors::job::{lease_owner, JobStatus};
use ferry_actors::kinds::Work;
use ferry_actors::pg;
use ferry_actors::users::schedule::{self, Claim, Only, MANUAL};
use uuid::Uuid;

use crate::config::Config;

#[derive(Subcommand)]
pub enum ExportCommand {
    /// Run the scheduled users export once (seed 000): every enabled
    /// matching group's unsent users, or one domain's, or one group's.
    Users {
        #[arg(long)]
        domain: Option<Uuid>,
        /// One group (with --domain).
        #[arg(long, requires = "domain")]
        group: Option<String>,
        /// Run the exports here and wait for them; otherwise they are
        /// queued for `ferry serve`.
        #[arg(long)]
        now: bool,
    },
}

pub async fn command(mut config: Config, command: ExportCommand) -> Result<ExitCode> {
    let ExportCommand::Users { domain, group, now } = command;
    if now {
        super::quiet_logs(&mut config);
    }
    crate::telemetry::init(&config.log);
    super::migrate(&config).await?;
    let settings = crate::service::run_settings(&config);
    let only = Only {
        domain,
        group_key: group,
    };
    let owner = lease_owner("export-users");
    let claim = match now {
        true => Claim::Held {
            owner: &owner,
            lease: config.jobs.lease,
        },
        false => Claim::Queue,
    };
    let mut client = pg::connect(&config.database).await?;
    let run = schedule::start_run::<Work>(&mut client, &settings, MANUAL, Utc::now(), &only, claim)
        .await?
        .context("a run at this very time exists already")?;
    let named = run.jobs.len() + run.overlapped.len() + run.empty.len() + run.invalid.len();
    if let (Some(group), 0) = (&only.group_key, named) {
        anyhow::bail!("no enabled group `{group}` in that domain (see `ferry groups list`)");
    }
    println!("run {} at {}", run.id, run.fire_at);
    for (what, groups) in [
        ("still running from before", &run.overlapped),
        ("no new users", &run.empty),
        ("unknown group type", &run.invalid),
    ] {
        for g in groups {
            println!("  skipped {g}: {what}");
        }
    }
    if !now {
        println!(
            "  {} exports queued for ferry serve: {:?}",
            run.jobs.len(),
            run.jobs
        );
        return Ok(ExitCode::SUCCESS);
    }
    let pool = pg::pool(&config.database)?;
    let ended = super::run_held(&config, pool, owner, run.held, None).await?;
    let mut ok = true;
    for job in &ended {
        match job {
            Ok(job) => {
                ok &= job.status == JobStatus::Completed;
                println!(
                    "  export {}: {}{}",
                    job.id,
                    job.status.as_str(),
                    job.failure_reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                );
            }
            Err(e) => {
                ok = false;
                println!("  {e:#}");
            }
        }
    }
    let messages = client
        .query(
            "SELECT topic, payload FROM status_outbox WHERE job_id = ANY($1) ORDER BY id",
            &[&run.jobs],
        )
        .await?;
    for m in &messages {
        let payload: String = m.get(1);
        println!(
            "  message on {}: {}",
            m.get::<_, String>(0),
            shorten(&payload, 400)
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// At most `max` characters of `s`.
fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
