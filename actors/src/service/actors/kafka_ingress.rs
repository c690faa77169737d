//! KafkaIngress: the consumer-group member that turns import requests into
//! jobs. It subscribes to the routes' topic patterns; each message is
//! checked, and becomes a job row keyed by its idempotency key (so a
//! redelivered message never makes a second job) or goes to the DlqActor.
//! Only then is its offset stored for the next commit: a crash before that
//! redelivers the message, and the key makes that harmless.
//!
//! When PostgreSQL is down nothing is stored: the consumer pauses its
//! partitions, keeps polling (so the group does not evict it), retries
//! with backoff, and resumes when the database is back.

use std::collections::VecDeque;
use std::ffi::CString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::Pool;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientContext, Message, Offset};

use super::dlq::{self, DlqRef};
use crate::import::request::{self, Asker, Limits, Reason, Rejected};
use crate::import::{Import, NewImport};
use crate::job::lifecycle;
use crate::service::kafka::{self, Router};
use crate::settings::{KafkaSettings, RetrySettings, StorageSettings};
use crate::supervision::{backoff, jittered};
use crate::telemetry::{ConsumerFailed, ConsumerLag, ConsumerPaused, KafkaMessage};

pub const NAME: &str = "kafka_ingress";

/// How long one poll waits for a message before the actor looks at its
/// mailbox again (a stop request).
const POLL_WAIT: Duration = Duration::from_millis(100);

/// How often the consumer's lag is reported.
const LAG_EVERY: Duration = Duration::from_secs(5);

pub enum Msg {
    Poll,
    /// Commits the stored offsets and stops; the reply comes after.
    Stop(RpcReplyPort<()>),
}

/// Whether the consumer makes progress, for `/health/ready`: since when it
/// has held the message in hand (none: it is between messages).
#[derive(Debug, Default)]
pub struct Health {
    busy_since_ms: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Health {
    fn busy(&self) {
        self.busy_since_ms.store(now_ms(), Ordering::Relaxed);
    }

    fn idle(&self) {
        self.busy_since_ms.store(0, Ordering::Relaxed);
    }

    /// How long the message in hand has been there, if that is longer than
    /// `limit`.
    pub fn stalled(&self, limit: Duration) -> Option<Duration> {
        match self.busy_since_ms.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_millis(now_ms().saturating_sub(since))),
        }
        .filter(|held| *held > limit)
    }
}

#[derive(Clone)]
pub struct Args {
    pub health: Arc<Health>,
    pub kafka: KafkaSettings,
    pub brokers: String,
    pub storage: StorageSettings,
    /// Node type of a `nodes` request that names none and whose route has
    /// none either.
    pub node_type: String,
    pub pool: Pool,
    /// How long to wait for the database between tries.
    pub retry: RetrySettings,
    /// Topics ferry writes besides the routes' status topics and the DLQ:
    /// their messages are skipped, whatever pattern matches them.
    pub own_topics: Vec<String>,
}

pub struct State {
    args: Args,
    consumer: StreamConsumer<IngressContext>,
    router: Router,
    /// Messages received while paused (from a partition assigned in the
    /// meantime): handled before the next poll.
    held: VecDeque<OwnedMessage>,
    /// When `ferry_kafka_consumer_lag` was last set.
    lag_reported: std::time::Instant,
}

pub type KafkaIngressRef = ActorRef<Msg>;

/// Spawns it under its name (others find it by name), linked to the
/// service's supervisor.
pub async fn spawn_linked(supervisor: ActorCell, args: Args) -> Result<KafkaIngressRef, SpawnErr> {
    let name = Some(NAME.to_string());
    let (actor, _) = Actor::spawn_linked(name, KafkaIngress, args, supervisor).await?;
    Ok(actor)
}

pub struct KafkaIngress;

