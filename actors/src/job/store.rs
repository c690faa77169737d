//! Reading job rows. Reading never guesses: a value this build cannot read
//! (an unknown status, kind or format, a checkpoint that does not parse, a
//! negative count) is an error that names the job and the column, never a
//! default that would run the job some other way.

use tokio_postgres::types::FromSql;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::{
    Checkpoint, Counts, Export, Family, Import, InputFormat, Job, JobKind, JobStatus, Work,
};

/// Every column a [`Job`] is read from, by name.
pub(super) const COLUMNS: &str = "id, kind, status, domain_id, group_id, group_key, node_type,
    source, format, total_rows, inserted_rows, updated_rows, duplicate_rows, rejected_rows,
    rejects_path, failure_reason, checkpoint, attempts, status_topic, spec, result,
    created_at::text AS created_at, updated_at::text AS updated_at,
    started_at::text AS started_at, finished_at::text AS finished_at,
    expired_at::text AS expired_at,
    extract(epoch FROM coalesce(finished_at, now()) - started_at)::float8 AS duration_secs";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {}", crate::error::chain(.0))]
    Database(#[from] tokio_postgres::Error),
    #[error("job {job}: cannot read column {column}: {reason}")]
    Unreadable {
        job: Uuid,
        column: &'static str,
        reason: String,
    },
}

impl StoreError {
    /// Worth trying again: the database was unreachable or busy. An
    /// unreadable row stays unreadable.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(e) => crate::pg::is_transient(e),
            Self::Unreadable { .. } => false,
        }
    }
}

pub(super) fn from_row(r: &Row) -> Result<Job, StoreError> {
    let id: Uuid = r.try_get("id")?;
    let work = match parse(r, id, "kind", JobKind::parse)? {
        JobKind::Import(target) => Work::Import(Box::new(import(r, id, target)?)),
        JobKind::Export => Work::Export(Box::new(Export {
            spec: json(r, id, "spec")?.ok_or_else(|| StoreError::Unreadable {
                job: id,
                column: "spec",
                reason: "an export without its spec".into(),
            })?,
            checkpoint: json(r, id, "checkpoint")?.unwrap_or_default(),
            result: json(r, id, "result")?,
            expired_at: column(r, id, "expired_at")?,
        })),
    };
    Ok(Job {
        id,
        status: parse(r, id, "status", JobStatus::parse)?,
        domain_id: column(r, id, "domain_id")?,
        attempts: column(r, id, "attempts")?,
        failure_reason: column(r, id, "failure_reason")?,
        status_topic: column(r, id, "status_topic")?,
        created_at: column(r, id, "created_at")?,
        updated_at: column(r, id, "updated_at")?,
        started_at: column(r, id, "started_at")?,
        finished_at: column(r, id, "finished_at")?,
        duration_secs: column(r, id, "duration_secs")?,
        work,
    })
}

fn import(r: &Row, id: Uuid, target: super::Target) -> Result<Import, StoreError> {
    let counts = Counts {
        records: count(r, id, "total_rows")?,
        inserted: count(r, id, "inserted_rows")?,
        updated: count(r, id, "updated_rows")?,
        duplicates: count(r, id, "duplicate_rows")?,
        rejected: count(r, id, "rejected_rows")?,
    };
    let checkpoint: Checkpoint = json(r, id, "checkpoint")?.unwrap_or_default();
    Ok(Import {
        target,
        group_id: column(r, id, "group_id")?,
        group_key: column(r, id, "group_key")?,
        node_type: column(r, id, "node_type")?,
        source: column(r, id, "source")?,
        format: parse(r, id, "format", InputFormat::parse)?,
        counts,
        rejects_path: column(r, id, "rejects_path")?,
        checkpoint,
    })
}

/// A jsonb column read as `T`; `None` when NULL.
fn json<T: serde::de::DeserializeOwned>(
    r: &Row,
    job: Uuid,
    name: &'static str,
) -> Result<Option<T>, StoreError> {
    let value: Option<serde_json::Value> = column(r, job, name)?;
    value
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| StoreError::Unreadable {
            job,
            column: name,
            reason: e.to_string(),
        })
}

pub(super) fn from_rows(rows: &[Row]) -> Result<Vec<Job>, StoreError> {
    rows.iter().map(from_row).collect()
}

fn column<'a, T: FromSql<'a>>(
    r: &'a Row,
    job: Uuid,
    column: &'static str,
) -> Result<T, StoreError> {
    r.try_get(column).map_err(|e| StoreError::Unreadable {
        job,
        column,
        reason: crate::error::chain(&e),
    })
}

