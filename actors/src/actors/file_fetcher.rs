//! FileFetcher: opens the source and streams its bytes to the CsvReader
//! through a bounded channel (the parser pulls, so this hop is a channel of
//! byte chunks rather than a mailbox; its capacity is the bound). Inline
//! reference ids are streamed the same way, one CSV-quoted id per line.

use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::error::ImportError;
use crate::formats::rejects::push_csv_record;
use crate::progress::Progress;
use crate::settings::{RetrySettings, StorageSettings};
use crate::source::Source;
use crate::storage::{ObjectReader, Store};
use crate::telemetry::Depth;

pub const NAME: &str = "file_fetcher";

pub enum Msg {
    /// Read one chunk and pass it on; sent to itself until the end.
    Pump,
}

pub struct Args {
    pub source: Source,
    pub uri: String,
    pub chunk_bytes: usize,
    /// Larger sources are refused before they are read.
    pub max_object_bytes: u64,
    pub storage: StorageSettings,
    pub retry: RetrySettings,
    pub out: mpsc::Sender<io::Result<Bytes>>,
    /// The depth of the CsvReader's byte inbox, counted on send.
    pub out_depth: Depth,
    pub progress: Arc<Progress>,
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
    out_depth: Depth,
    progress: Arc<Progress>,
    input: Input,
    /// Taken at the end of the file: dropping it ends the reader's stream.
    out: Option<mpsc::Sender<io::Result<Bytes>>>,
}

pub type FileFetcherRef = ActorRef<Msg>;

/// A failure to read the source, as opposed to bad content. It travels
/// inside the `io::Error` so the reader can tell the two apart.
#[derive(Debug, thiserror::Error)]
#[error("reading {uri}: {reason}")]
pub struct FetchError {
    pub uri: String,
    pub reason: String,
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
        let input = match &args.source {
            Source::Local(path) => Input::File(open(path, &args).await?),
            Source::S3 { bucket, key } => {
                Input::Object(Box::new(open_object(bucket, key, &args).await?))
            }
            Source::Inline(ids) => Input::Inline {
                ids: ids.clone(),
                next: 0,
            },
        };
        myself.cast(Msg::Pump)?;
        Ok(State {
            uri: args.uri,
            chunk_bytes: args.chunk_bytes,
            out_depth: args.out_depth,
            progress: args.progress,
            input,
            out: Some(args.out),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Msg>,
        Msg::Pump: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let Some(out) = state.out.clone() else {
            return Ok(());
        };
        let chunk = match read_chunk(state).await {
            Ok(None) => {
                state.out = None;
                return Ok(());
            }
            Ok(Some(bytes)) => Ok(bytes),
            Err(e) => Err(io::Error::new(
                e.kind(),
                FetchError {
                    uri: state.uri.clone(),
                    reason: e.to_string(),
                },
            )),
        };
        let failed = chunk.is_err();
        let len = chunk.as_ref().map_or(0, Bytes::len) as u64;
        state.out_depth.sent();
        // Waits while the reader is `read_ahead_chunks` behind: backpressure.
        if out.send(chunk).await.is_err() {
            state.out_depth.received();
            return Ok(()); // the reader is gone: the pipeline is stopping
        }
        Progress::add(&state.progress.bytes_read, len);
        if !failed {
            myself.cast(Msg::Pump)?;
        }
        Ok(())
    }
}

/// Opens a local file; a missing or unreadable one is a permanent error.
async fn open(path: &std::path::Path, args: &Args) -> Result<tokio::fs::File, ImportError> {
    let open_err = |e: io::Error| ImportError::Source {
        uri: args.uri.clone(),
        reason: e.to_string(),
        retriable: false,
    };
    let file = tokio::fs::File::open(path).await.map_err(open_err)?;
    let meta = file.metadata().await.map_err(open_err)?;
    if !meta.is_file() {
        return Err(ImportError::Source {
            uri: args.uri.clone(),
            reason: "not a regular file".into(),
            retriable: false,
        });
    }
    check_size(meta.len(), args)?;
    Ok(file)
}

/// Looks an object up and checks its size before a byte is read.
async fn open_object(bucket: &str, key: &str, args: &Args) -> Result<ObjectReader, ImportError> {
    let store = Store::new(&args.storage);
    let reader = ObjectReader::open(
        store,
        bucket,
        key,
        args.storage.max_attempts,
        args.retry.clone(),
    )
    .await
    .map_err(|e| ImportError::Source {
        uri: args.uri.clone(),
        reason: e.message,
        retriable: e.retriable,
    })?;
    check_size(reader.size(), args)?;
    Ok(reader)
}

fn check_size(size: u64, args: &Args) -> Result<(), ImportError> {
    if size > args.max_object_bytes {
        return Err(ImportError::Source {
            uri: args.uri.clone(),
            reason: format!(
                "{size} bytes, over import.max_object_bytes ({})",
                args.max_object_bytes
            ),
            retriable: false,
        });
    }
    Progress::set(&args.progress.bytes_total, size);
    Ok(())
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
                push_csv_record(&mut buf, [ids[*next].as_bytes()]);
                *next += 1;
            }
            Ok((!buf.is_empty()).then(|| Bytes::from(buf)))
        }
    }
}
