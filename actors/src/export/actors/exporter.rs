//! Exporter: the design card's CsvExporter and its JSON, JSONL and Parquet
//! siblings, as one actor over a `FileEncoder`. It encodes the reader's rows
//! (and compresses them), cuts a part whenever `exports.part_bytes` are
//! ready (always on a row, with the position after that row), and starts a
//! new file at `exports.file_rows` rows or `exports.file_bytes` bytes. The
//! parts go to the ObjectWriter, at most `exports.parts_in_flight` + 1 at a
//! time: a slow store stops the encoder, and through it the reader.
//!
//! With several readers, the rows come encoded and compressed already, in
//! runs of numbered ranges: the Exporter takes them in the ranges' order
//! and its encoder adds only what a file needs around them (a CSV header,
//! JSON's brackets and commas).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr};
use tokio_postgres::Row;

use super::object_writer::{self, Part};
use super::range_reader::Run;
use crate::error::JobError;
use crate::export::encode::{Cut, Cutter, FileEncoder};
use crate::export::object::ColType;
use crate::export::plan::read_position;
use crate::export::{Destination, OpenFile, Position};
use crate::flow::{Credit, Credits};
use crate::pipeline::watermark::Watermark;
use crate::progress::Progress;
use crate::telemetry::{Depth, Mailbox};

pub const NAME: &str = "exporter";

pub enum Msg {
    Rows {
        rows: Vec<Row>,
        credit: Credit,
    },
    /// No more rows.
    End,
    /// Rows of range `range` read, encoded and compressed by a
    /// RangeReader; the range's last run `ends_range`.
    Run {
        range: usize,
        run: Run,
        ends_range: bool,
        credit: Credit,
    },
}

pub struct Args {
    pub encoder: Box<dyn FileEncoder>,
    /// The fields come first in a row; its position after them, of these
    /// types.
    pub fields: usize,
    pub position_types: Vec<ColType>,
    pub destination: Destination,
    pub cutter: Cutter,
    /// The first file: one to continue, or the index of a new one.
    pub first: First,
    /// Rows in finished files (and stored parts of the file continued),
    /// and the position after the last of them.
    pub rows_before: u64,
    pub position: Option<Position>,
    pub writer: Mailbox<object_writer::Msg>,
    /// Bounds the parts in flight to the writer.
    pub part_credits: Credits,
    pub depth: Depth,
    pub progress: Arc<Progress>,
    pub job_id: uuid::Uuid,
    /// The ranges RangeReaders read (`None`: one ExportReader sends rows).
    pub ranges: Option<usize>,
}

/// Where the export's next bytes go.
pub enum First {
    Continue(OpenFile),
    New(usize),
}

/// The file being encoded.
struct Current {
    rows: u64,
    /// Bytes of the file in parts already cut.
    offset: u64,
    next_part: i32,
}

pub struct State {
    args: Args,
    current: Option<Current>,
    /// Rows of the export before the current (or next) file.
    rows_before_file: u64,
    next_index: usize,
    /// Rows encoded since the last cut, and the position after them.
    uncut_rows: u64,
    position: Option<Position>,
    /// The runs of each range, taken in the ranges' order: the next
    /// range's as they come, a later range's once every one before it
    /// ended (each run holds its reader's credit).
    ranges: Watermark<RangeRuns>,
}

/// A range's runs not written yet, and whether its last one came.
#[derive(Default)]
struct RangeRuns {
    runs: VecDeque<(Run, Credit)>,
    ended: bool,
}

pub type ExporterRef = ActorRef<Msg>;

pub async fn spawn_linked(pipeline: ActorCell, args: Args) -> Result<ExporterRef, SpawnErr> {
    let (exporter, _) = Actor::spawn_linked(None, Exporter, args, pipeline).await?;
    Ok(exporter)
}

pub struct Exporter;

