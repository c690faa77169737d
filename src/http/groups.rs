//! `/v1/groups`: the caller's domain's matching group configs (seed 000),
//! which the scheduled users export reads at each tick.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferry_actors::export::users::GroupType;
use ferry_actors::pg::groups;
use serde::Deserialize;
use serde_json::json;

use super::{Api, ApiError, Body, Tenant};

/// `PUT /v1/groups/{groupKey}`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SetGroup {
    group_type: String,
    #[serde(default = "enabled")]
    enabled: bool,
}

fn enabled() -> bool {
    true
}

fn not_found(key: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no group `{key}` in this domain"),
    )
}

/// A group key is what imports call `groupId`: 1 to 255 bytes, no
/// control characters.
fn checked(key: &str) -> Result<&str, ApiError> {
    if key.trim().is_empty() || key.len() > 255 || key.chars().any(char::is_control) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_group_key",
            "a group key is 1 to 255 bytes, without control characters",
        ));
    }
    Ok(key)
}

pub async fn list(
    State(api): State<Arc<Api>>,
    Tenant { domain, .. }: Tenant,
) -> Result<Response, ApiError> {
    let client = api.pool.get().await?;
    let items = groups::list(&**client, Some(domain)).await?;
    Ok(Json(json!({ "items": items })).into_response())
}

pub async fn show(
    State(api): State<Arc<Api>>,
    Tenant { domain, .. }: Tenant,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let client = api.pool.get().await?;
    let group = groups::get(&**client, domain, checked(&key)?)
        .await?
        .ok_or_else(|| not_found(&key))?;
    Ok(Json(group).into_response())
}

/// Creates or replaces the group's config.
pub async fn set(
    State(api): State<Arc<Api>>,
    Tenant { domain, .. }: Tenant,
    Path(key): Path<String>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let key = checked(&key)?;
    let request: SetGroup = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    let group_type = GroupType::parse(&request.group_type).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_group_type",
            format!("unknown group type `{}`", request.group_type),
        )
        .with_details(json!({ "allowed": GroupType::ALL.map(GroupType::as_str) }))
    })?;
    let client = api.pool.get().await?;
    let group = groups::set(&**client, domain, key, group_type, request.enabled).await?;
    Ok(Json(group).into_response())
}

pub async fn remove(
    State(api): State<Arc<Api>>,
    Tenant { domain, .. }: Tenant,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let client = api.pool.get().await?;
    match groups::remove(&**client, domain, checked(&key)?).await? {
        true => Ok(StatusCode::NO_CONTENT.into_response()),
        false => Err(not_found(&key)),
    }
}
