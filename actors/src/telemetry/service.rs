//! Events of the service's boundaries: PostgreSQL, the object store, Kafka (the consumer, the outbox, the DLQ), circuit breakers.

use std::time::Duration;

use metrics::{counter, gauge};

/// A circuit breaker opened (or stayed open) in front of a service
/// (`store`, `broker`): callers wait `open_for` instead of retrying.
pub struct CircuitOpened<'a> {
    pub service: &'static str,
    pub open_for: Duration,
    pub error: &'a str,
}

impl CircuitOpened<'_> {
    pub fn emit(self) {
        counter!("ferry_circuit_opened_total", "service" => self.service).increment(1);
        tracing::warn!(
            service = self.service,
            open_ms = self.open_for.as_millis() as u64,
            error = self.error,
            "Failures in a row: waiting before calling the service again."
        );
    }
}

/// A call to PostgreSQL failed: counted by the kind of failure (its
/// SQLSTATE class), never by statement.
pub struct DbFailed<'a> {
    pub error: &'a tokio_postgres::Error,
}

impl DbFailed<'_> {
    pub fn emit(self) {
        let kind = DbErrorKind::of(self.error);
        counter!("ferry_db_errors_total", "kind" => kind.as_str()).increment(1);
    }
}

/// What kind of failure a call to PostgreSQL met, by its SQLSTATE class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    Connection,
    /// A conflict or deadlock.
    Serialization,
    Constraint,
    /// Out of memory, disk, connections.
    Resources,
    Shutdown,
    Other,
}

impl DbErrorKind {
    pub const ALL: [Self; 6] = [
        Self::Connection,
        Self::Serialization,
        Self::Constraint,
        Self::Resources,
        Self::Shutdown,
        Self::Other,
    ];

    pub fn of(e: &tokio_postgres::Error) -> Self {
        let Some(db) = e.as_db_error() else {
            return Self::Connection;
        };
        match &db.code().code()[..2] {
            "08" => Self::Connection,
            "40" => Self::Serialization,
            "23" => Self::Constraint,
            "53" => Self::Resources,
            "57" => Self::Shutdown,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connection => "connection",
            Self::Serialization => "serialization",
            Self::Constraint => "constraint",
            Self::Resources => "resources",
            Self::Shutdown => "shutdown",
            Self::Other => "other",
        }
    }
}

/// A call to the object store failed (`op`: the S3 operation).
pub struct StorageFailed<'a> {
    pub op: &'a str,
    pub retriable: bool,
}

impl StorageFailed<'_> {
    pub fn emit(self) {
        let retriable = if self.retriable { "true" } else { "false" };
        counter!("ferry_storage_errors_total", "op" => self.op.to_string(), "retriable" => retriable)
            .increment(1);
    }
}

/// How far the consumer is behind a partition's end.
pub struct ConsumerLag<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub lag: i64,
}

impl ConsumerLag<'_> {
    pub fn emit(self) {
        gauge!("ferry_kafka_consumer_lag", "topic" => self.topic.to_string(), "partition" => self.partition.to_string())
            .set(self.lag as f64);
    }
}

/// Events waiting in the outbox.
pub struct OutboxBacklog {
    pub waiting: i64,
}

impl OutboxBacklog {
    pub fn emit(self) {
        gauge!("ferry_outbox_backlog").set(self.waiting as f64);
    }
}

/// Outbox messages the broker has.
pub struct EventsSent {
    pub events: usize,
}

impl EventsSent {
    pub fn emit(self) {
        counter!("ferry_status_events_sent_total").increment(self.events as u64);
    }
}

/// A send to Kafka failed (`topic`: `status` for the outbox, `dlq`).
pub struct KafkaSendFailed {
    pub topic: &'static str,
}

impl KafkaSendFailed {
    pub fn emit(self) {
        counter!("ferry_kafka_send_errors_total", "topic" => self.topic).increment(1);
    }
}

/// A status event the broker refused for good: cut down to its counts
/// (`dropped: false`), or, refused even so, logged and dropped.
pub struct StatusEventRefused {
    pub dropped: bool,
}

impl StatusEventRefused {
    pub fn emit(self) {
        match self.dropped {
            false => counter!("ferry_status_events_reduced_total").increment(1),
            true => counter!("ferry_status_events_dropped_total").increment(1),
        }
    }
}

/// A consumed message became a job, or was dead-lettered with a reason,
/// or was ferry's own output (`outcome`).
pub struct KafkaMessage<'a> {
    pub outcome: &'a str,
}

impl KafkaMessage<'_> {
    pub fn emit(self) {
        counter!("ferry_kafka_messages_total", "outcome" => self.outcome.to_string()).increment(1);
    }
}

/// The consumer reported an error.
pub struct ConsumerFailed;

impl ConsumerFailed {
    pub fn emit(self) {
        counter!("ferry_kafka_consumer_errors_total").increment(1);
    }
}

/// Consumption paused (the job queue is full) or resumed.
pub struct ConsumerPaused {
    pub paused: bool,
}

impl ConsumerPaused {
    pub fn emit(self) {
        gauge!("ferry_kafka_consumer_paused").set(if self.paused { 1.0 } else { 0.0 });
    }
}

/// A dead letter the broker has (`dropped: false`), or one it refused
/// even cut down, logged and dropped.
pub struct DeadLettered {
    pub reason: &'static str,
    pub dropped: bool,
}

impl DeadLettered {
    pub fn emit(self) {
        match self.dropped {
            false => counter!("ferry_kafka_dlq_total", "reason" => self.reason).increment(1),
            true => counter!("ferry_kafka_dlq_dropped_total", "reason" => self.reason).increment(1),
        }
    }
}
