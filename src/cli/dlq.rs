//! `ferry dlq list` and `ferry dlq replay`: read the dead-letter topic
//! from its start to its end, show each entry's error and an excerpt of
//! its payload, or send entries back to the topics they came from
//! (seed 004 UC-3), with their original key, bytes and headers.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use ferry_actors::service::kafka::{self, dlq_headers};
use ferry_actors::settings::KafkaSettings;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::Message;

use crate::topics::{self, Until};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args)]
pub struct DlqArgs {
    /// Kafka bootstrap servers [default: kafka.brokers].
    #[arg(long)]
    pub brokers: Option<String>,
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Subcommand)]
pub enum DlqCommand {
    /// Each dead letter: where it came from, the error, a payload excerpt.
    List,
    /// Send dead letters back to the topics they came from (seed 004 UC-3).
    Replay {
        /// Only those that came from this topic.
        #[arg(long)]
        topic: Option<String>,
        /// Only those dead-lettered within this long, e.g. `2h`.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<Duration>,
    },
}

pub async fn command(settings: &KafkaSettings, args: DlqArgs) -> Result<()> {
    let brokers = args.brokers.unwrap_or_else(|| settings.brokers.clone());
    if brokers.is_empty() {
        bail!("give --brokers (the embedded broker's address is in ferry serve's log)");
    }
    let settings = settings.clone();
    // librdkafka's calls block: off the async threads.
    tokio::task::spawn_blocking(move || match args.command {
        DlqCommand::List => list(&settings, &brokers, &mut std::io::stdout()),
        DlqCommand::Replay { topic, since } => {
            let n = replay(&settings, &brokers, topic.as_deref(), since)?;
            println!("replayed {n} message(s)");
            Ok(())
        }
    })
    .await?
}

/// One dead letter, as read back.
pub struct DeadLetter {
    pub offset: i64,
    pub partition: i32,
    pub failed_at_ms: Option<u64>,
    pub source_topic: Option<String>,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// Headers it came with, without ferry's.
    pub original_headers: Vec<(String, Vec<u8>)>,
}

impl DeadLetter {
    fn from_message(m: &OwnedMessage) -> Self {
        let mut letter = DeadLetter {
            offset: m.offset(),
            partition: m.partition(),
            failed_at_ms: None,
            source_topic: None,
            reason: None,
            error: None,
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            original_headers: Vec::new(),
        };
        for h in m.headers().into_iter().flat_map(|hs| hs.iter()) {
            let text = || h.value.map(|v| String::from_utf8_lossy(v).into_owned());
            match h.key {
                dlq_headers::FAILED_AT => letter.failed_at_ms = text().and_then(|t| t.parse().ok()),
                dlq_headers::SOURCE_TOPIC => letter.source_topic = text(),
                dlq_headers::REASON => letter.reason = text(),
                dlq_headers::ERROR => letter.error = text(),
                k if k.starts_with("ferry-") => {}
                k => letter
                    .original_headers
                    .push((k.to_string(), h.value.unwrap_or_default().to_vec())),
            }
        }
        letter
    }
}

/// Every dead letter from the topic's start to its current end.
pub fn read_all(settings: &KafkaSettings, brokers: &str) -> Result<Vec<DeadLetter>> {
    let messages = topics::read(
        settings,
        brokers,
        &settings.dlq_topic,
        Until::End,
        TIMEOUT * 3,
    )?;
    let mut letters: Vec<DeadLetter> = messages.iter().map(DeadLetter::from_message).collect();
    letters.sort_by_key(|l| (l.failed_at_ms, l.partition, l.offset));
    Ok(letters)
}

pub fn list(settings: &KafkaSettings, brokers: &str, out: &mut impl Write) -> Result<()> {
    let letters = read_all(settings, brokers)?;
    writeln!(
        out,
        "{} dead letter(s) in {}",
        letters.len(),
        settings.dlq_topic
    )?;
    for l in &letters {
        let payload = l
            .payload
            .as_deref()
            .map(|p| {
                String::from_utf8_lossy(p)
                    .chars()
                    .take(120)
                    .collect::<String>()
            })
            .unwrap_or_default();
        writeln!(
            out,
            "{}:{}  from {}  at {}  {}\n    error: {}\n    payload: {}",
            l.partition,
            l.offset,
            l.source_topic.as_deref().unwrap_or("?"),
            l.failed_at_ms.map_or("?".into(), |t| t.to_string()),
            l.reason.as_deref().unwrap_or("?"),
            l.error.as_deref().unwrap_or("?"),
            payload.replace('\n', " "),
        )?;
    }
    Ok(())
}

/// Sends the dead letters back (those from `topic`, failed within
/// `since`); returns how many.
pub fn replay(
    settings: &KafkaSettings,
    brokers: &str,
    topic: Option<&str>,
    since: Option<Duration>,
) -> Result<usize> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let from_ms = since.map(|s| now_ms.saturating_sub(s.as_millis() as u64));
    let letters = read_all(settings, brokers)?;
    let producer: ThreadedProducer<DefaultProducerContext> =
        kafka::producer_config(settings, brokers)
            .create()
            .context("creating a Kafka producer")?;
    let mut sent = 0;
    for l in &letters {
        let Some(source) = l.source_topic.as_deref() else {
            continue;
        };
        if topic.is_some_and(|t| t != source)
            || from_ms.is_some_and(|f| l.failed_at_ms.is_none_or(|t| t < f))
        {
            continue;
        }
        let mut headers = OwnedHeaders::new();
        for (key, value) in &l.original_headers {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record = BaseRecord::<[u8], [u8]>::to(source).headers(headers);
        if let Some(key) = &l.key {
            record = record.key(key);
        }
        if let Some(payload) = &l.payload {
            record = record.payload(payload);
        }
        producer
            .send(record)
            .map_err(|(e, _)| anyhow::anyhow!("sending to {source}: {e}"))?;
        sent += 1;
    }
    producer
        .flush(TIMEOUT)
        .context("flushing the replayed messages")?;
    Ok(sent)
}
