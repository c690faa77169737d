//! ExportReader: one `REPEATABLE READ` snapshot per attempt of an export
//! (its own, or one its pipeline exported to it).
//! It records when the snapshot was taken and how many rows it holds
//! (progress's total), then streams the export's query in binary, in steps
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

/// What the reader tells its pipeline once its snapshot is taken.
pub struct Taken {
    /// When (the export's `data_as_of`).
    pub at: String,
    /// What it sees (`pg_current_snapshot()`).
    pub seen: String,
    /// Rows still to go in it.
    pub remaining: u64,
}

pub struct State {
    args: Args,
    /// Holds the snapshot; the rows stream from it.
    snapshot: Option<Snapshot>,
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
        let client = &snapshot.client;
        let at = snapshot.taken_at.clone();
        let (count, params) = args.plan.count(args.after.as_ref());
        let remaining: i64 = client
            .query_one(&count, &params.refs())
            .await
            .map_err(JobError::Database)?
            .get(0);
        args.pipeline.send(Taken {
            at: at.clone(),
            seen: snapshot.seen.clone(),
            remaining: remaining as u64,
        });
        let (query, params) = args.plan.query(args.after.as_ref());
        tracing::info!(job_id = %args.job_id, data_as_of = %at, remaining, sql = %query, "Export reading.");
        let rows = client
            .query_raw(query.as_str(), params.params.iter())
            .await
            .map_err(JobError::Database)?;
        myself.cast(Msg::Pump)?;
        Ok(State {
            args,
            snapshot: Some(snapshot),
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
                snapshot.close().await?;
            }
            state.args.exporter.send(exporter::Msg::End);
        } else {
            myself.cast(Msg::Pump)?;
        }
        Ok(())
    }
}
