//! `ferry serve` put together: the database, the broker (or an embedded
//! one), the supervised actors, and the HTTP endpoints; and the shutdown
//! that stops them in the right order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ferry_actors::export::actors::webhook_sender;
use ferry_actors::export::token::Signer;
use ferry_actors::pg;
use ferry_actors::pipeline::Ctx;
use ferry_actors::service::actors::job_coordinator::{self, JobCoordinatorRef};
use ferry_actors::service::actors::service_supervisor::{self, Child, SHUTDOWN};
use ferry_actors::service::actors::{dlq, job_sweeper, kafka_ingress, status_publisher};
use ferry_actors::service::kafka::embedded::EmbeddedBroker;
use ferry_actors::service::kafka::{self, Router};
use ferry_actors::settings::DatabaseSettings;
use ferry_actors::storage::Store;
use ferry_actors::users::actors::export_scheduler;
use ferry_actors::users::schedule::{RunSettings, Ticks};
use metrics_exporter_prometheus::PrometheusHandle;
use ractor::ActorRef;
use rdkafka::producer::{FutureProducer, Producer};

use crate::config::Config;
use crate::http::{self, Api};

/// How long a shutdown may take beyond `jobs.drain_timeout` before the
/// watchdog ends the process: every step has its own timeout, so only
/// something stuck (a thread in a Kafka client's teardown, a database that
/// stopped answering) gets this far.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The keys download links are signed with: `http.signing_keys`, or one
/// made for this process (its links work on it alone, until it restarts).
fn signing_keys(config: &Config) -> Vec<Vec<u8>> {
    let keys: Vec<Vec<u8>> = config
        .http
        .signing_keys
        .iter()
        .filter(|k| !k.is_empty())
        .map(|k| k.as_bytes().to_vec())
        .collect();
    if !keys.is_empty() {
        return keys;
    }
    tracing::warn!(
        "http.signing_keys is empty: download links are signed with a key of this process only."
    );
    vec![uuid::Uuid::new_v4().as_bytes().to_vec()]
}

/// What a users export run needs to plan its groups' exports.
pub fn run_settings(config: &Config) -> RunSettings {
    RunSettings {
        users: config.exports.users.clone(),
        exports: config.exports.clone(),
        storage: config.storage.clone(),
        max_message_bytes: config.kafka.max_message_bytes,
    }
}

/// What this process's job pipelines are spawned with (the JobCoordinator's
/// and the JobSweeper's): the settings, the pools, the export catalog.
pub async fn pipelines(config: &Config, pool: deadpool_postgres::Pool) -> Result<Ctx> {
    Ctx::load(
        pool,
        config.database.clone(),
        config.import.clone(),
        config.exports.clone(),
        config.storage.clone(),
        config.retry.clone(),
        config.jobs.clone(),
    )
    .await
    .context("reading the export objects from the catalog")
}

/// The webhook secret: `exports.webhook_secret`, else the signing key.
fn webhook_secret(config: &Config, signing_keys: &[Vec<u8>]) -> Vec<u8> {
    match config.exports.webhook_secret.as_str() {
        "" => signing_keys[0].clone(),
        secret => secret.as_bytes().to_vec(),
    }
}

/// What the shutdown is doing now: the watchdog's last word names it.
static STAGE: std::sync::Mutex<&str> = std::sync::Mutex::new("running");

fn stage(now: &'static str) {
    tracing::info!(stage = now, "Shutting down.");
    *STAGE.lock().unwrap_or_else(|e| e.into_inner()) = now;
}

/// Ends the process `limit` from now, whatever is stuck, with a non-zero
/// code and a log line naming the step that did not finish.
pub fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        let stuck = *STAGE.lock().unwrap_or_else(|e| e.into_inner());
        tracing::error!(
            stuck,
            limit_secs = limit.as_secs(),
            "Shutdown did not finish in time; exiting anyway."
        );
        eprintln!(
            "ferry serve: shutdown did not finish within {}s (stuck at: {stuck}); exiting",
            limit.as_secs()
        );
        std::process::exit(3);
    });
}

pub struct Service {
    /// Where the HTTP endpoints listen.
    pub http_addr: SocketAddr,
    /// The Kafka bootstrap servers in use.
    pub brokers: String,
    /// Set when no brokers were configured; lives as long as the service.
    pub embedded: Option<EmbeddedBroker>,
    config: Config,
    coordinator: JobCoordinatorRef,
    supervisor: ActorRef<service_supervisor::Msg>,
    producer: FutureProducer,
    http: tokio::task::JoinHandle<()>,
    http_stop: tokio::sync::oneshot::Sender<()>,
}

