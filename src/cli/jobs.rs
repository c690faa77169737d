//! `ferry jobs list` and `ferry jobs show ID`: the jobs table, read.

use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use ferry_actors::job::{store, Family, JobStatus};
use ferry_actors::kinds::{Job, Work};
use ferry_actors::pg;
use ferry_actors::settings::DatabaseSettings;
use uuid::Uuid;

use crate::http::imports::ImportView;
use crate::report::grouped;

#[derive(Subcommand)]
pub enum JobsCommand {
    /// The newest jobs first.
    List {
        #[arg(long, value_parser = parse_status)]
        status: Option<JobStatus>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// One job, in full.
    Show {
        id: Uuid,
        #[arg(long)]
        json: bool,
    },
}

fn parse_status(s: &str) -> Result<JobStatus, String> {
    JobStatus::parse(&s.to_uppercase()).ok_or_else(|| format!("unknown status `{s}`"))
}

pub async fn command(database: &DatabaseSettings, command: JobsCommand) -> Result<()> {
    let mut out = std::io::stdout();
    match command {
        JobsCommand::List {
            status,
            limit,
            json,
        } => list(database, status, limit, json, &mut out).await,
        JobsCommand::Show { id, json } => match show(database, id, json, &mut out).await? {
            Some(_) => Ok(()),
            None => bail!("no job {id}"),
        },
    }
}

pub async fn list(
    database: &DatabaseSettings,
    status: Option<JobStatus>,
    limit: i64,
    json: bool,
    out: &mut impl Write,
) -> Result<()> {
    let client = pg::connect(database).await?;
    let rows = store::list::<Work>(&client, Some(Family::Imports), status, limit)
        .await
        .context("listing jobs")?;
    if json {
        let views: Vec<ImportView> = rows.iter().filter_map(ImportView::of).collect();
        serde_json::to_writer_pretty(&mut *out, &views)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<36}  {:<6}  {:<9}  {:>10}  {:>10}  {:>8}  {:<19}  source",
        "id", "kind", "status", "rows", "loaded", "rejected", "created"
    )?;
    for j in rows {
        let Work::Import(import) = &j.work else {
            continue;
        };
        writeln!(
            out,
            "{:<36}  {:<6}  {:<9}  {:>10}  {:>10}  {:>8}  {:<19}  {}",
            j.id,
            j.kind(),
            j.status.as_str(),
            grouped(import.counts.records),
            grouped(import.counts.loaded()),
            grouped(import.counts.rejected),
            j.created_at.get(..19).unwrap_or(&j.created_at),
            import.source
        )?;
    }
    Ok(())
}

/// Prints one job; `Ok(None)` when there is no such job.
pub async fn show(
    database: &DatabaseSettings,
    id: Uuid,
    json: bool,
    out: &mut impl Write,
) -> Result<Option<Job>> {
    let client = pg::connect(database).await?;
    let Some(j) = store::get::<Work>(&client, id)
        .await
        .context("reading the job")?
    else {
        return Ok(None);
    };
    let Work::Import(import) = &j.work else {
        anyhow::bail!("job {id} is an export: see `ferry exports show {id}`");
    };
    let counts = &import.counts;
    if json {
        serde_json::to_writer_pretty(&mut *out, &ImportView::of(&j))?;
        writeln!(out)?;
    } else {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        writeln!(out, "job        {}", j.id)?;
        writeln!(out, "kind       {}", j.kind())?;
        writeln!(out, "status     {}", j.status.as_str())?;
        writeln!(out, "source     {}", import.source)?;
        writeln!(out, "domain     {}", j.domain_id)?;
        writeln!(out, "group      {} ({})", import.group_key, import.group_id)?;
        writeln!(
            out,
            "rows       {} read, {} inserted, {} updated, {} duplicates, {} rejected",
            grouped(counts.records),
            grouped(counts.inserted),
            grouped(counts.updated),
            grouped(counts.duplicates),
            grouped(counts.rejected)
        )?;
        writeln!(out, "attempts   {}", j.attempts)?;
        writeln!(out, "created    {}", j.created_at)?;
        writeln!(out, "started    {}", opt(&j.started_at))?;
        writeln!(out, "finished   {}", opt(&j.finished_at))?;
        writeln!(out, "rejects    {}", opt(&import.rejects_path))?;
        writeln!(out, "reason     {}", opt(&j.failure_reason))?;
    }
    Ok(Some(j))
}
