//! Metrics and logs from typed events: one struct per event, whose `emit()`
//! logs and counts. Labels stay low-cardinality (no job ids); nothing here is
//! called per row. Here: the mailboxes that count their depth, and the
//! series registered at zero; the events, by the part of ferry that emits
//! them, in `job`, `import`, `export`, `service` and `http`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use metrics::{counter, gauge, Gauge};
use ractor::{ActorRef, Message};

use crate::vocab::JobStatus;

mod export;
mod http;
mod import;
mod job;
mod service;

pub use export::*;
pub use http::*;
pub use import::*;
pub use job::*;
pub use service::*;

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
