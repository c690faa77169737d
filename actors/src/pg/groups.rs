//! Seed 000's matching group configs: which groups of a domain the users
//! export sends, and how; and what each has been sent (its watermark).

use serde::Serialize;
use serde_json::Value as Json;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::job::group_uuid;
use crate::users::GroupType;

/// A group's config, as stored. `group_type` is kept as written: a type
/// ferry does not know (from another tool) is reported, not hidden.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatchingGroup {
    pub domain_id: Uuid,
    pub group_key: String,
    pub group_id: Uuid,
    pub group_type: String,
    pub enabled: bool,
    pub updated_at: String,
    /// When the group's watermark was last moved: its last delivered
    /// export's end (none: never, or reset since).
    pub sent_at: Option<String>,
    /// Its users not sent yet: changed since the watermark.
    pub unsent: i64,
    /// What its imports' files must hold (see the README's "Data
    /// contracts"), as it was set.
    #[schema(value_type = Option<Object>)]
    pub contract: Option<Json>,
}

/// What [`set`] does to a group's contract.
#[derive(Debug, Clone, Copy)]
pub enum ContractUpdate<'a> {
    /// Keeps the one it has (none, for a new group).
    Keep,
    Clear,
    /// Sets this one, checked by [`crate::import::contract::Contract::parse`].
    Set(&'a Json),
}

impl MatchingGroup {
    pub fn kind(&self) -> Option<GroupType> {
        GroupType::parse(&self.group_type)
    }

    /// Whether its `group_id` is its key's UUID, as ferry writes it (a row
    /// another tool wrote may differ; the stored `group_id` is the one its
    /// users are read by).
    pub fn consistent(&self) -> bool {
        self.group_id == group_uuid(&self.group_key)
    }
}

/// A group's columns, over the alias `g` of `matching_groups`, with its
/// watermark's.
fn columns() -> String {
    format!(
        "g.domain_id, g.group_key, g.group_id, g.group_type, g.enabled, g.contract, {} AS updated_at,
         (SELECT {} FROM group_watermarks w
          WHERE w.domain_id = g.domain_id AND w.group_id = g.group_id) AS sent_at,
         (SELECT count(*) FROM node_rows t WHERE t.domain_id = g.domain_id AND {}) AS unsent",
        crate::rfc3339!("g.updated_at"),
        crate::rfc3339!("w.sent_at"),
        crate::export::sql::unsent("g.domain_id", "g.group_id"),
    )
}

fn from_row(r: &Row) -> MatchingGroup {
    MatchingGroup {
        domain_id: r.get("domain_id"),
        group_key: r.get("group_key"),
        group_id: r.get("group_id"),
        group_type: r.get("group_type"),
        enabled: r.get("enabled"),
        updated_at: r.get("updated_at"),
        sent_at: r.get("sent_at"),
        unsent: r.get("unsent"),
        contract: r.get("contract"),
    }
}

/// Creates or replaces a group's config; its contract as `contract` says.
pub async fn set(
    c: &impl GenericClient,
    domain: Uuid,
    group_key: &str,
    group_type: GroupType,
    enabled: bool,
    contract: ContractUpdate<'_>,
) -> Result<MatchingGroup, tokio_postgres::Error> {
    let (change, value) = match contract {
        ContractUpdate::Keep => (false, None),
        ContractUpdate::Clear => (true, None),
        ContractUpdate::Set(json) => (true, Some(json)),
    };
    let sql = format!(
        "INSERT INTO matching_groups AS g (domain_id, group_key, group_id, group_type, enabled, contract)
         VALUES ($1, $2, $3, $4, $5, $7)
         ON CONFLICT (domain_id, group_key) DO UPDATE
         SET group_type = EXCLUDED.group_type, enabled = EXCLUDED.enabled, updated_at = now(),
             contract = CASE WHEN $6 THEN EXCLUDED.contract ELSE g.contract END
         RETURNING {}",
        columns()
    );
    let row = c
        .query_one(
            &sql,
            &[
                &domain,
                &group_key,
                &group_uuid(group_key),
                &group_type.as_str(),
                &enabled,
                &change,
                &value,
            ],
        )
        .await?;
    Ok(from_row(&row))
}

pub async fn get(
    c: &impl GenericClient,
    domain: Uuid,
    group_key: &str,
) -> Result<Option<MatchingGroup>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {} FROM matching_groups g WHERE g.domain_id = $1 AND g.group_key = $2",
        columns()
    );
    Ok(c.query_opt(&sql, &[&domain, &group_key])
        .await?
        .as_ref()
        .map(from_row))
}

/// Every group, or one domain's, in key order.
pub async fn list(
    c: &impl GenericClient,
    domain: Option<Uuid>,
) -> Result<Vec<MatchingGroup>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {} FROM matching_groups g
         WHERE $1::uuid IS NULL OR g.domain_id = $1 ORDER BY g.domain_id, g.group_key",
        columns()
    );
    Ok(c.query(&sql, &[&domain])
        .await?
        .iter()
        .map(from_row)
        .collect())
}

/// False: no such group.
pub async fn remove(
    c: &impl GenericClient,
    domain: Uuid,
    group_key: &str,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "DELETE FROM matching_groups WHERE domain_id = $1 AND group_key = $2",
            &[&domain, &group_key],
        )
        .await?;
    Ok(n == 1)
}

/// Makes every user of the group unsent again (for a matching engine that
/// lost its copy): its watermark is cleared, and an export that began
/// before the reset does not set it again when it ends. `None`: no such
/// group.
pub async fn reset(
    c: &impl GenericClient,
    domain: Uuid,
    group_key: &str,
) -> Result<Option<MatchingGroup>, tokio_postgres::Error> {
    let n = c
        .execute(
            "INSERT INTO group_watermarks AS w (domain_id, group_id, reset_at, reset_xid)
             SELECT domain_id, group_id, now(), pg_current_xact_id()
             FROM matching_groups WHERE domain_id = $1 AND group_key = $2
             ON CONFLICT (domain_id, group_id) DO UPDATE
             SET snapshot = NULL, sent_at = NULL, job_id = NULL,
                 reset_at = EXCLUDED.reset_at, reset_xid = EXCLUDED.reset_xid",
            &[&domain, &group_key],
        )
        .await?;
    match n {
        0 => Ok(None),
        _ => get(c, domain, group_key).await,
    }
}
