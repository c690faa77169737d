//! The HTTP side of `ferry serve` (axum): health, metrics, and the API
//! under `/v1`. Every `/v1` call needs an API key (`Authorization: Bearer
//! KEY`, the scheme in any case, or `X-Api-Key`); a key belongs to one
//! domain and sees only that domain's jobs: another domain's job is a 404,
//! like a missing one.
//!
//! One tenant must not be able to slow the others: a request's body is read
//! (within `http.body_timeout`) before the database is touched; a key has at
//! most `http.max_requests_per_key` requests in flight and
//! `http.max_streams_per_key` event streams open (on all instances
//! together); the API has its own
//! connections, apart from those of ingestion, the job queue and
//! `/health/ready`.
//!
//! Every error is JSON, `{"error": …, "code": …}`: a client's mistake is a
//! 4xx that says what to fix; trouble on the server's side is a 503 with
//! `Retry-After` when it is passing (the database away), else a 500 with an
//! `errorId` that is in the log. No database text reaches a client.
//!
//! - `auth`: API keys and JWT bearer tokens.
//! - `imports`: the import jobs (list, show, create, cancel), and how the
//!   API shows a job.
//! - `exports`: the exports (create, show, list, delete, download), and
//!   how an export is shown (Voucherify's export object).
//! - `groups`: the matching group configs of the scheduled users export.
//! - `events`: a job's progress as Server-Sent Events.
//! - `limits`: per-caller bounds (requests in flight, streams open) and the
//!   token buckets of export creations.
//! - `openapi`: the API's OpenAPI 3.1 document, generated from the
//!   handlers' types; `answers`: what their documented answers share
//!   (the error body, the refusals, the path and header parameters).
//! - `ui`: the jobs page at `/`; `server`: the connections, and their
//!   timeouts.

pub mod answers;
pub mod auth;
pub mod events;
pub mod exports;
pub mod groups;
pub mod imports;
pub mod limits;
pub mod openapi;
pub mod server;
pub mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use deadpool_postgres::Pool;
use ferry_actors::export::object::Catalog;
use ferry_actors::export::token::Signer;
use ferry_actors::job::store::{self, StoreError};
use ferry_actors::pg::api_keys;
use ferry_actors::service::actors::kafka_ingress;
use ferry_actors::storage::Store;
use ferry_actors::telemetry::{resident_bytes, DbFailed, HttpServed, Scraped};
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::producer::{FutureProducer, Producer};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::config::Config;

pub struct Api {
    pub config: Config,
    /// The API's own connections.
    pub pool: Pool,
    /// `/health/ready`'s own connection.
    pub health_pool: Pool,
    pub producer: FutureProducer,
    pub metrics: PrometheusHandle,
    /// Whether the Kafka consumer makes progress.
    pub ingress: Arc<kafka_ingress::Health>,
    /// Requests in flight per caller.
    pub in_flight: limits::Permits,
    /// Event streams open per caller.
    pub streams: limits::Permits,
    /// What exports may read.
    pub catalog: Arc<Catalog>,
    /// Signs and checks download links.
    pub signer: Signer,
    /// The base of the links the API hands out (`http.public_url`, or the
    /// address it listens on), without a trailing `/`.
    pub public_url: String,
    /// The object store, when one is configured (presigned URLs, downloads).
    pub store: Option<Store>,
    /// JWT bearer tokens, when configured.
    pub jwt: Option<auth::JwtVerifier>,
    /// Export creations per caller.
    pub limiter: limits::Limiter,
}

pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/", get(ui::page))
        .route("/ui/app.js", get(ui::script))
        .route("/ui/app.css", get(ui::style))
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/v1/imports", get(imports::list).post(imports::create))
        .route(
            "/v1/imports/{id}",
            get(imports::show).delete(imports::cancel),
        )
        .route(
            "/v1/exports",
            get(exports::list).post(exports::create::create),
        )
        .route(
            "/v1/exports/{id}",
            get(exports::show).delete(exports::delete),
        )
        .route(
            "/v1/exports/{id}/download",
            get(exports::download::download),
        )
        .route("/v1/imports/{id}/events", get(events::import_events))
        .route("/v1/exports/{id}/events", get(events::export_events))
        .route("/v1/groups", get(groups::list))
        .route(
            "/v1/groups/{key}",
            get(groups::show).put(groups::set).delete(groups::remove),
        )
        .route("/v1/groups/{key}/reset", post(groups::reset))
        .route_layer(axum::middleware::from_fn(served))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .with_state(api)
}

/// Counts and times each request to a route (`ferry_http_requests_total`,
/// `ferry_http_request_seconds`), by the route's template.
async fn served(
    route: axum::extract::MatchedPath,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    HttpServed {
        route: route.as_str(),
        method: method.as_str(),
        status: response.status().as_u16(),
        elapsed: started.elapsed(),
    }
    .emit();
    response
}

