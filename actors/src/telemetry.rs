//! Metrics and logs from typed events: one struct per event, whose `emit()`
//! logs and counts. Labels stay low-cardinality (no job ids); nothing here is
//! called per row.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Gauge};
use ractor::{ActorRef, Message};
use uuid::Uuid;

use crate::vocab::{JobStatus, Target};

/// A mailbox that counts its own depth: ractor has no API for it. The sender
/// calls [`Mailbox::send`], the receiving actor [`Depth::received`] at the
/// top of `handle`, and `post_stop` drains what was never handled. The gauge
/// `ferry_actor_mailbox_depth{actor}` sums every instance of an actor.
///
/// A mailbox of `M`s may lead to an actor whose own messages wrap them
/// ([`Mailbox::to`]): a child tells its parent how it does without knowing
/// the parent's type.
pub struct Mailbox<M> {
    send: Arc<dyn Fn(M) -> bool + Send + Sync>,
    depth: Depth,
}

impl<M> Clone for Mailbox<M> {
    fn clone(&self) -> Self {
        Self {
            send: self.send.clone(),
            depth: self.depth.clone(),
        }
    }
}

impl<M: Message> Mailbox<M> {
    pub fn new(actor: ActorRef<M>, depth: Depth) -> Self {
        Self::to(actor, depth, |m| m)
    }
}

impl<M: Send + 'static> Mailbox<M> {
    /// `M`s for `actor`, each wrapped in one of its messages.
    pub fn to<P: Message>(
        actor: ActorRef<P>,
        depth: Depth,
        wrap: impl Fn(M) -> P + Send + Sync + 'static,
    ) -> Self {
        Self {
            send: Arc::new(move |m| actor.cast(wrap(m)).is_ok()),
            depth,
        }
    }

    /// `M`s handed to `receive` (a test's receiver); false from it is a
    /// receiver gone.
    pub fn from_fn(receive: impl Fn(M) -> bool + Send + Sync + 'static, depth: Depth) -> Self {
        Self {
            send: Arc::new(receive),
            depth,
        }
    }

    /// Sends, counting the message as queued. A send to a stopped actor is
    /// dropped: it only happens while a pipeline is being torn down.
    pub fn send(&self, msg: M) {
        self.depth.sent();
        if !(self.send)(msg) {
            self.depth.received();
        }
    }
}

/// The depth counter behind a [`Mailbox`], held by the receiving actor.
#[derive(Clone)]
pub struct Depth {
    pending: Arc<AtomicI64>,
    gauge: Gauge,
}

impl Depth {
    pub fn new(actor: &'static str) -> Self {
        Self {
            pending: Arc::default(),
            gauge: gauge!("ferry_actor_mailbox_depth", "actor" => actor),
        }
    }

    pub fn sent(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        self.gauge.increment(1.0);
    }

    pub fn received(&self) {
        // After a drain a late receipt (a send that failed because its
        // receiver stopped) has nothing left to take: never below zero.
        let taken = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                (p > 0).then(|| p - 1)
            });
        if taken.is_ok() {
            self.gauge.decrement(1.0);
        }
    }

    /// Forgets what is still queued when the actor stops.
    pub fn drain(&self) {
        let left = self.pending.swap(0, Ordering::Relaxed);
        self.gauge.decrement(left as f64);
    }
}

/// A job's pipeline failed in `stage` (an actor's `NAME`) and its job
/// runs again after a backoff, from its checkpoint.
pub struct JobRestarted<'a> {
    pub stage: &'static str,
    pub job_id: Uuid,
    pub attempt: i32,
    pub backoff: Duration,
    pub reason: &'a str,
}

impl JobRestarted<'_> {
    pub fn emit(self) {
        tracing::warn!(
            actor = self.stage,
            job_id = %self.job_id,
            attempt = self.attempt,
            backoff_ms = self.backoff.as_millis() as u64,
            reason = self.reason,
            "Restarting the job after a failure."
        );
        counter!("ferry_actor_restarts_total", "actor" => self.stage).increment(1);
    }
}

/// The service's supervisor starts a failed long-lived actor again after
/// a backoff.
pub struct ChildRestarted<'a> {
    pub actor: &'static str,
    pub backoff: Duration,
    pub reason: &'a str,
}

