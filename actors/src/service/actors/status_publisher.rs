//! StatusPublisher: sends the outbox's status events to Kafka with an
//! idempotent producer, in the order they were written, and marks them
//! sent. While Kafka is down the events wait in the outbox and none is
//! lost; a crash between the send and the mark sends an event again
//! (at-least-once: consumers key on `jobId`).
//!
//! A row with a `dead_letter_topic` (a users export's message, seed 000)
//! is sent as it is, never cut down; one the broker refuses for good goes
//! to that topic through the DlqActor, with the reason, and is not lost.
//!
//! One instance publishes at a time: the one whose outbox connection holds
//! the outbox advisory lock. If it dies, its connection and the lock go
//! with it, and another takes over on its next tick.

use std::time::Duration;

use tokio::time::Instant;

use futures::future::join_all;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};
use rdkafka::message::{OwnedMessage, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_postgres::Client;

use super::dlq::{self, DlqRef};
use crate::import::request::{Reason, Rejected};
use crate::service::kafka::{is_permanent, FRAMING_BYTES};
use crate::service::outbox;
use crate::service::worker::{Reconnecting, Wakeups};
use crate::settings::{DatabaseSettings, RetrySettings};
use crate::supervision::Breaker;
use crate::telemetry::{
    CircuitOpened, EventsSent, KafkaSendFailed, OutboxBacklog, StatusEventRefused,
};

pub const NAME: &str = "status_publisher";

/// Lock id of the publisher: "outbox" in ASCII.
const OUTBOX_LOCK: i64 = 0x6f75_7462_6f78;
/// Events sent per round.
const ROUND: i64 = 500;
pub const OUTBOX_CHANNEL: &str = "ferry_outbox";

pub enum Msg {
    /// Sends what is unsent (on a tick, or woken by `NOTIFY`).
    Publish,
    /// Sends until the outbox is empty or a send fails; replies with the
    /// events still unsent.
    Flush(RpcReplyPort<i64>),
}

#[derive(Clone)]
pub struct Args {
    pub database: DatabaseSettings,
    pub producer: FutureProducer,
    pub send_timeout: Duration,
    pub tick: Duration,
    /// The broker's message size limit: every event is cut to fit it.
    pub max_message_bytes: usize,
    /// The backoff of the broker's circuit breaker.
    pub retry: RetrySettings,
}

pub struct State {
    args: Args,
    /// Opens after sends fail in a row: rounds wait it out instead of
    /// trying the broker every tick.
    breaker: Breaker,
    /// Holds the outbox lock while this instance is the publisher.
    outbox: Reconnecting,
    _wakeups: Wakeups,
}

pub type StatusPublisherRef = ActorRef<Msg>;

/// Spawns it under its name (others find it by name), linked to the
/// service's supervisor.
pub async fn spawn_linked(
    supervisor: ActorCell,
    args: Args,
) -> Result<StatusPublisherRef, SpawnErr> {
    let name = Some(NAME.to_string());
    let (actor, _) = Actor::spawn_linked(name, StatusPublisher, args, supervisor).await?;
    Ok(actor)
}

pub struct StatusPublisher;

impl Actor for StatusPublisher {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        let wakeups = Wakeups::start(&myself, &args.database, OUTBOX_CHANNEL, args.tick, || {
            Msg::Publish
        });
        Ok(State {
            breaker: Breaker::new(args.retry.clone()),
            outbox: Reconnecting::new(&args.database, "ferry-outbox"),
            args,
            _wakeups: wakeups,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Msg>,
        msg: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Publish => {
                if publish(state).await {
                    myself.cast(Msg::Publish)?;
                }
            }
            Msg::Flush(reply) => {
                while publish(state).await {}
                let _ = reply.send(backlog(state).await.unwrap_or(-1));
            }
        }
        Ok(())
    }
}

/// Sends one round of unsent events. True when there may be more to send
/// at once; false when all was sent, a send failed (tried again next tick),
/// or another instance publishes.
async fn publish(state: &mut State) -> bool {
    if state.breaker.is_open(Instant::now()) {
        return false;
    }
    let Some(outbox) = publisher_connection(state).await else {
        return false;
    };
    let rows = match outbox
        .query(
            "SELECT id, topic, message_key, payload, dead_letter_topic FROM status_outbox
             WHERE sent_at IS NULL ORDER BY id LIMIT $1",
            &[&ROUND],
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "Could not read the outbox.");
            state.outbox.reset();
            return false;
        }
    };
    if rows.is_empty() {
        OutboxBacklog { waiting: 0 }.emit();
        return false;
    }
    // Every event is cut to fit the broker's limit (its lists halved, the
    // `…Truncated` flags set); one that cannot be is sent as counts only.
    let limit = state.args.max_message_bytes.saturating_sub(FRAMING_BYTES);
    let payloads: Vec<String> = rows
        .iter()
        .map(|row| {
            let payload: &str = row.get(3);
            match row.get::<_, Option<&str>>(4) {
                Some(_) => payload.to_string(),
                None => outbox::fit(payload, limit).unwrap_or_else(|| counts_only(payload)),
            }
        })
        .collect();
    // Queued together, delivered in order by the idempotent producer.
    let sends = rows.iter().zip(&payloads).map(|(row, payload)| {
        let topic: &str = row.get(1);
        let key: &str = row.get(2);
        let record = FutureRecord::to(topic).key(key).payload(payload.as_str());
        state.args.producer.send(record, state.args.send_timeout)
    });
    let results = join_all(sends).await;
    let mut sent = Vec::new();
    let mut failure = None;
    for ((row, payload), result) in rows.iter().zip(&payloads).zip(results) {
        let id = row.get::<_, i64>(0);
        let dead_letters: Option<&str> = row.get(4);
        match (result, dead_letters) {
            (Ok(_), _) => sent.push(id),
            (Err((e, _)), Some(topic)) if is_permanent(&e) => {
                match dead_letter(row, topic, &e.to_string()).await {
                    Ok(()) => sent.push(id),
                    Err(why) => {
                        failure.get_or_insert((id, why));
                    }
                }
            }
            // Refused for good (too large for a smaller broker limit, say):
            // never tried again as it is.
            (Err((e, _)), None) if is_permanent(&e) && failure.is_none() => {
                refused(state, id, payload, &e.to_string()).await;
                if payload.len() <= 4096 {
                    sent.push(id);
                }
                failure = Some((id, e.to_string()));
            }
            (Err((e, _)), _) => {
                failure.get_or_insert((id, e.to_string()));
            }
        }
    }
    let outbox = state.outbox.current().expect("connected above");
    let marked = outbox
        .execute(
            "UPDATE status_outbox SET sent_at = now(), attempts = attempts + 1 WHERE id = ANY($1)",
            &[&sent],
        )
        .await;
    if let Err(e) = marked {
        tracing::warn!(error = %e, "Could not mark status events sent; they will be sent again.");
        state.outbox.reset();
        return false;
    }
    EventsSent { events: sent.len() }.emit();
    if let Some((id, error)) = failure {
        KafkaSendFailed { topic: "status" }.emit();
        if let Some(open_for) = state.breaker.failure(Instant::now()) {
            CircuitOpened {
                service: "broker",
                open_for,
                error: &error,
            }
            .emit();
        }
        tracing::warn!(outbox_id = id, error = %error, "Could not send a status event; it waits in the outbox.");
        let _ = outbox
            .execute(
                "UPDATE status_outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
                &[&id, &error],
            )
            .await;
        let _ = backlog(state).await;
        return false;
    }
    state.breaker.success();
    let full = rows.len() as i64 == ROUND;
    if !full {
        // A short round that all went out emptied the outbox.
        OutboxBacklog { waiting: 0 }.emit();
    }
    full
}

