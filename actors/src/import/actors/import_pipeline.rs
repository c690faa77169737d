//! ImportPipeline: the root of one import attempt's subtree. It decides
//! the write mode under the group lock, spawns the stages (FileFetcher →
//! CsvReader or ParquetReader → BatchAccumulator → CopyWriter × N), turns
//! the writers' commits into a contiguous checkpoint, writes the rejects
//! file, and reports the import's outcome, for the JobCoordinator to make
//! the terminal write.
//!
//! Any stage failing fails the whole subtree: the JobCoordinator restarts it
//! from the checkpoint, which only ever counts batches that every writer
//! committed.

use std::path::PathBuf;
use std::sync::Arc;

use deadpool_postgres::Pool;
use ractor::{ActorCell, ActorRef, SpawnErr};
use tokio_postgres::Client;

use self::input::{Feeds, Reading};
use super::batch_accumulator::{self, Feed, Sealing};
use super::copy_writer::{self, Committed};
use crate::error::JobError;
use crate::flow::Credits;
use crate::import::contract::Contract;
use crate::import::drift::DriftWatch;
use crate::import::event::IdLists;
use crate::import::source::Source;
use crate::import::sync::{self, Guard, Synced};
use crate::import::table::matches::Matches;
use crate::import::table::nodes::Nodes;
use crate::import::table::{self, rejects, Group, Table};
use crate::import::tracker::CommitTracker;
use crate::import::{files, Checkpoint, Import, ImportOutcome, InputFormat};
use crate::import::{inline_ids, save};
use crate::job::fence::Fence;
use crate::job::{Job, Report, Run};
use crate::pg;
use crate::pipeline::root::{self, Pipeline};
use crate::pipeline::Stages;
use crate::progress::Progress;
use crate::settings::{DatabaseSettings, ImportSettings, RetrySettings, StorageSettings};
use crate::telemetry::{Depth, Mailbox, SchemaDrifted, SyncEnded};
use crate::vocab::{ImportMode, Target, WriteMode};

mod input;

pub const NAME: &str = "import_pipeline";

pub enum Msg {
    /// Sets up the job (lock, mode, stages); sent to itself by `pre_start`,
    /// so that a job waiting for its group's lock never blocks the
    /// coordinator that spawned it.
    Start,
    /// The accumulator sealed a batch, or the input ended.
    Batches(Sealing),
    /// A writer committed its shard of a batch.
    Committed(Committed),
}

pub struct Args {
    pub run: Run<Import>,
    pub database: DatabaseSettings,
    /// The CopyWriters' connections, shared by every job.
    pub writers: Pool,
    pub settings: Arc<ImportSettings>,
    pub retry: RetrySettings,
    pub storage: StorageSettings,
    /// The cap on each id list of the status event.
    pub max_status_ids: usize,
}

pub struct Running {
    job: Job<Import>,
    fence: Fence,
    report: Option<Report<ImportOutcome>>,
    settings: Arc<ImportSettings>,
    retry: RetrySettings,
    storage: StorageSettings,
    database: DatabaseSettings,
    progress: Arc<Progress>,
    max_status_ids: usize,
    /// The ids of an inline reference list, for its status event.
    reference_ids: Option<Arc<Vec<String>>>,
    /// Holds the group lock for the job's life, and writes the checkpoints.
    control: Client,
    tracker: CommitTracker,
    rejects_path: PathBuf,
    /// Where the rejects file is uploaded at the end, for an object source.
    rejects_object: Option<(String, String)>,
    stages: Stages,
    depth: Depth,
    /// The feed readers send rows into, kept for each file's reader.
    feed: Option<Feeds>,
    /// In a multi-file job, the file being read (the checkpoint's is the
    /// one its committed rows end in, at or behind this one).
    reading: Reading,
    /// The reader and the fetcher of the file being read.
    input: Vec<ActorCell>,
    /// The next file of a set, opened while this one is read.
    ahead: Option<input::Opened>,
    /// The group's contract, read at the start.
    contract: Contract,
    /// Each file's columns against the group's last import's.
    drift: Arc<DriftWatch>,
}

pub type ImportPipelineRef = ActorRef<Msg>;

pub async fn spawn_linked(
    supervisor: ActorCell,
    args: Args,
) -> Result<ImportPipelineRef, SpawnErr> {
    root::spawn_linked::<ImportPipeline>(supervisor, args).await
}

pub struct ImportPipeline;

impl Pipeline for ImportPipeline {
    const NAME: &'static str = NAME;
    type Msg = Msg;
    type Args = Args;
    type Running = Running;

    fn start_msg() -> Msg {
        Msg::Start
    }

    async fn start(myself: &ActorRef<Msg>, args: Args) -> Result<Running, JobError> {
        start(myself, args).await
    }

