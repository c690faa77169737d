//! Errors at ferry's boundaries, and whether trying again helps: the
//! database's ([`DbError`], [`StoreError`]), a fenced write's
//! ([`Fenced`]), and a job attempt's ([`JobError`], every kind's).

use ractor::ActorProcessingErr;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

/// Why the database could not be reached or used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database url: {}", chain(.0))]
    Url(tokio_postgres::Error),
    #[error("cannot connect to PostgreSQL: {}", chain(.0))]
    Connect(tokio_postgres::Error),
    #[error("connection pool: {0}")]
    Pool(String),
}

/// The job store refused, or a job row could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {}", chain(.0))]
    Database(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Connect(#[from] DbError),
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
            Self::Database(e) => is_transient(e),
            Self::Connect(_) => true,
            Self::Unreadable { .. } => false,
        }
    }
}

/// A write to a job row that its fence refused, or that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Fenced {
    /// The job is not ours any more (another instance holds its lease, or
    /// it ended: cancelled, say). Nothing was written.
    #[error("job {0} is not ours any more: its lease was lost or it ended")]
    Lost(Uuid),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tokio_postgres::Error> for Fenced {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<DbError> for Fenced {
    fn from(e: DbError) -> Self {
        Self::Store(e.into())
    }
}

/// Why an attempt of a job, of any kind, failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The source could not be opened or read.
    #[error("source {uri}: {reason}")]
    Source {
        uri: String,
        reason: String,
        retriable: bool,
    },
    /// The database refused or dropped a statement.
    #[error("database: {}", chain(.0))]
    Database(#[from] tokio_postgres::Error),
    /// The job store refused, or a job row could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No connection could be made.
    #[error(transparent)]
    Connect(#[from] DbError),
    /// The job is not ours any more: stop without touching its row.
    #[error("job {0}: the lease was lost to another instance, or the job ended")]
    Lost(Uuid),
    /// A stage of the pipeline failed; `stage` names it (its actor's
    /// `NAME`) for the restart metric and the log.
    #[error("{stage} failed: {reason}")]
    Stage {
        stage: &'static str,
        reason: String,
        retriable: bool,
    },
}

impl From<Fenced> for JobError {
    fn from(e: Fenced) -> Self {
        match e {
            Fenced::Lost(job) => Self::Lost(job),
            Fenced::Store(e) => Self::Store(e),
        }
    }
}

impl JobError {
    /// A failure of `stage` that trying again will not mend.
    pub fn permanent(stage: &'static str, reason: impl std::fmt::Display) -> Self {
        Self::Stage {
            stage,
            reason: reason.to_string(),
            retriable: false,
        }
    }

    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Source { retriable, .. } | Self::Stage { retriable, .. } => *retriable,
            Self::Database(e) => is_transient(e),
            Self::Store(e) => e.is_transient(),
            Self::Connect(_) => true,
            Self::Lost(_) => false,
        }
    }

    /// The stage the error names, if it names one.
    pub fn stage(&self) -> Option<&'static str> {
        match self {
            Self::Stage { stage, .. } => Some(stage),
            _ => None,
        }
    }

    /// The error as `stage`'s (as retriable as it was), unless it names a
    /// stage already or is a lost lease, which no stage caused.
    pub fn in_stage(self, stage: &'static str) -> Self {
        match self {
            Self::Stage { .. } | Self::Lost(_) => self,
            other => Self::Stage {
                stage,
                retriable: other.is_retriable(),
                reason: other.told(),
            },
        }
    }

    /// What the job's row, its events and the API say about the error: its
    /// text, but a statement the database refused is told by its SQLSTATE
    /// and an error id alone. The database's own words name ferry's
    /// queries and the server's limits, and may quote a row's values; they
    /// go to the log, under the same id.
    pub fn told(&self) -> String {
        let refused = match self {
            Self::Database(e) | Self::Store(StoreError::Database(e)) if !is_transient(e) => e,
            _ => return self.to_string(),
        };
        let id = Uuid::new_v4();
        let code = refused.code().map_or("", |c| c.code());
        tracing::error!(error_id = %id, sqlstate = code, error = %chain(refused), "The database refused a job's statement.");
        format!("the database refused a statement (SQLSTATE {code}; error id {id} in the log)")
    }

    /// What an actor failed with, as a job error: its own, or (a panic, a
    /// broken invariant) a retriable failure of `stage`. The restart policy
    /// bounds what we did not classify.
    pub fn of_actor(err: ActorProcessingErr, stage: &'static str) -> Self {
        match err.downcast::<Self>() {
            Ok(e) => e.in_stage(stage),
            Err(other) => Self::Stage {
                stage,
                reason: other.to_string(),
                retriable: true,
            },
        }
    }
}

/// Whether an actor's failure is worth a restart. Errors we did not
/// classify (a panic, a broken invariant) get the benefit of the doubt: the
/// restart policy bounds them.
pub fn is_retriable(err: &ActorProcessingErr) -> bool {
    err.downcast_ref::<JobError>()
        .is_none_or(JobError::is_retriable)
}

/// Whether trying again on a fresh connection may succeed: the connection
/// broke, the server is shutting down or busy, or the transaction lost a
/// serialization or deadlock race.
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    let Some(code) = e.code() else {
        // No SQLSTATE: an I/O error on the socket.
        return true;
    };
    code.code().starts_with("08")
        || [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::QUERY_CANCELED,
        ]
        .contains(code)
}

/// An error with its sources, `outer: inner: …`: tokio-postgres says only
/// "db error" at the top and keeps the server's message in its source.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_names_its_stage_once() {
        let lost = JobError::Lost(Uuid::nil()).in_stage("exporter");
        assert!(matches!(lost, JobError::Lost(_)), "no stage lost a lease");
        let source = JobError::Source {
            uri: "s3://b/k".into(),
            reason: "gone".into(),
            retriable: true,
        };
        let named = source.in_stage("file_fetcher");
        assert_eq!(named.stage(), Some("file_fetcher"));
        assert!(named.is_retriable());
        assert_eq!(
            named.in_stage("import_pipeline").stage(),
            Some("file_fetcher"),
            "the first stage to name it keeps it"
        );
        let panic: ActorProcessingErr = "index out of bounds".into();
        let e = JobError::of_actor(panic, "csv_reader");
        assert_eq!(e.stage(), Some("csv_reader"));
        assert!(e.is_retriable());
    }
}
