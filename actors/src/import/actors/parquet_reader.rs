//! ParquetReader: reads a Parquet file through the FileFetcher's ranged
//! reads, the footer first and then only the needed columns of each row
//! group, and turns Arrow record batches into match rows (seed 003). The
//! schema and the footer's sizes are checked before any data is read; a
//! bad row goes to the rejects file with its row number and reason.
//!
//! It works in steps (`Pump`), one record batch of `read_rows` rows each.
//! A restart resumes at the checkpoint's row group and offset: row groups
//! before it are never fetched again.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStream};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr};

use super::batch_accumulator::{Feed, Step};
use super::file_fetcher::{self, FetchError};
use crate::error::JobError;
use crate::import::batch::{Batch, MatchBatch};
use crate::import::contract::{Checks, ObjectRules};
use crate::import::drift::DriftWatch;
use crate::import::formats::parquet::{
    check_footer, resume_at, row_group_rows, FooterLimits, MatchSchema, MATCH_COLUMNS,
};
use crate::import::formats::rejects::Rejects;
use crate::import::table::rejects::RejectsStore;
use crate::import::tracker::ReadPosition;
use crate::progress::Progress;
use crate::settings::ImportSettings;
use crate::vocab::Target;

pub const NAME: &str = "parquet_reader";

/// The footer read that usually holds the whole metadata in one request.
const FOOTER_PREFETCH: usize = 64 << 10;

pub enum Msg {
    /// Read one record batch; sent to itself until the end.
    Pump,
}

pub struct Args {
    pub uri: String,
    pub settings: Arc<ImportSettings>,
    pub fetcher: ActorRef<file_fetcher::Msg>,
    /// Where the last attempt's checkpoint left off.
    pub resume: ReadPosition,
    /// Where the rejects are saved.
    pub rejects_store: RejectsStore,
    pub feed: Feed<MatchBatch>,
    pub progress: Arc<Progress>,
    /// In a multi-file job: the file's index and name, for its rejects.
    pub file: Option<(u64, String)>,
    /// The group's contract for match suggestions, if it has one.
    pub contract: Option<Arc<ObjectRules>>,
    /// Told the file's columns.
    pub drift: Arc<DriftWatch>,
}

pub struct State {
    args: Args,
    input: Option<Input>,
    /// This step's rejects.
    rejects: Rejects,
    pos: ReadPosition,
    /// Scratch for integer ids written as text.
    bufs: [String; 2],
    done: bool,
}

/// An opened file: its checked schema, its row groups' row counts and the
/// stream of record batches.
struct Input {
    schema: MatchSchema,
    /// The group's contract, bound to the file's columns.
    checks: Option<Checks>,
    /// The file's size and rows, for how far through it a position is.
    size: u64,
    rows: u64,
    row_groups: Vec<u64>,
    batches: ParquetRecordBatchStream<RangeReader>,
}

pub type ParquetReaderRef = ActorRef<Msg>;

pub async fn spawn_linked(pipeline: ActorCell, args: Args) -> Result<ParquetReaderRef, SpawnErr> {
    let (reader, _) = Actor::spawn_linked(None, ParquetReader, args, pipeline).await?;
    Ok(reader)
}

pub struct ParquetReader;

