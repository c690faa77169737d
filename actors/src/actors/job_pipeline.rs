//! JobPipeline: the root of one import attempt's subtree. It decides the
//! write mode under the group lock, spawns and links the stages
//! (FileFetcher → CsvReader or ParquetReader → BatchAccumulator →
//! CopyWriter × N), turns the writers' commits into a contiguous
//! checkpoint, writes the rejects file, and reports the job's outcome to
//! the JobCoordinator, which makes the terminal write.
//!
//! Any stage failing fails the whole subtree: the JobCoordinator restarts it
//! from the checkpoint, which only ever counts batches that every writer
//! committed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use tokio::sync::oneshot;
use tokio_postgres::Client;

use self::input::{Feeds, Reading};
use super::batch_accumulator::{self, BatchAccumulator, Feed};
use super::copy_writer::{self, CopyWriter};
use crate::checkpoint::{CommitTracker, ReadPosition, Sealed};
use crate::error::{is_retriable, ImportError};
use crate::files;
use crate::flow::Credits;
use crate::job::lifecycle::Fence;
use crate::job::store;
use crate::job::{Checkpoint, Import, InputFormat, Job, Outcome, Target, WriteMode};
use crate::pg;
use crate::pg::matches::Matches;
use crate::pg::nodes::Nodes;
use crate::pg::table::{self, Group, Table};
use crate::progress::Progress;
use crate::settings::{DatabaseSettings, ImportSettings, RetrySettings, StorageSettings};
use crate::source::Source;
use crate::status::IdLists;
use crate::storage::Store;
use crate::telemetry::{Depth, Mailbox};

mod input;

pub const NAME: &str = "job_pipeline";

pub enum Msg {
    /// Sets up the job (lock, mode, stages); sent to itself by `pre_start`,
    /// so that a job waiting for its group's lock never blocks the
    /// coordinator that spawned it.
    Start,
    Sealed(Sealed),
    /// A writer committed its shard of batch `seq`.
    Committed {
        seq: u64,
        inserted: u64,
        updated: u64,
    },
    /// No batch after `last_seq` will come.
    InputEnded {
        last_seq: u64,
        upto: ReadPosition,
        error: Option<String>,
    },
}

pub struct Args {
    /// The job as its attempt started.
    pub job: Job,
    /// What it imports.
    pub import: Import,
    /// Every write to the job row is fenced on the attempt's lease.
    pub fence: Fence,
    /// Where the job's outcome goes, once every batch is committed.
    pub report: Option<oneshot::Sender<Outcome>>,
    pub database: DatabaseSettings,
    /// The CopyWriters' connections, shared by every job.
    pub writers: Pool,
    pub settings: Arc<ImportSettings>,
    pub retry: RetrySettings,
    pub storage: StorageSettings,
    pub progress: Arc<Progress>,
    /// The cap on each id list of the status event.
    pub max_status_ids: usize,
}

pub struct State {
    args: Args,
    run: Option<Running>,
}

/// A started job.
pub struct Running {
    job: Job,
    import: Import,
    fence: Fence,
    report: Option<oneshot::Sender<Outcome>>,
    max_status_ids: usize,
    /// The ids of an inline reference list, for its status event.
    reference_ids: Option<Arc<Vec<String>>>,
    /// Holds the group lock for the job's life, and writes the checkpoints.
    control: Client,
    mode: WriteMode,
    tracker: CommitTracker,
    rejects_path: PathBuf,
    /// Where the rejects file is uploaded at the end, for an object source.
    rejects_object: Option<(String, String)>,
    storage: StorageSettings,
    children: HashMap<ActorId, &'static str>,
    depth: Depth,
    progress: Arc<Progress>,
    finishing: bool,
    /// The feed readers send rows into, kept for each file's reader.
    feed: Option<Feeds>,
    /// In a multi-file job, the file being read (the checkpoint's is the
    /// one its committed rows end in, at or behind this one).
    reading: Reading,
    /// The reader and the fetcher of the file being read.
    input: Vec<ractor::ActorCell>,
    /// The next file of a set, opened while this one is read.
    ahead: Option<input::Opened>,
}

pub type JobPipelineRef = ActorRef<Msg>;

pub struct JobPipeline;

