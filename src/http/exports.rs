//! `/v1/exports` (seeds 001 and 002, in Voucherify's shapes): create an
//! export (202 and an id), read one or a page, delete one (its files go
//! too), and download a file through a signed link. An export is a job of
//! the same queue as imports; `ExportView` is how users see it, also from
//! `ferry exports … --json`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body as HttpBody;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferry_actors::export::event::export_status;
use ferry_actors::export::plan::Invalid;
use ferry_actors::export::request::{self as export_request, Channel, ExportRequest};
use ferry_actors::export::sink::{discard, FileSink};
use ferry_actors::export::store::{self as export_store, ExportOrder, WebhookStatus};
use ferry_actors::export::{self, webhook, Compression, Destination, Export, Format, NewExport};
use ferry_actors::job::lifecycle::{self, Cancel};
use ferry_actors::job::{digest, store, Family, JobStatus};
use ferry_actors::kinds::{Job, Work};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_postgres::GenericClient;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::openapi::{BodyRefusals, ErrorBody, IdempotencyKey, JobId, Missing, Refusals};
use super::{Api, ApiError, Body, Query, Tenant};

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

fn now_secs() -> u64 {
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
pub(super) async fn linked(
    api: &Api,
    job: &Job,
    headers: &HeaderMap,
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
    let base = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or(String::new(), |h| format!("http://{h}"));
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

/// `POST /v1/exports`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateExport {
    /// `node`, `match_suggestion`, or an object of `[[exports.objects]]`.
    #[schema(example = "node")]
    pub exported_object: String,
    #[serde(default)]
    pub parameters: CreateParameters,
    /// Called with the finished export; its host must be in
    /// `exports.webhook_allowed_hosts`.
    #[serde(default)]
    #[schema(format = "uri")]
    pub webhook_url: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateParameters {
    /// The columns, in order (default: the object's default fields).
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// A field, `-field` for descending.
    #[serde(default)]
    pub order: Option<String>,
    /// Voucherify's filters: `{"junction": "and", "field": {"conditions":
    /// {"$is": [value]}}}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filters: Option<Value>,
    /// `csv` (default), `json`, `jsonl` or `parquet`.
    #[serde(default)]
    #[schema(value_type = Option<Format>)]
    pub format: Option<String>,
    /// `gzip` (default for text), `zstd` (default for Parquet) or `none`.
    #[serde(default)]
    #[schema(value_type = Option<Compression>)]
    pub compression: Option<String>,
}

fn invalid(code: &'static str, message: impl Into<String>, allowed: Vec<String>) -> ApiError {
    let e = ApiError::bad_request(code, message);
    match allowed.is_empty() {
        true => e,
        false => e.with_details(json!({ "allowed": allowed })),
    }
}

/// Creates an export: checked whole before anything exists (400 with a
/// code and what is allowed), within the caller's rate and the domain's
/// cap (429), once per `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/exports", operation_id = "createExport", tag = "exports", params(IdempotencyKey),
    request_body = CreateExport,
    responses((status = 202, description = "The export is queued", body = ExportView,
            headers(("Location" = String, description = "The export's URL"))),
        (status = 409, description = "The Idempotency-Key was used with another body", body = ErrorBody),
        Refusals, BodyRefusals))]