/// An API error, always JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Option<Value>,
    retry_after: Option<u32>,
    error_id: Option<Uuid>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
            error_id: None,
        }
    }

    pub fn with_details(self, details: Value) -> Self {
        Self {
            details: Some(details),
            ..self
        }
    }

    pub fn retry_after(self, secs: u32) -> Self {
        Self {
            retry_after: Some(secs),
            ..self
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Trouble that passes (the database away, busy): try again later.
    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %e, "API request failed; the client is told to retry.");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "temporarily unavailable; try again later",
        )
        .retry_after(5)
    }

    /// Anything else on the server's side: an id the log has, nothing more.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        let id = Uuid::new_v4();
        tracing::error!(error_id = %id, error = %e, "API request failed.");
        Self {
            error_id: Some(id),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("internal error {id}"),
            )
        }
    }

    /// A job store error: passing, or not.
    pub fn store(e: StoreError) -> Self {
        match e.is_transient() {
            true => Self::unavailable(e),
            false => Self::internal(e),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::store(e)
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::unavailable(e)
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbFailed { error: &e }.emit();
        Self::store(StoreError::Database(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = answers::ErrorBody {
            error: self.message,
            code: self.code,
            details: self.details,
            error_id: self.error_id,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// The caller of a `/v1` endpoint: its domain (its API key's, or the one its
/// JWT names), who it is, and its place among its requests in flight (held
/// until the response).
pub struct Tenant {
    pub domain: Uuid,
    /// A JWT's `sub`.
    pub subject: Option<String>,
    /// Whom rate limits count: a key's hash, or a token's domain and subject.
    pub caller: String,
    _in_flight: limits::Permit,
}

/// A bearer credential that looks like a JWT (three base64url parts).
fn looks_like_jwt(credential: &str) -> bool {
    credential.split('.').count() == 3 && !credential.starts_with("fk_")
}

/// The key a request carries: `Authorization: Bearer KEY` (the scheme in
/// any case) or `X-Api-Key: KEY`.
fn api_key(parts: &Parts) -> Option<&str> {
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
        });
    bearer.or_else(|| parts.headers.get("x-api-key")?.to_str().ok())
}

impl FromRequestParts<Arc<Api>> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, ApiError> {
        let key = api_key(parts)
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "an API key is required",
                )
            })?;
        let unauthorized = |why: String| {
            tracing::info!(reason = %why, "A bearer token was refused.");
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the token is not accepted",
            )
        };
        let jwt = match (&api.jwt, looks_like_jwt(key)) {
            (Some(verifier), true) => Some(verifier.verify(key).map_err(unauthorized)?),
            _ => None,
        };
        let caller = match &jwt {
            Some(claims) => format!(
                "jwt:{}:{}",
                claims.domain,
                claims.subject.as_deref().unwrap_or("")
            ),
            None => format!("key:{}", hex_digest(key)),
        };
        let permit = api.in_flight.take(&caller).await?;
        if let Some(claims) = jwt {
            return Ok(Self {
                domain: claims.domain,
                subject: claims.subject,
                caller,
                _in_flight: permit,
            });
        }
        // The connection goes back to the pool at once: nothing a caller
        // does afterwards (a slow body) holds it.
        let domain = {
            let client = api.pool.get().await?;
            api_keys::domain_of(&**client, key).await?
        };
        let domain = domain.ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown API key")
        })?;
        Ok(Self {
            domain,
            subject: None,
            caller,
            _in_flight: permit,
        })
    }
}

fn hex_digest(key: &str) -> String {
    api_keys::hash(key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A JSON request body, read whole within `http.body_timeout` and the
/// size limit before any handler work (a `Content-Length` over the limit is
/// 413 before a byte is read). A `Content-Type` other than JSON is 415.
pub struct Body(pub Bytes);

impl FromRequest<Arc<Api>> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, api: &Arc<Api>) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let media = ct
                .to_str()
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default();
            if !media.trim().eq_ignore_ascii_case("application/json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "the body is JSON: Content-Type: application/json",
                ));
            }
        }
        let limit = api.config.kafka.max_message_bytes;
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is over {limit} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let timeout = api.config.http.body_timeout;
        let read = axum::body::to_bytes(req.into_body(), limit);
        match tokio::time::timeout(timeout, read).await {
            Err(_) => Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the request body did not arrive within {timeout:?}"),
            )),
            Ok(Err(e)) if is_length_limit(&e) => Err(too_large()),
            Ok(Err(e)) => Err(ApiError::bad_request(
                "bad_body",
                format!("reading the body: {e}"),
            )),
            Ok(Ok(bytes)) => Ok(Self(bytes)),
        }
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// A path parameter; one that is not UTF-8 once percent-decoded is a JSON
/// 400, like every other error.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<Arc<Api>> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, api)
            .await
            .map(|p| Self(p.0))
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
    }
}

/// Query parameters; a bad one is a JSON 400 that names it.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<Arc<Api>> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, api)
            .await
            .map(|q| Self(q.0))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

/// Ready when PostgreSQL answers, a Kafka broker gives metadata, and the
/// consumer is running and not stuck on a message.
async fn ready(State(api): State<Arc<Api>>) -> Response {
    let postgres = match tokio::time::timeout(Duration::from_secs(2), api.health_pool.get()).await {
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
    let limit = api.config.kafka.stall_timeout;
    let consumer = match ractor::registry::where_is(kafka_ingress::NAME) {
        None => Err("the consumer is not running".to_string()),
        Some(_) => match api.ingress.stalled(limit) {
            Some(held) => Err(format!(
                "stalled: one message has been in hand for {}s",
                held.as_secs()
            )),
            None => Ok(()),
        },
    };
    let status = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    let code = if postgres.is_ok() && kafka.is_ok() && consumer.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "postgres": status(&postgres),
        "kafka": status(&kafka),
        "consumer": status(&consumer),
    });
    (code, Json(body)).into_response()
}

/// Prometheus text; the job and outbox gauges are read at scrape time.
async fn metrics(State(api): State<Arc<Api>>) -> Response {
    if let Ok(client) = api.health_pool.get().await {
        let counts = store::count_by_status(&**client).await;
        let oldest = store::oldest_running(&**client).await;
        if let (Ok(counts), Ok(oldest)) = (counts, oldest) {
            let jobs: Vec<(&'static str, i64)> =
                counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
            Scraped {
                jobs: &jobs,
                oldest_running: oldest,
                rss_bytes: resident_bytes(),
            }
            .emit();
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.metrics.render(),
    )
        .into_response()
}
