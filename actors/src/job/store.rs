//! Reading job rows. Reading never guesses: a value this build cannot read
//! (an unknown status or kind, a checkpoint that does not parse, a
//! negative count) is an error that names the job and the column, never a
//! default that would run the job some other way.

use tokio_postgres::types::FromSql;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::{Family, Job, JobStatus, Kind};
pub use crate::error::StoreError;

/// Every column a [`Job`] is read from, by name.
pub const COLUMNS: &str = concat!(
    "id, kind, status, domain_id, group_id, group_key, node_type,
    source, format, total_rows, inserted_rows, updated_rows, unchanged_rows, duplicate_rows,
    rejected_rows, deleted_rows, import_mode, sync_force,
    rejects_path, failure_reason, checkpoint, attempts, status_topic, spec, result, ",
    crate::rfc3339!("created_at"),
    " AS created_at, ",
    crate::rfc3339!("updated_at"),
    " AS updated_at, ",
    crate::rfc3339!("started_at"),
    " AS started_at, ",
    crate::rfc3339!("finished_at"),
    " AS finished_at, ",
    crate::rfc3339!("expired_at"),
    " AS expired_at,
    extract(epoch FROM coalesce(finished_at, now()) - started_at)::float8 AS duration_secs"
);

/// A job row's columns, for a kind to read its part from: each read names
/// the job and the column when it fails.
pub struct Columns<'a> {
    row: &'a Row,
    pub job: Uuid,
}

impl<'a> Columns<'a> {
    pub fn get<T: FromSql<'a>>(&self, column: &'static str) -> Result<T, StoreError> {
        self.row
            .try_get(column)
            .map_err(|e| self.unreadable(column, crate::error::chain(&e)))
    }

    /// A jsonb column read as `T`; `None` when NULL.
    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        column: &'static str,
    ) -> Result<Option<T>, StoreError> {
        let value: Option<serde_json::Value> = self.get(column)?;
        value
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| self.unreadable(column, e.to_string()))
    }

    /// A count, which is never negative.
    pub fn count(&self, column: &'static str) -> Result<u64, StoreError> {
        let n: i64 = self.get(column)?;
        u64::try_from(n).map_err(|_| self.unreadable(column, format!("a negative count ({n})")))
    }

    /// A text column holding one of a set of names.
    pub fn parse<T>(
        &self,
        column: &'static str,
        known: impl Fn(&str) -> Option<T>,
    ) -> Result<T, StoreError> {
        let text: String = self.get(column)?;
        known(&text).ok_or_else(|| self.unreadable(column, format!("unknown value {text:?}")))
    }

    pub fn unreadable(&self, column: &'static str, reason: impl Into<String>) -> StoreError {
        StoreError::Unreadable {
            job: self.job,
            column,
            reason: reason.into(),
        }
    }
}

pub fn from_row<K: Kind>(r: &Row) -> Result<Job<K>, StoreError> {
    let id: Uuid = r.try_get("id")?;
    let columns = Columns { row: r, job: id };
    let kind: String = columns.get("kind")?;
    if !K::names().iter().any(|(name, _)| *name == kind) {
        return Err(columns.unreadable("kind", format!("unknown value {kind:?}")));
    }
    Ok(Job {
        id,
        status: columns.parse("status", JobStatus::parse)?,
        domain_id: columns.get("domain_id")?,
        attempts: columns.get("attempts")?,
        failure_reason: columns.get("failure_reason")?,
        status_topic: columns.get("status_topic")?,
        created_at: columns.get("created_at")?,
        updated_at: columns.get("updated_at")?,
        started_at: columns.get("started_at")?,
        finished_at: columns.get("finished_at")?,
        duration_secs: columns.get("duration_secs")?,
        work: K::read(&kind, &columns)?,
    })
}

pub fn from_rows<K: Kind>(rows: &[Row]) -> Result<Vec<Job<K>>, StoreError> {
    rows.iter().map(from_row).collect()
}

pub async fn get<K: Kind>(c: &impl GenericClient, id: Uuid) -> Result<Option<Job<K>>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
    c.query_opt(&sql, &[&id])
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// A job of `family`, of any domain (the operator's view).
pub async fn get_in_family<K: Kind>(
    c: &impl GenericClient,
    family: Family,
    id: Uuid,
) -> Result<Option<Job<K>>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs WHERE id = $1 AND {}",
        family.sql::<K>()
    );
    c.query_opt(&sql, &[&id])
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// A job of `family` as its domain sees it: another domain's job does not
/// exist.
pub async fn get_in_domain<K: Kind>(
    c: &impl GenericClient,
    family: Family,
    domain_id: Uuid,
    id: Uuid,
) -> Result<Option<Job<K>>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs WHERE id = $1 AND domain_id = $2 AND {}",
        family.sql::<K>()
    );
    c.query_opt(&sql, &[&id, &domain_id])
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// One page of a domain's jobs, newest first: those created before the
/// job `before` (keyset pagination on the time-ordered ids).
pub async fn page_in_domain<K: Kind>(
    c: &impl GenericClient,
    family: Family,
    domain_id: Uuid,
    status: Option<JobStatus>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Job<K>>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs
         WHERE domain_id = $1 AND ($2::text IS NULL OR status = $2)
           AND ($3::uuid IS NULL OR id < $3) AND {family}
         ORDER BY id DESC LIMIT $4",
        family = family.sql::<K>()
    );
    let status = status.map(JobStatus::as_str);
    let rows = c
        .query(&sql, &[&domain_id, &status, &before, &limit])
        .await?;
    from_rows(&rows)
}

/// Newest first; of one family, or of all.
pub async fn list<K: Kind>(
    c: &impl GenericClient,
    family: Option<Family>,
    status: Option<JobStatus>,
    limit: i64,
) -> Result<Vec<Job<K>>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs WHERE ($1::text IS NULL OR status = $1) AND {}
         ORDER BY created_at DESC, id DESC LIMIT $2",
        family.map_or("true".into(), Family::sql::<K>)
    );
    let status = status.map(JobStatus::as_str);
    from_rows(&c.query(&sql, &[&status, &limit]).await?)
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
