//! FileFetcher: opens the source, checks its size, and either
//!
//! - streams its bytes to the CsvReader through a bounded channel (the
//!   parser pulls, so this hop is a channel of byte chunks rather than a
//!   mailbox; its capacity is the bound), inline reference ids included,
//!   one CSV-quoted id per line; or
//! - answers the ParquetReader's ranged reads (the footer, then each row
//!   group's column chunks), so a Parquet file is never read whole.
//!
//! Transient storage errors are retried here, and a broken download
//! resumes at the byte it reached; a read that still fails is answered
//! with a [`FetchError`], which fails the reader, not this actor.

use std::io;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use crate::error::JobError;
use crate::import::files;
use crate::import::formats::rejects::push_csv_record;
use crate::import::source::Source;
use crate::progress::Progress;
use crate::settings::{RetrySettings, StorageSettings};
use crate::storage::{ObjectReader, Store};
use crate::telemetry::Depth;

pub const NAME: &str = "file_fetcher";

pub enum Msg {
    /// Read one chunk and pass it on; sent to itself until the end.
    Pump,
    /// The source's size in bytes.
    Size(RpcReplyPort<u64>),
    /// Read `range` of the source.
    Read {
        range: Range<u64>,
        reply: RpcReplyPort<Result<Bytes, FetchError>>,
    },
}

/// Where the bytes go.
pub enum Output {
    /// In order, into the CsvReader's channel.
    Stream {
        out: mpsc::Sender<io::Result<Bytes>>,
        /// The depth of the CsvReader's byte inbox, counted on send.
        depth: Depth,
    },
    /// To whoever asks for a range.
    Ranges,
}

pub struct Args {
    pub source: Source,
    pub uri: String,
    pub chunk_bytes: usize,
    /// Larger sources are refused before they are read.
    pub max_object_bytes: u64,
    pub storage: StorageSettings,
    pub retry: RetrySettings,
    pub output: Output,
    pub progress: Arc<Progress>,
    /// The file as a multi-file job listed it: another ETag (the file was
    /// replaced since) fails the job, naming the file; the job's size is
    /// the set's, not this file's.
    pub listed: Option<files::ListedFile>,
}

/// What is being read.
enum Input {
    File(tokio::fs::File),
    Object(Box<ObjectReader>),
    Inline { ids: Arc<Vec<String>>, next: usize },
}

pub struct State {
    uri: String,
    chunk_bytes: usize,
    progress: Arc<Progress>,
    input: Input,
    size: u64,
    /// The streamed output; taken at the end of the file: dropping it ends
    /// the reader's stream.
    stream: Option<(mpsc::Sender<io::Result<Bytes>>, Depth)>,
}

pub type FileFetcherRef = ActorRef<Msg>;

pub async fn spawn_linked(pipeline: ActorCell, args: Args) -> Result<FileFetcherRef, SpawnErr> {
    let (fetcher, _) = Actor::spawn_linked(None, FileFetcher, args, pipeline).await?;
    Ok(fetcher)
}

/// A failure to read the source, as opposed to bad content. It travels
/// inside the `io::Error` so the reader can tell the two apart.
#[derive(Debug, Clone, thiserror::Error)]
#[error("reading {uri}: {reason}")]
pub struct FetchError {
    pub uri: String,
    pub reason: String,
    /// Worth another attempt of the job (a storage outage), or not (a
    /// range outside the file).
    pub retriable: bool,
}

pub struct FileFetcher;

impl Actor for FileFetcher {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        let (input, size) = match &args.source {
            Source::Local(path) => {
                let (file, meta) = open(path, &args).await?;
                check_etag(Some(files::local_etag(&meta)), &args)?;
                (Input::File(file), meta.len())
            }
            Source::S3 { bucket, key } => {
                let reader = open_object(bucket, key, &args).await?;
                check_etag(Some(reader.etag().to_string()), &args)?;
                let size = reader.size();
                (Input::Object(Box::new(reader)), size)
            }
            Source::Inline(ids) => (
                Input::Inline {
                    ids: ids.clone(),
                    next: 0,
                },
                0,
            ),
        };
        let stream = match args.output {
            Output::Stream { out, depth } => {
                myself.cast(Msg::Pump)?;
                Some((out, depth))
            }
            Output::Ranges => None,
        };
        Ok(State {
            uri: args.uri,
            chunk_bytes: args.chunk_bytes,
            progress: args.progress,
            input,
            size,
            stream,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Msg>,
        msg: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Pump => pump(&myself, state).await?,
            Msg::Size(reply) => {
                let _ = reply.send(state.size);
            }
            Msg::Read { range, reply } => {
                let len = range.end.saturating_sub(range.start);
                let read = read_range(state, range).await;
                if read.is_ok() {
                    Progress::add(&state.progress.bytes_read, len);
                }
                // The reader may have gone (its pipeline is stopping).
                let _ = reply.send(read);
            }
        }
        Ok(())
    }
}

