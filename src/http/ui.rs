//! `GET /`: the jobs page, built into the binary (no build step, nothing
//! fetched from elsewhere). It is static: a caller's key stays in the
//! browser, and every figure comes from the `/v1` API with it. A strict
//! Content-Security-Policy lets the page run only its own script and talk
//! only to this service.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub async fn page() -> Response {
    asset("text/html; charset=utf-8", include_str!("ui/index.html"))
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("ui/app.js"))
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("ui/app.css"))
}
