//! ExportReader: one `REPEATABLE READ` snapshot per attempt of an export
//! (its own, or one its pipeline exported to it).
//! It tells when the snapshot was taken, and starts the count of the rows
//! it holds (progress's total) on a second connection in the same snapshot,
//! so the first row does not wait for a `count(*)`. It streams the export's
//! query in binary, in steps
//! of `exports.fetch_rows` rows, each step one bounded message to the
//! Exporter. tokio-postgres stops reading the socket while a step waits for
//! its credit, so a slow store slows the server, not ferry's memory.
//!
//! A restart reads again from a new snapshot, after the last row the export
//! made durable (keyset continuation): see the plan's query.

use std::pin::Pin;
use std::sync::Arc;

use futures::StreamExt;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr};
use tokio::sync::oneshot;
use tokio_postgres::{Row, RowStream};
use uuid::Uuid;

use super::exporter;
use crate::error::JobError;
use crate::export::plan::Plan;
use crate::export::Position;
use crate::flow::Credits;
use crate::pipeline::snapshot::{self, Snapshot};
use crate::settings::DatabaseSettings;
use crate::telemetry::Mailbox;

pub const NAME: &str = "export_reader";

pub enum Msg {
    /// Read one step's rows; sent to itself until the end.
    Pump,
}

pub struct Args {
    pub job_id: Uuid,
    /// An exported snapshot (`pg_export_snapshot()`) to read in, instead
    /// of a new one.
    pub snapshot: Option<String>,
    /// The primary, or `exports.read_url`.
    pub database: DatabaseSettings,
    pub plan: Arc<Plan>,
    /// Rows up to here are in the store already.
    pub after: Option<Position>,
    pub fetch_rows: usize,
    pub exporter: Mailbox<exporter::Msg>,
    /// Bounds the steps in flight to the Exporter.
    pub credits: Credits,
    pub pipeline: Mailbox<Taken>,
}

/// What the reader tells its pipeline of its snapshot.
pub enum Taken {
    /// It is taken: when (the export's `data_as_of`), and what it sees
    /// (`pg_current_snapshot()`). Before any row.
    Snapshot { at: String, seen: String },
    /// The rows still to go in it, when their count is in.
    Counted(u64),
    /// The rows still to go, as the planner estimates them (several
    /// readers, which do not count): the total until the end.
    Estimated(u64),
}

pub struct State {
    args: Args,
    /// Holds the snapshot; the rows stream from it.
    snapshot: Option<Snapshot>,
    /// Resolves once the count's connection holds the snapshot too: the
    /// reader keeps it open until then.
    counting: Option<oneshot::Receiver<()>>,
    rows: Pin<Box<RowStream>>,
    done: bool,
}

pub type ExportReaderRef = ActorRef<Msg>;

pub async fn spawn_linked(pipeline: ActorCell, args: Args) -> Result<ExportReaderRef, SpawnErr> {
    let (reader, _) = Actor::spawn_linked(None, ExportReader, args, pipeline).await?;
    Ok(reader)
}

pub struct ExportReader;

impl Actor for ExportReader {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        let snapshot =
            snapshot::open(&args.database, "ferry-export", args.snapshot.as_deref()).await?;
        let at = snapshot.taken_at.clone();
        args.pipeline.send(Taken::Snapshot {
            at: at.clone(),
            seen: snapshot.seen.clone(),
        });
        let counting = count_alongside(&args, snapshot.export().await?);
        let (query, params) = args.plan.query(args.after.as_ref());
        tracing::info!(job_id = %args.job_id, data_as_of = %at, sql = %query, "Export reading.");
        let rows = snapshot
            .client
            .query_raw(query.as_str(), params.params.iter())
            .await
            .map_err(JobError::Database)?;
        myself.cast(Msg::Pump)?;
        Ok(State {
            args,
            snapshot: Some(snapshot),
            counting: Some(counting),
            rows: Box::pin(rows),
            done: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Msg>,
        Msg::Pump: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        if state.done {
            return Ok(());
        }
        let credit = state.args.credits.take().await;
        let want = state.args.fetch_rows.max(1);
        let mut rows: Vec<Row> = Vec::with_capacity(want);
        while rows.len() < want {
            match state.rows.next().await {
                Some(row) => rows.push(row.map_err(JobError::Database)?),
                None => {
                    state.done = true;
                    break;
                }
            }
        }
        if !rows.is_empty() {
            state
                .args
                .exporter
                .send(exporter::Msg::Rows { rows, credit });
        }
        if state.done {
            if let Some(snapshot) = state.snapshot.take() {
                if let Some(counting) = state.counting.take() {
                    // Fails at once when the count gave up: no wait.
                    let _ = counting.await;
                }
                snapshot.close().await?;
            }
            state.args.exporter.send(exporter::Msg::End);
        } else {
            myself.cast(Msg::Pump)?;
        }
        Ok(())
    }
}

/// Counts the rows still to go on a connection of its own in snapshot
/// `id`, and tells the pipeline. The total is progress, not the export: a
/// count that fails is logged, and the export goes on without it. The
/// receiver resolves once the count's connection holds the snapshot.
fn count_alongside(args: &Args, id: String) -> oneshot::Receiver<()> {
    let (holds, held) = oneshot::channel();
    let (count, params) = args.plan.count(args.after.as_ref());
    let (database, pipeline, job_id) = (args.database.clone(), args.pipeline.clone(), args.job_id);
    tokio::spawn(async move {
        let counted = async {
            let snapshot = snapshot::open(&database, "ferry-export-count", Some(&id)).await?;
            let _ = holds.send(());
            let row = snapshot.client.query_one(&count, &params.refs()).await?;
            snapshot.close().await?;
            Ok::<i64, JobError>(row.get(0))
        };
        match counted.await {
            Ok(remaining) => {
                tracing::debug!(job_id = %job_id, remaining, "Export counted.");
                pipeline.send(Taken::Counted(remaining.max(0) as u64));
            }
            Err(e) => {
                tracing::warn!(job_id = %job_id, error = %e, "Could not count an export's rows; its progress has no total.")
            }
        }
    });
    held
}