pub async fn create(
    State(api): State<Arc<Api>>,
    tenant: Tenant,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let key = super::imports::idempotency_key(&headers)?;
    let request: CreateExport = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    let p = &request.parameters;
    let refused = |e: Invalid| {
        let message = e.message.clone();
        invalid(e.code, message, e.allowed)
    };
    let format = p
        .format
        .as_deref()
        .map(export_request::format)
        .transpose()
        .map_err(refused)?;
    let compression = p
        .compression
        .as_deref()
        .map(export_request::compression)
        .transpose()
        .map_err(refused)?;
    let exports = &api.config.exports;
    let id = Uuid::now_v7();
    let spec = ExportRequest {
        fields: p.fields.clone().unwrap_or_default(),
        order: p.order.clone(),
        filters: p.filters.clone(),
        format,
        compression,
        user_id: tenant.subject.clone(),
        webhook_url: request.webhook_url.clone(),
        ..ExportRequest::of(&request.exported_object, Channel::Api)
    }
    .into_spec(
        &api.catalog,
        exports,
        &api.config.storage,
        tenant.domain,
        id,
    )
    .map_err(refused)?;
    if let Some(url) = &request.webhook_url {
        webhook::check(url, &exports.webhook_allowed_hosts)
            .await
            .map_err(|e| {
                ApiError::bad_request("invalid_webhook_url", format!("webhook_url: {e}"))
            })?;
    }
    api.limiter.take(&tenant.caller)?;
    let client = api.pool.get().await?;
    if export_store::active::<Work>(&**client, tenant.domain).await?
        >= exports.max_running_per_domain
    {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_exports",
            format!(
                "this domain has {} exports waiting or running",
                exports.max_running_per_domain
            ),
        )
        .retry_after(30));
    }
    let new = NewExport {
        id,
        idempotency_key: key
            .as_ref()
            .map(|k| format!("http-export:{}:{k}", tenant.domain)),
        request_hash: key.as_ref().map(|_| digest(export::kind::KIND, &body)),
        ..NewExport::new(tenant.domain, spec)
    }
    .reporting_to(exports.events_topic.clone())
    .from_origin(json!({ "api": true }));
    let created = lifecycle::create::<Work, _>(&**client, &new).await?;
    let id = created.job.id;
    if !created.same_request {
        return Err(super::imports::key_reused("export", "id", id));
    }
    let view = linked(&api, &created.job, &headers, &**client).await?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/v1/exports/{id}"))],
        Json(view),
    )
        .into_response())
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no export {id}"),
    )
}

/// The caller's export `id`: another domain's is missing, like a missing one.
pub(super) async fn owned(
    client: &impl GenericClient,
    domain: Uuid,
    id: &str,
) -> Result<Job, ApiError> {
    let uuid = Uuid::parse_str(id).map_err(|_| not_found(id))?;
    store::get_in_domain::<Work>(client, Family::Exports, domain, uuid)
        .await?
        .ok_or_else(|| not_found(id))
}

#[utoipa::path(get, path = "/v1/exports/{id}", operation_id = "getExport", tag = "exports", params(JobId),
    responses((status = 200, description = "The export, with fresh links when DONE", body = ExportView),
        Refusals, Missing))]
pub async fn show(
    State(api): State<Arc<Api>>,
    tenant: Tenant,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let client = api.pool.get().await?;
    let job = owned(&**client, tenant.domain, &id).await?;
    Ok(Json(linked(&api, &job, &headers, &**client).await?).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1 to 100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// From 1.
    #[param(minimum = 1)]
    page: Option<i64>,
    /// `created_at`, `-created_at` (default), `status` or `-status`.
    #[param(pattern = "^-?(created_at|status)$")]
    order: Option<String>,
    /// `SCHEDULED`, `IN_PROGRESS`, `DONE`, `ERROR` or `CANCELLED`.
    #[param(pattern = "^(SCHEDULED|IN_PROGRESS|DONE|ERROR|CANCELLED)$")]
    status: Option<String>,
}

/// A page of exports (Voucherify's list shape).
#[derive(Serialize, ToSchema)]
pub struct ExportPage {
    /// Always `list`.
    object: &'static str,
    /// Always `exports`.
    data_ref: &'static str,
    exports: Vec<ExportView>,
    /// How many the filter matches, over every page.
    total: i64,
}

/// Voucherify's status names, read back.
fn status_of(name: &str) -> Option<JobStatus> {
    JobStatus::ALL
        .into_iter()
        .find(|s| export_status(*s) == name)
}

#[utoipa::path(get, path = "/v1/exports", operation_id = "listExports", tag = "exports", params(ListQuery),
    responses((status = 200, description = "A page of the domain's exports", body = ExportPage), Refusals))]
pub async fn list(
    State(api): State<Arc<Api>>,
    tenant: Tenant,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", "limit is 1 to 100"));
    }
    let page = q.page.unwrap_or(1);
    if page < 1 {
        return Err(ApiError::bad_request("invalid_query", "page counts from 1"));
    }
    let order = match q.order.as_deref() {
        None => ExportOrder::CreatedDesc,
        Some(o) => ExportOrder::parse(o).ok_or_else(|| {
            invalid(
                "invalid_query",
                format!("unknown order `{o}`"),
                ["created_at", "-created_at", "status", "-status"]
                    .map(String::from)
                    .to_vec(),
            )
        })?,
    };
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(status_of(s).ok_or_else(|| {
            invalid(
                "invalid_query",
                format!("unknown status `{s}`"),
                JobStatus::ALL
                    .map(|s| export_status(s).to_string())
                    .to_vec(),
            )
        })?),
    };
    let client = api.pool.get().await?;
    let (jobs, total) = export_store::page::<Work>(
        &**client,
        tenant.domain,
        status,
        order,
        limit,
        (page - 1) * limit,
    )
    .await?;
    let mut exports = Vec::with_capacity(jobs.len());
    for job in &jobs {
        exports.push(linked(&api, job, &headers, &**client).await?);
    }
    Ok(Json(ExportPage {
        object: "list",
        data_ref: "exports",
        exports,
        total,
    })
    .into_response())
}

