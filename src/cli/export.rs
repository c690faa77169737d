//! `ferry export`: one export through the same actor pipeline the service
//! runs, with a progress bar on a terminal, and a report at the end.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use ferry_actors::export::object::Catalog;
use ferry_actors::export::request::{Channel, ExportRequest};
use ferry_actors::export::{Compression, Destination, ExportSpec, Format, NewExport};
use ferry_actors::job::JobStatus;
use ferry_actors::pg;
use ferry_actors::progress::Progress;
use indicatif::ProgressBar;
use uuid::Uuid;

use crate::config::Config;
use crate::report::{grouped, ExportReport};

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Csv,
    Json,
    Jsonl,
    Parquet,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
    None,
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub scheduled: Option<super::users::ExportCommand>,
    /// What to export: `node`, `match_suggestion`, or an object declared in
    /// `[[exports.objects]]`.
    #[arg(required = true)]
    pub object: Option<String>,
    /// The domain (tenant) UUID: only its rows are read.
    #[arg(long, required = true)]
    pub domain: Option<Uuid>,
    /// The output's columns, in order (`metadata.KEY` for one metadata
    /// value) [default: the object's default fields].
    #[arg(long, value_delimiter = ',')]
    pub fields: Option<Vec<String>>,
    /// Filters, as JSON (`{"created_at": {"conditions": {"$after": ["2026-01-01"]}}}`).
    #[arg(long)]
    pub filter: Option<String>,
    /// `field` or `-field` (descending) [default: the object's].
    #[arg(long, allow_hyphen_values = true)]
    pub order: Option<String>,
    /// [default: csv]
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// gzip or zstd compress a text file; Parquet compresses inside, with
    /// gzip, zstd or none [default: gzip for text, zstd for Parquet].
    #[arg(long, value_enum)]
    pub compression: Option<CompressionArg>,
    /// A local path or s3://bucket/key [default: seed 002's layout, in
    /// `exports.bucket` of the configured store, else `exports.local_dir`].
    #[arg(long)]
    pub out: Option<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `ferry export`: checks the request against its object (nothing is made
/// when it is bad), runs the export, reports. The exit code is 0 only for
/// a finished export.
pub async fn command(mut config: Config, args: ExportArgs) -> Result<ExitCode> {
    if let Some(scheduled) = args.scheduled {
        return super::users::command(config, scheduled).await;
    }
    let (Some(object), Some(domain)) = (args.object.clone(), args.domain) else {
        bail!("an export names its object and --domain");
    };
    let show_progress = !args.json && std::io::stderr().is_terminal();
    if show_progress {
        super::quiet_logs(&mut config);
    }
    crate::telemetry::init(&config.log);
    let format = args.format.map(|f| match f {
        FormatArg::Csv => Format::Csv,
        FormatArg::Json => Format::Json,
        FormatArg::Jsonl => Format::Jsonl,
        FormatArg::Parquet => Format::Parquet,
    });
    let compression = args.compression.map(|c| match c {
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::Zstd => Compression::Zstd,
        CompressionArg::None => Compression::None,
    });
    let filters = match &args.filter {
        Some(text) => Some(
            serde_json::from_str(text).map_err(|e| anyhow::anyhow!("--filter is not JSON: {e}"))?,
        ),
        None => None,
    };
    let destination = match &args.out {
        Some(out) => Some(
            Destination::output(out, &config.storage)
                .map_err(|e| anyhow::anyhow!("--out {out}: {e}"))?,
        ),
        None => None,
    };
    let request = ExportRequest {
        fields: args.fields.clone().unwrap_or_default(),
        order: args.order.clone(),
        filters,
        format,
        compression,
        destination,
        ..ExportRequest::of(&object, Channel::Cli)
    };
    let id = uuid::Uuid::now_v7();
    let spec = check(&config, request, domain, id).await?;
    let new = NewExport {
        id,
        ..NewExport::new(domain, spec)
    }
    .from_origin(serde_json::json!({ "cli": true }));
    let started = Instant::now();
    let bar = show_progress.then_some(progress_bar as super::Bar);
    let job = super::run_job(&config, &new, "export", bar)
        .await
        .context("export")?;
    let Some(export) = job.work.export() else {
        bail!("job {} is not an export", job.id);
    };
    let report = ExportReport::new(&job, export, started.elapsed());
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.write_text(&mut std::io::stdout())?;
    }
    Ok(match report.status {
        JobStatus::Completed => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

/// Checks the export against the catalog and makes its spec: an unknown
/// object, field, operator or order is refused here, before any job
/// exists.
async fn check(
    config: &Config,
    request: ExportRequest,
    domain: Uuid,
    id: Uuid,
) -> Result<ExportSpec> {
    let mut client = pg::connect(&config.database).await?;
    pg::migrations::migrate(&mut client)
        .await
        .context("applying migrations")?;
    let catalog = Catalog::load(&client, &config.exports).await?;
    request
        .into_spec(&catalog, &config.exports, &config.storage, domain, id)
        .map_err(|e| anyhow::anyhow!("{}: {e}", e.code))
}

/// Rows written of the snapshot's total, and rows/s.
fn progress_bar(progress: Arc<Progress>) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let template = "{spinner} [{elapsed_precise}] [{bar:30}] {pos}/{len} rows {msg}";
    super::ticking(progress, template, |bar, progress, secs| {
        let read = Progress::get(&progress.records_read);
        let stored = Progress::get(&progress.records_committed);
        bar.set_length(Progress::get(&progress.records_total));
        bar.set_position(read);
        bar.set_message(format!(
            "({} stored, {} rows/s)",
            grouped(stored),
            grouped((read as f64 / secs) as i64)
        ));
    })
}
