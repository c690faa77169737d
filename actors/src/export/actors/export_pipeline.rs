//! ExportPipeline: the root of one export attempt's subtree. It plans the
//! export's query, spawns the stages (ExportReader → Exporter →
//! ObjectWriter; for a text file, `exports.readers` RangeReaders in the
//! snapshot it takes and exports, each reading ranges of the order key),
//! turns what the writer stored into checkpoints (fenced on the job's
//! lease) and progress, and reports the export's outcome, for the
//! JobCoordinator to make the terminal write. A kind chooses the encoder
//! (a file format, or a users export's id messages), the sink (a store, a
//! local file, pending messages) and how an attempt resumes.
//!
//! A restart continues where the last checkpoint left off ([`Resume`]):
//! finished files stay, the open file goes on after its last stored part
//! (a Parquet file, whose footer lists every row group, is written again
//! from its start), and the reader reads on after the last stored row.

use std::sync::Arc;

use ractor::{ActorCell, ActorRef, SpawnErr};
use tokio_postgres::Client;

use super::export_reader::{self, Taken};
use super::exporter::{self, First};
use super::object_writer::{self, Progressed};
use super::range_reader::{self, Ranges};
use crate::error::JobError;
use crate::export::encode::{Cutter, FileEncoder};
use crate::export::object::Catalog;
use crate::export::plan::{OutField, Plan};
use crate::export::sink::{discard, Sink};
use crate::export::split::{self, Survey};
use crate::export::{
    save, text_encoder, Export, ExportCheckpoint, ExportOutcome, ExportResult, ExportSpec, Format,
};
use crate::flow::Credits;
use crate::job::fence::Fence;
use crate::job::{Job, JobStatus, Report, Run};
use crate::pg;
use crate::pipeline::root::{self, Pipeline};
use crate::pipeline::snapshot;
use crate::pipeline::Stages;
use crate::progress::Progress;
use crate::settings::{DatabaseSettings, ExportSettings};
use crate::telemetry::{Depth, Mailbox, RowsExported};

pub const NAME: &str = "export_pipeline";

pub enum Msg {
    Start,
    /// The reader took its snapshot.
    Snapshot(Taken),
    /// The writer stored the next thing, or finished.
    Writer(Progressed),
}

/// How an attempt goes on from the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// After the last stored part (or file, for a format that cannot be
    /// continued).
    AfterLastPart,
    /// From the start, in this attempt's snapshot: every row the export
    /// ends with was read from the one snapshot it reports (a users
    /// export marks what that snapshot saw). The store's keys are the
    /// same, so a file is replaced.
    FromStart,
}

/// Makes the encoder for the planned fields.
pub type Encoder = Box<dyn FnOnce(&[OutField]) -> Box<dyn FileEncoder> + Send>;

pub struct Args {
    pub run: Run<Export>,
    pub catalog: Arc<Catalog>,
    pub settings: Arc<ExportSettings>,
    /// Where the job row is (checkpoints).
    pub database: DatabaseSettings,
    /// Where the rows are read (the primary, or `exports.read_url`).
    pub read_database: DatabaseSettings,
    pub sink: Arc<dyn Sink>,
    pub encoder: Encoder,
    pub resume: Resume,
}

pub struct Running {
    job: Job<Export>,
    fence: Fence,
    report: Option<Report<ExportOutcome>>,
    progress: Arc<Progress>,
    sink: Arc<dyn Sink>,
    checkpoint: ExportCheckpoint,
    /// Rows stored before this attempt: the count is of the rest.
    rows_at_start: u64,
    control: Client,
    stages: Stages,
    depth: Depth,
}

pub type ExportPipelineRef = ActorRef<Msg>;

pub async fn spawn_linked(
    supervisor: ActorCell,
    args: Args,
) -> Result<ExportPipelineRef, SpawnErr> {
    root::spawn_linked::<ExportPipeline>(supervisor, args).await
}

