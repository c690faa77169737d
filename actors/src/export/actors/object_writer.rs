//! ObjectWriter: stores an export's output part by part through its
//! `Sink` (an S3 multipart upload, a local file, or a users export's
//! pending messages), up to `exports.parts_in_flight` parts at once, each
//! retried with backoff by the sink. Parts complete in any order; the
//! writer reports them to the pipeline in order, through a watermark (as
//! the import does for batches), so a checkpoint never claims a part after
//! one that is missing. A file is completed once all its parts are stored.

use std::sync::Arc;

use bytes::Bytes;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr};
use tokio::task::JoinSet;

use crate::error::JobError;
use crate::export::sink::{Sink, SinkError};
use crate::export::{Destination, FileDone, OpenFile, PartDone, Position, Stored};
use crate::flow::Credit;
use crate::pipeline::Watermark;
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

/// What the writer tells its pipeline.
pub enum Progressed {
    /// The next thing it stored, in order.
    Stored(Stored),
    /// Every file is complete.
    Finished,
}

pub struct Args {
    pub sink: Arc<dyn Sink>,
    /// The file a restarted export continues, with its stored parts.
    pub resume: Option<OpenFile>,
    pub parts_in_flight: usize,
    pub pipeline: Mailbox<Progressed>,
    pub depth: Depth,
}

/// A part sent and not yet reported, with its tag once stored.
struct Sent {
    bytes: u64,
    rows: u64,
    position: Option<Position>,
    etag: Option<String>,
}

pub struct State {
    args: Args,
    file: Option<OpenFile>,
    uploads: JoinSet<(i32, Result<String, SinkError>)>,
    /// The open file's parts sent and not yet reported, in order.
    sent: Watermark<Sent>,
    /// The position after the file's last reported row.
    position: Option<Position>,
}

pub type ObjectWriterRef = ActorRef<Msg>;

pub async fn spawn_linked(pipeline: ActorCell, args: Args) -> Result<ObjectWriterRef, SpawnErr> {
    let (writer, _) = Actor::spawn_linked(None, ObjectWriter, args, pipeline).await?;
    Ok(writer)
}

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
            sent: Watermark::starting_at(1),
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
            Msg::End => state.args.pipeline.send(Progressed::Finished),
        }
        Ok(())
    }
}

fn failed(e: SinkError) -> JobError {
    JobError::Stage {
        stage: NAME,
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
) -> Result<(), JobError> {
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
    let next = file.parts.last().map_or(1, |p| p.number + 1);
    state.sent = Watermark::starting_at(next as u64);
    state
        .args
        .pipeline
        .send(Progressed::Stored(Stored::Begun(file.clone())));
    state.file = Some(file);
    Ok(())
}

fn upload(state: &mut State, part: Part, credit: Credit) -> Result<(), JobError> {
    let file = state
        .file
        .as_ref()
        .ok_or_else(|| JobError::permanent(NAME, "a part before its file began"))?;
    state.sent.insert(
        part.number as u64,
        Sent {
            bytes: part.bytes.len() as u64,
            rows: part.rows,
            position: part.position,
            etag: None,
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
async fn reap(state: &mut State) -> Result<(), JobError> {
    let Some(done) = state.uploads.join_next().await else {
        return Ok(());
    };
    let (number, stored) = done.map_err(|e| JobError::Stage {
        stage: NAME,
        reason: format!("an upload task failed: {e}"),
        retriable: true,
    })?;
    let etag = stored.map_err(failed)?;
    if let Some(sent) = state.sent.get_mut(number as u64) {
        sent.etag = Some(etag);
    }
    let file = state.file.as_mut().expect("parts belong to a begun file");
    while let Some(sent) = state.sent.pop_ready(|s| s.etag.is_some()) {
        let part = PartDone {
            number: state.sent.next() as i32 - 1,
            etag: sent.etag.expect("ready"),
            bytes: sent.bytes,
        };
        file.parts.push(part.clone());
        file.rows += sent.rows;
        state.position = sent.position.clone();
        state.args.pipeline.send(Progressed::Stored(Stored::Part {
            part,
            rows: sent.rows,
            position: sent.position,
        }));
    }
    Ok(())
}

async fn complete(state: &mut State) -> Result<(), JobError> {
    let file = state
        .file
        .take()
        .ok_or_else(|| JobError::permanent(NAME, "a file ended before it began"))?;
    state.args.sink.complete(&file).await.map_err(failed)?;
    let done = FileDone {
        location: file.location.clone(),
        rows: file.rows,
        bytes: file.bytes(),
    };
    state.args.pipeline.send(Progressed::Stored(Stored::File {
        file: done,
        start_rows: file.start_rows,
        position: state.position.take().or(file.start),
    }));
    Ok(())
}
