//! The HTTP side of `ferry serve` (axum): health, metrics, and the API
//! under `/v1`. Every `/v1` call needs an API key (`Authorization: Bearer
//! KEY`); a key belongs to one domain and sees only that domain's jobs:
//! another domain's job is a 404, like a missing one.
//!
//! - `imports`: the import jobs (list, show, create, cancel), and how the
//!   API shows a job.
//! - `exports`: how an export is shown (Voucherify's export object).

pub mod exports;
pub mod imports;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use deadpool_postgres::Pool;
use ferry_actors::job::store;
use ferry_actors::pg::api_keys;
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::producer::{FutureProducer, Producer};
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
        .route("/v1/imports", get(imports::list).post(imports::create))
        .route(
            "/v1/imports/{id}",
            get(imports::show).delete(imports::cancel),
        )
        .with_state(api)
}

/// An API error: a status and a JSON `{"error": …}`.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "API request failed.");
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("try again later: {e}"),
    )
}

/// The caller of a `/v1` endpoint: its API key's domain, and the pooled
/// connection that checked the key, which the handler goes on using.
pub struct Tenant {
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
        if let Ok(counts) = store::count_by_status(&**client).await {
            for (status, n) in counts {
                metrics::gauge!("ferry_jobs", "status" => status.as_str()).set(n as f64);
            }
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.metrics.render(),
    )
        .into_response()
}
