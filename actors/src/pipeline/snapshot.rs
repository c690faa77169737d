//! The snapshot an export reads in: a `REPEATABLE READ, READ ONLY`
//! transaction in UTC (positions travel as text, and UTC keeps their text
//! the same on every attempt), its own or one another session exported to
//! it, so that several connections read the same data.

use tokio_postgres::Client;

use crate::error::JobError;
use crate::pg;
use crate::settings::DatabaseSettings;

/// An open read snapshot, held by its connection.
pub struct Snapshot {
    pub client: Client,
    /// When it was taken (RFC 3339, UTC, microseconds): an export's
    /// `data_as_of`.
    pub taken_at: String,
    /// What it sees (`pg_current_snapshot()` as text).
    pub seen: String,
}

/// Opens a snapshot on a new connection named `name`: its own, or the one
/// `exported` names (`pg_export_snapshot()`'s id).
pub async fn open(
    database: &DatabaseSettings,
    name: &str,
    exported: Option<&str>,
) -> Result<Snapshot, JobError> {
    let client = pg::connect(&pg::named(database, name)).await?;
    // No JIT: it compiled each query of a 10-row export for 25 ms (the
    // planner guesses a third of a group for an unknown watermark), and a
    // million-row read ran no faster with it.
    client
        .batch_execute(
            "SET TIME ZONE 'UTC'; SET jit = off;
             BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        )
        .await?;
    if let Some(id) = exported {
        // An id is hex digits and dashes (`00000003-0000001B-1`); it cannot
        // be a bind parameter.
        if !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(JobError::permanent(
                "snapshot",
                format!("not a snapshot id: {id:?}"),
            ));
        }
        client
            .batch_execute(&format!("SET TRANSACTION SNAPSHOT '{id}'"))
            .await?;
    }
    // The first statement takes the snapshot.
    let taken = client
        .query_one(
            concat!(
                "SELECT ",
                crate::rfc3339!("statement_timestamp()"),
                ", pg_current_snapshot()::text"
            ),
            &[],
        )
        .await?;
    Ok(Snapshot {
        taken_at: taken.get(0),
        seen: taken.get(1),
        client,
    })
}

impl Snapshot {
    /// Exports the snapshot for other sessions (while this one holds it):
    /// its id, for [`open`].
    pub async fn export(&self) -> Result<String, JobError> {
        Ok(self
            .client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await?
            .get(0))
    }

    /// Ends the read.
    pub async fn close(self) -> Result<(), JobError> {
        Ok(self.client.batch_execute("COMMIT").await?)
    }
}
