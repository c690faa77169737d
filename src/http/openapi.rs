//! The API's contract: an OpenAPI 3.1 document generated from the types
//! the handlers read and write (their `#[utoipa::path]`s, the views, the
//! request bodies and [`ErrorBody`]), served at `GET /v1/openapi.json`. A
//! field added to a view is in the document by the same change.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, Type};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, ToSchema};
use uuid::Uuid;

use super::{events, exports, groups, imports};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ferry",
        description = "Imports into and exports out of PostgreSQL, as jobs of one durable queue. \
            Every `/v1` call but a download names its domain by an API key \
            (`Authorization: Bearer KEY` or `X-Api-Key: KEY`) or a JWT."
    ),
    paths(
        imports::list, imports::create, imports::show, imports::cancel, events::import_events,
        exports::list, exports::create, exports::show, exports::delete, exports::download,
        events::export_events,
        groups::list, groups::show, groups::set, groups::remove,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Credentials),
    security(("bearer" = []), ("apiKey" = [])),
    tags(
        (name = "imports", description = "Loading files and reference lists (seeds 003 and 004)"),
        (name = "exports", description = "On-demand exports (seeds 001 and 002)"),
        (name = "groups", description = "Matching group configs for the scheduled users export (seed 000)"),
    )
)]
pub struct ApiDoc;

/// `GET /v1/openapi.json`: the document, built once.
pub async fn document() -> Response {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    Json(DOC.get_or_init(ApiDoc::openapi)).into_response()
}

/// The two ways a caller names itself.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (`fk_…`) or a JWT"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` the document makes names a schema it has.
    #[test]
    fn every_reference_resolves() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        if let Ok(path) = std::env::var("FERRY_DUMP_OPENAPI") {
            std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        }
        assert_eq!(doc["openapi"], "3.1.0");
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let text = doc.to_string();
        let refs: Vec<&str> = text
            .split("\"$ref\":\"#/components/schemas/")
            .skip(1)
            .map(|s| &s[..s.find('"').unwrap()])
            .collect();
        assert!(refs.len() > 20, "{refs:?}");
        for name in refs {
            assert!(
                schemas.contains_key(name),
                "{name} is referenced, not defined"
            );
        }
    }
}