pub struct ExportPipeline;

impl Pipeline for ExportPipeline {
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
    }
}

/// Plans the query, picks up where the last attempt stopped, and spawns
/// the stages.
async fn start(myself: &ActorRef<Msg>, args: Args) -> Result<Running, JobError> {
    let Args {
        run,
        catalog,
        settings,
        database,
        read_database,
        sink,
        encoder,
        resume,
    } = args;
    let Run {
        job,
        fence,
        report,
        progress,
    } = run;
    let spec = &job.work.spec;
    let def = catalog
        .get(&spec.object)
        .ok_or_else(|| JobError::permanent(NAME, format!("no export object `{}`", spec.object)))?;
    let mut plan =
        Plan::new(def, spec, job.domain_id, &settings).map_err(|e| JobError::permanent(NAME, e))?;
    let control = pg::connect(&pg::named(&database, "ferry-job")).await?;
    let checkpoint = resumed(&job.work, resume, &*sink).await?;
    save(&control, &fence, &checkpoint).await?;
    let readers = readers(&plan, spec, resume, &settings);
    // Fields named by the rows (`metadata.*`) are read in a snapshot that
    // the reader then takes too, so the header fits every row it writes;
    // several readers split the rows in it, and read them in it.
    let holder = match plan.keys_query().is_some() || readers > 1 {
        true => Some(snapshot::open(&read_database, "ferry-export", None).await?),
        false => None,
    };
    let mut survey = Survey::every_row();
    if let Some(held) = &holder {
        if let Some((sql, params)) = plan.keys_query() {
            let rows = held.client.query(&sql, &params.refs()).await?;
            plan.expand(rows.iter().map(|r| r.get(0)).collect());
        }
        if readers > 1 {
            let after = checkpoint.position.as_ref();
            survey =
                split::survey(&held.client, &plan, after, readers, settings.range_rows).await?;
        }
    }
    let holder = match holder {
        Some(held) => Some((held.export().await?, held)),
        None => None,
    };
    tracing::info!(
        job_id = %job.id,
        object = %spec.object,
        format = spec.format.as_str(),
        resume_rows = checkpoint.rows,
        files = checkpoint.files.len(),
        "Export pipeline starting."
    );
    Progress::set(&progress.records_committed, checkpoint.rows);
    let mut run = Running {
        stages: Stages::new(myself.get_cell()),
        depth: Depth::new(NAME),
        report: Some(report),
        sink,
        rows_at_start: checkpoint.rows,
        checkpoint,
        control,
        job,
        fence,
        progress,
    };
    let reading = match &holder {
        Some((id, held)) if survey.spans.len() > 1 => {
            let taken = Mailbox::to(myself.clone(), run.depth.clone(), Msg::Snapshot);
            taken.send(Taken::Snapshot {
                at: held.taken_at.clone(),
                seen: held.seen.clone(),
            });
            // The planner's estimate is the total until the last range is
            // read: a count would cost the server a scan these cores need.
            taken.send(Taken::Estimated(survey.estimate));
            let ranges = Ranges::new(survey.spans);
            tracing::info!(job_id = %run.job.id, readers, ranges = ranges.len(), "Export reading in ranges.");
            Reading::Ranges {
                readers,
                ranges: Arc::new(ranges),
                snapshot: id.clone(),
            }
        }
        _ => Reading::One {
            snapshot: holder.as_ref().map(|(id, _)| id.clone()),
        },
    };
    spawn_stages(
        myself,
        &mut run,
        &settings,
        read_database,
        plan,
        encoder,
        reading,
    )
    .await?;
    // The readers have taken the snapshot: its holder may go.
    drop(holder);
    Ok(run)
}

