//! Reads of exports beside the job store's: a domain's exports paged and
//! counted for the API, their webhooks, and the ones past their retention.

use std::time::Duration;

use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::error::StoreError;
use crate::job::store::{from_rows, COLUMNS};
use crate::job::{Family, Job, JobStatus, Kind};

/// How a domain's exports are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportOrder {
    CreatedAsc,
    CreatedDesc,
    StatusAsc,
    StatusDesc,
}

impl ExportOrder {
    /// `created_at`, `-created_at`, `status`, `-status`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created_at" => Self::CreatedAsc,
            "-created_at" => Self::CreatedDesc,
            "status" => Self::StatusAsc,
            "-status" => Self::StatusDesc,
            _ => return None,
        })
    }

    fn sql(self) -> &'static str {
        match self {
            Self::CreatedAsc => "created_at, id",
            Self::CreatedDesc => "created_at DESC, id DESC",
            Self::StatusAsc => "status, created_at DESC, id DESC",
            Self::StatusDesc => "status DESC, created_at DESC, id DESC",
        }
    }
}

/// One page of a domain's exports (`offset` rows skipped), and how many
/// there are in all.
pub async fn page<K: Kind>(
    c: &impl GenericClient,
    domain_id: Uuid,
    status: Option<JobStatus>,
    order: ExportOrder,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Job<K>>, i64), StoreError> {
    let family = Family::Exports.sql::<K>();
    let filter = format!("domain_id = $1 AND ($2::text IS NULL OR status = $2) AND {family}");
    let status = status.map(JobStatus::as_str);
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs WHERE {filter} ORDER BY {} LIMIT $3 OFFSET $4",
        order.sql()
    );
    let rows = c
        .query(&sql, &[&domain_id, &status, &limit, &offset])
        .await?;
    let total: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM jobs WHERE {filter}"),
            &[&domain_id, &status],
        )
        .await?
        .get(0);
    Ok((from_rows(&rows)?, total))
}

/// A domain's exports waiting or running.
pub async fn active<K: Kind>(
    c: &impl GenericClient,
    domain_id: Uuid,
) -> Result<i64, tokio_postgres::Error> {
    let sql = format!(
        "SELECT count(*) FROM jobs WHERE domain_id = $1 AND {} AND status IN {}",
        Family::Exports.sql::<K>(),
        JobStatus::sql_list(&JobStatus::ACTIVE)
    );
    Ok(c.query_one(&sql, &[&domain_id]).await?.get(0))
}

/// Creates the export in `tx` unless its domain already has `cap` waiting
/// or running (`None`). The count and the insert hold the domain's advisory
/// lock until `tx` ends, so concurrent requests, on any instance, cannot
/// pass the cap together.
pub async fn create_capped<K: Kind>(
    tx: &tokio_postgres::Transaction<'_>,
    new: &super::NewExport,
    cap: i64,
) -> Result<Option<crate::job::lifecycle::Created<K>>, StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('ferry-exports-cap:' || $1::uuid::text, 0))",
        &[&new.domain_id],
    )
    .await?;
    if active::<K>(tx, new.domain_id).await? >= cap {
        return Ok(None);
    }
    Ok(Some(crate::job::lifecycle::create::<K, _>(tx, new).await?))
}

/// Where an export's webhook stands.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct WebhookStatus {
    /// `pending`, `delivered` or `failed`.
    pub status: &'static str,
    pub attempts: i32,
    /// The last answer's HTTP status, if one came.
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
}

impl WebhookStatus {
    /// Before its first try.
    pub const PENDING: Self = Self {
        status: "pending",
        attempts: 0,
        last_status: None,
        last_error: None,
        delivered_at: None,
    };
}

pub async fn webhook_status(
    c: &impl GenericClient,
    job_id: Uuid,
) -> Result<Option<WebhookStatus>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            concat!(
                "SELECT attempts, last_status, last_error, ",
                crate::rfc3339!("delivered_at"),
                ", failed_at IS NOT NULL
             FROM webhook_deliveries WHERE job_id = $1 ORDER BY id DESC LIMIT 1"
            ),
            &[&job_id],
        )
        .await?;
    Ok(row.map(|r| {
        let delivered_at: Option<String> = r.get(3);
        let failed: bool = r.get(4);
        WebhookStatus {
            status: match (&delivered_at, failed) {
                (Some(_), _) => "delivered",
                (None, true) => "failed",
                (None, false) => "pending",
            },
            attempts: r.get(0),
            last_status: r.get(1),
            last_error: r.get(2),
            delivered_at,
        }
    }))
}

/// Up to `limit` exports that ended DONE more than `retention` ago and
/// still have their files.
pub async fn past_retention<K: Kind>(
    c: &impl GenericClient,
    retention: Duration,
    limit: i64,
) -> Result<Vec<Job<K>>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs
         WHERE {} AND status = $3 AND expired_at IS NULL
           AND finished_at < now() - make_interval(secs => $1)
         ORDER BY finished_at LIMIT $2",
        Family::Exports.sql::<K>()
    );
    let done = JobStatus::Completed.as_str();
    let rows = c
        .query(&sql, &[&retention.as_secs_f64(), &limit, &done])
        .await?;
    from_rows(&rows)
}

/// Notes that an export's files are gone.
pub async fn expired(c: &impl GenericClient, id: Uuid) -> Result<(), tokio_postgres::Error> {
    c.execute("UPDATE jobs SET expired_at = now() WHERE id = $1", &[&id])
        .await
        .map(drop)
}