/// Cancels the export if it runs, deletes its files (and any unfinished
/// upload), then the export itself: 204.
#[utoipa::path(delete, path = "/v1/exports/{id}", operation_id = "deleteExport", tag = "exports", params(JobId),
    responses((status = 204, description = "The export and its files are gone"), Refusals, Missing))]
pub async fn delete(
    State(api): State<Arc<Api>>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut client = api.pool.get().await?;
    let job = owned(&**client, tenant.domain, &id).await?;
    let cancelled = lifecycle::cancel::<Work>(&mut client, Family::Exports, tenant.domain, job.id);
    let job = match cancelled.await? {
        Cancel::Cancelled(job) | Cancel::Ended(job) => job,
        Cancel::Missing => return Err(not_found(&id)),
    };
    if let Some(export) = job.work.export() {
        discard(&sink(&api, export), &export.checkpoint)
            .await
            .map_err(ApiError::unavailable)?;
    }
    lifecycle::forget::<Work>(&**client, Family::Exports, tenant.domain, job.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn sink(api: &Api, export: &Export) -> FileSink {
    FileSink::for_spec(
        &export.spec,
        &api.config.storage,
        &api.config.exports,
        &api.config.retry,
    )
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// The signed token of the export's `download_url`.
    token: Option<String>,
    /// `1`: a 303 to a fresh presigned URL instead of the bytes.
    redirect: Option<String>,
}

fn unauthorized(why: impl std::fmt::Display) -> ApiError {
    tracing::info!(reason = %why, "A download token was refused.");
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        "the download link is not valid",
    )
}

/// A file of a finished export, through a signed link (no API key): the
/// whole file or a `Range` of it, or with `redirect=1` a 303 to a fresh
/// presigned URL (seed 002: "will later return a 303").
#[utoipa::path(get, path = "/v1/exports/{id}/download", operation_id = "downloadExport", tag = "exports", security(()),
    params(("id" = String, Path, description = "The export's id"), DownloadQuery,
        ("Range" = Option<String>, Header, description = "`bytes=A-B`, `bytes=A-` or `bytes=-N`")),
    responses(
        (status = 200, description = "The file", content(
            (Vec<u8> = "application/gzip"), (Vec<u8> = "application/zstd"),
            (Vec<u8> = "text/csv"), (Vec<u8> = "application/json"),
            (Vec<u8> = "application/x-ndjson"), (Vec<u8> = "application/vnd.apache.parquet"))),
        (status = 206, description = "The range asked for"),
        (status = 303, description = "With `redirect=1`: a presigned URL",
            headers(("Location" = String, description = "The presigned URL"))),
        (status = 401, description = "The link's token is missing, forged, expired or not this export's", body = ErrorBody),
        (status = 404, description = "The export sent messages, not a file", body = ErrorBody),
        (status = 410, description = "The export's files have expired", body = ErrorBody),
        (status = 416, description = "The range is outside the file", body = ErrorBody),
        (status = 400, description = "A query parameter is not valid", body = ErrorBody),
        (status = 503, description = "The store or the database is away; try again later", body = ErrorBody)))]
