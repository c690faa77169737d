//! The `ferry` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use ferry::cli;
use ferry::config::{self, Config, LogFormat};
use ferry_actors::job::{self, InputFormat, JobStatus, NewJob};
use ferry_actors::settings::DatabaseSettings;
use uuid::Uuid;

/// Moves bulk data between Kafka, object storage and PostgreSQL.
#[derive(Parser)]
#[command(name = "ferry", version)]
struct Cli {
    /// A TOML file layered over the built-in defaults.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// PostgreSQL URL (overrides DATABASE_URL and the config).
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Log level or filter, e.g. `debug` (RUST_LOG wins).
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the database migrations (idempotent).
    Migrate,
    /// Import one file through the pipeline, print a report, and exit
    /// (0 only when the job is COMPLETED).
    Import(Box<ImportArgs>),
    /// Read the import jobs table.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Run the service: consume import requests from Kafka, run the job
    /// queue, publish status events, serve the HTTP API; until SIGTERM or
    /// SIGINT. Without `kafka.brokers` it starts an embedded broker.
    Serve,
    /// API keys for the HTTP API.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// The dead-letter topic.
    Dlq {
        /// Kafka bootstrap servers [default: kafka.brokers].
        #[arg(long)]
        brokers: Option<String>,
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Generate a sample file, start a local PostgreSQL if none is
    /// configured, import it twice and print the reports.
    Demo {
        /// Users in the sample file.
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Target {
    /// `nodes`, from CSV or a reference list (seed 004).
    Nodes,
    /// `match_suggestions`, from Parquet (seed 003).
    Matches,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["source", "refs", "refs_file"])))]
