//! What the handlers' documented answers share: every error's body
//! ([`ErrorBody`]), the path and header parameters, and the refusals any
//! call may answer with, for the OpenAPI document.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, Type};
use utoipa::{IntoParams, IntoResponses, ToSchema};
use uuid::Uuid;

/// Every error's body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
    /// What went wrong, for a program (`invalid_query`, `not_found`, …).
    pub code: &'static str,
    /// More, by code: `allowed` values, the `jobId` a key made, …
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
    /// With a 500: the id the server's log has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_id: Option<Uuid>,
}

/// A job's id in a path.
#[derive(IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
#[allow(dead_code)]
pub struct JobId(
    /// The job's id, as its creation answered.
    Uuid,
);

/// Makes a retried creation safe: the same key gives the same job.
#[derive(IntoParams)]
#[into_params(names("Idempotency-Key"), parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyKey(
    /// 1 to 255 printable ASCII characters; the same key with another body
    /// is 409.
    #[param(min_length = 1, max_length = 255, pattern = "^[ -~]+$")]
    Option<String>,
);

/// Responses with an [`ErrorBody`], by status and description; `Retry-After`
/// on the ones a client should retry.
fn errors(list: &[(u16, &str)]) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    list.iter()
        .map(|&(status, description)| {
            let mut response = ResponseBuilder::new().description(description).content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            );
            if matches!(status, 429 | 503) {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(utoipa::openapi::schema::Object::with_type(Type::Integer))
                        .description(Some("Seconds to wait before trying again"))
                        .build(),
                );
            }
            (status.to_string(), response.build().into())
        })
        .collect()
}

/// What any `/v1` call may answer besides its own outcomes.
pub struct Refusals;

impl IntoResponses for Refusals {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        errors(&[
            (400, "A parameter is not valid"),
            (401, "No API key, or one that is not known"),
            (
                429,
                "Too many requests or event streams of this caller at once, or too many exports",
            ),
            (500, "A server fault; `errorId` is in its log"),
            (503, "The database is away or busy; try again later"),
        ])
    }
}

/// What a call with a body may answer besides [`Refusals`].
pub struct BodyRefusals;

impl IntoResponses for BodyRefusals {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        errors(&[
            (408, "The body did not arrive within `http.body_timeout`"),
            (413, "The body is over the size limit"),
            (415, "The body is not `application/json`"),
        ])
    }
}

/// A job that is not there (or is another domain's).
pub struct Missing;

impl IntoResponses for Missing {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        errors(&[(404, "No such job in this domain")])
    }
}
