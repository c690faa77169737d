//! CsvReader: decompresses and parses the byte stream, turns records into
//! node rows, writes bad records to the rejects file with their line and
//! reason, and hands rows on to the BatchAccumulator.
//!
//! It works in steps (`Pump`), each parsing at most `read_rows` records, so
//! the actor stays responsive and every step's output is one bounded
//! message. On a restart it parses again from the start of the file and
//! skips the records the checkpoint says are committed: gzip cannot seek.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use csv_async::{AsyncReader, AsyncReaderBuilder, ByteRecord};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;
use tokio_util::io::StreamReader;

use super::batch_accumulator::{Feed, Step};
use super::file_fetcher::FetchError;
use crate::error::JobError;
use crate::import::batch::{Batch, NodeBatch};
use crate::import::contract::ObjectRules;
use crate::import::drift::DriftWatch;
use crate::import::formats::compression::decompress;
use crate::import::formats::csv::Header;
use crate::import::formats::limits::{limit_error, LimitedReader, Limits};
use crate::import::formats::rejects::Rejects;
use crate::import::table::rejects::RejectsStore;
use crate::import::tracker::ReadPosition;
use crate::import::InputFormat;
use crate::progress::Progress;
use crate::settings::ImportSettings;
use crate::telemetry::Depth;
use crate::vocab::Target;

pub const NAME: &str = "csv_reader";

pub enum Msg {
    /// Parse one step's worth of records; sent to itself until the end.
    Pump,
}

pub struct Args {
    pub format: InputFormat,
    pub settings: Arc<ImportSettings>,
    pub bytes: mpsc::Receiver<io::Result<Bytes>>,
    pub bytes_depth: Depth,
    /// Where the last attempt's checkpoint left off.
    pub resume: ReadPosition,
    /// Where the rejects are saved.
    pub rejects_store: RejectsStore,
    pub feed: Feed<NodeBatch>,
    pub progress: Arc<Progress>,
    /// In a multi-file job: the file's index and name, for its rejects.
    pub file: Option<(u64, String)>,
    /// The group's contract for nodes, if it has one.
    pub contract: Option<Arc<ObjectRules>>,
    /// Told the file's header (a reference list has none).
    pub drift: Arc<DriftWatch>,
}

type Input = AsyncReader<BufReader<LimitedReader<Box<dyn AsyncRead + Send + Unpin>>>>;

pub struct State {
    format: InputFormat,
    settings: Arc<ImportSettings>,
    bytes_depth: Depth,
    resume: ReadPosition,
    feed: Feed<NodeBatch>,
    progress: Arc<Progress>,
    input: Option<Input>,
    /// Bytes read since the last record: reset per record, checked by the
    /// `LimitedReader` under the parser.
    since_record: Arc<AtomicU64>,
    /// Compressed bytes taken from the source so far.
    consumed: Arc<AtomicU64>,
    /// Held until the first step opens the stream.
    bytes: Option<mpsc::Receiver<io::Result<Bytes>>>,
    header: Option<Header>,
    /// This step's rejects, from when the header is known.
    rejects: Option<Rejects>,
    store: RejectsStore,
    record: ByteRecord,
    pos: ReadPosition,
    done: bool,
    /// In a multi-file job, the file's index and name, taken by the
    /// rejects once the header is known.
    file: Option<(u64, String)>,
    contract: Option<Arc<ObjectRules>>,
    drift: Arc<DriftWatch>,
}

pub type CsvReaderRef = ActorRef<Msg>;

pub async fn spawn_linked(pipeline: ActorCell, args: Args) -> Result<CsvReaderRef, SpawnErr> {
    let (reader, _) = Actor::spawn_linked(None, CsvReader, args, pipeline).await?;
    Ok(reader)
}

pub struct CsvReader;