impl Actor for ParquetReader {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        // A suggestion is its participant's.
        let rejects =
            Rejects::new("row", &MATCH_COLUMNS.map(String::from), 0).in_file(args.file.clone());
        myself.cast(Msg::Pump)?;
        Ok(State {
            pos: args.resume,
            args,
            input: None,
            rejects,
            bufs: Default::default(),
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
        let mut rows = MatchBatch::with_capacity(state.args.settings.read_rows);
        let (read_before, rejected_before) = (state.pos.records, state.pos.rejected);
        let step = read_step(state, &mut rows).await?;
        let rejected = state.pos.rejected - rejected_before;
        let store = &mut state.args.rejects_store;
        store
            .save(&mut state.rejects, Target::Matches, rejected)
            .await?;
        // The job's count, across its files and attempts.
        Progress::add(
            &state.args.progress.records_read,
            state.pos.records - read_before,
        );
        state.pos.bytes = state.input.as_ref().map_or(0, |input| {
            (input.size as u128 * state.pos.records as u128 / input.rows.max(1) as u128) as u64
        });

        if state.args.feed.step(rows, state.pos, step).await {
            myself.cast(Msg::Pump)?;
        } else {
            state.done = true;
        }
        Ok(())
    }
}

/// Reads one record batch into `rows`. A storage failure is an `Err` (the
/// pipeline restarts from the checkpoint); a file that cannot be read as
/// match suggestions ends the input with the reason.
async fn read_step(state: &mut State, rows: &mut MatchBatch) -> Result<Step, JobError> {
    if state.input.is_none() {
        match open(&state.args, state.pos.records).await {
            Ok(input) => state.input = Some(input),
            Err(e) => return failure(&state.args.uri, e, "unreadable Parquet footer"),
        }
    }
    let input = state.input.as_mut().expect("opened above");
    let batch = match input.batches.next().await {
        None => return Ok(Step::End(None)),
        Some(Ok(batch)) => batch,
        Some(Err(e)) => {
            let (group, _) = resume_at(&input.row_groups, state.pos.records);
            let at = format!(
                "corrupt Parquet data in row group {group} (after row {})",
                state.pos.records
            );
            return failure(&state.args.uri, Failure::Parquet(e), &at);
        }
    };
    let columns = match input.schema.columns(&batch) {
        Ok(c) => c,
        Err(reason) => return Ok(Step::End(Some(reason))),
    };
    for i in 0..columns.len() {
        state.pos.records += 1;
        let row_no = state.pos.records;
        if let Err(reason) =
            columns.push_row(i, row_no, &mut state.bufs, input.checks.as_ref(), rows)
        {
            let fields = columns.fields(i);
            state
                .rejects
                .push(row_no, &reason, fields.iter().map(|f| f.as_bytes()));
            state.pos.rejected += 1;
        }
    }
    Ok(Step::More)
}

/// Why a file could not be opened or read.
enum Failure {
    Parquet(ParquetError),
    /// The file is readable but not what we take.
    Content(String),
}

/// A retriable storage failure fails the step; anything else ends the
/// input with a reason that says what was wrong.
fn failure(uri: &str, f: Failure, context: &str) -> Result<Step, JobError> {
    let e = match f {
        Failure::Content(reason) => return Ok(Step::End(Some(reason))),
        Failure::Parquet(e) => e,
    };
    if let ParquetError::External(inner) = &e {
        if let Some(fetch) = inner.downcast_ref::<FetchError>() {
            if fetch.retriable {
                return Err(JobError::Source {
                    uri: uri.to_string(),
                    reason: fetch.reason.clone(),
                    retriable: true,
                });
            }
            return Ok(Step::End(Some(fetch.to_string())));
        }
    }
    Ok(Step::End(Some(format!("{context}: {}", plain_reason(&e)))))
}

/// A Parquet error's message without the wrappers' prefixes ("Parquet
/// error: Arrow: External: …").
fn plain_reason(e: &ParquetError) -> String {
    let text = e.to_string();
    let mut rest = text.as_str();
    while let Some(stripped) = [
        "Parquet error: ",
        "Arrow: ",
        "Parquet argument error: ",
        "External: ",
    ]
    .iter()
    .find_map(|p| rest.strip_prefix(p))
    {
        rest = stripped;
    }
    rest.to_string()
}

/// Reads the footer, checks the schema and the limits, and starts the
/// stream at the row group and offset that follow `records` rows.
async fn open(args: &Args, records: u64) -> Result<Input, Failure> {
    let size = match args.fetcher.call(file_fetcher::Msg::Size, None).await {
        Ok(CallResult::Success(size)) => size,
        _ => return Err(Failure::Parquet(fetcher_gone(&args.uri))),
    };
    let mut reader = RangeReader {
        fetcher: args.fetcher.clone(),
        uri: args.uri.clone(),
        size,
        max_read: args.settings.max_row_group_bytes,
    };
    let metadata = reader.get_metadata(None).await.map_err(Failure::Parquet)?;
    let metadata = ArrowReaderMetadata::try_new(metadata, ArrowReaderOptions::new())
        .map_err(Failure::Parquet)?;
    let s = &args.settings;
    let schema = MatchSchema::new(metadata.schema(), s.max_columns)
        .map_err(|e| Failure::Content(e.to_string()))?;
    args.drift
        .observe(schema.all_columns())
        .map_err(Failure::Content)?;
    let checks = args
        .contract
        .as_deref()
        .map(|rules| schema.bind(rules))
        .transpose()
        .map_err(Failure::Content)?;
    let footer = metadata.metadata();
    let roots = schema.roots();
    check_footer(
        footer,
        &roots,
        FooterLimits {
            max_row_group_bytes: s.max_row_group_bytes,
            max_decompressed_bytes: s.max_decompressed_bytes,
            max_compression_ratio: s.max_compression_ratio,
        },
    )
    .map_err(Failure::Content)?;
    let groups = row_group_rows(footer).map_err(Failure::Content)?;
    let (first, skip) = resume_at(&groups, records);

    tracing::info!(
        uri = %args.uri,
        row_groups = groups.len(),
        rows = groups.iter().sum::<u64>(),
        resume_row_group = first,
        resume_offset = skip,
        "Parquet file opened."
    );
    let projection = ProjectionMask::roots(footer.file_metadata().schema_descr(), roots);
    let batches = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, metadata)
        .with_projection(projection)
        .with_batch_size(s.read_rows.max(1))
        .with_row_groups((first..groups.len()).collect())
        .with_offset(skip as usize)
        .build()
        .map_err(Failure::Parquet)?;
    Ok(Input {
        schema,
        checks,
        size,
        rows: groups.iter().sum(),
        row_groups: groups,
        batches,
    })
}

fn fetcher_gone(uri: &str) -> ParquetError {
    ParquetError::External(Box::new(FetchError {
        uri: uri.to_string(),
        reason: "the file fetcher stopped".into(),
        retriable: true,
    }))
}

/// The file as Parquet's reader sees it: byte ranges, each fetched by the
/// FileFetcher, none larger than `max_read`.
struct RangeReader {
    fetcher: ActorRef<file_fetcher::Msg>,
    uri: String,
    size: u64,
    max_read: u64,
}

impl AsyncFileReader for RangeReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            let len = range.end.saturating_sub(range.start);
            if len > self.max_read {
                return Err(ParquetError::General(format!(
                    "a read of {len} bytes (at byte {}), over import.max_row_group_bytes ({})",
                    range.start, self.max_read
                )));
            }
            let read = self
                .fetcher
                .call(|reply| file_fetcher::Msg::Read { range, reply }, None)
                .await;
            match read {
                Ok(CallResult::Success(Ok(bytes))) => Ok(bytes),
                Ok(CallResult::Success(Err(e))) => Err(ParquetError::External(Box::new(e))),
                _ => Err(fetcher_gone(&self.uri)),
            }
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .with_prefetch_hint(Some(FOOTER_PREFETCH.min(self.max_read as usize)))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
