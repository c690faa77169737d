//! The `ferry` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use ferry::cli::{
    self, apikey::ApikeyCommand, dlq::DlqArgs, export::ExportArgs, exports::Exports,
    groups::GroupsCommand, import::ImportArgs, imports::Imports, listing::ListCommand,
};
use ferry::config::{self, LogFormat};
use ferry_actors::settings::DatabaseSettings;

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
    /// Export one object's rows of a domain to CSV, JSON, JSONL or Parquet
    /// (gzip or zstd), in a local folder or an S3 bucket; print a report
    /// (0 only when the export is DONE).
    Export(Box<ExportArgs>),
    /// Read the export jobs (users exports among them).
    Exports {
        #[command(subcommand)]
        command: ListCommand,
    },
    /// Seed 000's matching group configs: which groups the scheduled
    /// users export sends, and how.
    Groups {
        #[command(subcommand)]
        command: GroupsCommand,
    },
    /// The users export's schedule: its next ticks, its last run, and each
    /// group's last export.
    Schedules,
    /// Read the import jobs.
    #[command(alias = "jobs")]
    Imports {
        #[command(subcommand)]
        command: ListCommand,
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
    Dlq(DlqArgs),
    /// Generate a sample file, start a local PostgreSQL if none is
    /// configured, import it twice and print the reports.
    Demo {
        /// Users in the sample file.
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
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

fn main() -> ExitCode {
    pin_mmap_threshold();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(run(cli));
    // A blocking task that never returns (a read of a file that does not
    // end) must not keep the process alive after its work is done.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
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
        Command::Import(args) => cli::import::command(config, *args).await,
        Command::Export(args) => cli::export::command(config, *args).await,
        Command::Exports { command } => {
            cli::listing::command::<Exports>(&config.database, command).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Groups { command } => {
            cli::groups::command(&config, command).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedules => {
            cli::groups::schedules(&config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Imports { command } => {
            cli::listing::command::<Imports>(&config.database, command).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => {
            ferry::telemetry::init(&config.log);
            cli::serve::run(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Apikey { command } => {
            cli::apikey::command(&config.database, command).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq(args) => {
            cli::dlq::command(&config.kafka, args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { rows } => {
            cli::quiet_logs(&mut config);
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
