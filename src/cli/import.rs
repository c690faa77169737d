//! `ferry import`: runs one job through the same actor pipeline the service
//! uses, shows progress on a terminal, and ends with a report.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use ferry_actors::import::request::{Asker, ImportRequest, Input, Limits};
use ferry_actors::import::NewImport;
use ferry_actors::job::JobStatus;
use ferry_actors::kinds::Work;
use ferry_actors::progress::Progress;
use ferry_actors::vocab::{ImportMode, Target};
use indicatif::ProgressBar;
use uuid::Uuid;

use crate::config::Config;
use crate::report::{grouped, ImportReport};

#[derive(Clone, Copy, ValueEnum)]
pub enum TargetArg {
    /// `nodes`, from CSV or a reference list (seed 004).
    Nodes,
    /// `match_suggestions`, from Parquet (seed 003).
    Matches,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// Insert and update the input's rows.
    Upsert,
    /// Then delete the group's rows the input does not hold.
    Sync,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["source", "refs", "refs_file"])))]
pub struct ImportArgs {
    /// A local path, file:// URL, s3://bucket/key, or http(s)://ENDPOINT/bucket/key
    /// of the configured store: gzip, zstd or plain CSV for nodes, Parquet
    /// for matches.
    pub source: Option<String>,
    /// Reference ids to import as nodes, comma-separated (seed 004 UC-2).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub refs: Option<Vec<String>>,
    /// A file of reference ids, one per line, no header (gzip, zstd or plain).
    #[arg(long, value_name = "FILE")]
    pub refs_file: Option<String>,
    /// What the rows become.
    #[arg(long, value_enum, default_value = "nodes")]
    pub target: TargetArg,
    /// The domain (tenant) UUID.
    #[arg(long)]
    pub domain: Uuid,
    /// The matching group: a UUID, or any string (mapped to a UUIDv5).
    #[arg(long)]
    pub group: String,
    /// Node type [default: import.node_type].
    #[arg(long = "type")]
    pub node_type: Option<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Header holding the reference id [default: import.reference_column].
    #[arg(long)]
    pub reference_column: Option<String>,
    /// Folder for the rejects file [default: rejects/ beside the source].
    #[arg(long)]
    pub rejects_dir: Option<String>,
    /// CopyWriter workers [default: import.writers].
    #[arg(long)]
    pub writers: Option<usize>,
    /// Rows per batch [default: import.batch_rows].
    #[arg(long)]
    pub batch_rows: Option<usize>,
    /// `upsert` inserts and updates the input's rows; `sync` then deletes
    /// the group's rows the input does not hold.
    #[arg(long, value_enum, default_value = "upsert")]
    pub mode: ModeArg,
    /// With `--mode sync`: delete even more than
    /// import.sync_max_delete_ratio of the group.
    #[arg(long)]
    pub force: bool,
    /// Always upsert, even into an empty group.
    #[arg(long)]
    pub no_fast_path: bool,
    /// At the end, write the run's metrics to FILE in Prometheus text format
    /// (for node_exporter's textfile collector).
    #[arg(long, value_name = "FILE")]
    pub metrics_textfile: Option<PathBuf>,
}

/// `ferry import`: the flags applied over the config, the job made from
/// the arguments, run, and reported. The exit code is 0 only for a
/// COMPLETED job.
pub async fn command(mut config: Config, args: ImportArgs) -> Result<ExitCode> {
    if let Some(v) = args.reference_column {
        config.import.reference_column = v;
    }
    if let Some(v) = args.rejects_dir {
        config.import.rejects_dir = v;
    }
    if let Some(v) = args.writers {
        config.import.writers = v;
    }
    if let Some(v) = args.batch_rows {
        config.import.batch_rows = v;
    }
    if args.no_fast_path {
        config.import.fast_path = false;
    }
    let show_progress = !args.json && std::io::stderr().is_terminal();
    if show_progress {
        super::quiet_logs(&mut config);
    }
    crate::telemetry::init(&config.log);
    let target = match args.target {
        TargetArg::Nodes => Target::Nodes,
        TargetArg::Matches => Target::Matches,
    };
    let input = match (args.source, args.refs, args.refs_file) {
        (_, Some(ids), _) => Input::ReferenceIds(ids),
        (_, _, Some(path)) => Input::RefsFile(path),
        (Some(path), ..) => Input::File(path),
        (None, None, None) => bail!("give a SOURCE, --refs or --refs-file"),
    };
    // The same request as one from Kafka or the API, checked the same way;
    // a local path may be any the operator can read.
    let new = ImportRequest {
        domain_id: args.domain,
        group_key: args.group,
        input,
        node_type: args.node_type,
        request_id: None,
        mode: match args.mode {
            ModeArg::Upsert => ImportMode::Upsert,
            ModeArg::Sync => ImportMode::Sync,
        },
        force: args.force,
    }
    .checked(Limits::of(&config.kafka))
    .and_then(|r| {
        r.into_job(
            target,
            &config.import.node_type,
            &config.storage,
            Asker::Operator,
        )
    })
    .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
    let metrics = args
        .metrics_textfile
        .map(MetricsTextfile::install)
        .transpose()?;
    let report = run(&config, new, show_progress).await.context("import")?;
    if let Some(m) = metrics {
        m.write()?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.write_text(&mut std::io::stdout())?;
    }
    Ok(if report.status == JobStatus::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Creates the job, runs it to its end, and reports.
pub async fn run(config: &Config, new: NewImport, show_progress: bool) -> Result<ImportReport> {
    let started = Instant::now();
    let bar = show_progress.then_some(progress_bar as super::Bar);
    let job = super::run_job(config, &new, "import", bar).await?;
    let Work::Import(import) = &job.work else {
        anyhow::bail!("job {} is not an import", job.id);
    };
    Ok(ImportReport::new(&job, import, started.elapsed()))
}

/// A bar over the source's bytes, with rows read and committed and rows/s.
pub fn progress_bar(progress: Arc<Progress>) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let template = "{spinner} [{elapsed_precise}] [{bar:30}] {bytes}/{total_bytes} {msg}";
    super::ticking(progress, template, |bar, progress, secs| {
        let read = Progress::get(&progress.records_read);
        let committed = Progress::get(&progress.records_committed);
        bar.set_length(Progress::get(&progress.bytes_total));
        bar.set_position(Progress::get(&progress.bytes_read));
        bar.set_message(format!(
            "rows {} read, {} committed ({} rows/s)",
            grouped(read as i64),
            grouped(committed as i64),
            grouped((committed as f64 / secs) as i64)
        ));
    })
}

/// Records metrics in memory, to be written once the import ends to a file
/// in Prometheus text format (node_exporter's textfile collector reads such
/// files; a one-shot command has no endpoint to scrape).
pub struct MetricsTextfile {
    path: std::path::PathBuf,
    handle: metrics_exporter_prometheus::PrometheusHandle,
}

impl MetricsTextfile {
    pub fn install(path: std::path::PathBuf) -> Result<Self> {
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .context("installing the metrics recorder")?;
        Ok(Self { path, handle })
    }

    /// Writes atomically (temp file + rename), so a collector never reads
    /// half a file.
    pub fn write(&self) -> Result<()> {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, self.handle.render())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}
