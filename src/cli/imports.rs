//! `ferry imports list` and `ferry imports show ID` (also `ferry jobs`):
//! the import jobs, read.

use std::io::Write;

use ferry_actors::job::Family;
use ferry_actors::kinds::{Job, Work};

use super::listing::Listed;
use crate::http::imports::ImportView;
use crate::report::grouped;

pub struct Imports;

impl Listed for Imports {
    const FAMILY: Family = Family::Imports;
    const NOUN: &'static str = "job";
    type View = ImportView;

    fn view(job: &Job) -> Option<ImportView> {
        ImportView::of(job)
    }

    fn header(out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{:<36}  {:<6}  {:<9}  {:>10}  {:>10}  {:>8}  {:<19}  source",
            "id", "kind", "status", "rows", "loaded", "rejected", "created"
        )
    }

    fn line(job: &Job, _: &ImportView, out: &mut dyn Write) -> std::io::Result<()> {
        let Work::Import(import) = &job.work else {
            return Ok(());
        };
        writeln!(
            out,
            "{:<36}  {:<6}  {:<9}  {:>10}  {:>10}  {:>8}  {:<19}  {}",
            job.id,
            job.kind(),
            job.status.as_str(),
            grouped(import.counts.records),
            grouped(import.counts.loaded()),
            grouped(import.counts.rejected),
            job.created_at.get(..19).unwrap_or(&job.created_at),
            import.source
        )
    }

    fn full(job: &Job, _: &ImportView, out: &mut dyn Write) -> std::io::Result<()> {
        let Work::Import(import) = &job.work else {
            return Ok(());
        };
        let counts = &import.counts;
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        writeln!(out, "job        {}", job.id)?;
        writeln!(out, "kind       {}", job.kind())?;
        writeln!(out, "status     {}", job.status.as_str())?;
        writeln!(out, "source     {}", import.source)?;
        writeln!(out, "domain     {}", job.domain_id)?;
        writeln!(out, "group      {} ({})", import.group_key, import.group_id)?;
        writeln!(
            out,
            "rows       {} read, {} inserted, {} updated, {} unchanged, {} duplicates, {} rejected, {} deleted",
            grouped(counts.records),
            grouped(counts.inserted),
            grouped(counts.updated),
            grouped(counts.unchanged),
            grouped(counts.duplicates),
            grouped(counts.rejected),
            grouped(counts.deleted)
        )?;
        if let Some(drift) = import.drift().summary() {
            writeln!(out, "columns    {drift}")?;
        }
        writeln!(out, "attempts   {}", job.attempts)?;
        writeln!(out, "created    {}", job.created_at)?;
        writeln!(out, "started    {}", opt(&job.started_at))?;
        writeln!(out, "finished   {}", opt(&job.finished_at))?;
        writeln!(out, "rejects    {}", opt(&import.rejects_path))?;
        writeln!(out, "reason     {}", opt(&job.failure_reason))?;
        Ok(())
    }
}
