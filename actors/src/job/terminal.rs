//! The statements a kind adds to: [`Writes`], columns of a job row with
//! their values bound, and [`End`], the one terminal statement of a job.
//!
//! A job ends in one statement, whichever way it ends: its row (fenced on
//! the lease, when one is held), its status event in the outbox, and
//! whatever its kind adds (deleting its saved rejects, releasing its
//! messages), so that all of it happens or none of it does.

use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::store::COLUMNS;
use crate::vocab::JobStatus;

type Param = Box<dyn ToSql + Sync + Send>;

/// Columns of a job row and their values, each value a bind parameter
/// numbered after the statement's own.
pub struct Writes {
    first: usize,
    params: Vec<Param>,
    columns: Vec<(&'static str, String)>,
}

impl Writes {
    /// Writes whose parameters are numbered from `$first`.
    pub(super) fn from(first: usize) -> Self {
        Self {
            first,
            params: Vec::new(),
            columns: Vec::new(),
        }
    }

    /// A value as the statement's next parameter: its `$n`.
    pub fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.first + self.params.len() - 1)
    }

    /// `column = value`; the value's `$n`.
    pub fn set(
        &mut self,
        column: &'static str,
        value: impl ToSql + Sync + Send + 'static,
    ) -> String {
        let p = self.bind(value);
        self.columns.push((column, p.clone()));
        p
    }

    /// `column = expression`, an expression of no value (`now()`).
    pub fn set_sql(&mut self, column: &'static str, expression: &'static str) {
        self.columns.push((column, expression.to_string()));
    }

    /// `column = expression`, with `{}` in the expression the value
    /// (`greatest(total_rows, {})`).
    pub fn set_to(
        &mut self,
        column: &'static str,
        expression: &str,
        value: impl ToSql + Sync + Send + 'static,
    ) {
        let p = self.bind(value);
        self.columns.push((column, expression.replace("{}", &p)));
    }

    /// `a = $6, b = $7` (nothing when empty).
    pub(super) fn assignments(&self) -> String {
        self.columns
            .iter()
            .map(|(c, v)| format!(", {c} = {v}"))
            .collect()
    }

    /// `, a, b` and `, $6, $7`, for an insert.
    pub(super) fn insert_lists(&self) -> (String, String) {
        let names = self.columns.iter().map(|(c, _)| format!(", {c}")).collect();
        let values = self.columns.iter().map(|(_, v)| format!(", {v}")).collect();
        (names, values)
    }

    pub(super) fn params(&self) -> impl Iterator<Item = &(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
    }
}

/// A job's terminal statement, being composed. Its own parameters come
/// first: [`End::JOB`] the job's id, `$2` the lease owner (or NULL: any),
/// [`End::STATUS`] the status it ends in, `$4`–`$6` its event.
pub struct End {
    head: [Param; 6],
    writes: Writes,
    with: Vec<String>,
    outputs: Vec<String>,
}

impl End {
    /// The job's id.
    pub const JOB: &'static str = "$1";
    /// The status it ends in, as text.
    pub const STATUS: &'static str = "$3";
    /// The event's payload (NULL when it has none).
    pub const PAYLOAD: &'static str = "$5";
    /// The outbox rows the statement queued (its status event): a CTE a
    /// kind may count.
    pub const QUEUED: &'static str = "queued";

    pub(super) fn new(job: Uuid, owner: Option<&str>, status: JobStatus) -> Self {
        let none: Option<String> = None;
        Self {
            head: [
                Box::new(job),
                Box::new(owner.map(str::to_string)),
                Box::new(status.as_str()),
                Box::new(none.clone()),
                Box::new(none.clone()),
                Box::new(none),
            ],
            writes: Writes::from(7),
            with: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// The event that announces the end, on the job's `status_topic`,
    /// keyed `key`. A message the broker refuses for good goes to
    /// `dead_letters` when one is given (a message a consumer must get);
    /// otherwise it is cut down to fit.
    pub fn event(&mut self, key: String, payload: String, dead_letters: Option<String>) {
        self.head[3] = Box::new(Some(key));
        self.head[4] = Box::new(Some(payload));
        self.head[5] = Box::new(dead_letters);
    }

    /// The row's columns the job ends with.
    pub fn writes(&mut self) -> &mut Writes {
        &mut self.writes
    }

    /// A value as the statement's next parameter: its `$n`.
    pub fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.writes.bind(value)
    }

    /// A statement of the kind's, `name AS (…)`, in the same statement.
    /// It runs whether or not the end was written: it says
    /// `EXISTS (SELECT FROM done)` where it must not act otherwise.
    pub fn with(&mut self, cte: String) {
        self.with.push(cte);
    }

    /// A column the statement returns beside the row, for
    /// [`super::Kind::ended`] to read: `(SELECT count(*) FROM x) AS n`.
    pub fn output(&mut self, expression: String) {
        self.outputs.push(expression);
    }

    pub(super) fn sql(&self) -> String {
        let active = JobStatus::sql_list(&JobStatus::ACTIVE);
        let with: String = self.with.iter().map(|w| format!(",\n {w}")).collect();
        let outputs: String = self.outputs.iter().map(|o| format!(", {o}")).collect();
        format!(
            "WITH done AS (
                 UPDATE jobs SET status = $3, finished_at = now(), updated_at = now(),
                     lease_owner = NULL, lease_expires_at = NULL{sets}
                 WHERE id = $1 AND ($2::text IS NULL OR lease_owner = $2) AND status IN {active}
                 RETURNING {COLUMNS}),
             {queued} AS (
                 INSERT INTO status_outbox (job_id, topic, message_key, payload, dead_letter_topic)
                 SELECT id, status_topic, $4, $5, $6 FROM done
                 WHERE status_topic IS NOT NULL AND $5::text IS NOT NULL
                 RETURNING 1){with}
             SELECT *{outputs} FROM done",
            sets = self.writes.assignments(),
            queued = Self::QUEUED,
        )
    }

    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.head
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .chain(self.writes.params())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_adds_columns_and_statements_with_its_own_parameters() {
        let mut end = End::new(Uuid::nil(), None, JobStatus::Completed);
        end.writes().set("processed_rows", 5_i64);
        end.writes()
            .set_to("total_rows", "greatest(total_rows, {})", 7_i64);
        let path = end.bind(Some("r.csv".to_string()));
        end.with(format!(
            "written AS (DELETE FROM import_rejects WHERE job_id = {} AND {path}::text IS NOT NULL)",
            End::JOB
        ));
        end.output("1 AS one".into());
        let sql = end.sql();
        assert!(
            sql.contains("lease_expires_at = NULL, processed_rows = $7, total_rows = greatest(total_rows, $8)"),
            "{sql}"
        );
        assert!(
            sql.contains("job_id = $1 AND $9::text IS NOT NULL"),
            "{sql}"
        );
        assert!(sql.contains("SELECT *, 1 AS one FROM done"), "{sql}");
        assert_eq!(end.params().len(), 9);
    }
}