impl Actor for KafkaIngress {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        let router = Router::new(&args.kafka)?.also_writing(&args.own_topics);
        let mut config = kafka::client_config(&args.kafka, &args.brokers);
        config
            .set("group.id", &args.kafka.group_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                args.kafka.session_timeout.as_millis().to_string(),
            )
            .set(
                "topic.metadata.refresh.interval.ms",
                args.kafka.metadata_refresh.as_millis().to_string(),
            )
            // An idle fetch returns after this long at most: a request
            // waits no longer than this to be fetched from a broker that
            // does not answer a long poll early (librdkafka's default,
            // 500 ms, was the whole of the request-to-status latency).
            .set("fetch.wait.max.ms", "50");
        let consumer: StreamConsumer<IngressContext> =
            config.create_with_context(IngressContext)?;
        let patterns = router.subscription();
        let topics: Vec<&str> = patterns.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        tracing::info!(patterns = ?patterns, group = %args.kafka.group_id, "Consuming import requests.");
        myself.cast(Msg::Poll)?;
        Ok(State {
            args,
            consumer,
            router,
            held: VecDeque::new(),
            lag_reported: std::time::Instant::now(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Msg>,
        msg: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Poll => {
                if state.lag_reported.elapsed() >= LAG_EVERY {
                    report_lag(&state.consumer);
                    state.lag_reported = std::time::Instant::now();
                }
                if let Some(message) = next_message(state).await {
                    state.args.health.busy();
                    ingest(state, message).await?;
                    state.args.health.idle();
                }
                myself.cast(Msg::Poll)?;
            }
            Msg::Stop(reply) => {
                if let Err(e) = state.consumer.commit_consumer_state(CommitMode::Sync) {
                    tracing::debug!(error = %e, "Nothing to commit at stop.");
                }
                myself.stop(Some("shutdown".into()));
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}

async fn next_message(state: &mut State) -> Option<OwnedMessage> {
    if let Some(held) = state.held.pop_front() {
        return Some(held);
    }
    match tokio::time::timeout(POLL_WAIT, state.consumer.recv()).await {
        Err(_) => None,
        Ok(Ok(message)) => Some(message.detach()),
        Ok(Err(e)) => {
            ConsumerFailed.emit();
            tracing::warn!(error = %e, "Kafka consumer error.");
            None
        }
    }
}

/// One message: a job, or a dead letter; then its offset is stored.
async fn ingest(state: &mut State, message: OwnedMessage) -> Result<(), ActorProcessingErr> {
    let (topic, partition, next) = (
        message.topic().to_string(),
        message.partition(),
        message.offset() + 1,
    );
    if state.router.is_own(&topic) {
        KafkaMessage {
            outcome: "own_output",
        }
        .emit();
        state.consumer.store_offset(&topic, partition, next)?;
        return Ok(());
    }
    let outcome = match job_for(state, &message) {
        Ok(new) => store_job(state, &new, &message).await,
        Err(rejected) => Err(rejected),
    };
    let label = match &outcome {
        Ok(()) => "job",
        Err(r) => r.reason.as_str(),
    };
    KafkaMessage { outcome: label }.emit();
    if let Err(rejected) = outcome {
        let dlq: DlqRef = ractor::registry::where_is(dlq::NAME)
            .ok_or("the DlqActor is not running")?
            .into();
        let sent = dlq
            .call(
                |reply| dlq::Msg::Send {
                    message,
                    rejected,
                    topic: None,
                    reply,
                },
                None,
            )
            .await?;
        if !matches!(sent, ractor::rpc::CallResult::Success(())) {
            // Not stored: the message comes again after the restart.
            return Err("the DlqActor stopped before the dead letter was sent".into());
        }
    }
    state.consumer.store_offset(&topic, partition, next)?;
    Ok(())
}

/// The job a message asks for.
fn job_for(state: &State, message: &OwnedMessage) -> Result<NewImport, Rejected> {
    let topic = message.topic();
    let route = state.router.route(topic).ok_or_else(|| Rejected {
        reason: Reason::Unroutable,
        detail: format!("no route for topic {topic}"),
    })?;
    let payload = message.payload().unwrap_or_default();
    let request = request::parse(payload, Limits::of(&state.args.kafka))?;
    let key = request::idempotency_key(&request, route.target, payload);
    let node_type = route.node_type_or(&state.args.node_type);
    let origin = serde_json::json!({
        "topic": topic,
        "partition": message.partition(),
        "offset": message.offset(),
    });
    Ok(request
        .into_job(route.target, node_type, &state.args.storage, Asker::Remote)?
        .keyed(key)
        .hashed(crate::job::digest(route.target.as_str(), payload))
        .reporting_to(route.status_topic.clone())
        .from_origin(origin))
}

/// Inserts the job, waiting out a database outage with the partitions
/// paused. A statement the database refuses for good is a dead letter.
async fn store_job(
    state: &mut State,
    new: &NewImport,
    message: &OwnedMessage,
) -> Result<(), Rejected> {
    let mut failures = 0;
    let mut paused = false;
    let result = loop {
        let created = match state.args.pool.get().await {
            Ok(client) => lifecycle::create::<Import, _>(&**client, new)
                .await
                .map_err(|e| (e.to_string(), e.is_transient())),
            Err(e) => Err((e.to_string(), true)),
        };
        match created {
            Ok(created) if !created.same_request => {
                break Err(Rejected {
                    reason: Reason::InvalidField,
                    detail: format!(
                        "requestId was used before for another request (job {})",
                        created.job.id
                    ),
                })
            }
            Ok(created) => {
                tracing::info!(
                    job_id = %created.job.id,
                    new = created.is_new,
                    kind = created.job.kind(),
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    "Import request accepted."
                );
                break Ok(());
            }
            Err((error, false)) => {
                break Err(Rejected {
                    reason: Reason::InvalidField,
                    detail: format!("the database refused the job: {error}"),
                })
            }
            Err((error, true)) => {
                if !paused {
                    tracing::warn!(error = %error, "PostgreSQL is unavailable: pausing consumption until it is back.");
                    pause(state, true);
                    paused = true;
                }
                failures += 1;
                let wait = jittered(backoff(&state.args.retry, failures));
                wait_polling(state, wait).await;
            }
        }
    };
    if paused {
        tracing::info!("PostgreSQL is back: resuming consumption.");
        pause(state, false);
    }
    result
}

fn pause(state: &State, pause: bool) {
    ConsumerPaused { paused: pause }.emit();
    let result = state
        .consumer
        .assignment()
        .and_then(|assigned| match pause {
            true => state.consumer.pause(&assigned),
            false => state.consumer.resume(&assigned),
        });
    if let Err(e) = result {
        tracing::warn!(error = %e, pause, "Could not pause or resume the assigned partitions.");
    }
}

/// Waits `wait` while polling, so the consumer stays in its group. A
/// message from a partition assigned meanwhile is held, and that
/// partition paused too.
async fn wait_polling(state: &mut State, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(received) = tokio::time::timeout_at(deadline, state.consumer.recv()).await {
        if let Ok(message) = received {
            state.held.push_back(message.detach());
            pause(state, true);
        }
    }
}

/// Logs rebalances.
pub struct IngressContext;

impl ClientContext for IngressContext {}

/// Reports how far the consumer is behind each assigned partition's end:
/// its position against the partition's high watermark, as librdkafka last
/// heard it (cached, no request). librdkafka's statistics would carry the
/// lag, but rdkafka's consumer poll drops statistics events, so none ever
/// arrived (found by the test that every metric the alerts watch is
/// served).
fn report_lag(consumer: &StreamConsumer<IngressContext>) {
    let Ok(positions) = consumer.position() else {
        return;
    };
    for p in positions.elements() {
        let Offset::Offset(position) = p.offset() else {
            continue;
        };
        let Ok(topic) = CString::new(p.topic()) else {
            continue;
        };
        let (mut low, mut high) = (0i64, 0i64);
        // SAFETY: the client handle lives as long as `consumer`; the call
        // only reads librdkafka's cached offsets into the two locals.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                consumer.client().native_ptr(),
                topic.as_ptr(),
                p.partition(),
                &mut low,
                &mut high,
            )
        };
        if err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0 {
            ConsumerLag {
                topic: p.topic(),
                partition: p.partition(),
                lag: (high - position).max(0),
            }
            .emit();
        }
    }
}

impl ConsumerContext for IngressContext {
    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "Partitions assigned.")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "Partitions revoked.")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "Rebalance failed."),
        }
    }
}
