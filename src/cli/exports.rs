//! `ferry exports list` and `ferry exports show ID`: the export jobs, read.

use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use ferry_actors::job::{store, Family, JobStatus};
use ferry_actors::kinds::Work;
use ferry_actors::pg;
use ferry_actors::settings::DatabaseSettings;
use uuid::Uuid;

use crate::http::exports::ExportView;
use crate::report::grouped;

#[derive(Subcommand)]
pub enum ExportsCommand {
    /// The newest exports first.
    List {
        #[arg(long, value_parser = parse_status)]
        status: Option<JobStatus>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// One export, in full.
    Show {
        id: Uuid,
        #[arg(long)]
        json: bool,
    },
}

fn parse_status(s: &str) -> Result<JobStatus, String> {
    JobStatus::parse(&s.to_uppercase()).ok_or_else(|| format!("unknown status `{s}`"))
}

pub async fn command(database: &DatabaseSettings, command: ExportsCommand) -> Result<()> {
    let client = pg::connect(database).await?;
    let mut out = std::io::stdout();
    match command {
        ExportsCommand::List {
            status,
            limit,
            json,
        } => {
            let jobs = store::list::<Work>(&client, Some(Family::Exports), status, limit)
                .await
                .context("listing exports")?;
            let views: Vec<ExportView> = jobs.iter().filter_map(ExportView::of).collect();
            if json {
                serde_json::to_writer_pretty(&mut out, &views)?;
                writeln!(out)?;
                return Ok(());
            }
            writeln!(
                out,
                "{:<36}  {:<11}  {:<18}  {:<7}  {:>12}  {:<19}",
                "id", "status", "object", "format", "rows", "created"
            )?;
            for v in views {
                writeln!(
                    out,
                    "{:<36}  {:<11}  {:<18}  {:<7}  {:>12}  {:<19}",
                    v.id,
                    v.status,
                    v.exported_object,
                    v.parameters.format.as_str(),
                    grouped(v.progress.rows),
                    v.created_at.get(..19).unwrap_or(&v.created_at),
                )?;
            }
            Ok(())
        }
        ExportsCommand::Show { id, json } => {
            let job = store::get::<Work>(&client, id)
                .await
                .context("reading the export")?;
            let Some(job) = job.filter(|j| j.work.export().is_some()) else {
                bail!("no export {id}");
            };
            let view = ExportView::of(&job).expect("an export");
            if json {
                serde_json::to_writer_pretty(&mut out, &view)?;
                writeln!(out)?;
                return Ok(());
            }
            let p = &view.parameters;
            writeln!(out, "export     {}", view.id)?;
            writeln!(out, "status     {}", view.status)?;
            writeln!(out, "object     {}", view.exported_object)?;
            writeln!(out, "fields     {}", p.fields.join(","))?;
            writeln!(out, "order      {}", p.order.as_deref().unwrap_or("-"))?;
            if let Some(f) = &p.filters {
                writeln!(out, "filters    {f}")?;
            }
            writeln!(
                out,
                "format     {} ({})",
                p.format.as_str(),
                p.compression.as_str()
            )?;
            writeln!(
                out,
                "progress   {} of {} rows",
                grouped(view.progress.rows),
                grouped(view.progress.total)
            )?;
            if let Some(r) = &view.result {
                for f in &r.files {
                    writeln!(
                        out,
                        "file       {}  ({} rows, {} bytes)",
                        f.location,
                        grouped(f.rows),
                        grouped(f.bytes)
                    )?;
                }
                writeln!(out, "data as of {}", r.data_as_of.as_deref().unwrap_or("-"))?;
            }
            if let Some(e) = &view.error {
                writeln!(out, "error      {}: {}", e.code, e.message)?;
            }
            writeln!(out, "attempts   {}", view.attempts)?;
            writeln!(out, "created    {}", view.created_at)?;
            Ok(())
        }
    }
}
