//! The API's contract: an OpenAPI 3.1 document generated from the types
//! the handlers read and write (their `#[utoipa::path]`s, the views, the
//! request bodies and [`ErrorBody`]), served at `GET /v1/openapi.json`. A
//! field added to a view is in the document by the same change.

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::answers::ErrorBody;
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
        exports::list, exports::create::create, exports::show, exports::delete, exports::download::download,
        events::export_events,
        groups::list, groups::show, groups::set, groups::reset, groups::remove,
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
