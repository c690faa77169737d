//! The report at the end of an import or an export, as text for people or
//! as one JSON object (`--json`) for scripts.

use std::io::{self, Write};
use std::time::Duration;

use ferry_actors::export::Export;
use ferry_actors::import::files::ListedFile;
use ferry_actors::import::{drift, Import};
use ferry_actors::job::JobStatus;
use ferry_actors::kinds::Job;
use ferry_actors::vocab::ImportMode;
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub job_id: Uuid,
    pub status: JobStatus,
    pub source: String,
    pub target: String,
    pub rows_read: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// `upsert` or `sync`.
    pub mode: ImportMode,
    /// Rows of the group a sync deleted.
    pub deleted: u64,
    pub duration_secs: f64,
    pub rows_per_sec: f64,
    pub rejects_path: Option<String>,
    pub failure_reason: Option<String>,
    pub attempts: i32,
    /// A multi-file job's files, with the records read from each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ListedFile>,
    /// Names under its prefix that are not the target's format.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_files: Vec<String>,
    /// Its columns against the group's last completed import's.
    pub columns_added: Vec<String>,
    pub columns_removed: Vec<String>,
}

impl ImportReport {
    /// `elapsed` is the wall time the caller waited for the job.
    pub fn new(job: &Job, import: &Import, elapsed: Duration) -> Self {
        let counts = &import.counts;
        let drift = import.drift();
        let secs = elapsed.as_secs_f64();
        Self {
            job_id: job.id,
            status: job.status,
            source: import.source.clone(),
            target: job.kind().to_string(),
            rows_read: counts.records,
            inserted: counts.inserted,
            updated: counts.updated,
            unchanged: counts.unchanged,
            duplicates: counts.duplicates,
            rejected: counts.rejected,
            mode: import.mode,
            deleted: counts.deleted,
            duration_secs: (secs * 1000.0).round() / 1000.0,
            rows_per_sec: if secs > 0.0 {
                (counts.records as f64 / secs).round()
            } else {
                0.0
            },
            rejects_path: import.rejects_path.clone(),
            failure_reason: job.failure_reason.clone(),
            attempts: job.attempts,
            files: import
                .checkpoint
                .files
                .as_ref()
                .map_or_else(Vec::new, |s| s.files.clone()),
            skipped_files: import
                .checkpoint
                .files
                .as_ref()
                .map_or_else(Vec::new, |s| s.skipped.clone()),
            columns_added: drift.added,
            columns_removed: drift.removed,
        }
    }

    pub fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "job {}  {}", self.job_id, self.status.as_str())?;
        writeln!(out, "  source       {}", self.source)?;
        writeln!(out, "  target       {}", self.target)?;
        writeln!(out, "  rows read    {}", grouped(self.rows_read))?;
        writeln!(out, "  inserted     {}", grouped(self.inserted))?;
        writeln!(out, "  updated      {}", grouped(self.updated))?;
        writeln!(out, "  unchanged    {}", grouped(self.unchanged))?;
        if self.duplicates > 0 {
            writeln!(
                out,
                "  duplicates   {} (merged, last row wins)",
                grouped(self.duplicates)
            )?;
        }
        writeln!(out, "  rejected     {}", grouped(self.rejected))?;
        if self.mode == ImportMode::Sync {
            writeln!(out, "  deleted      {} (sync)", grouped(self.deleted))?;
        }
        if let Some(drift) = drift::summary(&self.columns_added, &self.columns_removed) {
            writeln!(out, "  columns      {drift}")?;
        }
        writeln!(
            out,
            "  duration     {:.2} s ({} rows/s)",
            self.duration_secs,
            grouped(self.rows_per_sec as i64)
        )?;
        if self.attempts > 1 {
            writeln!(out, "  attempts     {}", self.attempts)?;
        }
        if !self.files.is_empty() {
            writeln!(out, "  files        {}", self.files.len())?;
            for f in &self.files {
                writeln!(out, "    {}  {} rows", f.uri, grouped(f.records))?;
            }
        }
        if !self.skipped_files.is_empty() {
            writeln!(out, "  skipped      {}", self.skipped_files.join(", "))?;
        }
        if let Some(p) = &self.rejects_path {
            writeln!(out, "  rejects      {p}")?;
        }
        if let Some(r) = &self.failure_reason {
            writeln!(out, "  reason       {r}")?;
        }
        Ok(())
    }
}

/// The report at the end of `ferry export`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportReport {
    pub job_id: Uuid,
    pub status: JobStatus,
    pub object: String,
    pub format: String,
    pub rows: u64,
    pub files: Vec<ReportedFile>,
    pub bytes: u64,
    pub duration_secs: f64,
    pub rows_per_sec: f64,
    /// When the snapshot the rows were read from was taken.
    pub data_as_of: Option<String>,
    pub failure_reason: Option<String>,
    pub attempts: i32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportedFile {
    pub location: String,
    pub rows: u64,
    pub bytes: u64,
}

impl ExportReport {
    pub fn new(job: &Job, export: &Export, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64();
        let cp = &export.checkpoint;
        let (files, rows, bytes, data_as_of) = match &export.result {
            Some(r) => (&r.files, r.rows, r.bytes, r.data_as_of.clone()),
            None => (&cp.files, cp.rows, cp.bytes(), cp.data_as_of.clone()),
        };
        Self {
            job_id: job.id,
            status: job.status,
            object: export.spec.object.clone(),
            format: format!(
                "{}{}",
                export.spec.format.as_str(),
                match export.spec.format {
                    ferry_actors::export::Format::Parquet => String::new(),
                    _ => format!(" ({})", export.spec.compression.as_str()),
                }
            ),
            rows,
            files: files
                .iter()
                .map(|f| ReportedFile {
                    location: f.location.uri(),
                    rows: f.rows,
                    bytes: f.bytes,
                })
                .collect(),
            bytes,
            duration_secs: (secs * 1000.0).round() / 1000.0,
            rows_per_sec: if secs > 0.0 {
                (rows as f64 / secs).round()
            } else {
                0.0
            },
            data_as_of,
            failure_reason: job.failure_reason.clone(),
            attempts: job.attempts,
        }
    }

    pub fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "export {}  {}", self.job_id, self.status.as_str())?;
        writeln!(out, "  object       {}", self.object)?;
        writeln!(out, "  format       {}", self.format)?;
        writeln!(out, "  rows         {}", grouped(self.rows))?;
        writeln!(out, "  bytes        {}", grouped(self.bytes))?;
        for f in &self.files {
            writeln!(
                out,
                "  file         {}  ({} rows, {} bytes)",
                f.location,
                grouped(f.rows),
                grouped(f.bytes)
            )?;
        }
        writeln!(
            out,
            "  duration     {:.2} s ({} rows/s)",
            self.duration_secs,
            grouped(self.rows_per_sec as i64)
        )?;
        if let Some(at) = &self.data_as_of {
            writeln!(out, "  data as of   {at}")?;
        }
        if self.attempts > 1 {
            writeln!(out, "  attempts     {}", self.attempts)?;
        }
        if let Some(r) = &self.failure_reason {
            writeln!(out, "  reason       {r}")?;
        }
        Ok(())
    }
}

/// 1234567 → "1,234,567".
pub fn grouped(n: impl Into<i128>) -> String {
    let n: i128 = n.into();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::grouped;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(-1234567), "-1,234,567");
        assert_eq!(grouped(u64::MAX), "18,446,744,073,709,551,615");
    }
}
