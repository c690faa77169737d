//! `ferry jobs list` and `ferry jobs show ID`: the jobs table, read.

use std::io::Write;

use anyhow::{Context, Result};
use ferry_actors::job::{Job, JobStatus};
use ferry_actors::pg::{self, jobs};
use ferry_actors::settings::DatabaseSettings;
use uuid::Uuid;

use crate::report::grouped;

pub async fn list(
    database: &DatabaseSettings,
    status: Option<JobStatus>,
    limit: i64,
    json: bool,
    out: &mut impl Write,
) -> Result<()> {
    let client = pg::connect(database).await?;
    let rows = jobs::list(&client, status, limit)
        .await
        .context("listing jobs")?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &rows)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<36}  {:<6}  {:<9}  {:>10}  {:>10}  {:>8}  {:<19}  source",
        "id", "kind", "status", "rows", "loaded", "rejected", "created"
    )?;
    for j in rows {
        writeln!(
            out,
            "{:<36}  {:<6}  {:<9}  {:>10}  {:>10}  {:>8}  {:<19}  {}",
            j.id,
            j.kind,
            j.status.as_str(),
            grouped(j.total_rows),
            grouped(j.processed_rows),
            grouped(j.rejected_rows),
            j.created_at.get(..19).unwrap_or(&j.created_at),
            j.source
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
    let Some(j) = jobs::get(&client, id).await.context("reading the job")? else {
        return Ok(None);
    };
    if json {
        serde_json::to_writer_pretty(&mut *out, &j)?;
        writeln!(out)?;
    } else {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        writeln!(out, "job        {}", j.id)?;
        writeln!(out, "kind       {}", j.kind)?;
        writeln!(out, "status     {}", j.status.as_str())?;
        writeln!(out, "source     {}", j.source)?;
        writeln!(out, "domain     {}", j.domain_id)?;
        writeln!(out, "group      {} ({})", j.group_key, j.group_id)?;
        writeln!(
            out,
            "rows       {} read, {} inserted, {} updated, {} duplicates, {} rejected",
            grouped(j.total_rows),
            grouped(j.inserted_rows),
            grouped(j.updated_rows),
            grouped(j.duplicate_rows),
            grouped(j.rejected_rows)
        )?;
        writeln!(out, "attempts   {}", j.attempts)?;
        writeln!(out, "created    {}", j.created_at)?;
        writeln!(out, "started    {}", opt(&j.started_at))?;
        writeln!(out, "finished   {}", opt(&j.finished_at))?;
        writeln!(out, "rejects    {}", opt(&j.rejects_path))?;
        writeln!(out, "reason     {}", opt(&j.failure_reason))?;
    }
    Ok(Some(j))
}