impl Actor for JobPipeline {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        myself.cast(Msg::Start)?;
        Ok(State { args, run: None })
    }

    async fn handle(
        &self,
        myself: ActorRef<Msg>,
        msg: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let Some(run) = &mut state.run else {
            // `Start` is the first message; nothing else can come before it.
            state.run = Some(start(&myself, &mut state.args).await?);
            return Ok(());
        };
        handle_msg(&myself, msg, run, &state.args).await
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Msg>,
        event: SupervisionEvent,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match &mut state.run {
            Some(run) => on_stage_event(&myself, event, run),
            None => Ok(()),
        }
    }

    async fn post_stop(
        &self,
        _: ActorRef<Msg>,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(run) = &state.run {
            run.depth.drain();
            if let Some(ahead) = &run.ahead {
                ahead.drain();
            }
        }
        Ok(())
    }
}

/// Connects, takes the group lock, picks the write mode and spawns the
/// stages. A failure here fails the attempt like any stage failure.
async fn start(myself: &ActorRef<Msg>, args: &mut Args) -> Result<Running, ActorProcessingErr> {
    let control = pg::connect_bulk(&pg::named(&args.database, "ferry-job")).await?;
    let import = &mut args.import;
    // A multi-file job lists its files once, at its first start.
    if files::is_file_set(&import.source) && import.checkpoint.files.is_none() {
        let set = files::list(&import.source, import.target, &args.storage, &args.settings).await?;
        tracing::info!(job_id = %args.job.id, files = set.files.len(), skipped = set.skipped.len(), "Files listed.");
        import.checkpoint.files = Some(set);
    }
    let import = &args.import;
    let source = match store::reference_ids(&control, args.job.id).await? {
        Some(ids) => Source::Inline(Arc::new(ids)),
        None => current_source(import, &args.storage)?,
    };
    let mut run = match (import.target, import.format) {
        (Target::Nodes, InputFormat::Csv | InputFormat::Refs) => {
            prepare(args, control, nodes(args), &source).await?
        }
        (Target::Matches, InputFormat::Parquet) => {
            prepare(args, control, matches(args), &source).await?
        }
        (target, format) => {
            return Err(ImportError::Source {
                uri: import.source.clone(),
                reason: format!(
                    "a `{}` job cannot read {} input",
                    target.as_str(),
                    format.as_str()
                ),
                retriable: false,
            }
            .into())
        }
    };
    spawn_stages(myself, &mut run, args, source).await?;
    Ok(run)
}

fn nodes(args: &Args) -> Nodes {
    Nodes {
        group: group(args),
        node_type: args.import.node_type.clone(),
        resend_changed: args.settings.resend_changed,
    }
}

fn matches(args: &Args) -> Matches {
    Matches { group: group(args) }
}

fn group(args: &Args) -> Group {
    Group {
        domain_id: args.job.domain_id,
        group_id: args.import.group_id,
    }
}

/// The file the job reads now: its one file, or the current one of its set.
fn current_source(import: &Import, storage: &StorageSettings) -> Result<Source, ImportError> {
    match &import.checkpoint.files {
        Some(set) => {
            let file = set.current().ok_or_else(|| ImportError::Source {
                uri: import.source.clone(),
                reason: "every file was read".into(),
                retriable: false,
            })?;
            Source::parse(&file.uri, storage)
        }
        None => Source::parse(&import.source, storage),
    }
}

/// Spawns the stages that read `source` and write its rows: the writers
/// and the accumulator, for the job's life, then the reader and the fetcher
/// (of each file in turn, for a set).
async fn spawn_stages(
    myself: &ActorRef<Msg>,
    run: &mut Running,
    args: &Args,
    source: Source,
) -> Result<(), ActorProcessingErr> {
    let writers = match args.import.target {
        Target::Nodes => spawn_writers(myself, run, args, nodes(args))
            .await
            .map(Feeds::Nodes),
        Target::Matches => spawn_writers(myself, run, args, matches(args))
            .await
            .map(Feeds::Matches),
    };
    run.feed = Some(unwind_on_error(myself, writers)?);
    let resume = input::resume_position(run);
    let input = input::start(myself, run, args, source, resume).await;
    unwind_on_error(myself, input)
}