/// A text column holding one of a set of names.
fn parse<T>(
    r: &Row,
    job: Uuid,
    name: &'static str,
    known: impl Fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let text: String = column(r, job, name)?;
    known(&text).ok_or_else(|| StoreError::Unreadable {
        job,
        column: name,
        reason: format!("unknown value {text:?}"),
    })
}

fn count(r: &Row, job: Uuid, name: &'static str) -> Result<u64, StoreError> {
    let n: i64 = column(r, job, name)?;
    u64::try_from(n).map_err(|_| StoreError::Unreadable {
        job,
        column: name,
        reason: format!("a negative count ({n})"),
    })
}

pub async fn get(c: &impl GenericClient, id: Uuid) -> Result<Option<Job>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
    c.query_opt(&sql, &[&id])
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// A job of `family` as its domain sees it: another domain's job does not
/// exist.
pub async fn get_in_domain(
    c: &impl GenericClient,
    family: Family,
    domain_id: Uuid,
    id: Uuid,
) -> Result<Option<Job>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs WHERE id = $1 AND domain_id = $2 AND {}",
        family.sql()
    );
    c.query_opt(&sql, &[&id, &domain_id])
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// One page of a domain's jobs, newest first: those created before the
/// job `before` (keyset pagination on the time-ordered ids).
pub async fn page_in_domain(
    c: &impl GenericClient,
    family: Family,
    domain_id: Uuid,
    status: Option<JobStatus>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Job>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs
         WHERE domain_id = $1 AND ($2::text IS NULL OR status = $2)
           AND ($3::uuid IS NULL OR id < $3) AND {family}
         ORDER BY id DESC LIMIT $4",
        family = family.sql()
    );
    let status = status.map(JobStatus::as_str);
    let rows = c
        .query(&sql, &[&domain_id, &status, &before, &limit])
        .await?;
    from_rows(&rows)
}

/// Newest first; of one family, or of all.
pub async fn list(
    c: &impl GenericClient,
    family: Option<Family>,
    status: Option<JobStatus>,
    limit: i64,
) -> Result<Vec<Job>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs WHERE ($1::text IS NULL OR status = $1) AND {}
         ORDER BY created_at DESC, id DESC LIMIT $2",
        family.map_or("true".into(), Family::sql)
    );
    let status = status.map(JobStatus::as_str);
    from_rows(&c.query(&sql, &[&status, &limit]).await?)
}

/// The ids of an inline reference-list job (read apart from the job row,
/// which is listed often and should stay small).
pub async fn reference_ids(
    c: &impl GenericClient,
    id: Uuid,
) -> Result<Option<Vec<String>>, tokio_postgres::Error> {
    let row = c
        .query_opt("SELECT reference_ids FROM jobs WHERE id = $1", &[&id])
        .await?;
    Ok(row.and_then(|r| r.get(0)))
}

/// Jobs per status, every status included, for the `ferry_jobs{status}` gauge.
pub async fn count_by_status(
    c: &impl GenericClient,
) -> Result<Vec<(JobStatus, i64)>, tokio_postgres::Error> {
    let rows = c
        .query("SELECT status, count(*) FROM jobs GROUP BY status", &[])
        .await?;
    Ok(JobStatus::ALL
        .into_iter()
        .map(|status| {
            let n = rows
                .iter()
                .find(|r| r.get::<_, &str>(0) == status.as_str())
                .map_or(0, |r| r.get(1));
            (status, n)
        })
        .collect())
}

/// How long the longest-running job has run (zero when none runs).
pub async fn oldest_running(
    c: &impl GenericClient,
) -> Result<std::time::Duration, tokio_postgres::Error> {
    let secs: f64 = c
        .query_one(
            "SELECT coalesce(extract(epoch FROM now() - min(started_at)), 0)::float8
             FROM jobs WHERE status = 'RUNNING'",
            &[],
        )
        .await?
        .get(0);
    Ok(std::time::Duration::from_secs_f64(secs.max(0.0)))
}

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
pub async fn page_exports(
    c: &impl GenericClient,
    domain_id: Uuid,
    status: Option<JobStatus>,
    order: ExportOrder,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Job>, i64), StoreError> {
    let family = Family::Exports.sql();
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
pub async fn active_exports(
    c: &impl GenericClient,
    domain_id: Uuid,
) -> Result<i64, tokio_postgres::Error> {
    let sql = format!(
        "SELECT count(*) FROM jobs WHERE domain_id = $1 AND {} AND status IN {}",
        Family::Exports.sql(),
        JobStatus::sql_list(&JobStatus::ACTIVE)
    );
    Ok(c.query_one(&sql, &[&domain_id]).await?.get(0))
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
            "SELECT attempts, last_status, last_error, delivered_at::text, failed_at IS NOT NULL
             FROM webhook_deliveries WHERE job_id = $1 ORDER BY id DESC LIMIT 1",
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
