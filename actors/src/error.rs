//! Errors at the boundary of a job attempt, and whether trying again helps.

use ractor::ActorProcessingErr;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
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
    Store(#[from] crate::job::store::StoreError),
    /// No connection could be made.
    #[error(transparent)]
    Connect(#[from] crate::pg::DbError),
    /// Another instance holds the job now (this one stalled past its
    /// lease): stop without touching the job row.
    #[error("job {0}: the lease was lost to another instance")]
    LeaseLost(uuid::Uuid),
    /// A stage of the pipeline failed; `actor` names it for the restart metric.
    #[error("{actor} failed: {reason}")]
    Stage {
        actor: &'static str,
        reason: String,
        retriable: bool,
    },
}

impl ImportError {
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Source { retriable, .. } | Self::Stage { retriable, .. } => *retriable,
            Self::Database(e) => crate::pg::is_transient(e),
            Self::Store(e) => e.is_transient(),
            Self::Connect(_) => true,
            Self::LeaseLost(_) => false,
        }
    }
}

/// Whether an actor's failure is worth a restart. Errors we did not
/// classify (a panic, a broken invariant) get the benefit of the doubt: the
/// restart policy bounds them.
pub fn is_retriable(err: &ActorProcessingErr) -> bool {
    err.downcast_ref::<ImportError>()
        .is_none_or(ImportError::is_retriable)
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