impl ChildRestarted<'_> {
    pub fn emit(self) {
        tracing::warn!(
            actor = self.actor,
            backoff_ms = self.backoff.as_millis() as u64,
            reason = self.reason,
            "Restarting an actor after a failure."
        );
        counter!("ferry_actor_restarts_total", "actor" => self.actor).increment(1);
    }
}

/// A CopyWriter committed one shard of a batch.
pub struct BatchCommitted {
    pub target: Target,
    pub rows: u64,
    pub elapsed: Duration,
}

impl BatchCommitted {
    pub fn emit(self) {
        counter!("ferry_rows_written_total", "target" => self.target.as_str()).increment(self.rows);
        histogram!("ferry_batch_commit_seconds", "target" => self.target.as_str())
            .record(self.elapsed.as_secs_f64());
    }
}

/// A CopyWriter's attempt at a batch failed and will be tried again.
pub struct BatchRetried<'a> {
    pub job_id: Uuid,
    pub writer: usize,
    pub seq: u64,
    pub attempt: u32,
    pub error: &'a str,
}

impl BatchRetried<'_> {
    pub fn emit(self) {
        tracing::warn!(
            job_id = %self.job_id,
            writer = self.writer,
            batch = self.seq,
            attempt = self.attempt,
            error = self.error,
            "Batch failed; retrying on a new connection."
        );
        counter!("ferry_batch_retries_total").increment(1);
    }
}

/// Rows rejected by a reader, counted per reader step, not per row.
pub struct RowsRejected {
    pub target: Target,
    pub rows: u64,
}

impl RowsRejected {
    pub fn emit(self) {
        if self.rows > 0 {
            counter!("ferry_rows_rejected_total", "target" => self.target.as_str())
                .increment(self.rows);
        }
    }
}

/// A job reached a terminal status.
pub struct JobFinished<'a> {
    pub job_id: Uuid,
    pub kind: &'static str,
    pub status: JobStatus,
    pub rows: u64,
    pub elapsed: Duration,
    pub reason: Option<&'a str>,
}

impl JobFinished<'_> {
    pub fn emit(self) {
        tracing::info!(
            job_id = %self.job_id,
            kind = self.kind,
            status = self.status.as_str(),
            rows = self.rows,
            secs = self.elapsed.as_secs_f64(),
            reason = self.reason,
            "Job finished."
        );
        counter!("ferry_jobs_total", "kind" => self.kind, "status" => self.status.as_str())
            .increment(1);
        histogram!("ferry_job_duration_seconds", "kind" => self.kind)
            .record(self.elapsed.as_secs_f64());
        if self.status == JobStatus::Completed {
            // The rows of the last job of each kind: a matches import far
            // below the recent ones means the engine degraded.
            gauge!("ferry_job_last_rows", "kind" => self.kind).set(self.rows as f64);
        }
    }
}

/// The retention sweep deleted finished jobs.
pub struct JobsSwept {
    pub jobs: u64,
    pub retention: Duration,
}

impl JobsSwept {
    pub fn emit(self) {
        if self.jobs > 0 {
            tracing::info!(
                jobs = self.jobs,
                retention_secs = self.retention.as_secs(),
                "Deleted finished jobs past their retention."
            );
            counter!("ferry_jobs_swept_total").increment(self.jobs);
        }
    }
}

/// An export's part is in the store.
pub struct PartUploaded {
    pub bytes: u64,
    pub elapsed: Duration,
}

impl PartUploaded {
    pub fn emit(self) {
        counter!("ferry_export_bytes_total").increment(self.bytes);
        histogram!("ferry_export_part_seconds").record(self.elapsed.as_secs_f64());
    }
}

/// An export's rows are durable in its files (counted per part, not per
/// row).
pub struct RowsExported {
    pub object: String,
    pub rows: u64,
}

impl RowsExported {
    pub fn emit(self) {
        if self.rows > 0 {
            counter!("ferry_rows_exported_total", "object" => self.object).increment(self.rows);
        }
    }
}

/// What came of one attempt to deliver a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    Delivered,
    /// Tried again later.
    Retry,
    /// Given up.
    Failed,
}

impl WebhookOutcome {
    pub const ALL: [Self; 3] = [Self::Delivered, Self::Retry, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry => "retry",
            Self::Failed => "failed",
        }
    }
}

