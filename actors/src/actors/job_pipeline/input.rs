//! The pipeline's input: for each file, a FileFetcher and the reader of
//! its format (CsvReader or ParquetReader), feeding the job's one
//! BatchAccumulator. A multi-file job swaps them file by file while the
//! writers go on, and opens each file one ahead of the one being parsed:
//! by the time a reader reaches its file's end, the next file's fetcher has
//! looked it up, checked its ETag and, for CSV, filled its bounded channel.

use std::io;

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc;

use super::{startup_error, Args, Msg, Running};
use crate::actors::batch_accumulator::Feed;
use crate::actors::csv_reader::{self, CsvReader};
use crate::actors::file_fetcher::{self, FileFetcher, FileFetcherRef};
use crate::actors::parquet_reader::{self, ParquetReader};
use crate::batch::{MatchBatch, NodeBatch};
use crate::checkpoint::ReadPosition;
use crate::files::ListedFile;
use crate::source::Source;
use crate::telemetry::Depth;

/// The BatchAccumulator's feed, of either table's rows.
pub(super) enum Feeds {
    Nodes(Feed<NodeBatch>),
    Matches(Feed<MatchBatch>),
}

/// The file a multi-file job reads, and the records and bytes before it.
#[derive(Default)]
pub(super) struct Reading {
    pub index: usize,
    pub records_before: u64,
    pub bytes_before: u64,
}

/// A file whose fetcher is up, its reader yet to come.
pub(super) struct Opened {
    uri: String,
    fetcher: FileFetcherRef,
    delivery: Delivery,
}

impl Opened {
    /// Forgets the bytes streamed for a reader that never came (the job
    /// stopped first).
    pub(super) fn drain(&self) {
        if let Delivery::Stream(_, depth) = &self.delivery {
            depth.drain();
        }
    }
}

/// How an opened file's bytes reach its reader.
enum Delivery {
    /// CSV (or inline ids): streamed, in order, into a bounded channel.
    Stream(mpsc::Receiver<io::Result<Bytes>>, Depth),
    /// Parquet: the ranges the reader asks for.
    Ranges,
}

/// Starts reading the job's file at the pipeline's start: `source` is that
/// file (or the inline ids), `resume` where its committed rows end.
pub(super) async fn start(
    myself: &ActorRef<Msg>,
    run: &mut Running,
    args: &Args,
    source: Source,
    resume: ReadPosition,
) -> Result<(), ActorProcessingErr> {
    let opened = open(myself, run, args, run.reading.index, source).await?;
    begin(myself, run, args, opened, resume).await
}

/// The file being read ended at `upto` (in the job): its reader and
/// fetcher go, and the next file, opened ahead, is read, while the writers
/// go on with the last batches of the one before.
pub(super) async fn read_next(
    myself: &ActorRef<Msg>,
    run: &mut Running,
    args: &Args,
    upto: ReadPosition,
) -> Result<(), ActorProcessingErr> {
    for stage in run.input.drain(..) {
        run.children.remove(&stage.get_id());
        stage.stop(None);
    }
    let done = run.file().map_or(0, |f| f.size);
    run.reading = Reading {
        index: run.reading.index + 1,
        records_before: upto.records,
        bytes_before: run.reading.bytes_before + done,
    };
    let opened = match run.ahead.take() {
        Some(opened) => opened,
        None => open_listed(myself, run, args, run.reading.index).await?,
    };
    tracing::info!(job_id = %run.job.id, file = run.reading.index, uri = %opened.uri, "Next file.");
    let resume = ReadPosition {
        records: 0,
        rejected: upto.rejected,
        bytes: 0,
    };
    begin(myself, run, args, opened, resume).await
}

/// Spawns the reader of an opened file, then opens the file after it.
async fn begin(
    myself: &ActorRef<Msg>,
    run: &mut Running,
    args: &Args,
    opened: Opened,
    resume: ReadPosition,
) -> Result<(), ActorProcessingErr> {
    run.input.push(opened.fetcher.get_cell());
    spawn_reader(myself, run, args, opened, resume).await?;
    let next = run.reading.index + 1;
    if run.file_at(next).is_some() {
        run.ahead = Some(open_listed(myself, run, args, next).await?);
    }
    Ok(())
}

/// Opens file `index` of the set.
async fn open_listed(
    myself: &ActorRef<Msg>,
    run: &mut Running,
    args: &Args,
    index: usize,
) -> Result<Opened, ActorProcessingErr> {
    let uri = run
        .file_at(index)
        .map(|f| f.uri.clone())
        .unwrap_or_default();
    let source = Source::parse(&uri, &args.storage)?;
    open(myself, run, args, index, source).await
}

