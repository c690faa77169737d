//! How an export's end is announced: seed 001's `ExportCompleted`, on the
//! events topic and to the webhook, written with the job's terminal
//! statement.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Destination, Export, ExportOutcome, FileDone};
use crate::job::Job;
use crate::vocab::JobStatus;

/// How an export's end is announced (seed 001's `ExportCompleted`): keys,
/// not URLs; a consumer (seed 001's email service) signs its own links.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportCompleted {
    pub export_id: Uuid,
    pub domain_id: Uuid,
    pub exported_object: String,
    /// `DONE`, `ERROR` or `CANCELLED`.
    pub status: String,
    pub rows: u64,
    pub bytes: u64,
    pub files: Vec<ExportedFile>,
    pub data_as_of: Option<String>,
    /// Who asked for it, when the request said.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// A file of an export: in a bucket, or at a local path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedFile {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub path: Option<String>,
    pub rows: u64,
    pub bytes: u64,
}

impl ExportedFile {
    pub fn of(file: &FileDone) -> Self {
        let (bucket, key, path) = match &file.location {
            Destination::Store { bucket, key } => (Some(bucket.clone()), Some(key.clone()), None),
            Destination::Local { path } => (None, None, Some(path.clone())),
            Destination::Topic { .. } => (None, None, None),
        };
        Self {
            bucket,
            key,
            path,
            rows: file.rows,
            bytes: file.bytes,
        }
    }
}

/// The API's name for an export's status (Voucherify's).
pub fn export_status(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Pending => "SCHEDULED",
        JobStatus::Running => "IN_PROGRESS",
        JobStatus::Completed => "DONE",
        JobStatus::Failed => "ERROR",
        JobStatus::Cancelled => "CANCELLED",
    }
}

impl ExportCompleted {
    pub fn new(job: &Job<Export>, status: JobStatus, outcome: &ExportOutcome) -> Self {
        let (export, r) = (&job.work, &outcome.result);
        Self {
            export_id: job.id,
            domain_id: job.domain_id,
            exported_object: export.spec.object.clone(),
            status: export_status(status).to_string(),
            rows: r.rows,
            bytes: r.bytes,
            files: r.files.iter().map(ExportedFile::of).collect(),
            data_as_of: r.data_as_of.clone(),
            user_id: export.spec.user_id.clone(),
            error: outcome.failure_reason.clone(),
        }
    }
}