impl Service {
    pub async fn start(config: Config, metrics: PrometheusHandle) -> Result<Self> {
        ferry_actors::service::register_watched_series();
        {
            let mut client = pg::connect(&config.database).await?;
            pg::migrations::migrate(&mut client)
                .await
                .context("applying migrations")?;
        }
        let pool = pg::pool(&config.database)?;
        let own_topics = vec![
            config.exports.events_topic.clone(),
            config.exports.users.topic.clone(),
            config.exports.users.dlq_topic.clone(),
        ];
        let router = Router::new(&config.kafka)
            .map_err(anyhow::Error::msg)?
            .also_writing(&own_topics);
        let embedded = match config.kafka.brokers.trim() {
            "" => {
                let mut topics = config.kafka.embedded_topics.clone();
                topics.extend(router.own_topics().iter().cloned());
                let broker = EmbeddedBroker::start(&topics, config.kafka.embedded_partitions)
                    .map_err(anyhow::Error::msg)
                    .context("starting the embedded Kafka broker")?;
                tracing::info!(
                    bootstrap = broker.bootstrap_servers(),
                    topics = ?topics,
                    "No brokers configured: started an embedded Kafka broker (librdkafka's mock cluster)."
                );
                Some(broker)
            }
            _ => None,
        };
        let brokers = embedded.as_ref().map_or(config.kafka.brokers.clone(), |b| {
            b.bootstrap_servers().to_string()
        });
        let producer: FutureProducer = kafka::producer_config(&config.kafka, &brokers)
            .create()
            .context("creating the Kafka producer")?;

        let owner = ferry_actors::job::lease_owner("serve");
        let ctx = pipelines(&config, pool.clone()).await?;
        let coordinator = job_coordinator::spawn(job_coordinator::Args {
            ctx: ctx.clone(),
            owner: owner.clone(),
            claim: true,
        })
        .await
        .context("starting the job coordinator")?;

        let ingress_health = Arc::new(kafka_ingress::Health::default());
        let signing_keys = signing_keys(&config);
        let mut children = vec![
            Child::Dlq(dlq::Args {
                producer: producer.clone(),
                topic: config.kafka.dlq_topic.clone(),
                send_timeout: config.kafka.send_timeout,
                max_message_bytes: config.kafka.max_message_bytes,
                retry: config.retry.clone(),
            }),
            Child::Publisher(status_publisher::Args {
                database: config.database.clone(),
                producer: producer.clone(),
                send_timeout: config.kafka.send_timeout,
                tick: Duration::from_secs(1),
                max_message_bytes: config.kafka.max_message_bytes,
                retry: config.retry.clone(),
            }),
            Child::Ingress(Box::new(kafka_ingress::Args {
                health: ingress_health.clone(),
                kafka: config.kafka.clone(),
                brokers: brokers.clone(),
                storage: config.storage.clone(),
                node_type: config.import.node_type.clone(),
                pool: pool.clone(),
                retry: config.retry.clone(),
                own_topics: own_topics.clone(),
            })),
            Child::Sweeper(Box::new(job_sweeper::Args { ctx: ctx.clone() })),
            Child::Webhooks(Box::new(webhook_sender::Args {
                database: config.database.clone(),
                exports: config.exports.clone(),
                retry: config.retry.clone(),
                secret: webhook_secret(&config, &signing_keys),
                tick: Duration::from_secs(1),
            })),
        ];
        if config.exports.users.enabled {
            children.push(Child::Scheduler(Box::new(export_scheduler::Args {
                database: config.database.clone(),
                ticks: Ticks::new(&config.exports.users).map_err(anyhow::Error::msg)?,
                run: run_settings(&config),
            })));
        }
        let supervisor = service_supervisor::spawn(service_supervisor::Args {
            children,
            retry: config.retry.clone(),
        })
        .await
        .context("starting the service's actors")?;

        let listener = tokio::net::TcpListener::bind(&config.http.listen)
            .await
            .with_context(|| format!("listening on {}", config.http.listen))?;
        let http_addr = listener.local_addr()?;
        let api_database = pg::named(&config.database, "ferry-api");
        let api_pool = pg::pool(&DatabaseSettings {
            pool_size: config.http.pool_size.max(1),
            ..api_database.clone()
        })?;
        let holds = http::limits::Holds::new(api_pool.clone(), owner.clone());
        holds.keep_renewed();
        let api = Arc::new(Api {
            config: config.clone(),
            pool: api_pool,
            health_pool: pg::pool(&DatabaseSettings {
                pool_size: 1,
                ..pg::named(&config.database, "ferry-health")
            })?,
            producer: producer.clone(),
            metrics,
            ingress: ingress_health,
            in_flight: http::limits::Permits::new(
                config.http.max_requests_per_key,
                "requests in flight",
                holds.clone(),
            ),
            streams: http::limits::Permits::new(
                config.http.max_streams_per_key,
                "event streams open",
                holds,
            ),
            catalog: ctx.catalog.clone(),
            signer: Signer::new(signing_keys),
            public_url: match config.http.public_url.trim_end_matches('/') {
                "" => format!("http://{http_addr}"),
                given => given.to_string(),
            },
            store: config
                .storage
                .configured()
                .then(|| Store::new(&config.storage)),
            jwt: http::auth::JwtVerifier::load(&config.http.jwt)?,
            limiter: http::limits::Limiter::new(config.exports.create_per_minute),
        });
        let (http_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let http = tokio::spawn(async move {
            let header_timeout = api.config.http.header_timeout;
            let stop = async {
                let _ = stopped.await;
            };
            http::server::serve(listener, http::router(api), header_timeout, stop).await;
        });
        tracing::info!(
            http = %http_addr,
            brokers = %brokers,
            owner = %owner,
            concurrency = config.jobs.concurrency,
            "ferry serve is running."
        );
        Ok(Self {
            http_addr,
            brokers,
            embedded,
            config,
            coordinator,
            supervisor,
            producer,
            http,
            http_stop,
        })
    }

    /// The supervisor's handle, to notice the service giving up.
    pub fn supervisor(&self) -> &ActorRef<service_supervisor::Msg> {
        &self.supervisor
    }

    /// Stops consuming and claiming; gives running jobs `jobs.drain_timeout`
    /// to finish, then stops them at their last checkpoint and releases
    /// their leases; flushes the outbox; commits offsets; stops the rest.
    pub async fn shutdown(self) -> Result<()> {
        tracing::info!("Shutting down: no more requests or claims.");
        stage("stopping the Kafka consumer");
        if let Some(ingress) = ractor::registry::where_is(kafka_ingress::NAME) {
            let ingress: ActorRef<kafka_ingress::Msg> = ingress.into();
            let _ = ingress
                .call(kafka_ingress::Msg::Stop, Some(Duration::from_secs(10)))
                .await;
        }
        stage("draining the running jobs");
        let drained = self
            .coordinator
            .call(
                job_coordinator::Msg::Drain,
                Some(self.config.jobs.drain_timeout),
            )
            .await;
        if !matches!(drained, Ok(ractor::rpc::CallResult::Success(()))) {
            tracing::warn!(
                timeout = ?self.config.jobs.drain_timeout,
                "Jobs still running after the drain timeout: stopping them at their last checkpoint."
            );
        }
        stage("stopping the jobs at their checkpoints and releasing their leases");
        let _ = self
            .coordinator
            .stop_and_wait(Some(SHUTDOWN.into()), Some(Duration::from_secs(15)))
            .await;
        stage("flushing the status outbox");
        if let Some(publisher) = ractor::registry::where_is(status_publisher::NAME) {
            let publisher: ActorRef<status_publisher::Msg> = publisher.into();
            let flushed = publisher
                .call(
                    status_publisher::Msg::Flush,
                    Some(self.config.kafka.send_timeout * 2),
                )
                .await;
            if let Ok(ractor::rpc::CallResult::Success(left)) = flushed {
                if left > 0 {
                    tracing::warn!(
                        unsent = left,
                        "Status events left in the outbox; the next instance sends them."
                    );
                }
            }
        }
        stage("flushing the Kafka producer");
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
        stage("stopping the service's actors");
        let _ = self
            .supervisor
            .stop_and_wait(Some(SHUTDOWN.into()), Some(Duration::from_secs(10)))
            .await;
        stage("closing the HTTP server");
        let _ = self.http_stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.http).await;
        stage("exiting");
        tracing::info!("ferry serve stopped.");
        Ok(())
    }
}
