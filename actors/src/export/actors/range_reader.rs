//! RangeReader: one of an export's several readers (`exports.readers`).
//! Each holds a connection in the export's one snapshot (exported by its
//! pipeline), takes the next range of the order key, in order, reads it in
//! binary, and encodes and compresses its rows into runs, which it hands
//! to the Exporter with the position after their last row. The Exporter
//! writes the runs in the ranges' order, so the file is the one a single
//! reader would make; the compression, which is most of ferry's work, runs
//! on as many cores as there are readers.
//!
//! A reader has at most `exports.max_in_flight` runs on their way: one
//! whose range is ahead of the range being written waits, and with it its
//! reader.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr};
use tokio_postgres::{Row, RowStream};
use uuid::Uuid;

use super::exporter;
use crate::error::JobError;
use crate::export::encode::{FileEncoder, TextEncoder};
use crate::export::object::ColType;
use crate::export::plan::{read_position, Plan};
use crate::export::split::Span;
use crate::export::Position;
use crate::flow::Credits;
use crate::pipeline::snapshot::{self, Snapshot};
use crate::settings::DatabaseSettings;
use crate::telemetry::Mailbox;

pub const NAME: &str = "range_reader";

/// Input bytes a run holds, at least (it ends on a row): a few gzip
/// members.
const RUN_BYTES: usize = 2 << 20;

pub enum Msg {
    /// Read one step's rows; sent to itself until the ranges run out.
    Pump,
}

/// The ranges of one export, taken in order by its readers.
pub struct Ranges {
    spans: Vec<Span>,
    next: AtomicUsize,
}

impl Ranges {
    pub fn new(spans: Vec<Span>) -> Self {
        Self {
            spans,
            next: AtomicUsize::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The next range no reader took yet, and its number.
    fn take(&self) -> Option<(usize, &Span)> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.spans.get(i).map(|s| (i, s))
    }
}

/// Rows of one range, encoded and compressed.
pub struct Run {
    /// Whole gzip members or zstd frames (or plain bytes).
    pub bytes: Vec<u8>,
    pub rows: u64,
    /// After the last of the rows.
    pub position: Option<Position>,
}

pub struct Args {
    pub job_id: Uuid,
    /// The export's snapshot (`pg_export_snapshot()`).
    pub snapshot: String,
    pub database: DatabaseSettings,
    pub plan: Arc<Plan>,
    /// Rows up to here are in the store already.
    pub after: Option<Position>,
    pub ranges: Arc<Ranges>,
    pub encoder: TextEncoder,
    pub fetch_rows: usize,
    pub exporter: Mailbox<exporter::Msg>,
    /// Bounds this reader's runs in flight to the Exporter.
    pub credits: Credits,
}

/// The range being read.
struct Reading {
    range: usize,
    rows: Pin<Box<RowStream>>,
    /// Rows encoded since the last run, and the position after them.
    run_rows: u64,
    position: Option<Position>,
}

pub struct State {
    args: Args,
    snapshot: Option<Snapshot>,
    reading: Option<Reading>,
    fields: usize,
    position_types: Vec<ColType>,
}

pub type RangeReaderRef = ActorRef<Msg>;

pub async fn spawn_linked(pipeline: ActorCell, args: Args) -> Result<RangeReaderRef, SpawnErr> {
    let (reader, _) = Actor::spawn_linked(None, RangeReader, args, pipeline).await?;
    Ok(reader)
}

pub struct RangeReader;

impl Actor for RangeReader {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        let snapshot =
            snapshot::open(&args.database, "ferry-export-range", Some(&args.snapshot)).await?;
        // The readers are the parallelism: a range planned with parallel
        // workers would start two more processes for every range. And a
        // range is a slice of the order key's index (the survey made sure
        // there is one), best read in its order: seeing a small slice, the
        // planner would rather sort a bitmap scan's rows, which measured
        // 2.5 times slower here.
        snapshot
            .client
            .batch_execute("SET max_parallel_workers_per_gather = 0; SET enable_sort = off")
            .await
            .map_err(JobError::Database)?;
        myself.cast(Msg::Pump)?;
        Ok(State {
            fields: args.plan.fields.len(),
            position_types: args.plan.position_types(),
            snapshot: Some(snapshot),
            reading: None,
            args,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Msg>,
        Msg::Pump: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        if state.reading.is_none() && !begin(state).await? {
            return Ok(()); // no range left: the snapshot is closed
        }
        let ended = step(state).await?;
        let reading = state.reading.as_mut().expect("a range being read");
        if ended || state.args.encoder.written() >= RUN_BYTES {
            let run = Run {
                bytes: match reading.run_rows {
                    0 => Vec::new(),
                    _ => state.args.encoder.cut().map_err(failed)?,
                },
                rows: std::mem::take(&mut reading.run_rows),
                position: reading.position.clone(),
            };
            let credit = state.args.credits.take().await;
            let range = reading.range;
            state.args.exporter.send(exporter::Msg::Run {
                range,
                run,
                ends_range: ended,
                credit,
            });
            if ended {
                state.reading = None;
            } else {
                state.args.encoder.start_run();
            }
        }
        myself.cast(Msg::Pump)?;
        Ok(())
    }
}

fn failed(e: impl std::fmt::Display) -> JobError {
    JobError::permanent(NAME, e)
}

/// Starts reading the next range; `false` once none is left (the snapshot
/// is then closed).
async fn begin(state: &mut State) -> Result<bool, JobError> {
    let Some((range, span)) = state.args.ranges.take() else {
        if let Some(snapshot) = state.snapshot.take() {
            snapshot.close().await?;
        }
        return Ok(false);
    };
    let (query, params) = state.args.plan.query_in(state.args.after.as_ref(), span);
    tracing::debug!(job_id = %state.args.job_id, range, sql = %query, "Export reading a range.");
    let client = &state
        .snapshot
        .as_ref()
        .expect("open until the ranges run out")
        .client;
    let rows = client
        .query_raw(query.as_str(), params.params.iter())
        .await
        .map_err(JobError::Database)?;
    state.args.encoder.start_run();
    state.reading = Some(Reading {
        range,
        rows: Box::pin(rows),
        run_rows: 0,
        position: None,
    });
    Ok(true)
}

/// Reads and encodes up to `fetch_rows` rows of the range; `true` once
/// it is read to its end.
async fn step(state: &mut State) -> Result<bool, JobError> {
    let reading = state.reading.as_mut().expect("a range being read");
    let want = state.args.fetch_rows.max(1);
    let mut rows: Vec<Row> = Vec::with_capacity(want);
    let mut ended = false;
    while rows.len() < want {
        match reading.rows.next().await {
            Some(row) => rows.push(row.map_err(JobError::Database)?),
            None => {
                ended = true;
                break;
            }
        }
    }
    if let Some(last) = rows.last() {
        state.args.encoder.rows(&rows).map_err(failed)?;
        reading.run_rows += rows.len() as u64;
        reading.position =
            Some(read_position(last, state.fields, &state.position_types).map_err(failed)?);
    }
    Ok(ended)
}