/// How many connections read the export: `exports.readers` for a text
/// file of an export that goes on after its last part, whose order can be
/// split, and whose files are not cut by rows; else one.
fn readers(plan: &Plan, spec: &ExportSpec, resume: Resume, settings: &ExportSettings) -> usize {
    let text = matches!(spec.format, Format::Csv | Format::Json | Format::Jsonl);
    let splits = plan.split_column().is_some();
    match text && splits && resume == Resume::AfterLastPart && settings.file_rows == 0 {
        true => settings.readers(),
        false => 1,
    }
}

/// The checkpoint this attempt starts from, as `resume` says, with what it
/// will not go on with dropped from the store.
async fn resumed(
    export: &Export,
    resume: Resume,
    sink: &dyn Sink,
) -> Result<ExportCheckpoint, JobError> {
    let mut checkpoint = export.checkpoint.clone();
    let dropped = |e| JobError::permanent(NAME, e);
    if resume == Resume::FromStart {
        if let Some(open) = &checkpoint.open {
            sink.abort(open).await.map_err(dropped)?;
        }
        return Ok(ExportCheckpoint::default());
    }
    // A file that cannot be continued is written again from its start.
    if let Some(open) = checkpoint
        .open
        .take_if(|_| !export.spec.format.resumes_mid_file())
    {
        sink.abort(&open).await.map_err(dropped)?;
        checkpoint.rows = open.start_rows;
        checkpoint.position = open.start.clone();
    }
    Ok(checkpoint)
}

/// What reads an attempt's rows.
enum Reading {
    /// One ExportReader, in its own snapshot or the one named.
    One { snapshot: Option<String> },
    /// RangeReaders in the snapshot named, taking the ranges in order.
    Ranges {
        readers: usize,
        ranges: Arc<Ranges>,
        snapshot: String,
    },
}

