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
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio_postgres::{Client, Row, RowStream};
use uuid::Uuid;

use super::export_pipeline;
use super::exporter;
use crate::error::ImportError;
use crate::export::plan::Plan;
use crate::export::Position;
use crate::flow::Credits;
use crate::pg;
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
    pub pipeline: Mailbox<export_pipeline::Msg>,
}

pub struct State {
    args: Args,
    /// Holds the snapshot; the rows stream from it.
    client: Client,
    rows: Pin<Box<RowStream>>,
    done: bool,
}

pub type ExportReaderRef = ActorRef<Msg>;

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
        let client = pg::connect(&pg::named(&args.database, "ferry-export")).await?;
        // Positions travel as text; UTC keeps their text the same on every
        // attempt.
        client
            .batch_execute("SET TIME ZONE 'UTC'; BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(ImportError::Database)?;
        if let Some(id) = &args.snapshot {
            // An id is hex digits and dashes (`00000003-0000001B-1`); it
            // cannot be a bind parameter.
            if !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                return Err(format!("not a snapshot id: {id:?}").into());
            }
            client
                .batch_execute(&format!("SET TRANSACTION SNAPSHOT '{id}'"))
                .await
                .map_err(ImportError::Database)?;
        }
        // The first statement takes the snapshot.
        let taken = client
            .query_one(
                "SELECT to_char(statement_timestamp(), 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                        pg_current_snapshot()::text",
                &[],
            )
            .await
            .map_err(ImportError::Database)?;
        let (at, snapshot): (String, String) = (taken.get(0), taken.get(1));
        let (count, params) = args.plan.count(args.after.as_ref());
        let remaining: i64 = client
            .query_one(&count, &params.refs())
            .await
            .map_err(ImportError::Database)?
            .get(0);
        args.pipeline.send(export_pipeline::Msg::Snapshot {
            at: at.clone(),
            snapshot,
            remaining: remaining as u64,
        });
        let (query, params) = args.plan.query(args.after.as_ref());
        tracing::info!(job_id = %args.job_id, data_as_of = %at, remaining, sql = %query, "Export reading.");
        let rows = client
            .query_raw(query.as_str(), params.params.iter())
            .await
            .map_err(ImportError::Database)?;
        myself.cast(Msg::Pump)?;
        Ok(State {
            args,
            client,
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
                Some(row) => rows.push(row.map_err(ImportError::Database)?),
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
            state
                .client
                .batch_execute("COMMIT")
                .await
                .map_err(ImportError::Database)?;
            state.args.exporter.send(exporter::Msg::End);
        } else {
            myself.cast(Msg::Pump)?;
        }
        Ok(())
    }
}