/// One delivery attempt of an export's webhook.
pub struct WebhookAttempted<'a> {
    pub delivery: i64,
    pub attempt: i32,
    pub status: Option<u16>,
    pub error: Option<&'a str>,
    pub outcome: WebhookOutcome,
}

impl WebhookAttempted<'_> {
    pub fn emit(self) {
        if self.outcome == WebhookOutcome::Delivered {
            tracing::info!(
                delivery = self.delivery,
                attempt = self.attempt,
                status = self.status,
                "Webhook delivered."
            );
        } else {
            tracing::warn!(
                delivery = self.delivery,
                attempt = self.attempt,
                status = self.status,
                error = self.error,
                outcome = self.outcome.as_str(),
                "Webhook delivery failed."
            );
        }
        counter!("ferry_webhook_attempts_total", "outcome" => self.outcome.as_str()).increment(1);
    }
}

/// A scheduled users export's tick, as the instance that ran it saw it.
pub struct UsersRunStarted {
    pub elapsed: Duration,
}

impl UsersRunStarted {
    pub fn emit(self) {
        counter!("ferry_users_export_runs_total").increment(1);
        histogram!("ferry_users_export_run_start_seconds").record(self.elapsed.as_secs_f64());
    }
}

/// The last export of a users export run ended: the run's duration from
/// its tick.
pub struct UsersRunEnded {
    pub run_id: Uuid,
    pub elapsed: Duration,
}

impl UsersRunEnded {
    pub fn emit(self) {
        histogram!("ferry_users_export_run_seconds").record(self.elapsed.as_secs_f64());
        tracing::info!(run_id = %self.run_id, seconds = self.elapsed.as_secs_f64(), "Users export run ended.");
    }
}

/// What a tick did with one matching group: `started`, `overlapped` (its
/// previous export still runs), `empty` (no new users) or `invalid` (a
/// group type ferry does not know; seed 000's
/// `users_export_invalid_group_type`).
pub struct UsersGroupScheduled<'a> {
    pub group_type: &'a str,
    pub outcome: &'static str,
}

impl UsersGroupScheduled<'_> {
    pub fn emit(self) {
        let group_type = match self.outcome {
            "invalid" => "unknown".to_string(),
            _ => self.group_type.to_string(),
        };
        counter!("ferry_users_export_groups_total", "group_type" => group_type, "outcome" => self.outcome)
            .increment(1);
    }
}

/// A group's users export ended: its users, files and messages, and how
/// long it took (seed 000's `users_export_group_duration`, without the
/// group id: labels stay few).
pub struct UsersExported {
    pub group_type: &'static str,
    pub outcome: &'static str,
    pub users: u64,
    pub files: u64,
    pub messages: u64,
    pub elapsed: Duration,
}

impl UsersExported {
    pub fn emit(self) {
        let labels = [("group_type", self.group_type), ("outcome", self.outcome)];
        histogram!("ferry_users_export_group_seconds", &labels).record(self.elapsed.as_secs_f64());
        counter!("ferry_users_exported_total", "group_type" => self.group_type)
            .increment(self.users);
        counter!("ferry_users_export_files_total", "group_type" => self.group_type)
            .increment(self.files);
        counter!("ferry_users_export_messages_total", "group_type" => self.group_type)
            .increment(self.messages);
    }
}

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

/// This instance stopped a job whose lease another instance holds now
/// (it stalled past its lease, or the job was cancelled).
pub struct LeaseLost {
    pub job_id: Uuid,
}

impl LeaseLost {
    pub fn emit(self) {
        counter!("ferry_jobs_lease_lost_total").increment(1);
        tracing::warn!(job_id = %self.job_id, "Stopped a job whose lease was lost.");
    }
}

/// What `/metrics` reads at scrape time: jobs by status, how long the
/// oldest running job has run, and this process's resident memory.
pub struct Scraped<'a> {
    pub jobs: &'a [(&'static str, i64)],
    pub oldest_running: Duration,
    pub rss_bytes: Option<u64>,
}

impl Scraped<'_> {
    pub fn emit(self) {
        for (status, n) in self.jobs {
            gauge!("ferry_jobs", "status" => *status).set(*n as f64);
        }
        gauge!("ferry_job_oldest_running_seconds").set(self.oldest_running.as_secs_f64());
        if let Some(rss) = self.rss_bytes {
            gauge!("process_resident_memory_bytes").set(rss as f64);
        }
    }
}

