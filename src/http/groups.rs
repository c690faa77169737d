//! `/v1/groups`: the caller's domain's matching group configs (seed 000),
//! which the scheduled users export reads at each tick.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferry_actors::import::contract::Contract;
use ferry_actors::pg::groups;
use ferry_actors::pg::groups::{ContractUpdate, MatchingGroup};
use ferry_actors::users::GroupType;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::answers::{BodyRefusals, ErrorBody, Refusals};
use super::{Api, ApiError, Body, Path, Tenant};

/// `PUT /v1/groups/{groupKey}`'s body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetGroup {
    /// `COST_BASED` or `NON_COST_BASED`.
    #[schema(example = "COST_BASED")]
    group_type: String,
    /// Whether the scheduled export sends this group (default true).
    #[serde(default = "enabled")]
    enabled: bool,
    /// What the group's import files must hold (a JSON Schema subset; see
    /// the README's "Data contracts"). Left out: the stored one is kept;
    /// `null`: it is removed.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    contract: Option<serde_json::Value>,
}

/// A field that is there, even as `null` (which `Option` would read as
/// left out).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// The domain's groups.
#[derive(Serialize, ToSchema)]
pub struct GroupPage {
    items: Vec<MatchingGroup>,
}

/// A group key in a path.
#[derive(utoipa::IntoParams)]
#[into_params(names("key"), parameter_in = Path)]
#[allow(dead_code)]
pub struct GroupKey(
    /// What imports call `groupId`: 1 to 255 characters, not all blank,
    /// without control characters.
    #[param(
        max_length = 255,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    String,
);

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

/// A group key is what imports call `groupId`, with the same limits.
fn checked(key: &str) -> Result<&str, ApiError> {
    ferry_actors::job::group_key(key)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_group_key", e))
}

#[utoipa::path(get, path = "/v1/groups", operation_id = "listGroups", tag = "groups",
    responses((status = 200, description = "The domain's group configs", body = GroupPage), Refusals))]
pub async fn list(
    State(api): State<Arc<Api>>,
    Tenant { domain, .. }: Tenant,
) -> Result<Response, ApiError> {
    let client = api.pool.get().await?;
    let items = groups::list(&**client, Some(domain)).await?;
    Ok(Json(GroupPage { items }).into_response())
}

#[utoipa::path(get, path = "/v1/groups/{key}", operation_id = "getGroup", tag = "groups", params(GroupKey),
    responses((status = 200, description = "The group's config", body = MatchingGroup),
        (status = 404, description = "No such group in this domain", body = ErrorBody),
        (status = 422, description = "Not a group key", body = ErrorBody), Refusals))]
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
#[utoipa::path(put, path = "/v1/groups/{key}", operation_id = "setGroup", tag = "groups", params(GroupKey), request_body = SetGroup,
    responses((status = 200, description = "The group's config, as stored", body = MatchingGroup),
        (status = 422, description = "Not a group key, an unknown group type, or a contract ferry cannot hold files to", body = ErrorBody),
        Refusals, BodyRefusals))]
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
    let contract = match &request.contract {
        None => ContractUpdate::Keep,
        Some(serde_json::Value::Null) => ContractUpdate::Clear,
        Some(json) => {
            Contract::parse(json).map_err(|reason| {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_contract", reason)
            })?;
            ContractUpdate::Set(json)
        }
    };
    let client = api.pool.get().await?;
    let group = groups::set(
        &**client,
        domain,
        key,
        group_type,
        request.enabled,
        contract,
    )
    .await?;
    Ok(Json(group).into_response())
}

/// Makes every user of the group unsent again: its watermark is cleared,
/// and the next tick sends them all (for a matching engine that lost its
/// copy).
#[utoipa::path(post, path = "/v1/groups/{key}/reset", operation_id = "resetGroup", tag = "groups", params(GroupKey),
    responses((status = 200, description = "The group, its watermark cleared", body = MatchingGroup),
        (status = 404, description = "No such group in this domain", body = ErrorBody),
        (status = 422, description = "Not a group key", body = ErrorBody), Refusals))]
pub async fn reset(
    State(api): State<Arc<Api>>,
    Tenant { domain, .. }: Tenant,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let client = api.pool.get().await?;
    let group = groups::reset(&**client, domain, checked(&key)?)
        .await?
        .ok_or_else(|| not_found(&key))?;
    Ok(Json(group).into_response())
}

#[utoipa::path(delete, path = "/v1/groups/{key}", operation_id = "deleteGroup", tag = "groups", params(GroupKey),
    responses((status = 204, description = "The group's config is gone"),
        (status = 404, description = "No such group in this domain", body = ErrorBody),
        (status = 422, description = "Not a group key", body = ErrorBody), Refusals))]
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