/// Reads one chunk into the stream, and schedules the next.
async fn pump(myself: &ActorRef<Msg>, state: &mut State) -> Result<(), ActorProcessingErr> {
    let Some((out, depth)) = state.stream.clone() else {
        return Ok(());
    };
    let chunk = match read_chunk(state).await {
        Ok(None) => {
            state.stream = None;
            return Ok(());
        }
        Ok(Some(bytes)) => Ok(bytes),
        Err(e) => Err(io::Error::new(
            e.kind(),
            FetchError {
                uri: state.uri.clone(),
                reason: e.to_string(),
                retriable: true,
            },
        )),
    };
    let failed = chunk.is_err();
    let len = chunk.as_ref().map_or(0, Bytes::len) as u64;
    depth.sent();
    // Waits while the reader is `read_ahead_chunks` behind: backpressure.
    if out.send(chunk).await.is_err() {
        depth.received();
        return Ok(()); // the reader is gone: the pipeline is stopping
    }
    Progress::add(&state.progress.bytes_read, len);
    if !failed {
        myself.cast(Msg::Pump)?;
    }
    Ok(())
}

/// Opens a local file, with its metadata; a missing or unreadable one is a
/// permanent error.
async fn open(
    path: &std::path::Path,
    args: &Args,
) -> Result<(tokio::fs::File, std::fs::Metadata), JobError> {
    let open_err = |e: io::Error| JobError::Source {
        uri: args.uri.clone(),
        reason: e.to_string(),
        retriable: false,
    };
    // Opened without blocking: a FIFO with no writer would otherwise hang
    // the job in `open` (reads of a regular file ignore the flag).
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .await
        .map_err(open_err)?;
    let meta = file.metadata().await.map_err(open_err)?;
    if !meta.is_file() {
        return Err(JobError::Source {
            uri: args.uri.clone(),
            reason: "not a regular file".into(),
            retriable: false,
        });
    }
    check_size(meta.len(), args)?;
    Ok((file, meta))
}

/// Looks an object up and checks its size before a byte is read.
async fn open_object(bucket: &str, key: &str, args: &Args) -> Result<ObjectReader, JobError> {
    let store = Store::new(&args.storage);
    let reader = ObjectReader::open(
        store,
        bucket,
        key,
        args.storage.max_attempts,
        args.retry.clone(),
    )
    .await
    .map_err(|e| JobError::Source {
        uri: args.uri.clone(),
        reason: e.message,
        retriable: e.retriable,
    })?;
    check_size(reader.size(), args)?;
    Ok(reader)
}

/// A listed file must be the one listed.
fn check_etag(found: Option<String>, args: &Args) -> Result<(), JobError> {
    match (args.listed.as_ref().map(|f| &f.etag), found) {
        // A store that gives no ETag cannot be checked.
        (Some(listed), Some(found))
            if !listed.is_empty() && !found.is_empty() && *listed != found =>
        {
            Err(JobError::Source {
                uri: args.uri.clone(),
                reason: format!(
                    "the file changed since the job listed it (ETag {listed}, now {found})"
                ),
                retriable: false,
            })
        }
        _ => Ok(()),
    }
}

fn check_size(size: u64, args: &Args) -> Result<(), JobError> {
    if size > args.max_object_bytes {
        return Err(JobError::Source {
            uri: args.uri.clone(),
            reason: format!(
                "{size} bytes, over import.max_object_bytes ({})",
                args.max_object_bytes
            ),
            retriable: false,
        });
    }
    if args.listed.is_none() {
        Progress::set(&args.progress.bytes_total, size);
    }
    Ok(())
}

/// Reads `range` whole.
async fn read_range(state: &mut State, range: Range<u64>) -> Result<Bytes, FetchError> {
    let fail = |reason: String, retriable: bool| FetchError {
        uri: state.uri.clone(),
        reason,
        retriable,
    };
    if range.start > range.end || range.end > state.size {
        return Err(fail(
            format!(
                "bytes {}..{} are outside the file ({} bytes)",
                range.start, range.end, state.size
            ),
            false,
        ));
    }
    match &mut state.input {
        Input::File(file) => {
            let mut buf = BytesMut::zeroed((range.end - range.start) as usize);
            let read = async {
                file.seek(io::SeekFrom::Start(range.start)).await?;
                file.read_exact(&mut buf).await
            };
            read.await.map_err(|e| fail(e.to_string(), true))?;
            Ok(buf.freeze())
        }
        Input::Object(reader) => reader
            .read_range(range)
            .await
            .map_err(|e| fail(e.message, e.retriable)),
        Input::Inline { .. } => Err(fail("inline ids have no byte ranges".into(), false)),
    }
}

/// The next chunk, or `None` at the end.
async fn read_chunk(state: &mut State) -> io::Result<Option<Bytes>> {
    match &mut state.input {
        Input::File(file) => {
            let mut buf = BytesMut::zeroed(state.chunk_bytes);
            let n = file.read(&mut buf).await?;
            buf.truncate(n);
            Ok((n > 0).then(|| buf.freeze()))
        }
        Input::Object(reader) => reader
            .next_chunk(state.chunk_bytes)
            .await
            .map_err(|e| io::Error::other(e.message)),
        Input::Inline { ids, next } => {
            let mut buf = Vec::with_capacity(state.chunk_bytes);
            while *next < ids.len() && buf.len() < state.chunk_bytes {
                match ids[*next].as_str() {
                    // A blank line is no record: an empty id is written as
                    // `""`, so it is read, and rejected with its reason.
                    "" => buf.extend_from_slice(b"\"\"\n"),
                    id => push_csv_record(&mut buf, [id.as_bytes()]),
                }
                *next += 1;
            }
            Ok((!buf.is_empty()).then(|| Bytes::from(buf)))
        }
    }
}
