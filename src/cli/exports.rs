//! `ferry exports list` and `ferry exports show ID`: the export jobs
//! (users exports among them), read.

use std::io::Write;

use ferry_actors::job::Family;
use ferry_actors::kinds::Job;

use super::listing::Listed;
use crate::http::exports::ExportView;
use crate::report::grouped;

pub struct Exports;

impl Listed for Exports {
    const FAMILY: Family = Family::Exports;
    const NOUN: &'static str = "export";
    type View = ExportView;

    fn view(job: &Job) -> Option<ExportView> {
        ExportView::of(job)
    }

    fn header(out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{:<36}  {:<11}  {:<18}  {:<7}  {:>12}  {:<19}",
            "id", "status", "object", "format", "rows", "created"
        )
    }

    fn line(_: &Job, view: &ExportView, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{:<36}  {:<11}  {:<18}  {:<7}  {:>12}  {:<19}",
            view.id,
            view.status,
            view.exported_object,
            view.parameters.format.as_str(),
            grouped(view.progress.rows),
            view.created_at.get(..19).unwrap_or(&view.created_at),
        )
    }

    fn full(_: &Job, view: &ExportView, out: &mut dyn Write) -> std::io::Result<()> {
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