/// Takes the group lock, picks the mode, saves the checkpoint to resume
/// from, and sets the pipeline's state up.
async fn prepare<T: Table>(
    args: &mut Args,
    control: Client,
    table: T,
    source: &Source,
) -> Result<Running, ActorProcessingErr> {
    let job = args.job.clone();
    let (mode, checkpoint) = choose_mode(&control, &args.import, &table, &args.settings).await?;
    save_checkpoint(&control, &args.fence, &checkpoint).await?;
    tracing::info!(
        job_id = %job.id,
        table = T::NAME,
        mode = ?mode,
        resume_from = checkpoint.counts.records,
        file = checkpoint.files.as_ref().and_then(|s| s.current()).map_or("", |f| f.uri.as_str()),
        "Job pipeline starting."
    );
    Progress::set(&args.progress.records_committed, checkpoint.counts.records);
    // Readers add theirs from there.
    Progress::set(&args.progress.records_read, checkpoint.counts.records);
    // A set's size is its listing's; a single file's, its fetcher's.
    let reading = match &checkpoint.files {
        Some(set) => {
            Progress::set(&args.progress.bytes_total, set.total_bytes());
            Progress::set(&args.progress.bytes_read, set.bytes_before);
            Reading {
                index: set.current,
                records_before: set.records_before,
                bytes_before: set.bytes_before,
            }
        }
        None => Reading::default(),
    };
    // A set's rejects go beside its first file, whichever file an attempt
    // starts in.
    let first = match checkpoint.files.as_ref().and_then(|set| set.files.first()) {
        Some(file) => Some(Source::parse(&file.uri, &args.storage)?),
        None => None,
    };
    let beside = first.as_ref().unwrap_or(source);
    Ok(Running {
        rejects_path: beside.rejects_path(job.id, &args.settings.rejects_dir),
        rejects_object: beside.rejects_object(job.id),
        storage: args.storage.clone(),
        control,
        mode,
        tracker: CommitTracker::new(checkpoint),
        children: HashMap::new(),
        depth: Depth::new(NAME),
        progress: args.progress.clone(),
        finishing: false,
        fence: args.fence.clone(),
        report: args.report.take(),
        import: args.import.clone(),
        max_status_ids: args.max_status_ids,
        reference_ids: match source {
            Source::Inline(ids) => Some(ids.clone()),
            _ => None,
        },
        reading,
        job,
        feed: None,
        input: Vec::new(),
        ahead: None,
    })
}

/// Stages already spawned are stopped if a later one failed to start.
fn unwind_on_error<T>(
    myself: &ActorRef<Msg>,
    spawned: Result<T, ActorProcessingErr>,
) -> Result<T, ActorProcessingErr> {
    if spawned.is_err() {
        myself.stop_children(None);
    }
    spawned
}

async fn handle_msg(
    myself: &ActorRef<Msg>,
    msg: Msg,
    state: &mut Running,
    args: &Args,
) -> Result<(), ActorProcessingErr> {
    state.depth.received();
    match msg {
        Msg::Start => {}
        Msg::Sealed(mut sealed) => {
            sealed.upto = state.in_job(sealed.upto);
            state.tracker.sealed(sealed)
        }
        Msg::Committed {
            seq,
            inserted,
            updated,
        } => state.tracker.committed(seq, inserted, updated)?,
        Msg::InputEnded {
            last_seq,
            upto,
            error,
        } => {
            let upto = state.in_job(upto);
            match error {
                // A file read to its end: the next one is read at once;
                // the writers go on with this one's last batches meanwhile.
                None if state.file_read(upto) => {
                    input::read_next(myself, state, args, upto).await?
                }
                error => {
                    // In a set, a file's failure names the file.
                    let error = match state.file() {
                        Some(file) => error.map(|e| format!("{}: {e}", file.uri)),
                        None => error,
                    };
                    state.tracker.ended(last_seq, upto, error)
                }
            }
        }
    }
    if state.tracker.advance() {
        let records = state.tracker.checkpoint().counts.records;
        let size = match state.tracker.files_mut() {
            Some(set) => {
                set.locate(records);
                set.total_bytes()
            }
            None => Progress::get(&state.progress.bytes_total),
        };
        state.tracker.source_size(size);
        let cp = state.tracker.checkpoint();
        save_checkpoint(&state.control, &state.fence, cp).await?;
        Progress::set(&state.progress.records_committed, cp.counts.records);
    }
    if state.tracker.is_done() {
        // The last file, read to its end, is saved so, for the job's view.
        let records = state.tracker.checkpoint().counts.records;
        if let Some(set) = state.tracker.files_mut() {
            set.locate(records);
            save_checkpoint(&state.control, &state.fence, state.tracker.checkpoint()).await?;
        }
        finish(state).await?;
        state.finishing = true;
        // The subtree is gone before the coordinator hears we finished.
        myself
            .stop_children_and_wait(None, Some(CHILDREN_STOP_TIMEOUT))
            .await;
        myself.stop(Some(FINISHED.into()));
    }
    Ok(())
}

