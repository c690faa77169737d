//! ExportPipeline: the root of one export attempt's subtree. It plans the
//! export's query, spawns and links the stages (ExportReader → Exporter →
//! ObjectWriter), turns what the writer stored into checkpoints (fenced on
//! the job's lease) and progress, and reports the export's outcome to the
//! JobCoordinator, which makes the terminal write.
//!
//! A restart continues where the last checkpoint left off: finished files
//! stay, the open file goes on after its last stored part (a Parquet file,
//! whose footer lists every row group, is written again from its start),
//! and the reader reads on after the last stored row.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::oneshot;
use tokio_postgres::Client;

use super::export_reader::{self, ExportReader};
use super::exporter::{self, Exporter, First};
use super::job_pipeline::{startup_error, FINISHED};
use super::object_writer::{self, ObjectWriter};
use crate::error::{is_retriable, ImportError};
use crate::export::encode::encoder;
use crate::export::object::Catalog;
use crate::export::plan::Plan;
use crate::export::sink::Sink;
use crate::export::users::{UsersDelivery, METADATA_KEYS};
use crate::export::{ExportCheckpoint, ExportResult, FileDone, OpenFile, PartDone, Position};
use crate::flow::Credits;
use crate::job::lifecycle::Fence;
use crate::job::{Export, ExportOutcome, Job, Outcome};
use crate::pg;
use crate::progress::Progress;
use crate::settings::{DatabaseSettings, ExportSettings};
use crate::telemetry::{Depth, Mailbox, RowsExported};

pub const NAME: &str = "export_pipeline";

/// What the ObjectWriter stored, in order.
pub enum Stored {
    /// A file began (or goes on): its upload is open.
    Begun(OpenFile),
    /// The next part of the open file.
    Part {
        part: PartDone,
        rows: u64,
        position: Option<Position>,
    },
    /// The open file is complete.
    File {
        file: FileDone,
        start_rows: u64,
        position: Option<Position>,
    },
}

pub enum Msg {
    Start,
    /// The reader's snapshot: when it was taken, what it sees, and the
    /// rows still to go.
    Snapshot {
        at: String,
        snapshot: String,
        remaining: u64,
    },
    Stored(Stored),
    /// Every file is complete.
    Finished,
}

pub struct Args {
    pub job: Job,
    pub export: Export,
    pub fence: Fence,
    pub report: Option<oneshot::Sender<Outcome>>,
    pub catalog: Arc<Catalog>,
    pub settings: Arc<ExportSettings>,
    /// Where the job row is (checkpoints).
    pub database: DatabaseSettings,
    /// Where the rows are read (the primary, or `exports.read_url`).
    pub read_database: DatabaseSettings,
    pub sink: Sink,
    pub progress: Arc<Progress>,
}

pub struct State {
    args: Args,
    run: Option<Running>,
}

pub struct Running {
    checkpoint: ExportCheckpoint,
    control: Client,
    children: HashMap<ActorId, &'static str>,
    depth: Depth,
    finishing: bool,
}

pub type ExportPipelineRef = ActorRef<Msg>;

pub struct ExportPipeline;

impl Actor for ExportPipeline {
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
            let started = start(&myself, &mut state.args).await;
            if started.is_err() {
                myself.stop_children(None);
            }
            state.run = Some(started?);
            return Ok(());
        };
        run.depth.received();
        handle_msg(&myself, msg, &mut state.args, run).await
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Msg>,
        event: SupervisionEvent,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let Some(run) = &state.run else {
            return Ok(());
        };
        if run.finishing {
            return Ok(());
        }
        let (who, reason, retriable) = match &event {
            SupervisionEvent::ActorFailed(who, err) => {
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
        let actor = run
            .children
            .get(&who.get_id())
            .copied()
            .unwrap_or("unknown");
        tracing::warn!(job_id = %state.args.job.id, actor, reason = %reason, "Export stage failed.");
        myself.stop_children(None);
        Err(ImportError::Stage {
            actor,
            reason,
            retriable,
        }
        .into())
    }

    async fn post_stop(
        &self,
        _: ActorRef<Msg>,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(run) = &state.run {
            run.depth.drain();
        }
        Ok(())
    }
}

fn permanent(reason: String) -> ImportError {
    ImportError::Stage {
        actor: NAME,
        reason,
        retriable: false,
    }
}

