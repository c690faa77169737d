//! How an export is shown (Voucherify's export object), with fresh links
//! when it is DONE.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_actors::export::event::export_status;
use ferry_actors::export::store::{self as export_store, WebhookStatus};
use ferry_actors::export::{Compression, Destination, Format};
use ferry_actors::job::JobStatus;
use ferry_actors::kinds::Job;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::GenericClient;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::{Api, ApiError};

/// An export job as users see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportView {
    pub id: Uuid,
    pub object: &'static str,
    pub created_at: String,
    /// `SCHEDULED`, `IN_PROGRESS`, `DONE`, `ERROR` or `CANCELLED`.
    #[schema(example = "DONE")]
    pub status: &'static str,
    pub exported_object: String,
    pub parameters: Parameters,
    /// `API`, `CLI`, `SCHEDULE`.
    pub channel: String,
    pub progress: ProgressView,
    /// When DONE (and its files not yet expired).
    pub result: Option<ResultView>,
    /// True once its files were deleted, past `exports.retention`.
    pub expired: bool,
    /// When ERROR: why.
    pub error: Option<ErrorView>,
    /// The webhook's deliveries, when one was asked for.
    pub webhook: Option<WebhookView>,
    pub attempts: i32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// The request, as it was given.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Parameters {
    pub fields: Vec<String>,
    pub order: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub filters: Option<Value>,
    pub format: Format,
    pub compression: Compression,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgressView {
    /// Rows in the store so far.
    pub rows: u64,
    /// Rows the export's snapshot holds.
    pub total: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResultView {
    /// The first file: a presigned URL, signed afresh on every read.
    pub url: Option<String>,
    pub expires_at: Option<String>,
    /// The first file through ferry, with a signed token (no API key).
    pub download_url: Option<String>,
    pub files: Vec<FileView>,
    pub rows: u64,
    pub bytes: u64,
    pub data_as_of: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileView {
    /// `s3://bucket/key`, or a local path.
    pub location: String,
    pub url: Option<String>,
    pub download_url: Option<String>,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorView {
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookView {
    pub url: String,
    #[serde(flatten)]
    pub delivery: WebhookStatus,
}

impl ExportView {
    /// The view of an export job (without links); `None` for a job of
    /// another kind.
    pub fn of(job: &Job) -> Option<Self> {
        let export = job.work.export()?;
        let spec = &export.spec;
        let result = export
            .result
            .as_ref()
            .filter(|_| job.status == JobStatus::Completed && export.expired_at.is_none())
            .map(|r| ResultView {
                url: None,
                expires_at: None,
                download_url: None,
                files: r
                    .files
                    .iter()
                    .map(|f| FileView {
                        location: f.location.uri(),
                        url: None,
                        download_url: None,
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
            channel: spec.channel.clone(),
            progress: ProgressView {
                rows: export.checkpoint.rows,
                total: export.checkpoint.total,
            },
            result,
            expired: export.expired_at.is_some(),
            error,
            webhook: spec.webhook_url.clone().map(|url| WebhookView {
                url,
                delivery: WebhookStatus::PENDING,
            }),
            attempts: job.attempts,
            started_at: job.started_at.clone(),
            finished_at: job.finished_at.clone(),
        })
    }
}

pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339 of a Unix time.
fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let (y, m, d) = ferry_actors::export::value::civil_date(days as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The full view, with fresh links: presigned URLs valid `exports.url_ttl`,
/// download links signed as long, and the webhook's last delivery.
pub(crate) async fn linked(
    api: &Api,
    job: &Job,
    client: &impl GenericClient,
) -> Result<ExportView, ApiError> {
    let mut view = ExportView::of(job).ok_or_else(|| ApiError::internal("not an export"))?;
    let Some(export) = job.work.export() else {
        return Ok(view);
    };
    if let Some(webhook) = &mut view.webhook {
        if let Some(delivery) = export_store::webhook_status(client, job.id).await? {
            webhook.delivery = delivery;
        }
    }
    let Some(result) = &mut view.result else {
        return Ok(view);
    };
    let ttl = api
        .config
        .exports
        .url_ttl
        .min(Duration::from_secs(7 * 24 * 3600));
    let expires = now_secs() + ttl.as_secs();
    let base = &api.public_url;
    let files = export
        .result
        .as_ref()
        .map(|r| r.files.clone())
        .unwrap_or_default();
    for (i, (view, file)) in result.files.iter_mut().zip(&files).enumerate() {
        let token = api.signer.sign(job.id, i, expires);
        let download = format!("{base}/v1/exports/{}/download?token={token}", job.id);
        view.url = Some(match (&file.location, &api.store) {
            (Destination::Store { bucket, key }, Some(store)) => store
                .presign_get(bucket, key, ttl)
                .await
                .map_err(ApiError::unavailable)?,
            _ => download.clone(),
        });
        view.download_url = Some(download);
    }
    result.url = result.files.first().and_then(|f| f.url.clone());
    result.download_url = result.files.first().and_then(|f| f.download_url.clone());
    result.expires_at = Some(rfc3339(expires));
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc_3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_538_323), "2025-11-30T21:32:03Z");
    }
}