/// A stage failed or stopped: the whole subtree fails with its reason.
fn on_stage_event(
    myself: &ActorRef<Msg>,
    event: SupervisionEvent,
    state: &mut Running,
) -> Result<(), ActorProcessingErr> {
    if state.finishing {
        return Ok(());
    }
    let (who, reason, retriable) = match &event {
        SupervisionEvent::ActorFailed(who, err) => {
            // A stage's own error already says which stage it is.
            let reason = match err.downcast_ref::<ImportError>() {
                Some(ImportError::Stage { reason, .. }) => reason.clone(),
                _ => err.to_string(),
            };
            (who, reason, is_retriable(err))
        }
        SupervisionEvent::ActorTerminated(who, _, reason) => (
            who,
            format!(
                "stopped unexpectedly ({})",
                reason.as_deref().unwrap_or("no reason")
            ),
            true,
        ),
        _ => return Ok(()),
    };
    // The stages of a file already done may report stopping late.
    let Some(&actor) = state.children.get(&who.get_id()) else {
        return Ok(());
    };
    tracing::warn!(job_id = %state.job.id, actor, reason = %reason, "Pipeline stage failed.");
    myself.stop_children(None);
    Err(ImportError::Stage {
        actor,
        reason,
        retriable,
    }
    .into())
}

/// Writes the rejects file from the rejects the job's readers saved, in
/// whichever attempt and instance they were read; returns the ids the
/// status event lists as failed: every one for a reference list (each must
/// stay out of `successList`; there are no more than the list has), up to
/// the cap for a file.
async fn write_rejects(state: &Running) -> Result<Vec<String>, ImportError> {
    let counted = state.tracker.rejected();
    if counted == 0 {
        return Ok(Vec::new());
    }
    let (client, job_id, path) = (&state.control, state.job.id, &state.rejects_path);
    let written = pg::rejects::write_file(client, job_id, path, NAME).await?;
    if written != counted {
        tracing::warn!(
            job_id = %job_id,
            path = %path.display(),
            written,
            counted,
            "The rejects file does not hold every rejected row counted."
        );
    }
    let limit = match state.reference_ids {
        Some(_) => i64::MAX,
        None => state.max_status_ids as i64,
    };
    Ok(pg::rejects::failed_ids(client, job_id, limit).await?)
}

/// Where the job's rejects can be found: for an object source the file is
/// uploaded beside the object (`…/rejects/JOBID.csv`); if that fails the
/// local copy stays, and its path is what the job records.
async fn rejects_location(state: &Running) -> String {
    let local = state.rejects_path.display().to_string();
    let Some((bucket, key)) = &state.rejects_object else {
        return local;
    };
    if state.tracker.rejected() == 0 {
        return local;
    }
    match Store::new(&state.storage)
        .put_file(bucket, key, &state.rejects_path)
        .await
    {
        Ok(()) => {
            let _ = tokio::fs::remove_file(&state.rejects_path).await;
            format!("s3://{bucket}/{key}")
        }
        Err(e) => {
            tracing::error!(job_id = %state.job.id, error = %e, path = %local, "Could not upload the rejects file; it stays local.");
            local
        }
    }
}

/// The stop reason of a pipeline that finished its job (COMPLETED or FAILED).
pub const FINISHED: &str = "finished";