/// ObjectWriter ← Exporter ← the reader (or readers), each spawned before
/// the one that feeds it.
async fn spawn_stages(
    myself: &ActorRef<Msg>,
    run: &mut Running,
    settings: &ExportSettings,
    read_database: DatabaseSettings,
    plan: Plan,
    encoder: Encoder,
    reading: Reading,
) -> Result<(), JobError> {
    let checkpoint = &run.checkpoint;
    let spec: &ExportSpec = &run.job.work.spec;
    let writer_depth = Depth::new(object_writer::NAME);
    let args = object_writer::Args {
        sink: run.sink.clone(),
        resume: checkpoint.open.clone(),
        parts_in_flight: settings.parts_in_flight,
        pipeline: Mailbox::to(myself.clone(), run.depth.clone(), Msg::Writer),
        depth: writer_depth.clone(),
    };
    let root = run.stages.root();
    let spawning = object_writer::spawn_linked(root.clone(), args);
    let writer = run.stages.add(object_writer::NAME, spawning).await?;

    let exporter_depth = Depth::new(exporter::NAME);
    let first = match &checkpoint.open {
        Some(open) => First::Continue(open.clone()),
        None => First::New(checkpoint.files.len()),
    };
    let args = exporter::Args {
        encoder: encoder(&plan.fields),
        fields: plan.fields.len(),
        position_types: plan.position_types(),
        destination: spec.destination.clone(),
        cutter: Cutter {
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
        progress: run.progress.clone(),
        job_id: run.job.id,
        ranges: match &reading {
            Reading::One { .. } => None,
            Reading::Ranges { ranges, .. } => Some(ranges.len()),
        },
    };
    let spawning = exporter::spawn_linked(root.clone(), args);
    let exporter = Mailbox::new(
        run.stages.add(exporter::NAME, spawning).await?,
        exporter_depth,
    );

    let plan = Arc::new(plan);
    let after = checkpoint.position.clone();
    match reading {
        Reading::One { snapshot } => {
            let args = export_reader::Args {
                job_id: run.job.id,
                snapshot,
                database: read_database,
                plan,
                after,
                fetch_rows: settings.fetch_rows,
                exporter,
                credits: Credits::new(settings.max_in_flight),
                pipeline: Mailbox::to(myself.clone(), run.depth.clone(), Msg::Snapshot),
            };
            let spawning = export_reader::spawn_linked(root, args);
            run.stages.add(export_reader::NAME, spawning).await?;
        }
        Reading::Ranges {
            readers,
            ranges,
            snapshot,
        } => {
            for _ in 0..readers.min(ranges.len()) {
                let args = range_reader::Args {
                    job_id: run.job.id,
                    snapshot: snapshot.clone(),
                    database: read_database.clone(),
                    plan: plan.clone(),
                    after: after.clone(),
                    ranges: ranges.clone(),
                    encoder: text_encoder(spec.format, spec.compression, &plan.fields, settings),
                    fetch_rows: settings.fetch_rows,
                    exporter: exporter.clone(),
                    credits: Credits::new(settings.max_in_flight),
                };
                let spawning = range_reader::spawn_linked(root.clone(), args);
                run.stages.add(range_reader::NAME, spawning).await?;
            }
        }
    }
    Ok(())
}

async fn handle_msg(msg: Msg, run: &mut Running) -> Result<(), JobError> {
    run.depth.received();
    let cp = &mut run.checkpoint;
    let exported = match msg {
        Msg::Start => return Ok(()),
        Msg::Snapshot(Taken::Snapshot { at, seen }) => {
            cp.data_as_of.get_or_insert(at);
            cp.snapshot = Some(seen);
            0
        }
        Msg::Snapshot(Taken::Counted(remaining) | Taken::Estimated(remaining)) => {
            if run.report.is_none() {
                return Ok(()); // counted after the end: nothing to show
            }
            cp.total = run.rows_at_start + remaining;
            Progress::set(&run.progress.records_total, cp.total);
            0
        }
        Msg::Writer(Progressed::Stored(stored)) => {
            let resumable = run.job.work.spec.format.resumes_mid_file();
            let rows = cp
                .apply(stored, resumable)
                .map_err(|e| JobError::permanent(NAME, e))?;
            // An estimated total is never less than what is done.
            if cp.total < cp.rows {
                cp.total = cp.rows;
                Progress::set(&run.progress.records_total, cp.total);
            }
            rows
        }
        Msg::Writer(Progressed::Finished) => {
            // Every row is read: the total is known whether or not the
            // count came in.
            cp.total = cp.rows;
            Progress::set(&run.progress.records_total, cp.total);
            let outcome = ExportOutcome {
                result: ExportResult {
                    rows: cp.rows,
                    bytes: cp.bytes(),
                    files: cp.files.clone(),
                    data_as_of: cp.data_as_of.clone(),
                },
                failure_reason: None,
                snapshot: cp.snapshot.clone(),
            };
            let report = run.report.take();
            run.stages.finish(report, outcome).await;
            return Ok(());
        }
    };
    if let Err(e) = save(&run.control, &run.fence, &run.checkpoint).await {
        discard_if_cancelled(run).await;
        return Err(e);
    }
    Progress::set(&run.progress.records_committed, run.checkpoint.rows);
    RowsExported {
        object: run.job.work.spec.object.clone(),
        rows: exported,
    }
    .emit();
    Ok(())
}

/// The job is not ours any more: if it was cancelled (the API's DELETE),
/// what this attempt stored goes too, uploads the job row does not list
/// among them (begun after the canceller looked). The cancel's own
/// after-end work deletes what the row lists.
async fn discard_if_cancelled(run: &Running) {
    let job_id = run.job.id;
    let status: Option<String> = match run
        .control
        .query_opt("SELECT status FROM jobs WHERE id = $1", &[&job_id])
        .await
    {
        Ok(row) => row.map(|r| r.get(0)),
        Err(_) => return,
    };
    if status.is_none_or(|s| s == JobStatus::Cancelled.as_str()) {
        if let Err(e) = discard(&*run.sink, &run.checkpoint).await {
            tracing::warn!(job_id = %job_id, error = %e, "Could not delete a cancelled export's files.");
        }
    }
}