pub async fn download(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<DownloadQuery>,
) -> Result<Response, ApiError> {
    let export_id = Uuid::parse_str(&id).map_err(unauthorized)?;
    let token = q.token.ok_or_else(|| unauthorized("no token"))?;
    let file = api
        .signer
        .verify(&token, export_id, now_secs())
        .map_err(unauthorized)?;
    let client = api.pool.get().await?;
    let job = store::get::<Work>(&**client, export_id)
        .await?
        .ok_or_else(|| unauthorized("no such export"))?;
    drop(client);
    let Some(export) = job.work.export() else {
        return Err(unauthorized("not an export"));
    };
    if export.expired_at.is_some() {
        return Err(ApiError::new(
            StatusCode::GONE,
            "expired",
            "the export's files have expired",
        ));
    }
    let location = export
        .result
        .as_ref()
        .and_then(|r| r.files.get(file))
        .map(|f| f.location.clone())
        .ok_or_else(|| unauthorized("no such file"))?;
    let range = headers
        .get(header::RANGE)
        .and_then(|r| r.to_str().ok())
        .map(String::from);
    let name = location
        .uri()
        .rsplit('/')
        .next()
        .unwrap_or("export")
        .to_string();
    let content_type = match export.spec.format {
        Format::Parquet => export.spec.format.content_type(),
        f => match export.spec.compression {
            Compression::Gzip => "application/gzip",
            Compression::Zstd => "application/zstd",
            Compression::None => f.content_type(),
        },
    };
    let mut response = match (&location, &api.store) {
        (Destination::Store { bucket, key }, Some(store)) => {
            if q.redirect.as_deref() == Some("1") {
                let ttl = api
                    .config
                    .exports
                    .url_ttl
                    .min(Duration::from_secs(7 * 24 * 3600));
                let url = store
                    .presign_get(bucket, key, ttl)
                    .await
                    .map_err(ApiError::unavailable)?;
                return Ok((StatusCode::SEE_OTHER, [(header::LOCATION, url)]).into_response());
            }
            let (body, len, content_range) = store
                .get(bucket, key, range.as_deref())
                .await
                .map_err(|e| match e.message.contains("416") {
                    true => ApiError::new(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "bad_range",
                        "the range is not in the file",
                    ),
                    false => ApiError::unavailable(e),
                })?;
            let stream = tokio_util::io::ReaderStream::new(body.into_async_read());
            let status = if content_range.is_some() {
                StatusCode::PARTIAL_CONTENT
            } else {
                StatusCode::OK
            };
            let mut r = (status, HttpBody::from_stream(stream)).into_response();
            r.headers_mut().insert(header::CONTENT_LENGTH, len.into());
            if let Some(cr) = content_range {
                r.headers_mut().insert(
                    header::CONTENT_RANGE,
                    cr.parse().map_err(ApiError::internal)?,
                );
            }
            r
        }
        (Destination::Local { path }, _) => local_file(path, range.as_deref()).await?,
        (Destination::Store { .. }, None) => {
            return Err(ApiError::unavailable("no object store is configured"))
        }
        (Destination::Topic { .. }, _) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "this export sent messages, not a file",
            ))
        }
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        content_type.parse().map_err(ApiError::internal)?,
    );
    h.insert(
        header::ACCEPT_RANGES,
        "bytes".parse().map_err(ApiError::internal)?,
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{}\"", name.replace('"', ""))
            .parse()
            .map_err(ApiError::internal)?,
    );
    Ok(response)
}

/// `bytes=A-B`, `bytes=A-`, `bytes=-N` of a file of `size` bytes: the
/// first and last byte; `None` when unsatisfiable.
fn byte_range(spec: &str, size: u64) -> Option<(u64, u64)> {
    let spec = spec.strip_prefix("bytes=")?.trim();
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.saturating_sub(n), size - 1)
        }
        (a, "") => (a.parse().ok()?, size - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(size - 1)),
    };
    (start <= end && start < size).then_some((start, end))
}

async fn local_file(path: &str, range: Option<&str>) -> Result<Response, ApiError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(ApiError::internal)?;
    let size = file.metadata().await.map_err(ApiError::internal)?.len();
    let (status, start, len) = match range {
        None => (StatusCode::OK, 0, size),
        Some(spec) => {
            let (a, b) = byte_range(spec, size).ok_or_else(|| {
                ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "bad_range",
                    "the range is not in the file",
                )
            })?;
            (StatusCode::PARTIAL_CONTENT, a, b - a + 1)
        }
    };
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(ApiError::internal)?;
    let stream = tokio_util::io::ReaderStream::new(file.take(len));
    let mut r = (status, HttpBody::from_stream(stream)).into_response();
    r.headers_mut().insert(header::CONTENT_LENGTH, len.into());
    if status == StatusCode::PARTIAL_CONTENT {
        let cr = format!("bytes {start}-{}/{size}", start + len - 1);
        r.headers_mut().insert(
            header::CONTENT_RANGE,
            cr.parse().map_err(ApiError::internal)?,
        );
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        assert_eq!(byte_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(byte_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=95-200", 100), Some((95, 99)));
        assert_eq!(byte_range("bytes=100-", 100), None);
        assert_eq!(byte_range("bytes=5-1", 100), None);
        assert_eq!(byte_range("bytes=0-1,5-6", 100), None);
        assert_eq!(byte_range("items=0-1", 100), None);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_538_323), "2025-11-30T21:32:03Z");
    }
}
