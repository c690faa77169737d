//! Reading a topic from its start, outside any consumer group: for
//! `ferry dlq`, the demo's status events, and the tests.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferry_actors::service::kafka;
use ferry_actors::settings::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// When to stop reading.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// At the end the topic had when reading began.
    End,
    /// Once this many messages were read (or `wait` ran out).
    Count(usize),
}

/// The messages of `topic` from its start, in each partition's order.
pub fn read(
    settings: &KafkaSettings,
    brokers: &str,
    topic: &str,
    until: Until,
    wait: Duration,
) -> Result<Vec<OwnedMessage>> {
    let consumer: BaseConsumer = kafka::client_config(settings, brokers)
        .set("group.id", "ferry-topic-reader")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating a Kafka consumer")?;
    let deadline = Instant::now() + wait;
    let mut ends = loop {
        match assign_from_start(&consumer, topic) {
            Ok(ends) => break ends,
            // The broker may be coming back: try again while there is time.
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(topic, error = %e, "Could not assign the topic yet; retrying.");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    };
    let mut messages = Vec::new();
    // A consumer error is mostly the broker's connection coming and going
    // (right after it came back, say): librdkafka reconnects, so it is
    // kept only to explain a timeout.
    let mut last_error: Option<KafkaError> = None;
    loop {
        let done = match until {
            Until::End => ends.is_empty(),
            Until::Count(n) => messages.len() >= n,
        };
        if done {
            return Ok(messages);
        }
        if Instant::now() > deadline {
            match until {
                Until::End => match last_error {
                    Some(e) => bail!("timed out reading {topic}; the last consumer error: {e}"),
                    None => bail!("timed out reading {topic}"),
                },
                Until::Count(_) => return Ok(messages),
            }
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => {
                tracing::debug!(topic, error = %e, "Kafka consumer error while reading; retrying.");
                last_error = Some(e);
            }
            Some(Ok(message)) => {
                let message = message.detach();
                let (partition, offset) = (message.partition(), message.offset());
                ends.retain(|(p, high)| !(*p == partition && offset + 1 >= *high));
                messages.push(message);
            }
        }
    }
}

/// Assigns every partition of `topic` from its low watermark; the
/// partitions that hold messages, each with its high watermark.
fn assign_from_start(consumer: &BaseConsumer, topic: &str) -> Result<Vec<(i32, i64)>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .with_context(|| format!("reading the metadata of {topic}"))?;
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), METADATA_TIMEOUT)
            .with_context(|| format!("reading the offsets of {topic} [{}]", p.id()))?;
        assignment.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
        if high > low {
            ends.push((p.id(), high));
        }
    }
    consumer.assign(&assignment)?;
    Ok(ends)
}

/// The messages of `topic` (read as [`read`] does, off the async
/// threads, for up to 5 minutes) that are JSON.
pub async fn read_json(
    kafka: &KafkaSettings,
    brokers: &str,
    topic: &str,
    until: Until,
) -> Result<Vec<serde_json::Value>> {
    let (kafka, brokers, topic) = (kafka.clone(), brokers.to_string(), topic.to_string());
    let messages = tokio::task::spawn_blocking(move || {
        read(&kafka, &brokers, &topic, until, Duration::from_secs(300))
    })
    .await??;
    Ok(messages
        .iter()
        .filter_map(|m| serde_json::from_slice(m.payload()?).ok())
        .collect())
}
