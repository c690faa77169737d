//! One module per subcommand.

pub mod apikey;
pub mod demo;
pub mod demo_exports;
pub mod dlq;
pub mod export;
pub mod exports;
pub mod groups;
pub mod import;
pub mod imports;
pub mod listing;
pub mod migrate;
pub mod serve;
pub mod users;

use std::sync::Arc;

use anyhow::{Context, Result};
use ferry_actors::job::{lifecycle, NewJob, Spec};
use ferry_actors::kinds::{Held, Job};
use ferry_actors::pg;
use ferry_actors::progress::Progress;
use ferry_actors::service::actors::job_coordinator;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ractor::rpc::CallResult;

use crate::config::{Config, LogSettings};

/// With a progress bar or a demo on screen, only warnings are logged unless
/// a level was asked for.
pub fn quiet_logs(config: &mut Config) {
    if config.log.level == LogSettings::default().level && std::env::var_os("RUST_LOG").is_none() {
        config.log.level = "warn".into();
    }
}

/// A progress bar over a job's live counters, and the task that draws it.
pub type Bar = fn(Arc<Progress>) -> (ProgressBar, tokio::task::JoinHandle<()>);

/// A bar drawn on stderr with `template`, set from the job's counters
/// every 150 ms by `update` (given the seconds since the start).
pub fn ticking(
    progress: Arc<Progress>,
    template: &str,
    update: fn(&ProgressBar, &Progress, f64),
) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let ticking = bar.clone();
    let started = Instant::now();
    let ticker = tokio::spawn(async move {
        loop {
            update(
                &ticking,
                &progress,
                started.elapsed().as_secs_f64().max(0.001),
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });
    (bar, ticker)
}

/// Runs one job in this process, the way `ferry serve` runs it: applies
/// the migrations, creates the job already leased to this process (a
/// `ferry serve` leaves it alone unless this process dies and the lease
/// runs out), and waits for its end through a JobCoordinator.
pub async fn run_job<S: Spec>(
    config: &Config,
    new: &NewJob<S>,
    role: &str,
    bar: Option<Bar>,
) -> Result<Job> {
    let pool = pg::pool(&config.database)?;
    migrate(config).await?;
    let owner = ferry_actors::job::lease_owner(role);
    let held = {
        let client = pool.get().await.context("database pool")?;
        lifecycle::create_held(&**client, new, &owner, config.jobs.lease)
            .await
            .context("creating the job")?
    };
    let mut ended = run_held(config, pool, owner, vec![held], bar).await?;
    ended.pop().context("the job's end")?
}

pub async fn migrate(config: &Config) -> Result<()> {
    let mut client = pg::connect(&config.database).await?;
    pg::migrations::migrate(&mut client)
        .await
        .context("applying migrations")?;
    Ok(())
}

/// Runs jobs held by `owner` in this process, at once, through one
/// JobCoordinator; each one's end, in order.
pub async fn run_held(
    config: &Config,
    pool: deadpool_postgres::Pool,
    owner: String,
    held: Vec<Held>,
    bar: Option<Bar>,
) -> Result<Vec<Result<Job>>> {
    let coordinator = job_coordinator::spawn(job_coordinator::Args {
        ctx: crate::service::pipelines(config, pool).await?,
        owner,
        claim: false,
    })
    .await
    .context("starting the job coordinator")?;
    let progress = Arc::new(Progress::default());
    let bar = bar.map(|draw| draw(progress.clone()));
    let runs = held.into_iter().map(|held| {
        let coordinator = coordinator.clone();
        let progress = progress.clone();
        async move {
            let job_id = held.job().id;
            let answer = coordinator
                .call(
                    |reply| job_coordinator::Msg::Run {
                        held: Box::new(held),
                        progress,
                        reply,
                    },
                    None,
                )
                .await;
            match answer.context("the job coordinator stopped")? {
                CallResult::Success(Ok(job)) => Ok(job),
                CallResult::Success(Err(e)) => anyhow::bail!("job {job_id}: {e}"),
                CallResult::Timeout => anyhow::bail!("job {job_id}: timed out"),
                CallResult::SenderError => {
                    anyhow::bail!("job {job_id}: the coordinator went away")
                }
            }
        }
    });
    let ended = futures::future::join_all(runs).await;
    if let Some((bar, ticker)) = bar {
        ticker.abort();
        bar.finish_and_clear();
    }
    coordinator.stop(None);
    Ok(ended)
}
