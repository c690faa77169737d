//! The HTTP side of `ferry serve` (axum): health, metrics, and the import
//! jobs API under `/v1`. Every `/v1` call needs an API key
//! (`Authorization: Bearer KEY`); a key belongs to one domain and sees only
//! that domain's jobs: another domain's job is a 404, like a missing one.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use deadpool_postgres::Pool;
use ferry_actors::job::{JobStatus, Target};
use ferry_actors::kafka::request::{self, Limits};
use ferry_actors::pg::{api_keys, jobs};
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::producer::{FutureProducer, Producer};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::config::Config;

pub struct Api {
    pub config: Config,
    pub pool: Pool,
    pub producer: FutureProducer,
    pub metrics: PrometheusHandle,
}

pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/imports", get(list).post(create))
        .route("/v1/imports/{id}", get(show))
        .with_state(api)
}

/// An API error: a status and a JSON `{"error": …}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "API request failed.");
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("try again later: {e}"),
    )
}

/// The caller of a `/v1` endpoint: its API key's domain, and the pooled
/// connection that checked the key, which the handler goes on using.
struct Tenant {
    domain: Uuid,
    client: deadpool_postgres::Object,
}

impl FromRequestParts<Arc<Api>> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, ApiError> {
        let headers = &parts.headers;
        let key = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "an API key is required".into()))?;
        let client = api.pool.get().await.map_err(internal)?;
        let domain = api_keys::domain_of(&**client, key.trim())
            .await
            .map_err(internal)?
            .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "unknown API key".into()))?;
        Ok(Self { domain, client })
    }
}

/// Ready when PostgreSQL answers and a Kafka broker gives metadata.
async fn ready(State(api): State<Arc<Api>>) -> Response {
    let postgres = match tokio::time::timeout(Duration::from_secs(2), api.pool.get()).await {
        Ok(Ok(c)) => c
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    };
    let producer = api.producer.clone();
    let kafka = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(None, Duration::from_secs(2))
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let status = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    let code = if postgres.is_ok() && kafka.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({ "postgres": status(&postgres), "kafka": status(&kafka) })),
    )
        .into_response()
}

/// Prometheus text; the job and outbox gauges are read at scrape time.
async fn metrics(State(api): State<Arc<Api>>) -> Response {
    if let Ok(client) = api.pool.get().await {
        if let Ok(counts) = jobs::count_by_status(&**client).await {
            for status in ["PENDING", "RUNNING", "COMPLETED", "FAILED"] {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == status)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("ferry_jobs", "status" => status).set(n as f64);
            }
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.metrics.render(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
    /// The `next` of the previous page.
    before: Option<Uuid>,
}

async fn list(
    State(api): State<Arc<Api>>,
    Tenant { domain, client }: Tenant,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let status =
        match q.status {
            Some(s) => Some(JobStatus::parse(&s.to_uppercase()).ok_or_else(|| {
                ApiError(StatusCode::BAD_REQUEST, format!("unknown status {s:?}"))
            })?),
            None => None,
        };
    let limit = q.limit.unwrap_or(50).clamp(1, api.config.http.max_page);
    let page = jobs::page_in_domain(&**client, domain, status, q.before, limit)
        .await
        .map_err(internal)?;
    let next = (page.len() as i64 == limit)
        .then(|| page.last().map(|j| j.id))
        .flatten();
    Ok(Json(json!({ "items": page, "next": next })).into_response())
}

async fn show(
    Tenant { domain, client }: Tenant,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError(StatusCode::NOT_FOUND, format!("no import {id}"));
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let job = jobs::get_in_domain(&**client, domain, id)
        .await
        .map_err(internal)?
        .ok_or_else(not_found)?;
    Ok(Json(job).into_response())
}

#[derive(Deserialize)]
struct CreateQuery {
    /// `nodes` (default) or `matches`.
    target: Option<String>,
}

/// The manual trigger (seed 004's planned REST endpoint): the Kafka
/// payload, checked the same way; 202 with the job id. The same
/// `Idempotency-Key` header twice gives the same job.
async fn create(
    State(api): State<Arc<Api>>,
    Tenant { domain, client }: Tenant,
    headers: HeaderMap,
    Query(q): Query<CreateQuery>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let target = match q.target.as_deref() {
        None => Target::Nodes,
        Some(t) => Target::parse(t).ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("unknown target {t:?}: nodes or matches"),
            )
        })?,
    };
    let kafka = &api.config.kafka;
    let bad = |e: request::Rejected| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
    let request = request::parse(&body, Limits::of(kafka)).map_err(bad)?;
    if request.domain_id != domain {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "domainId is not this API key's domain".into(),
        ));
    }
    let route = kafka.routes.iter().find(|r| r.target == target);
    let default_node_type = api.config.import.node_type.as_str();
    let node_type = route.map_or(default_node_type, |r| r.node_type_or(default_node_type));
    let mut new = request
        .into_job(target, node_type, &api.config.storage)
        .map_err(bad)?;
    if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        new = new.keyed(format!("http:{domain}:{}", key.trim()));
    }
    if let Some(route) = route {
        new = new.reporting_to(route.status_topic.clone(), json!({ "api": true }));
    }
    let created = jobs::create(&**client, &new).await.map_err(internal)?;
    let id = created.job.id;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/v1/imports/{id}"))],
        Json(json!({ "jobId": id, "status": created.job.status, "new": created.is_new })),
    )
        .into_response())
}
