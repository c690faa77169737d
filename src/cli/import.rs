//! `ferry import`: runs one job through the same actor pipeline the service
//! uses, shows progress on a terminal, and ends with a report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferry_actors::actors::job_coordinator::{self, JobCoordinatorRef};
use ferry_actors::job::NewJob;
use ferry_actors::pg::{self, jobs};
use ferry_actors::progress::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ractor::rpc::CallResult;

use crate::config::Config;
use crate::report::{grouped, ImportReport};

/// Creates the job, runs it to its end, and reports.
pub async fn run(config: &Config, new: NewJob, show_progress: bool) -> Result<ImportReport> {
    let pool = pg::pool(&config.database)?;
    {
        let mut client = pg::connect(&config.database).await?;
        pg::migrations::migrate(&mut client)
            .await
            .context("applying migrations")?;
    }
    let started = Instant::now();
    let owner = ferry_actors::job::lease_owner("import");
    let job = {
        let client = pool.get().await.context("database pool")?;
        // Held by this process while it runs: a `ferry serve` leaves it
        // alone, unless this process dies and the lease runs out.
        jobs::create_held(&**client, &new, &owner, config.jobs.lease)
            .await
            .context("creating the job")?
    };
    let coordinator = job_coordinator::spawn(job_coordinator::Args {
        database: config.database.clone(),
        import: Arc::new(config.import.clone()),
        retry: config.retry.clone(),
        storage: config.storage.clone(),
        jobs: config.jobs.clone(),
        owner,
        pool,
        claim: false,
    })
    .await
    .context("starting the job coordinator")?;
    let progress = Arc::new(Progress::default());
    let bar = show_progress.then(|| progress_bar(progress.clone()));
    let result = wait(&coordinator, job.id, progress).await;
    if let Some((bar, ticker)) = bar {
        ticker.abort();
        bar.finish_and_clear();
    }
    coordinator.stop(None);
    let job = result?;
    Ok(ImportReport::new(&job, started.elapsed()))
}

async fn wait(
    coordinator: &JobCoordinatorRef,
    job_id: uuid::Uuid,
    progress: Arc<Progress>,
) -> Result<ferry_actors::job::Job> {
    let answer = coordinator
        .call(
            |reply| job_coordinator::Msg::Run {
                job_id,
                progress,
                reply,
            },
            None,
        )
        .await
        .context("the job coordinator stopped")?;
    match answer {
        CallResult::Success(Ok(job)) => Ok(job),
        CallResult::Success(Err(e)) => anyhow::bail!("job {job_id}: {e}"),
        CallResult::Timeout => anyhow::bail!("job {job_id}: timed out"),
        CallResult::SenderError => anyhow::bail!("job {job_id}: the coordinator went away"),
    }
}

/// A bar over the source's bytes, with rows read and committed and rows/s.
fn progress_bar(progress: Arc<Progress>) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{bar:30}] {bytes}/{total_bytes} {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let ticking = bar.clone();
    let started = Instant::now();
    let ticker = tokio::spawn(async move {
        loop {
            let read = Progress::get(&progress.records_read);
            let committed = Progress::get(&progress.records_committed);
            let secs = started.elapsed().as_secs_f64().max(0.001);
            ticking.set_length(Progress::get(&progress.bytes_total));
            ticking.set_position(Progress::get(&progress.bytes_read));
            ticking.set_message(format!(
                "rows {} read, {} committed ({} rows/s)",
                grouped(read as i64),
                grouped(committed as i64),
                grouped((committed as f64 / secs) as i64)
            ));
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });
    (bar, ticker)
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
