//! `/v1/imports`: a domain's import jobs (list, show, cancel) and the
//! manual trigger (seed 004's planned REST endpoint). A job is shown as an
//! [`ImportView`], the API's own camelCase shape, never the database row.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferry_actors::import::files::ListedFile;
use ferry_actors::import::request::{self, Asker, Limits};
use ferry_actors::import::{Import, SourceRead};
use ferry_actors::job::lifecycle::{self, Cancel};
use ferry_actors::job::{store, Family, JobStatus};
use ferry_actors::kinds::{Job, Work};
use ferry_actors::vocab::{Counts, ImportMode, Target};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::answers::{BodyRefusals, ErrorBody, IdempotencyKey, JobId, Missing, Refusals};
use super::{Api, ApiError, Body, Path, Query, Tenant};

/// An import job as the API (and `ferry jobs … --json`) shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportView {
    pub id: Uuid,
    #[schema(value_type = Target)]
    pub kind: &'static str,
    pub status: JobStatus,
    pub domain_id: Uuid,
    /// The request's `groupId`, as it was sent.
    pub group_id: String,
    pub node_type: String,
    pub source: String,
    pub format: &'static str,
    /// `upsert`, or `sync` (the group's rows the input does not hold are
    /// deleted at its end).
    pub mode: ImportMode,
    pub rows: RowsView,
    /// How far through its file the job had read at its last checkpoint.
    pub source_read: Option<SourceRead>,
    /// A multi-file job's files, once listed: each with its size and, once
    /// read, its records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<ListedFile>>,
    /// Names under its prefix that are not the target's format, skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_files: Option<Vec<String>>,
    /// The input's columns the group's last completed import did not have,
    /// and those it had that this one lacks (schema drift).
    pub columns_added: Vec<String>,
    pub columns_removed: Vec<String>,
    pub rejects_path: Option<String>,
    pub failure_reason: Option<String>,
    pub attempts: i32,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// From the first attempt's start to the finish (or to now).
    pub duration_secs: Option<f64>,
}

/// What became of a job's rows so far (as of its last checkpoint while it
/// runs).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RowsView {
    pub read: u64,
    /// Inserted, updated, unchanged, or merged as duplicates.
    pub loaded: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Rows the table held already, the same: not written.
    pub unchanged: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Rows of the group a sync deleted: its input did not hold them.
    pub deleted: u64,
}

impl From<&Counts> for RowsView {
    fn from(c: &Counts) -> Self {
        Self {
            read: c.records,
            loaded: c.loaded(),
            inserted: c.inserted,
            updated: c.updated,
            unchanged: c.unchanged,
            duplicates: c.duplicates,
            rejected: c.rejected,
            deleted: c.deleted,
        }
    }
}

impl ImportView {
    /// The view of an import job; `None` for a job of another kind.
    pub fn of(job: &Job) -> Option<Self> {
        match &job.work {
            Work::Import(import) => Some(Self::of_import(job, import)),
            _ => None,
        }
    }

    fn of_import(job: &Job, import: &Import) -> Self {
        let drift = import.drift();
        Self {
            id: job.id,
            kind: job.kind(),
            status: job.status,
            domain_id: job.domain_id,
            group_id: import.group_key.clone(),
            node_type: import.node_type.clone(),
            source: import.source.clone(),
            format: import.format.as_str(),
            mode: import.mode,
            rows: RowsView::from(&import.counts),
            source_read: import.checkpoint.source,
            files: import.checkpoint.files.as_ref().map(|s| s.files.clone()),
            skipped_files: import.checkpoint.files.as_ref().map(|s| s.skipped.clone()),
            columns_added: drift.added,
            columns_removed: drift.removed,
            rejects_path: import.rejects_path.clone(),
            failure_reason: job.failure_reason.clone(),
            attempts: job.attempts,
            created_at: job.created_at.clone(),
            started_at: job.started_at.clone(),
            finished_at: job.finished_at.clone(),
            duration_secs: job.duration_secs,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs in this status.
    #[param(value_type = Option<JobStatus>)]
    status: Option<String>,
    /// At most this many (default 50); more than `http.max_page` is that.
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// The `next` of the previous page.
    before: Option<Uuid>,
}

/// A page of imports, newest first.
#[derive(Serialize, ToSchema)]
pub struct ImportPage {
    items: Vec<ImportView>,
    /// The `before` of the next page; none on the last.
    next: Option<Uuid>,
}

/// `POST /v1/imports`'s answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportCreated {
    job_id: Uuid,
    status: JobStatus,
    /// False when the `Idempotency-Key` (or the same payload) made this
    /// job before.
    new: bool,
}

#[utoipa::path(get, path = "/v1/imports", operation_id = "listImports", tag = "imports", params(ListQuery),
    responses((status = 200, description = "The domain's imports, newest first", body = ImportPage), Refusals))]
pub async fn list(
    State(api): State<Arc<Api>>,
    Tenant { domain, .. }: Tenant,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let status = match q.status {
        Some(s) => Some(JobStatus::parse(&s).ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("unknown status {s:?}"))
        })?),
        None => None,
    };
    let limit = q.limit.unwrap_or(50);
    if limit < 1 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit is at least 1",
        ));
    }
    let limit = limit.min(api.config.http.max_page);
    let client = api.pool.get().await?;
    let page =
        store::page_in_domain::<Work>(&**client, Family::Imports, domain, status, q.before, limit)
            .await?;
    let next = (page.len() as i64 == limit)
        .then(|| page.last().map(|j| j.id))
        .flatten();
    let items = page.iter().filter_map(ImportView::of).collect();
    Ok(Json(ImportPage { items, next }).into_response())
}