impl Actor for Exporter {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(&self, _: ActorRef<Msg>, args: Args) -> Result<State, ActorProcessingErr> {
        let (next_index, rows_before_file) = match &args.first {
            First::Continue(open) => (open.index, open.start_rows),
            First::New(index) => (*index, args.rows_before),
        };
        Ok(State {
            rows_before_file,
            position: args.position.clone(),
            current: None,
            next_index,
            uncut_rows: 0,
            ranges: Watermark::starting_at(0),
            args,
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<Msg>,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        state.args.depth.drain();
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Msg>,
        msg: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        state.args.depth.received();
        match msg {
            Msg::Rows { rows, credit } => {
                encode(state, &rows).await?;
                // The rows are encoded: the reader may send more.
                drop(credit);
            }
            Msg::End => end(state).await?,
            Msg::Run {
                range,
                run,
                ends_range,
                credit,
            } => {
                let range = range as u64;
                if state.ranges.get_mut(range).is_none() {
                    state.ranges.insert(range, RangeRuns::default());
                }
                let runs = state.ranges.get_mut(range).expect("inserted above");
                runs.runs.push_back((run, credit));
                runs.ended |= ends_range;
                write_runs(state).await?;
            }
        }
        Ok(())
    }
}

async fn end(state: &mut State) -> Result<(), JobError> {
    if state.current.is_none() {
        // Even no rows make a file (a CSV header, `[]`).
        begin(state).await?;
    }
    end_file(state).await?;
    state.args.writer.send(object_writer::Msg::End);
    Ok(())
}

/// Writes the runs that are next in order, and ends the export after the
/// last range's last run.
async fn write_runs(state: &mut State) -> Result<(), JobError> {
    loop {
        let next = state.ranges.next();
        let run = state.ranges.get_mut(next).and_then(|r| r.runs.pop_front());
        if let Some((run, credit)) = run {
            append(state, run).await?;
            drop(credit);
            continue;
        }
        // Every run of the next range is written: it is done once ended.
        if state.ranges.pop_ready(|r| r.ended).is_none() {
            return Ok(());
        }
        if Some(state.ranges.next()) == state.args.ranges.map(|n| n as u64) {
            return end(state).await;
        }
    }
}

/// A run into the current file, cut as rows are (a cut falls between
/// runs).
async fn append(state: &mut State, run: Run) -> Result<(), JobError> {
    if run.rows == 0 {
        return Ok(());
    }
    Progress::add(&state.args.progress.records_read, run.rows);
    if state.current.is_none() {
        begin(state).await?;
    }
    state
        .args
        .encoder
        .append(&run.bytes, run.rows)
        .map_err(failed)?;
    state.position = run.position;
    encoded(state, run.rows).await
}

fn failed(e: impl std::fmt::Display) -> JobError {
    JobError::permanent(NAME, e)
}

async fn encode(state: &mut State, mut rows: &[Row]) -> Result<(), JobError> {
    Progress::add(&state.args.progress.records_read, rows.len() as u64);
    while !rows.is_empty() {
        if state.current.is_none() {
            begin(state).await?;
        }
        let cutter = state.args.cutter;
        let current = state.current.as_ref().expect("begun above");
        let (now, later) = rows.split_at(cutter.room(current.rows, rows.len()));
        state.args.encoder.rows(now).map_err(failed)?;
        if let Some(last) = now.last() {
            state.position = Some(
                read_position(last, state.args.fields, &state.args.position_types)
                    .map_err(failed)?,
            );
        }
        encoded(state, now.len() as u64).await?;
        rows = later;
    }
    Ok(())
}

/// `rows` more rows are in the encoder: cuts a part or the file when it is
/// due.
async fn encoded(state: &mut State, rows: u64) -> Result<(), JobError> {
    state.uncut_rows += rows;
    let current = state.current.as_mut().expect("a file being encoded");
    current.rows += rows;
    let ready = state.args.encoder.ready();
    match state.args.cutter.cut(current.rows, current.offset, ready) {
        Cut::File => end_file(state).await?,
        Cut::Part => {
            let bytes = state.args.encoder.cut().map_err(failed)?;
            send_part(state, bytes).await;
        }
        Cut::Nothing => {}
    }
    Ok(())
}

async fn begin(state: &mut State) -> Result<(), JobError> {
    let index = state.next_index;
    state.next_index += 1;
    let (current, rows_before) = match &state.args.first {
        First::Continue(open) if open.index == index => (
            Current {
                rows: open.rows,
                offset: open.bytes(),
                next_part: open.parts.last().map_or(1, |p| p.number + 1),
            },
            open.rows,
        ),
        _ => (
            Current {
                rows: 0,
                offset: 0,
                next_part: 1,
            },
            0,
        ),
    };
    state.args.encoder.begin(rows_before).map_err(failed)?;
    state.args.writer.send(object_writer::Msg::BeginFile {
        index,
        location: state.args.destination.file(index),
        start_rows: state.rows_before_file,
        start: state.position.clone(),
    });
    state.current = Some(current);
    Ok(())
}

async fn end_file(state: &mut State) -> Result<(), JobError> {
    let bytes = state.args.encoder.finish().map_err(failed)?;
    send_part(state, bytes).await;
    let current = state.current.take().expect("a file to end");
    state.rows_before_file += current.rows;
    state.args.writer.send(object_writer::Msg::EndFile);
    Ok(())
}

async fn send_part(state: &mut State, bytes: Vec<u8>) {
    let credit = state.args.part_credits.take().await;
    let current = state.current.as_mut().expect("a file to cut");
    let part = Part {
        number: current.next_part,
        offset: current.offset,
        bytes: Bytes::from(bytes),
        rows: std::mem::take(&mut state.uncut_rows),
        position: state.position.clone(),
    };
    current.next_part += 1;
    current.offset += part.bytes.len() as u64;
    state
        .args
        .writer
        .send(object_writer::Msg::Part(part, credit));
}