/// Spawns the FileFetcher of file `index` (of a set; the job's one file
/// otherwise), streaming into a bounded channel for CSV, answering ranges
/// for Parquet.
async fn open(
    myself: &ActorRef<Msg>,
    run: &mut Running,
    args: &Args,
    index: usize,
    source: Source,
) -> Result<Opened, ActorProcessingErr> {
    let listed: Option<ListedFile> = run.file_at(index).cloned();
    let uri = listed
        .as_ref()
        .map_or_else(|| run.import.source.clone(), |f| f.uri.clone());
    let settings = &args.settings;
    let (output, delivery) = match run.feed {
        Some(Feeds::Nodes(_)) => {
            let (tx, rx) = mpsc::channel(settings.read_ahead_chunks.max(1));
            let depth = Depth::new(csv_reader::NAME);
            let output = file_fetcher::Output::Stream {
                out: tx,
                depth: depth.clone(),
            };
            (output, Delivery::Stream(rx, depth))
        }
        _ => (file_fetcher::Output::Ranges, Delivery::Ranges),
    };
    let fetch_args = file_fetcher::Args {
        source,
        uri: uri.clone(),
        listed,
        chunk_bytes: settings.read_chunk_bytes.max(4096),
        max_object_bytes: settings.max_object_bytes,
        storage: args.storage.clone(),
        retry: args.retry.clone(),
        output,
        progress: args.progress.clone(),
    };
    let (fetcher, _) = Actor::spawn_linked(None, FileFetcher, fetch_args, myself.get_cell())
        .await
        .map_err(startup_error)?;
    run.children.insert(fetcher.get_id(), file_fetcher::NAME);
    Ok(Opened {
        uri,
        fetcher,
        delivery,
    })
}

/// FileFetcher → CsvReader (through the channel), or FileFetcher ⇄
/// ParquetReader (by ranges), feeding the accumulator from `resume`.
async fn spawn_reader(
    myself: &ActorRef<Msg>,
    run: &mut Running,
    args: &Args,
    opened: Opened,
    resume: ReadPosition,
) -> Result<(), ActorProcessingErr> {
    let settings = args.settings.clone();
    let (job_id, file) = (run.job.id, run.file_in_set());
    let (database, progress) = (args.database.clone(), args.progress.clone());
    let (reader, name) = match (opened.delivery, &run.feed) {
        (Delivery::Stream(bytes, bytes_depth), Some(Feeds::Nodes(feed))) => {
            let reader_args = csv_reader::Args {
                format: run.import.format,
                settings,
                bytes,
                bytes_depth,
                resume,
                job_id,
                database,
                feed: feed.clone(),
                progress,
                file,
            };
            let (reader, _) = Actor::spawn_linked(None, CsvReader, reader_args, myself.get_cell())
                .await
                .map_err(startup_error)?;
            (reader.get_cell(), csv_reader::NAME)
        }
        (Delivery::Ranges, Some(Feeds::Matches(feed))) => {
            let reader_args = parquet_reader::Args {
                uri: opened.uri,
                settings,
                fetcher: opened.fetcher,
                resume,
                job_id,
                database,
                feed: feed.clone(),
                progress,
                file,
            };
            let spawned =
                Actor::spawn_linked(None, ParquetReader, reader_args, myself.get_cell()).await;
            let (reader, _) = spawned.map_err(startup_error)?;
            (reader.get_cell(), parquet_reader::NAME)
        }
        _ => unreachable!("the writers are spawned first, and a file is opened for their rows"),
    };
    run.children.insert(reader.get_id(), name);
    run.input.push(reader);
    Ok(())
}

/// The reader's view of the checkpoint: records in the file it reads, the
/// job's rejects so far.
pub(super) fn resume_position(run: &Running) -> ReadPosition {
    let counts = run.tracker.checkpoint().counts;
    ReadPosition {
        records: counts.records - run.reading.records_before,
        rejected: counts.rejected,
        bytes: 0,
    }
}

impl Running {
    fn file_at(&self, index: usize) -> Option<&ListedFile> {
        self.tracker.checkpoint().files.as_ref()?.files.get(index)
    }

    /// In a multi-file job, the file being read.
    pub(super) fn file(&self) -> Option<&ListedFile> {
        self.file_at(self.reading.index)
    }

    /// In a multi-file job: the index and name of the file being read.
    fn file_in_set(&self) -> Option<(u64, String)> {
        let name = self.file()?.uri.rsplit('/').next().unwrap_or_default();
        Some((self.reading.index as u64, name.to_string()))
    }

    /// The file being read was read to its end, at `upto` (in the job),
    /// and is marked so: whether another file of the set follows it.
    pub(super) fn file_read(&mut self, upto: ReadPosition) -> bool {
        let (index, before) = (self.reading.index, self.reading.records_before);
        let Some(set) = self.tracker.files_mut() else {
            return false;
        };
        set.read_to_end(index, upto.records - before);
        index + 1 < set.files.len()
    }

    /// A reader's position in its file, as a position in the job: records
    /// and bytes of the files before it added.
    pub(super) fn in_job(&self, mut upto: ReadPosition) -> ReadPosition {
        upto.records += self.reading.records_before;
        upto.bytes += self.reading.bytes_before;
        upto
    }
}
