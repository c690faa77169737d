//! DlqActor: sends the messages that cannot become a job to the dead-letter
//! topic, with their original key, bytes and headers, plus headers that say
//! why and where they came from. A dead letter is always deliverable: one
//! whose original does not fit the broker's limit (`kafka.max_message_bytes`)
//! is sent as a copy cut to a bounded prefix of its key and value, with
//! headers that say so and give the original sizes. A send that fails for a
//! while (the broker away) is retried until the broker has it: the
//! KafkaIngress waits for that before it moves past the message. A send the
//! broker refuses for good is cut down and tried once more; if that is
//! refused too it is counted and logged, and the ingress goes on: one
//! message must never stop all ingestion.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

use crate::import::request::Rejected;
use crate::service::kafka::{dlq_headers, is_permanent, FRAMING_BYTES};
use crate::settings::RetrySettings;
use crate::supervision::{backoff, jittered};
use crate::telemetry::{DeadLettered, KafkaSendFailed};

pub const NAME: &str = "dlq";

pub enum Msg {
    /// Dead-letters `message` (to `topic`, else the DLQ topic); the reply
    /// comes once the broker has it.
    Send {
        message: OwnedMessage,
        rejected: Rejected,
        topic: Option<String>,
        reply: RpcReplyPort<()>,
    },
}

#[derive(Clone)]
pub struct Args {
    pub producer: FutureProducer,
    pub topic: String,
    pub send_timeout: Duration,
    /// The broker's message size limit (`kafka.max_message_bytes`).
    pub max_message_bytes: usize,
    /// How long to wait for the broker between tries.
    pub retry: RetrySettings,
}

pub type DlqRef = ActorRef<Msg>;

/// Spawns it under its name (others find it by name), linked to the
/// service's supervisor.
pub async fn spawn_linked(supervisor: ActorCell, args: Args) -> Result<DlqRef, SpawnErr> {
    let name = Some(NAME.to_string());
    let (actor, _) = Actor::spawn_linked(name, DlqActor, args, supervisor).await?;
    Ok(actor)
}

/// It keeps its arguments, and nothing else, between messages.
pub struct State {
    args: Args,
}

pub struct DlqActor;

impl Actor for DlqActor {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(&self, _: ActorRef<Msg>, args: Args) -> Result<State, ActorProcessingErr> {
        Ok(State { args })
    }

    async fn handle(
        &self,
        _: ActorRef<Msg>,
        msg: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let state = &state.args;
        let Msg::Send {
            message,
            rejected,
            topic,
            reply,
        } = msg;
        let topic = topic.unwrap_or_else(|| state.topic.clone());
        send(state, &topic, &message, &rejected).await;
        let _ = reply.send(());
        Ok(())
    }
}

/// How much of the original a dead letter carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    key: usize,
    value: usize,
}

/// The whole original when it fits `limit` with room for the headers;
/// else a prefix of each, the key first, together within the limit.
fn cut(key: usize, value: usize, limit: usize) -> Cut {
    let room = limit.saturating_sub(FRAMING_BYTES);
    let key = key.min(room / 4);
    Cut {
        key,
        value: value.min(room - key),
    }
}

async fn send(state: &Args, topic: &str, message: &OwnedMessage, rejected: &Rejected) {
    let error = rejected.to_string();
    let reason = rejected.reason.as_str();
    let failed_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        .to_string();
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let key = message.key().unwrap_or_default();
    let payload = message.payload().unwrap_or_default();
    let whole = Cut {
        key: key.len(),
        value: payload.len(),
    };
    let mut take = cut(key.len(), payload.len(), state.max_message_bytes);
    let mut failures = 0;
    loop {
        let truncated = take != whole;
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for h in original.iter() {
                headers = headers.insert(h);
            }
        }
        let (key_bytes, value_bytes) = (key.len().to_string(), payload.len().to_string());
        let mut ours = vec![
            (dlq_headers::ERROR, error.as_str()),
            (dlq_headers::REASON, reason),
            (dlq_headers::SOURCE_TOPIC, message.topic()),
            (dlq_headers::SOURCE_PARTITION, partition.as_str()),
            (dlq_headers::SOURCE_OFFSET, offset.as_str()),
            (dlq_headers::FAILED_AT, failed_at.as_str()),
        ];
        if truncated {
            ours.extend([
                (dlq_headers::TRUNCATED, "true"),
                (dlq_headers::ORIGINAL_KEY_BYTES, key_bytes.as_str()),
                (dlq_headers::ORIGINAL_VALUE_BYTES, value_bytes.as_str()),
            ]);
        }
        for (key, value) in ours {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
        if message.key().is_some() {
            record = record.key(&key[..take.key]);
        }
        if message.payload().is_some() {
            record = record.payload(&payload[..take.value]);
        }
        match state.producer.send(record, state.send_timeout).await {
            Ok(_) => {
                DeadLettered {
                    reason,
                    dropped: false,
                }
                .emit();
                tracing::warn!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    reason,
                    truncated,
                    error = %rejected.detail,
                    dlq = %topic,
                    "Sent a message to the dead-letter topic."
                );
                return;
            }
            Err((e, _)) if is_permanent(&e) && take.key + take.value > 4096 => {
                // Refused for good as it is: a small prefix says enough.
                KafkaSendFailed { topic: "dlq" }.emit();
                tracing::warn!(error = %e, "The broker refused a dead letter for good; sending a shorter copy.");
                take = cut(key.len(), payload.len(), 4096 + FRAMING_BYTES);
            }
            Err((e, _)) if is_permanent(&e) => {
                DeadLettered {
                    reason,
                    dropped: true,
                }
                .emit();
                tracing::error!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    reason,
                    error = %e,
                    rejected = %rejected.detail,
                    "The broker refused even a cut-down dead letter; it is logged here, and consumption goes on."
                );
                return;
            }
            Err((e, _)) => {
                KafkaSendFailed { topic: "dlq" }.emit();
                failures += 1;
                let wait = jittered(backoff(&state.retry, failures));
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "Could not send to the dead-letter topic; retrying.");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_fits_the_broker_limit() {
        let limit = 1_000_000;
        assert_eq!(
            cut(10, 500, limit),
            Cut {
                key: 10,
                value: 500
            }
        );
        let big = cut(1 << 20, 1 << 20, limit);
        assert!(big.key + big.value + FRAMING_BYTES <= limit, "{big:?}");
        assert!(big.key > 0 && big.value > big.key);
        let value_only = cut(0, 1_000_500, limit);
        assert_eq!(value_only.value, limit - FRAMING_BYTES);
    }
}