/// Plans the query, picks up where the last attempt stopped, and spawns
/// the stages.
async fn start(myself: &ActorRef<Msg>, args: &mut Args) -> Result<Running, ActorProcessingErr> {
    // A users export whose columns are its users' metadata keys reads them
    // in a snapshot that the reader then takes too, so the header fits
    // every row it writes.
    let (snapshot, spec) = match &args.export.spec.users {
        Some(users) if users.all_keys => {
            let (holder, keys) = keys_in_snapshot(&args.read_database, &args.job, users).await?;
            let mut spec = args.export.spec.clone();
            spec.fields
                .extend(keys.iter().map(|k| format!("metadata.{k}")));
            (Some(holder), spec)
        }
        _ => (None, args.export.spec.clone()),
    };
    let spec = &spec;
    let def = args
        .catalog
        .get(&spec.object)
        .ok_or_else(|| permanent(format!("no export object `{}`", spec.object)))?;
    let plan = Plan::new(def, spec, args.job.domain_id, &args.settings)
        .map_err(|e| permanent(e.to_string()))?;
    let control = pg::connect(&pg::named(&args.database, "ferry-job")).await?;
    let mut checkpoint = args.export.checkpoint.clone();
    if spec.one_snapshot() {
        // Written again from its start, from the snapshot this attempt
        // takes (the store's keys are the same, so a file is replaced).
        if let Some(open) = &checkpoint.open {
            args.sink
                .abort(open)
                .await
                .map_err(|e| permanent(e.to_string()))?;
        }
        checkpoint = ExportCheckpoint::default();
    }
    // A file that cannot be continued is written again from its start.
    if let Some(open) = checkpoint.open.take_if(|_| !spec.format.resumes_mid_file()) {
        args.sink
            .abort(&open)
            .await
            .map_err(|e| permanent(e.to_string()))?;
        checkpoint.rows = open.start_rows;
        checkpoint.position = open.start.clone();
    }
    save(&control, &args.fence, &checkpoint).await?;
    tracing::info!(
        job_id = %args.job.id,
        object = %spec.object,
        format = spec.format.as_str(),
        resume_rows = checkpoint.rows,
        files = checkpoint.files.len(),
        "Export pipeline starting."
    );
    Progress::set(&args.progress.records_committed, checkpoint.rows);

    let settings = &args.settings;
    let cell = myself.get_cell();
    let depth = Depth::new(NAME);
    let me = Mailbox::new(myself.clone(), depth.clone());
    let mut children = HashMap::new();

    let writer_depth = Depth::new(object_writer::NAME);
    let (writer, _) = Actor::spawn_linked(
        None,
        ObjectWriter,
        object_writer::Args {
            sink: args.sink.clone(),
            resume: checkpoint.open.clone(),
            parts_in_flight: settings.parts_in_flight,
            pipeline: me.clone(),
            depth: writer_depth.clone(),
        },
        cell.clone(),
    )
    .await
    .map_err(startup_error)?;
    children.insert(writer.get_id(), object_writer::NAME);

    let exporter_depth = Depth::new(exporter::NAME);
    let first = match &checkpoint.open {
        Some(open) => First::Continue(open.clone()),
        None => First::New(checkpoint.files.len()),
    };
    let (exp, _) = Actor::spawn_linked(
        None,
        Exporter,
        exporter::Args {
            encoder: encoder(spec.format, spec.compression, &plan.fields, settings),
            fields: plan.fields.len(),
            position_len: plan.position_len(),
            destination: spec.destination.clone(),
            limits: exporter::Limits {
                part_bytes: settings.part_bytes.max(5 << 20),
                file_bytes: settings.file_bytes,
                file_rows: settings.file_rows,
            },
            first,
            rows_before: checkpoint.rows,
            position: checkpoint.position.clone(),
            writer: Mailbox::new(writer, writer_depth),
            part_credits: Credits::new(settings.parts_in_flight.max(1) + 1),
            depth: exporter_depth.clone(),
            progress: args.progress.clone(),
            job_id: args.job.id,
        },
        cell.clone(),
    )
    .await
    .map_err(startup_error)?;
    children.insert(exp.get_id(), exporter::NAME);

    let (reader, _) = Actor::spawn_linked(
        None,
        ExportReader,
        export_reader::Args {
            job_id: args.job.id,
            snapshot: snapshot.as_ref().map(|(id, _)| id.clone()),
            database: args.read_database.clone(),
            plan: Arc::new(plan),
            after: checkpoint.position.clone(),
            fetch_rows: settings.fetch_rows,
            exporter: Mailbox::new(exp, exporter_depth),
            credits: Credits::new(settings.max_in_flight),
            pipeline: me,
        },
        cell,
    )
    .await
    .map_err(startup_error)?;
    children.insert(reader.get_id(), export_reader::NAME);
    // The reader has taken the snapshot: its holder may go.
    drop(snapshot);
    Ok(Running {
        checkpoint,
        control,
        children,
        depth,
        finishing: false,
    })
}