/// Sends an outbox row the broker refused for good to `topic`, through
/// the DlqActor (which cuts a copy that does not fit), with the reason.
async fn dead_letter(row: &tokio_postgres::Row, topic: &str, error: &str) -> Result<(), String> {
    let dlq: DlqRef = ractor::registry::where_is(dlq::NAME)
        .ok_or("the DlqActor is not running")?
        .into();
    let (id, original, key, payload): (i64, String, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let message = OwnedMessage::new(
        Some(payload.into_bytes()),
        Some(key.into_bytes()),
        original,
        Timestamp::NotAvailable,
        -1,
        -1,
        None,
    );
    let rejected = Rejected {
        reason: Reason::TooLarge,
        detail: format!("the broker refused outbox message {id} for good: {error}"),
    };
    let sent = dlq
        .call(
            |reply| dlq::Msg::Send {
                message,
                rejected,
                topic: Some(topic.to_string()),
                reply,
            },
            None,
        )
        .await
        .map_err(|e| e.to_string())?;
    match sent {
        ractor::rpc::CallResult::Success(()) => Ok(()),
        _ => Err("the DlqActor stopped before the dead letter was sent".into()),
    }
}

/// The event as counts only: every list emptied and flagged truncated,
/// long texts shortened (what is left when nothing else fits).
fn counts_only(payload: &str) -> String {
    outbox::fit(payload, 4096).unwrap_or_else(|| payload.chars().take(4000).collect())
}

/// An event the broker refused for good: its row gets the event cut down
/// to counts (sent in the next round) or, when even that was refused, is
/// marked sent. Counted and logged either way.
async fn refused(state: &State, id: i64, payload: &str, error: &str) {
    let Some(outbox) = state.outbox.current() else {
        return;
    };
    let shorter = counts_only(payload);
    if payload.len() > 4096 {
        StatusEventRefused { dropped: false }.emit();
        tracing::warn!(
            outbox_id = id,
            error,
            bytes = payload.len(),
            "The broker refused a status event for good; sending it as counts only."
        );
        let _ = outbox
            .execute(
                "UPDATE status_outbox SET payload = $2, attempts = attempts + 1, last_error = $3 WHERE id = $1",
                &[&id, &shorter, &error],
            )
            .await;
    } else {
        StatusEventRefused { dropped: true }.emit();
        tracing::error!(outbox_id = id, error, payload, "The broker refused even the counts of a status event; it is logged here and marked sent.");
        let _ = outbox
            .execute(
                "UPDATE status_outbox SET last_error = $2 WHERE id = $1",
                &[&id, &error],
            )
            .await;
    }
}

/// The outbox connection, if this instance is (or now becomes) the
/// publisher: the one whose connection holds the outbox lock.
async fn publisher_connection(state: &mut State) -> Option<&Client> {
    let fresh = !state.outbox.is_connected();
    let client = state.outbox.get().await.ok()?;
    if fresh {
        let locked: bool = match client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&OUTBOX_LOCK])
            .await
        {
            Ok(row) => row.get(0),
            Err(_) => false,
        };
        if !locked {
            state.outbox.reset();
            return None;
        }
        tracing::info!("This instance publishes the status events.");
    }
    state.outbox.current()
}

/// Unsent events: the `ferry_outbox_backlog` gauge.
async fn backlog(state: &State) -> Option<i64> {
    let client = state.outbox.current()?;
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM status_outbox WHERE sent_at IS NULL",
            &[],
        )
        .await
        .ok()?
        .get(0);
    OutboxBacklog { waiting: n }.emit();
    Some(n)
}
