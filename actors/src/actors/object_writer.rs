//! ObjectWriter: stores an export's files part by part through a `Sink` (an
//! S3 multipart upload, or a local file), up to `exports.parts_in_flight`
//! parts at once, each retried with backoff by the sink. Parts complete in
//! any order; the writer reports them to the pipeline in order, as one
//! contiguous watermark (as the import's CommitTracker does for batches),
//! so a checkpoint never claims a part after one that is missing. A file
//! is completed once all its parts are stored.

use std::collections::BTreeMap;

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinSet;

use super::export_pipeline::{self, Stored};
use crate::error::ImportError;
use crate::export::sink::{Sink, SinkError};
use crate::export::{Destination, FileDone, OpenFile, PartDone, Position};
use crate::flow::Credit;
use crate::telemetry::{Depth, Mailbox, PartUploaded};

pub const NAME: &str = "object_writer";

/// A cut of a file, ending on a row.
pub struct Part {
    pub number: i32,
    /// Where it begins in the file.
    pub offset: u64,
    pub bytes: Bytes,
    /// Rows that end in it, and the position after the last.
    pub rows: u64,
    pub position: Option<Position>,
}

pub enum Msg {
    BeginFile {
        index: usize,
        location: Destination,
        /// Rows of the export before this file, and the position after them.
        start_rows: u64,
        start: Option<Position>,
    },
    Part(Part, Credit),
    /// The file's last part was sent.
    EndFile,
    /// The export's last file was sent.
    End,
}

pub struct Args {
    pub sink: Sink,
    /// The file a restarted export continues, with its stored parts.
    pub resume: Option<OpenFile>,
    pub parts_in_flight: usize,
    pub pipeline: Mailbox<export_pipeline::Msg>,
    pub depth: Depth,
}

/// What the writer knows of a part until it is reported.
struct Sent {
    bytes: u64,
    rows: u64,
    position: Option<Position>,
}

pub struct State {
    args: Args,
    file: Option<OpenFile>,
    uploads: JoinSet<(i32, Result<String, SinkError>)>,
    /// Parts sent and not yet reported, by number; their tags once stored.
    sent: BTreeMap<i32, Sent>,
    stored: BTreeMap<i32, String>,
    /// The position after the file's last reported row.
    position: Option<Position>,
}

pub type ObjectWriterRef = ActorRef<Msg>;

pub struct ObjectWriter;

impl Actor for ObjectWriter {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(&self, _: ActorRef<Msg>, args: Args) -> Result<State, ActorProcessingErr> {
        Ok(State {
            args,
            file: None,
            uploads: JoinSet::new(),
            sent: BTreeMap::new(),
            stored: BTreeMap::new(),
            position: None,
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<Msg>,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        // Uploads in flight are dropped; the checkpoint never claimed them.
        state.uploads.abort_all();
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
            Msg::BeginFile {
                index,
                location,
                start_rows,
                start,
            } => begin(state, index, location, start_rows, start).await?,
            Msg::Part(part, credit) => {
                while state.uploads.len() >= state.args.parts_in_flight.max(1) {
                    reap(state).await?;
                }
                upload(state, part, credit)?;
            }
            Msg::EndFile => {
                while !state.uploads.is_empty() {
                    reap(state).await?;
                }
                complete(state).await?;
            }
            Msg::End => state.args.pipeline.send(export_pipeline::Msg::Finished),
        }
        Ok(())
    }
}

fn failed(e: SinkError) -> ImportError {
    ImportError::Stage {
        actor: NAME,
        reason: e.to_string(),
        retriable: e.retriable,
    }
}

async fn begin(
    state: &mut State,
    index: usize,
    location: Destination,
    start_rows: u64,
    start: Option<Position>,
) -> Result<(), ImportError> {
    let mut file = match state.args.resume.take() {
        Some(open) if open.index == index => open,
        _ => OpenFile {
            index,
            location,
            upload_id: None,
            parts: Vec::new(),
            rows: 0,
            start_rows,
            start,
        },
    };
    state.args.sink.begin(&mut file).await.map_err(failed)?;
    state.position = None;
    state
        .args
        .pipeline
        .send(export_pipeline::Msg::Stored(Stored::Begun(file.clone())));
    state.file = Some(file);
    Ok(())
}

fn upload(state: &mut State, part: Part, credit: Credit) -> Result<(), ImportError> {
    let file = state.file.as_ref().ok_or_else(|| ImportError::Stage {
        actor: NAME,
        reason: "a part before its file began".into(),
        retriable: false,
    })?;
    state.sent.insert(
        part.number,
        Sent {
            bytes: part.bytes.len() as u64,
            rows: part.rows,
            position: part.position,
        },
    );
    let (sink, location, upload_id) = (
        state.args.sink.clone(),
        file.location.clone(),
        file.upload_id.clone(),
    );
    let (number, offset, bytes) = (part.number, part.offset, part.bytes);
    state.uploads.spawn(async move {
        let started = std::time::Instant::now();
        let len = bytes.len();
        let stored = sink
            .put_part(&location, upload_id.as_deref(), number, offset, bytes)
            .await;
        if stored.is_ok() {
            PartUploaded {
                bytes: len as u64,
                elapsed: started.elapsed(),
            }
            .emit();
        }
        // The part is stored (or failed): the exporter may cut another.
        drop(credit);
        (number, stored)
    });
    Ok(())
}

/// Waits for one upload, then reports every part stored in order.
async fn reap(state: &mut State) -> Result<(), ImportError> {
    let Some(done) = state.uploads.join_next().await else {
        return Ok(());
    };
    let (number, stored) = done.map_err(|e| ImportError::Stage {
        actor: NAME,
        reason: format!("an upload task failed: {e}"),
        retriable: true,
    })?;
    state.stored.insert(number, stored.map_err(failed)?);
    let file = state.file.as_mut().expect("parts belong to a begun file");
    let mut next = file.parts.last().map_or(1, |p| p.number + 1);
    while let Some(etag) = state.stored.remove(&next) {
        let sent = state.sent.remove(&next).expect("a stored part was sent");
        let part = PartDone {
            number: next,
            etag,
            bytes: sent.bytes,
        };
        file.parts.push(part.clone());
        file.rows += sent.rows;
        state.position = sent.position.clone();
        state
            .args
            .pipeline
            .send(export_pipeline::Msg::Stored(Stored::Part {
                part,
                rows: sent.rows,
                position: sent.position,
            }));
        next += 1;
    }
    Ok(())
}

async fn complete(state: &mut State) -> Result<(), ImportError> {
    let file = state.file.take().ok_or_else(|| ImportError::Stage {
        actor: NAME,
        reason: "a file ended before it began".into(),
        retriable: false,
    })?;
    state.args.sink.complete(&file).await.map_err(failed)?;
    let done = FileDone {
        location: file.location.clone(),
        rows: file.rows,
        bytes: file.bytes(),
    };
    state
        .args
        .pipeline
        .send(export_pipeline::Msg::Stored(Stored::File {
            file: done,
            start_rows: file.start_rows,
            position: state.position.take().or(file.start),
        }));
    Ok(())
}