pub(super) fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no import {id}"),
    )
}

#[utoipa::path(get, path = "/v1/imports/{id}", operation_id = "getImport", tag = "imports", params(JobId),
    responses((status = 200, description = "The import", body = ImportView), Refusals, Missing))]
pub async fn show(
    State(api): State<Arc<Api>>,
    Tenant { domain, .. }: Tenant,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found(&id))?;
    let client = api.pool.get().await?;
    let view = store::get_in_domain::<Work>(&**client, Family::Imports, domain, uuid)
        .await?
        .as_ref()
        .and_then(ImportView::of)
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(view).into_response())
}

/// Cancels a job that has not ended: it is CANCELLED at once (with its
/// status event), and a running attempt stops at its next checkpoint.
/// Rows already committed stay. 409 for a job that had ended.
#[utoipa::path(delete, path = "/v1/imports/{id}", operation_id = "cancelImport", tag = "imports", params(JobId),
    responses((status = 200, description = "The import, CANCELLED", body = ImportView),
        (status = 409, description = "The import had ended", body = ErrorBody), Refusals, Missing))]
pub async fn cancel(
    State(api): State<Arc<Api>>,
    Tenant { domain, .. }: Tenant,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found(&id))?;
    let mut client = api.pool.get().await?;
    match lifecycle::cancel::<Work>(&mut client, Family::Imports, domain, uuid).await? {
        Cancel::Cancelled(job) => Ok(Json(ImportView::of(&job)).into_response()),
        Cancel::Ended(job) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "ended",
            format!("import {id} has ended: {}", job.status.as_str()),
        )),
        Cancel::Missing => Err(not_found(&id)),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CreateQuery {
    /// What the file holds: `nodes` (default) or `matches`.
    #[param(value_type = Option<Target>)]
    target: Option<String>,
}

/// An `Idempotency-Key`: printable ASCII, at most 255 characters (as
/// Stripe's); anything else is refused rather than ignored, so a retry
/// never makes a second job.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(
            "invalid_idempotency_key",
            "an Idempotency-Key is 1 to 255 printable ASCII characters",
        )
    };
    let key = value.to_str().map_err(|_| bad())?.trim();
    let printable = key.bytes().all(|b| (0x20..0x7f).contains(&b));
    match (1..=255).contains(&key.len()) && printable {
        true => Ok(Some(key.to_string())),
        false => Err(bad()),
    }
}

/// 409: the `Idempotency-Key` made `what` `id` (named in `details.field`)
/// from another request.
pub fn key_reused(what: &str, field: &str, id: Uuid) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_key_reused",
        format!("this Idempotency-Key was used for another request: {what} {id}"),
    )
    .with_details(json!({ field: id }))
}

/// The manual trigger: the Kafka payload, checked the same way; 202 with
/// the job id. The same `Idempotency-Key` header twice gives the same job;
/// the same key with another body is 409.
#[utoipa::path(post, path = "/v1/imports", operation_id = "createImport", tag = "imports", params(CreateQuery, IdempotencyKey),
    request_body = request::Wire,
    responses((status = 202, description = "The job is queued (or was, for a repeated request)", body = ImportCreated,
            headers(("Location" = String, description = "The job's URL"))),
        (status = 403, description = "domainId is not the caller's domain", body = ErrorBody),
        (status = 409, description = "The Idempotency-Key was used with another body", body = ErrorBody),
        (status = 422, description = "The request is not a valid import request", body = ErrorBody),
        Refusals, BodyRefusals))]
pub async fn create(
    State(api): State<Arc<Api>>,
    Tenant { domain, .. }: Tenant,
    headers: HeaderMap,
    Query(q): Query<CreateQuery>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let target = match q.target.as_deref() {
        None => Target::Nodes,
        Some(t) => Target::parse(t).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("unknown target {t:?}: nodes or matches"),
            )
        })?,
    };
    let key = idempotency_key(&headers)?;
    let kafka = &api.config.kafka;
    let bad = |e: request::Rejected| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.reason.as_str(),
            e.to_string(),
        )
    };
    let request = request::parse_in(&body, Limits::of(kafka), Some(domain)).map_err(bad)?;
    if request.domain_id != domain {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "domainId is not this API key's domain",
        ));
    }
    let route = kafka.routes.iter().find(|r| r.target == target);
    let default_node_type = api.config.import.node_type.as_str();
    let node_type = route.map_or(default_node_type, |r| r.node_type_or(default_node_type));
    let mut new = request
        .into_job(target, node_type, &api.config.storage, Asker::Remote)
        .map_err(bad)?;
    if let Some(key) = &key {
        new = new
            .keyed(format!("http:{domain}:{key}"))
            .hashed(ferry_actors::job::digest(target.as_str(), &body));
    }
    if let Some(route) = route {
        new = new.reporting_to(route.status_topic.clone());
    }
    let new = new.from_origin(json!({ "api": true }));
    let client = api.pool.get().await?;
    let created = lifecycle::create::<Work, _>(&**client, &new).await?;
    let id = created.job.id;
    if !created.same_request {
        return Err(key_reused("import", "jobId", id));
    }
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/v1/imports/{id}"))],
        Json(ImportCreated {
            job_id: id,
            status: created.job.status,
            new: created.is_new,
        }),
    )
        .into_response())
}