struct ImportArgs {
    /// A local path, file:// URL, s3://bucket/key, or http(s)://ENDPOINT/bucket/key
    /// of the configured store: gzip, zstd or plain CSV for nodes, Parquet
    /// for matches.
    source: Option<String>,
    /// Reference ids to import as nodes, comma-separated (seed 004 UC-2).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    refs: Option<Vec<String>>,
    /// A file of reference ids, one per line, no header (gzip, zstd or plain).
    #[arg(long, value_name = "FILE")]
    refs_file: Option<String>,
    /// What the rows become.
    #[arg(long, value_enum, default_value = "nodes")]
    target: Target,
    /// The domain (tenant) UUID.
    #[arg(long)]
    domain: Uuid,
    /// The matching group: a UUID, or any string (mapped to a UUIDv5).
    #[arg(long)]
    group: String,
    /// Node type [default: import.node_type].
    #[arg(long = "type")]
    node_type: Option<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Header holding the reference id [default: import.reference_column].
    #[arg(long)]
    reference_column: Option<String>,
    /// Folder for the rejects file [default: rejects/ beside the source].
    #[arg(long)]
    rejects_dir: Option<String>,
    /// CopyWriter workers [default: import.writers].
    #[arg(long)]
    writers: Option<usize>,
    /// Rows per batch [default: import.batch_rows].
    #[arg(long)]
    batch_rows: Option<usize>,
    /// Always upsert, even into an empty group.
    #[arg(long)]
    no_fast_path: bool,
    /// At the end, write the run's metrics to FILE in Prometheus text format
    /// (for node_exporter's textfile collector).
    #[arg(long, value_name = "FILE")]
    metrics_textfile: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Make a key for one domain; it is printed once (only its hash is kept).
    Create {
        #[arg(long)]
        domain: Uuid,
        /// A label for the key.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Revoke a key.
    Revoke { key: String },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Each dead letter: where it came from, the error, a payload excerpt.
    List,
    /// Send dead letters back to the topics they came from (seed 004 UC-3).
    Replay {
        /// Only those that came from this topic.
        #[arg(long)]
        topic: Option<String>,
        /// Only those dead-lettered within this long, e.g. `2h`.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// The newest jobs first.
    List {
        #[arg(long, value_parser = parse_status)]
        status: Option<JobStatus>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// One job, in full.
    Show {
        id: Uuid,
        #[arg(long)]
        json: bool,
    },
}

/// glibc's malloc raises its mmap threshold each time a large block (a
/// 1 MiB COPY frame, a multi-MB batch arena) is freed, and from then on
/// serves such blocks from heaps that fragment: peak RSS drifted from 73 to
/// 95 MiB between a 1M- and a 5M-row import. A fixed threshold (glibc's
/// initial 128 KiB) turns the drift off: 45 MiB, whatever the file size.
/// mimalloc was flat too, but at 120-130 MiB.
fn pin_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before
    // any thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn parse_status(s: &str) -> Result<JobStatus, String> {
    JobStatus::parse(&s.to_uppercase()).ok_or_else(|| format!("unknown status `{s}`"))
}

fn main() -> ExitCode {
    pin_mmap_threshold();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut config = config::load(cli.config.as_deref(), env)?;
    if let Some(url) = cli.database_url {
        config.database.url = url;
    }
    // Some layer named a database: the demo uses it instead of its own.
    let database_configured = config.database.url != DatabaseSettings::default().url;
    if let Some(level) = cli.log_level {
        config.log.level = level;
    }
    if let Some(f) = cli.log_format {
        config.log.format = match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }

    match cli.command {
        Command::Migrate => {
            ferry::telemetry::init(&config.log);
            let applied = cli::migrate::run(&config.database).await?;
            println!("migrations applied: {applied:?} (the schema is up to date)");
            Ok(ExitCode::SUCCESS)
        }
        Command::Import(args) => import(config, *args).await,
        Command::Jobs { command } => {
            let mut out = std::io::stdout();
            match command {
                JobsCommand::List {
                    status,
                    limit,
                    json,
                } => {
                    cli::jobs::list(&config.database, status, limit, json, &mut out).await?;
                }
                JobsCommand::Show { id, json } => {
                    if cli::jobs::show(&config.database, id, json, &mut out)
                        .await?
                        .is_none()
                    {
                        bail!("no job {id}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => {
            ferry::telemetry::init(&config.log);
            cli::serve::run(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Apikey { command } => {
            match command {
                ApikeyCommand::Create { domain, name } => {
                    println!(
                        "{}",
                        cli::apikey::create(&config.database, domain, &name).await?
                    );
                }
                ApikeyCommand::Revoke { key } => {
                    if !cli::apikey::revoke(&config.database, &key).await? {
                        bail!("no such active key");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq { brokers, command } => {
            let brokers = brokers.unwrap_or_else(|| config.kafka.brokers.clone());
            if brokers.is_empty() {
                bail!("give --brokers (the embedded broker's address is in ferry serve's log)");
            }
            let kafka = config.kafka.clone();
            tokio::task::spawn_blocking(move || -> Result<()> {
                match command {
                    DlqCommand::List => cli::dlq::list(&kafka, &brokers, &mut std::io::stdout()),
                    DlqCommand::Replay { topic, since } => {
                        let n = cli::dlq::replay(&kafka, &brokers, topic.as_deref(), since)?;
                        println!("replayed {n} message(s)");
                        Ok(())
                    }
                }
            })
            .await??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { rows } => {
            quiet_logs(&mut config);
            ferry::telemetry::init(&config.log);
            let ok = cli::demo::run(config, rows, database_configured).await?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

async fn import(mut config: Config, args: ImportArgs) -> Result<ExitCode> {
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
    let node_type = args
        .node_type
        .unwrap_or_else(|| config.import.node_type.clone());
    if node_type.is_empty() || node_type.chars().count() > 50 {
        bail!("--type must be 1 to 50 characters (seed 004: type VARCHAR(50))");
    }
    if args.group.trim().is_empty() {
        bail!("--group must not be empty");
    }
    let show_progress = !args.json && std::io::stderr().is_terminal();
    if show_progress {
        quiet_logs(&mut config);
    }
    ferry::telemetry::init(&config.log);
    let file = |path: &str, target: job::Target, format: InputFormat| {
        // Node type means nothing to match suggestions.
        let node_type = if target == job::Target::Nodes {
            node_type.as_str()
        } else {
            ""
        };
        NewJob::file(target, args.domain, &args.group, node_type, path, format)
    };
    let new = match (args.target, args.source, args.refs, args.refs_file) {
        (Target::Nodes, _, Some(ids), _) => {
            NewJob::inline_refs(args.domain, &args.group, &node_type, ids)
        }
        (Target::Nodes, _, _, Some(path)) => file(&path, job::Target::Nodes, InputFormat::Refs),
        (Target::Nodes, Some(path), ..) if ferry_actors::source::is_parquet(&path) => {
            bail!("nodes are imported from CSV or reference lists; Parquet files hold matches (--target matches)")
        }
        (Target::Nodes, Some(path), ..) => file(&path, job::Target::Nodes, InputFormat::Csv),
        (Target::Matches, Some(path), None, None) => {
            file(&path, job::Target::Matches, InputFormat::Parquet)
        }
        (Target::Matches, ..) => bail!("matches are imported from a Parquet file: give its SOURCE"),
        (Target::Nodes, None, None, None) => bail!("give a SOURCE, --refs or --refs-file"),
    };
    let metrics = args
        .metrics_textfile
        .map(cli::import::MetricsTextfile::install)
        .transpose()?;
    let report = cli::import::run(&config, new, show_progress)
        .await
        .context("import")?;
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

/// With a progress bar or a demo on screen, only warnings are logged unless
/// a level was asked for.
fn quiet_logs(config: &mut Config) {
    if config.log.level == config::LogSettings::default().level
        && std::env::var_os("RUST_LOG").is_none()
    {
        config.log.level = "warn".into();
    }
}
