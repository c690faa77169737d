//! DlqActor: sends the messages that cannot become a job to the dead-letter
//! topic, with their original key, bytes and headers, plus headers that say
//! why and where they came from. A send is retried until the broker has it:
//! the KafkaIngress waits for that before it moves past the message, so a
//! bad message is never dropped.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::counter;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

use crate::kafka::dlq_headers;
use crate::kafka::request::Rejected;

pub const NAME: &str = "dlq";

pub enum Msg {
    /// Dead-letters `message`; the reply comes once the broker has it.
    Send {
        message: OwnedMessage,
        rejected: Rejected,
        reply: RpcReplyPort<()>,
    },
}

#[derive(Clone)]
pub struct Args {
    pub producer: FutureProducer,
    pub topic: String,
    pub send_timeout: Duration,
}

pub type DlqRef = ActorRef<Msg>;

pub struct DlqActor;

impl Actor for DlqActor {
    type Msg = Msg;
    type State = Args;
    type Arguments = Args;

    async fn pre_start(&self, _: ActorRef<Msg>, args: Args) -> Result<Args, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<Msg>,
        msg: Msg,
        state: &mut Args,
    ) -> Result<(), ActorProcessingErr> {
        let Msg::Send {
            message,
            rejected,
            reply,
        } = msg;
        send(state, &message, &rejected).await;
        let _ = reply.send(());
        Ok(())
    }
}

async fn send(state: &Args, message: &OwnedMessage, rejected: &Rejected) {
    let error = rejected.to_string();
    let reason = rejected.reason.as_str();
    let failed_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        .to_string();
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for h in original.iter() {
                headers = headers.insert(h);
            }
        }
        for (key, value) in [
            (dlq_headers::ERROR, error.as_str()),
            (dlq_headers::REASON, reason),
            (dlq_headers::SOURCE_TOPIC, message.topic()),
            (dlq_headers::SOURCE_PARTITION, partition.as_str()),
            (dlq_headers::SOURCE_OFFSET, offset.as_str()),
            (dlq_headers::FAILED_AT, failed_at.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&state.topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        match state.producer.send(record, state.send_timeout).await {
            Ok(_) => {
                counter!("ferry_kafka_dlq_total", "reason" => reason).increment(1);
                tracing::warn!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    reason,
                    error = %rejected.detail,
                    dlq = %state.topic,
                    "Sent a message to the dead-letter topic."
                );
                return;
            }
            Err((e, _)) => {
                counter!("ferry_kafka_send_errors_total", "topic" => "dlq").increment(1);
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "Could not send to the dead-letter topic; retrying.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