/// How long a finished pipeline waits for its stages to stop. They hold no
/// work by then; this only bounds a stage stuck in a network call.
const CHILDREN_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Picks upsert or fast mode and the checkpoint to resume from. A resumed
/// job keeps its mode (and, in fast mode, takes its exclusive lock again).
async fn choose_mode<T: Table>(
    control: &Client,
    job: &Import,
    table: &T,
    import: &ImportSettings,
) -> Result<(WriteMode, Checkpoint), ImportError> {
    let mode = match job.checkpoint.mode {
        Some(WriteMode::Upsert) => {
            table::lock_group(control, table, false).await?;
            WriteMode::Upsert
        }
        Some(WriteMode::Fast) => {
            table::lock_group_exclusive(control, table).await?;
            WriteMode::Fast
        }
        None if table::lock_group(control, table, import.fast_path).await? => WriteMode::Fast,
        None => WriteMode::Upsert,
    };
    let checkpoint = Checkpoint {
        mode: Some(mode),
        ..job.checkpoint.clone()
    };
    Ok((mode, checkpoint))
}

/// Spawns the CopyWriters for `table` and the BatchAccumulator that feeds
/// them; returns the feed a reader sends its rows into.
async fn spawn_writers<T: Table>(
    myself: &ActorRef<Msg>,
    state: &mut Running,
    args: &Args,
    table: T,
) -> Result<Feed<T::Batch>, ActorProcessingErr> {
    let cell = myself.get_cell();
    let me = Mailbox::new(myself.clone(), state.depth.clone());
    let import = &args.settings;

    let mut writers = Vec::with_capacity(import.writers.max(1));
    for index in 0..import.writers.max(1) {
        let depth = Depth::new(copy_writer::NAME);
        let wargs = copy_writer::Args {
            index,
            job_id: state.job.id,
            pool: args.writers.clone(),
            retry: args.retry.clone(),
            mode: state.mode,
            target: table.clone(),
            pipeline: me.clone(),
            depth: depth.clone(),
        };
        let (r, _) = Actor::spawn_linked(None, CopyWriter::<T>::default(), wargs, cell.clone())
            .await
            .map_err(startup_error)?;
        state.children.insert(r.get_id(), copy_writer::NAME);
        writers.push(Mailbox::new(r, depth));
    }

    let depth = Depth::new(batch_accumulator::NAME);
    let acc_args = batch_accumulator::Args {
        writers,
        pipeline: me,
        credits: Credits::new(import.max_in_flight_batches),
        batch_rows: import.batch_rows.max(1),
        batch_bytes: import.batch_bytes.max(1),
        linger: import.linger,
        depth: depth.clone(),
    };
    let accumulator = BatchAccumulator::<T::Batch>::default();
    let (acc, _) = Actor::spawn_linked(None, accumulator, acc_args, cell)
        .await
        .map_err(startup_error)?;
    state.children.insert(acc.get_id(), batch_accumulator::NAME);
    Ok(Feed {
        accumulator: Mailbox::new(acc, depth),
        // Pieces in flight from the reader to the accumulator.
        credits: Credits::new(import.max_in_flight_batches),
    })
}

/// The error a stage's `pre_start` returned, unwrapped so that its
/// classification (retriable or not) survives.
pub fn startup_error(e: SpawnErr) -> ActorProcessingErr {
    match e {
        SpawnErr::StartupFailed(inner) => inner,
        other => Box::new(other),
    }
}

/// Writes committed progress, if the job is still ours.
async fn save_checkpoint(
    control: &Client,
    fence: &Fence,
    cp: &Checkpoint,
) -> Result<(), ImportError> {
    match fence.checkpoint(control, cp).await? {
        true => Ok(()),
        false => Err(ImportError::LeaseLost(fence.job_id())),
    }
}

/// Every batch is committed: writes the rejects file and reports the
/// job's outcome, for the coordinator to finish the job with.
async fn finish(state: &mut Running) -> Result<(), ImportError> {
    let failed = write_rejects(state).await?;
    let location = rejects_location(state).await;
    let counts = state.tracker.final_counts();
    let lists = match &state.reference_ids {
        Some(ids) => IdLists::of_reference_list(ids, failed, state.max_status_ids, counts.rejected),
        None => IdLists::of_file(&counts, failed, state.max_status_ids),
    };
    let outcome = state.tracker.outcome(&location, lists);
    Progress::set(&state.progress.records_committed, counts.records);
    if let Some(report) = state.report.take() {
        let _ = report.send(Outcome::Import(outcome));
    }
    Ok(())
}