async fn handle_msg(
    myself: &ActorRef<Msg>,
    msg: Msg,
    args: &mut Args,
    run: &mut Running,
) -> Result<(), ActorProcessingErr> {
    let cp = &mut run.checkpoint;
    let resumable = args.export.spec.format.resumes_mid_file();
    let mut exported = 0;
    match msg {
        Msg::Start => return Ok(()),
        Msg::Snapshot {
            at,
            snapshot,
            remaining,
        } => {
            cp.data_as_of.get_or_insert(at);
            cp.snapshot = Some(snapshot);
            cp.total = cp.rows + remaining;
            Progress::set(&args.progress.records_total, cp.total);
        }
        Msg::Stored(Stored::Begun(open)) => cp.open = Some(open),
        Msg::Stored(Stored::Part {
            part,
            rows,
            position,
        }) => {
            let open = cp
                .open
                .as_mut()
                .ok_or_else(|| permanent("a part of no open file".into()))?;
            open.parts.push(part);
            open.rows += rows;
            // A Parquet file's rows count once the file is complete.
            if resumable {
                cp.rows += rows;
                cp.position = position;
                exported = rows;
            }
        }
        Msg::Stored(Stored::File {
            file,
            start_rows,
            position,
        }) => {
            if !resumable {
                cp.rows = start_rows + file.rows;
                cp.position = position;
                exported = file.rows;
            }
            cp.open = None;
            cp.files.push(file);
        }
        Msg::Finished => {
            let result = ExportResult {
                rows: cp.rows,
                bytes: cp.bytes(),
                files: cp.files.clone(),
                data_as_of: cp.data_as_of.clone(),
            };
            if let Some(report) = args.report.take() {
                let _ = report.send(Outcome::Export(ExportOutcome {
                    result,
                    failure_reason: None,
                    snapshot: cp.snapshot.clone(),
                }));
            }
            run.finishing = true;
            myself
                .stop_children_and_wait(None, Some(Duration::from_secs(10)))
                .await;
            myself.stop(Some(FINISHED.into()));
            return Ok(());
        }
    }
    if let Err(e) = save(&run.control, &args.fence, &run.checkpoint).await {
        discard_if_cancelled(args, run).await;
        return Err(e.into());
    }
    Progress::set(&args.progress.records_committed, run.checkpoint.rows);
    RowsExported {
        object: args.export.spec.object.clone(),
        rows: exported,
    }
    .emit();
    Ok(())
}

/// The group's metadata keys, read in a snapshot that stays exported
/// while the returned connection holds it: its id, and the connection.
async fn keys_in_snapshot(
    database: &DatabaseSettings,
    job: &Job,
    users: &UsersDelivery,
) -> Result<((String, Client), Vec<String>), ImportError> {
    let holder = pg::connect(&pg::named(database, "ferry-export")).await?;
    holder
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(ImportError::Database)?;
    let keys = holder
        .query(METADATA_KEYS, &[&job.domain_id, &users.group_id])
        .await
        .map_err(ImportError::Database)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let id: String = holder
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(ImportError::Database)?
        .get(0);
    Ok(((id, holder), keys))
}

/// The job is not ours any more: if it was cancelled (the API's DELETE),
/// what this attempt stored goes, including an upload begun after the
/// canceller looked.
async fn discard_if_cancelled(args: &Args, run: &Running) {
    let job_id = args.job.id;
    let cancelled = match crate::job::store::get(&run.control, job_id).await {
        Ok(job) => job.is_none_or(|j| j.status == crate::job::JobStatus::Cancelled),
        Err(_) => false,
    };
    if cancelled {
        if let Err(e) = args.sink.discard(&run.checkpoint).await {
            tracing::warn!(job_id = %job_id, error = %e, "Could not delete a cancelled export's files.");
        }
    }
}

/// Writes the checkpoint, if the job is still ours.
pub(super) async fn save(
    control: &Client,
    fence: &Fence,
    cp: &ExportCheckpoint,
) -> Result<(), ImportError> {
    match fence.export_checkpoint(control, cp).await? {
        true => Ok(()),
        false => Err(ImportError::LeaseLost(fence.job_id())),
    }
}
