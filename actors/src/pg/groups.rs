//! Seed 000's matching group configs: which groups of a domain the users
//! export sends, and how.

use serde::Serialize;
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
}

impl MatchingGroup {
    pub fn kind(&self) -> Option<GroupType> {
        GroupType::parse(&self.group_type)
    }
}

const COLUMNS: &str = "domain_id, group_key, group_id, group_type, enabled,
    to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS updated_at";

fn from_row(r: &Row) -> MatchingGroup {
    MatchingGroup {
        domain_id: r.get("domain_id"),
        group_key: r.get("group_key"),
        group_id: r.get("group_id"),
        group_type: r.get("group_type"),
        enabled: r.get("enabled"),
        updated_at: r.get("updated_at"),
    }
}

/// Creates or replaces a group's config.
pub async fn set(
    c: &impl GenericClient,
    domain: Uuid,
    group_key: &str,
    group_type: GroupType,
    enabled: bool,
) -> Result<MatchingGroup, tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO matching_groups (domain_id, group_key, group_id, group_type, enabled)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (domain_id, group_key) DO UPDATE
         SET group_type = EXCLUDED.group_type, enabled = EXCLUDED.enabled, updated_at = now()
         RETURNING {COLUMNS}"
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
    let sql =
        format!("SELECT {COLUMNS} FROM matching_groups WHERE domain_id = $1 AND group_key = $2");
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
        "SELECT {COLUMNS} FROM matching_groups
         WHERE $1::uuid IS NULL OR domain_id = $1 ORDER BY domain_id, group_key"
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
