//! The pipeline's input: for each file, a FileFetcher and the reader of
//! its format (CsvReader or ParquetReader), feeding the job's one
//! BatchAccumulator. A multi-file job swaps them file by file while the
//! writers go on, and opens each file one ahead of the one being parsed:
//! by the time a reader reaches its file's end, the next file's fetcher has
//! looked it up, checked its ETag and, for CSV, filled its bounded channel.

use std::io;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::Running;
use crate::error::JobError;
use crate::import::actors::batch_accumulator::Feed;
use crate::import::actors::file_fetcher::{self, FileFetcherRef};
use crate::import::actors::{csv_reader, parquet_reader};
use crate::import::batch::{MatchBatch, NodeBatch};
use crate::import::files::ListedFile;
use crate::import::source::Source;
use crate::import::table::rejects::RejectsStore;
use crate::import::tracker::ReadPosition;
use crate::telemetry::Depth;
use crate::vocab::Target;

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
    run: &mut Running,
    source: Source,
    resume: ReadPosition,
) -> Result<(), JobError> {
    let opened = open(run, run.reading.index, source).await?;
    begin(run, opened, resume).await
}

/// The file being read ended at `upto` (in the job): its reader and
/// fetcher go, and the next file, opened ahead, is read, while the writers
/// go on with the last batches of the one before.
pub(super) async fn read_next(run: &mut Running, upto: ReadPosition) -> Result<(), JobError> {
    for stage in std::mem::take(&mut run.input) {
        run.stages.retire(&stage);
    }
    let done = run.file().map_or(0, |f| f.size);
    run.reading = Reading {
        index: run.reading.index + 1,
        records_before: upto.records,
        bytes_before: run.reading.bytes_before + done,
    };
    let opened = match run.ahead.take() {
        Some(opened) => opened,
        None => open_listed(run, run.reading.index).await?,
    };
    tracing::info!(job_id = %run.job.id, file = run.reading.index, uri = %opened.uri, "Next file.");
    let resume = ReadPosition {
        records: 0,
        rejected: upto.rejected,
        bytes: 0,
    };
    begin(run, opened, resume).await
}

/// Spawns the reader of an opened file, then opens the file after it.
async fn begin(run: &mut Running, opened: Opened, resume: ReadPosition) -> Result<(), JobError> {
    run.input.push(opened.fetcher.get_cell());
    spawn_reader(run, opened, resume).await?;
    let next = run.reading.index + 1;
    if run.file_at(next).is_some() {
        run.ahead = Some(open_listed(run, next).await?);
    }
    Ok(())
}

/// Opens file `index` of the set.
async fn open_listed(run: &mut Running, index: usize) -> Result<Opened, JobError> {
    let uri = run
        .file_at(index)
        .map(|f| f.uri.clone())
        .unwrap_or_default();
    let source = Source::parse(&uri, &run.storage)?;
    open(run, index, source).await
}

/// Spawns the FileFetcher of file `index` (of a set; the job's one file
/// otherwise), streaming into a bounded channel for CSV, answering ranges
/// for Parquet.
async fn open(run: &mut Running, index: usize, source: Source) -> Result<Opened, JobError> {
    let listed: Option<ListedFile> = run.file_at(index).cloned();
    let uri = listed
        .as_ref()
        .map_or_else(|| run.job.work.source.clone(), |f| f.uri.clone());
    let settings = run.settings.clone();
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
        storage: run.storage.clone(),
        retry: run.retry.clone(),
        output,
        progress: run.progress.clone(),
    };
    let root = run.stages.root();
    let fetcher = run
        .stages
        .add(
            file_fetcher::NAME,
            file_fetcher::spawn_linked(root, fetch_args),
        )
        .await?;
    Ok(Opened {
        uri,
        fetcher,
        delivery,
    })
}

/// FileFetcher → CsvReader (through the channel), or FileFetcher ⇄
/// ParquetReader (by ranges), feeding the accumulator from `resume`.
async fn spawn_reader(
    run: &mut Running,
    opened: Opened,
    resume: ReadPosition,
) -> Result<(), JobError> {
    let settings = run.settings.clone();
    let file = run.file_in_set();
    let rejects_store = RejectsStore::new(run.fence.clone(), run.database.clone());
    let progress = run.progress.clone();
    let root = run.stages.root();
    let reader = match (opened.delivery, &run.feed) {
        (Delivery::Stream(bytes, bytes_depth), Some(Feeds::Nodes(feed))) => {
            let args = csv_reader::Args {
                format: run.job.work.format,
                settings,
                bytes,
                bytes_depth,
                resume,
                rejects_store,
                feed: feed.clone(),
                progress,
                file,
                contract: run.contract.rules(Target::Nodes),
                drift: run.drift.clone(),
            };
            let spawning = csv_reader::spawn_linked(root, args);
            run.stages.add(csv_reader::NAME, spawning).await?.get_cell()
        }
        (Delivery::Ranges, Some(Feeds::Matches(feed))) => {
            let args = parquet_reader::Args {
                uri: opened.uri,
                settings,
                fetcher: opened.fetcher,
                resume,
                rejects_store,
                feed: feed.clone(),
                progress,
                file,
                contract: run.contract.rules(Target::Matches),
                drift: run.drift.clone(),
            };
            let spawning = parquet_reader::spawn_linked(root, args);
            run.stages
                .add(parquet_reader::NAME, spawning)
                .await?
                .get_cell()
        }
        _ => unreachable!("the writers are spawned first, and a file is opened for their rows"),
    };
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
