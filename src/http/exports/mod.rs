//! `/v1/exports` (seeds 001 and 002, in Voucherify's shapes): create an
//! export (202 and an id), read one or a page, delete one (its files go
//! too), and download a file through a signed link. An export is a job of
//! the same queue as imports; `ExportView` is how users see it, also from
//! `ferry exports … --json`.
//!
//! - `view`: how an export is shown; `create`: its creation;
//!   `download`: its files through signed links.

pub mod create;
pub mod download;
pub mod view;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferry_actors::export::event::export_status;
use ferry_actors::export::sink::{discard, FileSink};
use ferry_actors::export::store::{self as export_store, ExportOrder};
use ferry_actors::export::Export;
use ferry_actors::job::lifecycle::{self, Cancel};
use ferry_actors::job::{store, Family, JobStatus};
use ferry_actors::kinds::{Job, Work};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_postgres::GenericClient;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::answers::{JobId, Missing, Refusals};
use super::{Api, ApiError, Path, Query, Tenant};

pub(crate) use view::linked;
pub use view::ExportView;

pub(super) fn invalid(
    code: &'static str,
    message: impl Into<String>,
    allowed: Vec<String>,
) -> ApiError {
    let e = ApiError::bad_request(code, message);
    match allowed.is_empty() {
        true => e,
        false => e.with_details(json!({ "allowed": allowed })),
    }
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
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let client = api.pool.get().await?;
    let job = owned(&**client, tenant.domain, &id).await?;
    Ok(Json(linked(&api, &job, &**client).await?).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1 to 100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// From 1 (at most 1,000,000; a page past the last is empty).
    #[param(minimum = 1, maximum = 1_000_000)]
    page: Option<i64>,
    /// `created_at`, `-created_at` (default), `status` or `-status`.
    #[param(pattern = "^-?(created_at|status)$")]
    order: Option<String>,
    /// `SCHEDULED`, `IN_PROGRESS`, `DONE`, `ERROR` or `CANCELLED`.
    #[param(pattern = "^(SCHEDULED|IN_PROGRESS|DONE|ERROR|CANCELLED)$")]
    status: Option<String>,
}

/// The last page a list may ask for: past it the offset would be more rows
/// than any domain keeps.
const MAX_PAGE: i64 = 1_000_000;

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
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", "limit is 1 to 100"));
    }
    let page = q.page.unwrap_or(1);
    if !(1..=MAX_PAGE).contains(&page) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("page is 1 to {MAX_PAGE}"),
        ));
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
        exports.push(linked(&api, job, &**client).await?);
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