/// This process's resident memory (VmRSS), on Linux.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The S3 operations `ferry_storage_errors_total{op}` counts.
pub const STORAGE_OPS: [&str; 10] = [
    "HEAD",
    "GET",
    "PUT",
    "CreateBucket",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "DeleteObject",
    "presigning GET",
];

/// The label values of the series the alert rules and the dashboard watch
/// that only their owners know (the kinds of jobs, the actors, the
/// reasons a request is dead-lettered).
pub struct Watched<'a> {
    pub kinds: &'a [&'static str],
    pub actors: &'a [&'static str],
    pub dead_letter_reasons: &'a [&'static str],
    pub group_types: &'a [&'static str],
}

/// Registers, at zero, the series the alert rules and the dashboard watch
/// whose labels are known in advance, so that `rate()` and `increase()`
/// see them from the start and a panel shows 0 rather than nothing.
pub fn register_watched_series(watched: &Watched<'_>) {
    for kind in DbErrorKind::ALL {
        counter!("ferry_db_errors_total", "kind" => kind.as_str()).increment(0);
    }
    for op in STORAGE_OPS {
        for retriable in ["true", "false"] {
            counter!("ferry_storage_errors_total", "op" => op, "retriable" => retriable)
                .increment(0);
        }
    }
    for reason in watched.dead_letter_reasons {
        counter!("ferry_kafka_dlq_total", "reason" => *reason).increment(0);
    }
    for outcome in WebhookOutcome::ALL {
        counter!("ferry_webhook_attempts_total", "outcome" => outcome.as_str()).increment(0);
    }
    for kind in watched.kinds {
        for status in JobStatus::TERMINAL {
            counter!("ferry_jobs_total", "kind" => *kind, "status" => status.as_str()).increment(0);
        }
    }
    counter!("ferry_jobs_lease_lost_total").increment(0);
    counter!("ferry_users_export_runs_total").increment(0);
    counter!("ferry_batch_retries_total").increment(0);
    for service in ["store", "broker"] {
        counter!("ferry_circuit_opened_total", "service" => service).increment(0);
    }
    for topic in ["status", "dlq"] {
        counter!("ferry_kafka_send_errors_total", "topic" => topic).increment(0);
    }
    for actor in watched.actors {
        counter!("ferry_actor_restarts_total", "actor" => *actor).increment(0);
    }
    for group_type in watched.group_types {
        counter!("ferry_users_exported_total", "group_type" => *group_type).increment(0);
        for outcome in ["started", "overlapped", "empty"] {
            counter!("ferry_users_export_groups_total", "group_type" => *group_type, "outcome" => outcome)
                .increment(0);
        }
    }
    gauge!("ferry_outbox_backlog").set(0.0);
    gauge!("ferry_job_oldest_running_seconds").set(0.0);
    gauge!("ferry_kafka_consumer_paused").set(0.0);
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

/// The HTTP API answered a request: by route (the template, so ids do not
/// multiply series), method and status.
pub struct HttpServed<'a> {
    pub route: &'a str,
    pub method: &'a str,
    pub status: u16,
    pub elapsed: Duration,
}

impl HttpServed<'_> {
    pub fn emit(self) {
        counter!(
            "ferry_http_requests_total",
            "route" => self.route.to_string(),
            "method" => self.method.to_string(),
            "status" => self.status.to_string()
        )
        .increment(1);
        histogram!("ferry_http_request_seconds", "route" => self.route.to_string())
            .record(self.elapsed.as_secs_f64());
    }
}

/// Jobs this instance holds (claimed or running).
pub struct JobsHeld {
    pub jobs: usize,
}

impl JobsHeld {
    pub fn emit(self) {
        gauge!("ferry_jobs_running").set(self.jobs as f64);
    }
}

/// This instance claimed a job from the queue.
pub struct JobClaimed;

impl JobClaimed {
    pub fn emit(self) {
        counter!("ferry_jobs_claimed_total").increment(1);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_after_a_drain_leaves_the_depth_at_zero() {
        let depth = Depth::new("test");
        depth.sent();
        depth.sent();
        depth.received();
        assert_eq!(depth.pending.load(Ordering::Relaxed), 1);
        depth.drain();
        // The sender whose message never arrived takes it back.
        depth.received();
        assert_eq!(depth.pending.load(Ordering::Relaxed), 0);
    }
}
