//! `ferry serve`: runs until SIGTERM or SIGINT, then shuts down gracefully.

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::Config;
use crate::service::{watchdog, Service, SHUTDOWN_GRACE};

pub async fn run(config: Config) -> Result<()> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let config_drain = config.jobs.drain_timeout;
    let service = Service::start(config, metrics).await?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let supervisor = service.supervisor().clone();
    let limit = config_drain + SHUTDOWN_GRACE;
    let gave_up = async move {
        while supervisor.get_status() != ractor::ActorStatus::Stopped {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "Signal received."),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "Signal received."),
        _ = gave_up => {
            watchdog(limit);
            service.shutdown().await?;
            anyhow::bail!("a service actor failed too often; see the log");
        }
    }
    // Whatever is stuck, the process ends within the drain and a bound.
    watchdog(limit);
    service.shutdown().await
}