impl Actor for CsvReader {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        // Records are counted from the top of the file again; rejects go
        // on from the checkpoint.
        let pos = ReadPosition {
            records: 0,
            ..args.resume
        };
        myself.cast(Msg::Pump)?;
        Ok(State {
            format: args.format,
            settings: args.settings,
            bytes_depth: args.bytes_depth,
            resume: args.resume,
            feed: args.feed,
            progress: args.progress,
            input: None,
            since_record: Arc::default(),
            consumed: Arc::default(),
            bytes: Some(args.bytes),
            header: None,
            rejects: None,
            store: args.rejects_store,
            record: ByteRecord::new(),
            pos,
            done: false,
            file: args.file,
            contract: args.contract,
            drift: args.drift,
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
        let mut rows = NodeBatch::with_capacity(state.settings.read_rows);
        let (read_before, rejected_before) = (state.pos.records, state.pos.rejected);
        let step = match read_step(state, &mut rows).await {
            Ok(step) => step,
            Err(e) => match fetch_error(&e) {
                // The source failed, not the content: a restart may succeed.
                Some(f) => {
                    return Err(JobError::Source {
                        uri: f.uri.clone(),
                        reason: f.reason.clone(),
                        retriable: true,
                    }
                    .into())
                }
                None => Step::End(Some(match limit_error(&e) {
                    Some(limit) => limit.to_string(),
                    None => format!(
                        "unreadable input after line {}: {e}",
                        state.record.position().map_or(0, |p| p.line())
                    ),
                })),
            },
        };
        let rejected = state.pos.rejected - rejected_before;
        match &mut state.rejects {
            Some(rejects) => state.store.save(rejects, Target::Nodes, rejected).await?,
            None => debug_assert_eq!(rejected, 0, "rejects come after the header"),
        }
        // The job's count, across its files and attempts: the records
        // skipped again on a resume were counted by the attempt before.
        let past = |records: u64| records.max(state.resume.records);
        let read = past(state.pos.records) - past(read_before);
        Progress::add(&state.progress.records_read, read);
        state.pos.bytes = state.consumed.load(Ordering::Relaxed);

        if state.feed.step(rows, state.pos, step).await {
            myself.cast(Msg::Pump)?;
        } else {
            state.done = true;
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<Msg>,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        state.bytes_depth.drain();
        Ok(())
    }
}

/// Parses up to `read_rows` records into `rows`. `Err` is an I/O error from
/// the stream (the source, or the decompressor on corrupt data).
async fn read_step(state: &mut State, rows: &mut NodeBatch) -> io::Result<Step> {
    if state.input.is_none() {
        let Some(bytes) = state.bytes.take() else {
            return Ok(Step::End(None));
        };
        let (input, since_record, consumed) =
            open(bytes, state.bytes_depth.clone(), limits(&state.settings)).await?;
        state.input = Some(input);
        state.since_record = since_record;
        state.consumed = consumed;
        if state.format == InputFormat::Refs {
            let h = Header::reference_list();
            state.rejects =
                Some(Rejects::new("line", &h.columns, h.reference).in_file(state.file.take()));
            state.header = Some(h);
        }
    }
    let input = state.input.as_mut().expect("opened above");
    let settings = &state.settings;
    for _ in 0..settings.read_rows {
        let more = input
            .read_byte_record(&mut state.record)
            .await
            .map_err(csv_io)?;
        state.since_record.store(0, Ordering::Relaxed);
        if !more {
            return Ok(Step::End(
                state
                    .header
                    .is_none()
                    .then(|| "the file is empty: no header row".into()),
            ));
        }
        let Some(header) = &state.header else {
            let header = Header::parse(&state.record, settings)
                .and_then(|h| h.held_to(state.contract.as_deref()));
            match header {
                Ok(h) => {
                    if let Err(drifted) = state.drift.observe(&h.columns) {
                        return Ok(Step::End(Some(drifted)));
                    }
                    state.rejects = Some(
                        Rejects::new("line", &h.columns, h.reference).in_file(state.file.take()),
                    );
                    state.header = Some(h);
                    continue;
                }
                Err(e) => return Ok(Step::End(Some(e.to_string()))),
            }
        };
        state.pos.records += 1;
        if state.pos.records <= state.resume.records {
            continue; // committed by an earlier attempt
        }
        let record = &state.record;
        if let Err(reason) =
            header.push_row(record, state.pos.records, settings.max_field_bytes, rows)
        {
            let line = record.position().map_or(0, |p| p.line());
            let rejects = state.rejects.as_mut().expect("made with the header");
            rejects.push(line, &reason, record.iter());
            state.pos.rejected += 1;
        }
    }
    Ok(Step::More)
}

/// The byte stream, decompressed by its magic bytes and held to the input
/// limits, without a UTF-8 BOM, as a CSV reader that accepts ragged rows
/// (they are rejected one by one). Also returns the per-record byte counter
/// and the count of compressed bytes taken.
async fn open(
    mut bytes: mpsc::Receiver<io::Result<Bytes>>,
    depth: Depth,
    limits: Limits,
) -> io::Result<(Input, Arc<AtomicU64>, Arc<AtomicU64>)> {
    let compressed = Arc::new(AtomicU64::new(0));
    let counted = compressed.clone();
    let chunks = futures::stream::poll_fn(move |cx| {
        let next = bytes.poll_recv(cx);
        if let Poll::Ready(Some(chunk)) = &next {
            depth.received();
            let n = chunk.as_ref().map_or(0, Bytes::len) as u64;
            counted.fetch_add(n, Ordering::Relaxed);
        }
        next
    });
    let (compression, plain) = decompress(StreamReader::new(chunks)).await?;
    tracing::debug!(compression = compression.as_str(), "Input opened.");
    let limited = LimitedReader::new(plain, limits, compressed.clone());
    let since_record = limited.record_counter();
    let mut plain = BufReader::with_capacity(256 << 10, limited);
    if plain.fill_buf().await?.starts_with(b"\xef\xbb\xbf") {
        plain.consume(3);
    }
    let reader = AsyncReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(256 << 10)
        .create_reader(plain);
    Ok((reader, since_record, compressed))
}

fn limits(s: &ImportSettings) -> Limits {
    Limits {
        max_decompressed_bytes: s.max_decompressed_bytes,
        max_compression_ratio: s.max_compression_ratio,
        max_record_bytes: s.max_record_bytes,
    }
}

fn csv_io(e: csv_async::Error) -> io::Error {
    match e.into_kind() {
        csv_async::ErrorKind::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
    }
}

fn fetch_error(e: &io::Error) -> Option<&FetchError> {
    e.get_ref()?.downcast_ref::<FetchError>()
}