    async fn handle(msg: Msg, run: &mut Running) -> Result<(), JobError> {
        handle_msg(msg, run).await
    }

    fn stages(run: &Running) -> &Stages {
        &run.stages
    }

    fn stopped(run: &Running) {
        run.depth.drain();
        if let Some(ahead) = &run.ahead {
            ahead.drain();
        }
    }
}

/// Connects, takes the group lock, picks the write mode and spawns the
/// stages. A failure here fails the attempt like any stage failure.
async fn start(myself: &ActorRef<Msg>, args: Args) -> Result<Running, JobError> {
    let Args {
        run,
        database,
        writers,
        settings,
        retry,
        storage,
        max_status_ids,
    } = args;
    let Run {
        mut job,
        fence,
        report,
        progress,
    } = run;
    let control = pg::connect_bulk(&pg::named(&database, "ferry-job")).await?;
    let import = &mut job.work;
    // A multi-file job lists its files once, at its first start.
    if files::is_file_set(&import.source) && import.checkpoint.files.is_none() {
        let set = files::list(&import.source, import.target, &storage, &settings).await?;
        tracing::info!(job_id = %job.id, files = set.files.len(), skipped = set.skipped.len(), "Files listed.");
        import.checkpoint.files = Some(set);
    }
    let import = &job.work;
    let source = match inline_ids(&control, job.id).await? {
        Some(ids) => Source::Inline(Arc::new(ids)),
        None => import.current_source(&storage)?,
    };
    let group = Group {
        domain_id: job.domain_id,
        group_id: import.group_id,
    };
    let contract = Contract::load(&control, job.domain_id, &import.group_key)
        .await?
        .map_err(|e| {
            JobError::permanent(
                NAME,
                format!("the group's stored contract is not valid: {e}"),
            )
        })?;
    let baseline = DriftWatch::baseline(&control, group, import.target).await?;
    let drift = Arc::new(DriftWatch::new(
        baseline,
        contract.on_drift,
        import.checkpoint.drift.clone(),
    ));
    // A sync must see its group alone, so that what it did not see is
    // exactly what its input does not hold.
    let sync = import.mode == ImportMode::Sync;
    let mode = match (import.target, import.format) {
        (Target::Nodes, InputFormat::Csv | InputFormat::Refs) => {
            table::choose_mode(
                &control,
                import.checkpoint.mode,
                &nodes(import, group, &settings),
                settings.fast_path,
                sync,
            )
            .await?
        }
        (Target::Matches, InputFormat::Parquet) => {
            table::choose_mode(
                &control,
                import.checkpoint.mode,
                &Matches { group },
                settings.fast_path,
                sync,
            )
            .await?
        }
        (target, format) => {
            return Err(JobError::Source {
                uri: import.source.clone(),
                reason: format!(
                    "a `{}` job cannot read {} input",
                    target.as_str(),
                    format.as_str()
                ),
                retriable: false,
            })
        }
    };
    let checkpoint = Checkpoint {
        mode: Some(mode),
        ..import.checkpoint.clone()
    };
    save(&control, &fence, &checkpoint).await?;
    tracing::info!(
        job_id = %job.id,
        table = import.target.as_str(),
        mode = ?mode,
        resume_from = checkpoint.counts.records,
        file = checkpoint.files.as_ref().and_then(|s| s.current()).map_or("", |f| f.uri.as_str()),
        "Import pipeline starting."
    );
    Progress::set(&progress.records_committed, checkpoint.counts.records);
    // Readers add theirs from there.
    Progress::set(&progress.records_read, checkpoint.counts.records);
    // A set's size is its listing's; a single file's, its fetcher's.
    let reading = match &checkpoint.files {
        Some(set) => {
            Progress::set(&progress.bytes_total, set.total_bytes());
            Progress::set(&progress.bytes_read, set.bytes_before);
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
        Some(file) => Some(Source::parse(&file.uri, &storage)?),
        None => None,
    };
    let beside = first.as_ref().unwrap_or(&source);
    let mut run = Running {
        rejects_path: beside.rejects_path(job.id, &settings.rejects_dir),
        rejects_object: beside.rejects_object(job.id),
        reference_ids: match &source {
            Source::Inline(ids) => Some(ids.clone()),
            _ => None,
        },
        tracker: CommitTracker::new(checkpoint),
        stages: Stages::new(myself.get_cell()),
        depth: Depth::new(NAME),
        control,
        job,
        fence,
        report: Some(report),
        settings,
        retry,
        storage,
        database,
        progress,
        max_status_ids,
        feed: None,
        reading,
        input: Vec::new(),
        ahead: None,
        contract,
        drift,
    };
    let feed = match run.job.work.target {
        Target::Nodes => {
            let nodes = nodes(&run.job.work, group, &run.settings);
            spawn_writers(myself, &mut run, mode, &writers, nodes)
                .await
                .map(Feeds::Nodes)?
        }
        Target::Matches => spawn_writers(myself, &mut run, mode, &writers, Matches { group })
            .await
            .map(Feeds::Matches)?,
    };
    run.feed = Some(feed);
    let resume = input::resume_position(&run);
    input::start(&mut run, source, resume).await?;
    Ok(run)
}

impl Running {
    /// A sync that may have rows to delete: its writers mark what they
    /// write as seen, and its end deletes the rest of the group. One into
    /// a group that was empty (fast mode, under the exclusive lock) has
    /// nothing to delete.
    fn syncs(&self) -> bool {
        self.job.work.mode == ImportMode::Sync
            && self.tracker.checkpoint().mode == Some(WriteMode::Upsert)
    }

    fn group(&self) -> Group {
        Group {
            domain_id: self.job.domain_id,
            group_id: self.job.work.group_id,
        }
    }
}

fn nodes(import: &Import, group: Group, settings: &ImportSettings) -> Nodes {
    Nodes {
        group,
        node_type: import.node_type.clone(),
        resend_changed: settings.resend_changed,
    }
}

async fn handle_msg(msg: Msg, run: &mut Running) -> Result<(), JobError> {
    run.depth.received();
    match msg {
        Msg::Start => {}
        Msg::Batches(Sealing::Sealed(mut sealed)) => {
            sealed.upto = run.in_job(sealed.upto);
            run.tracker.sealed(sealed)
        }
        Msg::Committed(c) => run
            .tracker
            .committed(c.seq, c.written)
            .map_err(|e| JobError::permanent(NAME, e))?,
        Msg::Batches(Sealing::InputEnded {
            last_seq,
            upto,
            error,
        }) => {
            let upto = run.in_job(upto);
            match error {
                // A file read to its end: the next one is read at once;
                // the writers go on with this one's last batches meanwhile.
                None if run.file_read(upto) => input::read_next(run, upto).await?,
                error => {
                    // In a set, a file's failure names the file.
                    let error = match run.file() {
                        Some(file) => error.map(|e| format!("{}: {e}", file.uri)),
                        None => error,
                    };
                    run.tracker.ended(last_seq, upto, error)
                }
            }
        }
    }
    if run.tracker.advance() {
        run.tracker.note_drift(run.drift.seen());
        let records = run.tracker.checkpoint().counts.records;
        let size = match run.tracker.files_mut() {
            Some(set) => {
                set.locate(records);
                set.total_bytes()
            }
            None => Progress::get(&run.progress.bytes_total),
        };
        run.tracker.source_size(size);
        let cp = run.tracker.checkpoint();
        save(&run.control, &run.fence, cp).await?;
        Progress::set(&run.progress.records_committed, cp.counts.records);
    }
    if run.tracker.is_done() {
        run.tracker.note_drift(run.drift.seen());
        // The last file, read to its end, is saved so, for the job's view.
        let records = run.tracker.checkpoint().counts.records;
        if let Some(set) = run.tracker.files_mut() {
            set.locate(records);
            save(&run.control, &run.fence, run.tracker.checkpoint()).await?;
        }
        let refused = match run.syncs() && run.tracker.loaded_whole() {
            true => sync(run).await?,
            false => None,
        };
        let outcome = outcome(run, refused).await?;
        let report = run.report.take();
        run.stages.finish(report, outcome).await;
    }
    Ok(())
}

/// Every batch is committed: writes the rejects file (uploaded beside an
/// object source) and makes the job's outcome, with the ids its status
/// event lists: every rejected one for a reference list (each must stay
/// out of `successList`; there are no more than the list has), up to the
/// cap for a file.
async fn outcome(run: &Running, refused: Option<String>) -> Result<ImportOutcome, JobError> {
    let (client, job_id) = (&run.control, run.job.id);
    let counted = run.tracker.rejected();
    let mut failed = Vec::new();
    let mut location = run.rejects_path.display().to_string();
    if counted > 0 {
        let written = rejects::write_file(client, job_id, &run.rejects_path, NAME).await?;
        if written != counted {
            tracing::warn!(
                job_id = %job_id,
                path = %run.rejects_path.display(),
                written,
                counted,
                "The rejects file does not hold every rejected row counted."
            );
        }
        let limit = match run.reference_ids {
            Some(_) => i64::MAX,
            None => run.max_status_ids as i64,
        };
        failed = rejects::failed_ids(client, job_id, limit).await?;
        if let Some(object) = &run.rejects_object {
            location = rejects::upload(job_id, &run.rejects_path, object, &run.storage).await;
        }
    }
    let counts = run.tracker.final_counts();
    let mut lists = match &run.reference_ids {
        Some(ids) => IdLists::of_reference_list(ids, failed, run.max_status_ids, counts.rejected),
        None => IdLists::of_file(&counts, failed, run.max_status_ids),
    };
    let deleted = run.tracker.checkpoint().deleted_ids.clone();
    lists.deleted(deleted.unwrap_or_default(), counts.deleted);
    Progress::set(&run.progress.records_committed, counts.records);
    let mut outcome = run.tracker.outcome(&location, lists);
    if let Some(drift) = outcome.drift.as_ref().filter(|d| d.drifted()) {
        SchemaDrifted {
            job_id,
            target: run.job.work.target,
            added: &drift.added,
            removed: &drift.removed,
        }
        .emit();
    }
    if run.syncs() {
        match (&mut outcome.failure_reason, refused) {
            (_, Some(refused)) => outcome.failure_reason = Some(refused),
            (Some(reason), None) => reason.push_str(
                "; a sync deletes only after its whole input loaded: nothing was deleted",
            ),
            (None, None) => {}
        }
    }
    Ok(outcome)
}

/// A sync's end, once its whole input is committed: deletes the rows of
/// the group it did not see, unless an earlier attempt did. Returns why
/// the guard refused to, if it did.
async fn sync(run: &mut Running) -> Result<Option<String>, JobError> {
    let cp = run.tracker.checkpoint();
    if cp.deleted_ids.is_some() {
        return Ok(None);
    }
    let guard = Guard {
        max_delete_ratio: run.settings.sync_max_delete_ratio.clamp(0.0, 1.0),
        force: run.job.work.force,
    };
    let group = run.group();
    let (c, fence, job_id, cap) = (&mut run.control, &run.fence, run.job.id, run.max_status_ids);
    let synced = match run.job.work.target {
        Target::Nodes => {
            let nodes = nodes(&run.job.work, group, &run.settings);
            sync::delete_unseen(c, fence, &nodes, job_id, cp, guard, cap).await?
        }
        Target::Matches => {
            let matches = Matches { group };
            sync::delete_unseen(c, fence, &matches, job_id, cp, guard, cap).await?
        }
    };
    let target = run.job.work.target;
    match synced {
        Synced::Deleted(cp) => {
            let rows = cp.counts.deleted;
            SyncEnded::Deleted {
                job_id,
                target,
                rows,
            }
            .emit();
            run.tracker.synced(*cp);
            Ok(None)
        }
        Synced::Refused(reason) => {
            SyncEnded::Refused {
                job_id,
                target,
                reason: &reason,
            }
            .emit();
            Ok(Some(reason))
        }
    }
}

/// Spawns the CopyWriters for `table` and the BatchAccumulator that feeds
/// them; returns the feed a reader sends its rows into.
async fn spawn_writers<T: Table>(
    myself: &ActorRef<Msg>,
    run: &mut Running,
    mode: WriteMode,
    pool: &Pool,
    table: T,
) -> Result<Feed<T::Batch>, JobError> {
    let settings = run.settings.clone();
    let mut writers = Vec::with_capacity(settings.writers.max(1));
    for index in 0..settings.writers.max(1) {
        let depth = Depth::new(copy_writer::NAME);
        let args = copy_writer::Args {
            index,
            job_id: run.job.id,
            pool: pool.clone(),
            retry: run.retry.clone(),
            mode,
            marks_seen: run.syncs(),
            target: table.clone(),
            pipeline: Mailbox::to(myself.clone(), run.depth.clone(), Msg::Committed),
            depth: depth.clone(),
        };
        let root = run.stages.root();
        let writer = run
            .stages
            .add(copy_writer::NAME, copy_writer::spawn_linked(root, args))
            .await?;
        writers.push(Mailbox::new(writer, depth));
    }
    let depth = Depth::new(batch_accumulator::NAME);
    let args = batch_accumulator::Args {
        writers,
        pipeline: Mailbox::to(myself.clone(), run.depth.clone(), Msg::Batches),
        credits: Credits::new(settings.max_in_flight_batches),
        batch_rows: settings.batch_rows.max(1),
        batch_bytes: settings.batch_bytes.max(1),
        linger: settings.linger,
        depth: depth.clone(),
    };
    let root = run.stages.root();
    let accumulator = run
        .stages
        .add(
            batch_accumulator::NAME,
            batch_accumulator::spawn_linked(root, args),
        )
        .await?;
    Ok(Feed {
        accumulator: Mailbox::new(accumulator, depth),
        // Pieces in flight from the reader to the accumulator.
        credits: Credits::new(settings.max_in_flight_batches),
    })
}
