//! `POST /v1/exports`: an export checked whole, within the caller's
//! limits, and queued.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferry_actors::error::StoreError;
use ferry_actors::export::plan::Invalid;
use ferry_actors::export::request::{self as export_request, Channel, ExportRequest};
use ferry_actors::export::store::{self as export_store};
use ferry_actors::export::{self, webhook, Compression, Format, NewExport};
use ferry_actors::job::digest;
use ferry_actors::job::lifecycle::{self};
use ferry_actors::kinds::Work;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::answers::{BodyRefusals, ErrorBody, IdempotencyKey, Refusals};
use crate::http::{Api, ApiError, Body, Tenant};

use super::invalid;
use super::view::{linked, ExportView};

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
    let key = crate::http::imports::idempotency_key(&headers)?;
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
    let mut client = api.pool.get().await?;
    // A retry gets the export it made before any limit is counted: a
    // client that timed out at the cap learns its export's id.
    let made = match &new.idempotency_key {
        Some(k) => lifecycle::existing::<Work>(&**client, k, new.request_hash.as_deref()).await?,
        None => None,
    };
    let created = match made {
        Some(made) => made,
        None => {
            let cap = exports.max_running_per_domain;
            let tx = client.transaction().await.map_err(StoreError::from)?;
            let created = export_store::create_capped::<Work>(&tx, &new, cap)
                .await?
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too_many_exports",
                        format!("this domain has {cap} exports waiting or running"),
                    )
                    .retry_after(30)
                })?;
            // Only a creation takes a token: the transaction rolls back
            // without one, and a refusal above costs none.
            api.limiter.take(&*tx, &tenant.caller).await?;
            tx.commit().await.map_err(StoreError::from)?;
            created
        }
    };
    let id = created.job.id;
    if !created.same_request {
        return Err(crate::http::imports::key_reused("export", "id", id));
    }
    let view = linked(&api, &created.job, &**client).await?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/v1/exports/{id}"))],
        Json(view),
    )
        .into_response())
}
