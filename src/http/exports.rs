//! How an export is shown: Voucherify's export object (seed 002), for the
//! CLI's `ferry exports … --json` and the API.

use ferry_actors::export::{Compression, Format};
use ferry_actors::job::{Job, JobStatus, Work};
use ferry_actors::status::export_status;
use serde::Serialize;
use uuid::Uuid;

/// An export job as users see it.
#[derive(Debug, Clone, Serialize)]
pub struct ExportView {
    pub id: Uuid,
    pub object: &'static str,
    pub created_at: String,
    /// `SCHEDULED`, `IN_PROGRESS`, `DONE`, `ERROR` or `CANCELLED`.
    pub status: &'static str,
    pub exported_object: String,
    pub parameters: Parameters,
    pub progress: ProgressView,
    /// When DONE.
    pub result: Option<ResultView>,
    /// When ERROR: why.
    pub error: Option<ErrorView>,
    pub attempts: i32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// The request, as it was given.
#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    pub fields: Vec<String>,
    pub order: Option<String>,
    pub filters: Option<serde_json::Value>,
    pub format: Format,
    pub compression: Compression,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProgressView {
    /// Rows in the store so far.
    pub rows: u64,
    /// Rows the export's snapshot holds.
    pub total: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResultView {
    pub files: Vec<FileView>,
    pub rows: u64,
    pub bytes: u64,
    pub data_as_of: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileView {
    /// `s3://bucket/key`, or a local path.
    pub location: String,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorView {
    pub code: &'static str,
    pub message: String,
}

impl ExportView {
    /// The view of an export job; `None` for a job of another kind.
    pub fn of(job: &Job) -> Option<Self> {
        let Work::Export(export) = &job.work else {
            return None;
        };
        let spec = &export.spec;
        let result = export
            .result
            .as_ref()
            .filter(|_| job.status == JobStatus::Completed)
            .map(|r| ResultView {
                files: r
                    .files
                    .iter()
                    .map(|f| FileView {
                        location: f.location.uri(),
                        rows: f.rows,
                        bytes: f.bytes,
                    })
                    .collect(),
                rows: r.rows,
                bytes: r.bytes,
                data_as_of: r.data_as_of.clone(),
            });
        let error = match job.status {
            JobStatus::Failed | JobStatus::Cancelled => Some(ErrorView {
                code: if job.status == JobStatus::Cancelled {
                    "cancelled"
                } else {
                    "export_failed"
                },
                message: job.failure_reason.clone().unwrap_or_default(),
            }),
            _ => None,
        };
        Some(Self {
            id: job.id,
            object: "export",
            created_at: job.created_at.clone(),
            status: export_status(job.status),
            exported_object: spec.object.clone(),
            parameters: Parameters {
                fields: spec.fields.clone(),
                order: spec.order.clone(),
                filters: spec.filters.clone(),
                format: spec.format,
                compression: spec.compression,
            },
            progress: ProgressView {
                rows: export.checkpoint.rows,
                total: export.checkpoint.total,
            },
            result,
            error,
            attempts: job.attempts,
            started_at: job.started_at.clone(),
            finished_at: job.finished_at.clone(),
        })
    }
}
