//! `ferry serve`'s long-lived machinery: the supervised service actors, the
//! Kafka clients, the outbox's events, and what queue workers share.
//!
//! - `actors`: ServiceSupervisor → KafkaIngress, DlqActor,
//!   StatusPublisher, JobSweeper, WebhookSender, ExportScheduler; and the
//!   JobCoordinator, which runs jobs of every kind (for `ferry serve`, and
//!   for the one job of `ferry import` / `ferry export`).
//! - `kafka`: client settings, topic routes, DLQ headers, the embedded
//!   broker.
//! - `outbox`: an event cut down to fit the broker's limit.
//! - `worker`: wake-ups on a tick and a `NOTIFY`, and a reconnecting
//!   connection.

pub mod actors;
pub mod kafka;
pub mod outbox;
pub mod worker;

use crate::export::actors::{
    export_pipeline, export_reader, exporter, object_writer, webhook_sender,
};
use crate::import::actors::{
    batch_accumulator, copy_writer, csv_reader, file_fetcher, import_pipeline, parquet_reader,
};
use crate::import::request::Reason;
use crate::job::Kind;
use crate::kinds::Work;
use crate::users::actors::export_scheduler;
use crate::users::GroupType;
use actors::{
    dlq, job_coordinator, job_sweeper, kafka_ingress, service_supervisor, status_publisher,
};

/// Every actor, by its `NAME`: the `actor` label of
/// `ferry_actor_restarts_total` and `ferry_actor_mailbox_depth`.
pub const ACTORS: [&str; 18] = [
    import_pipeline::NAME,
    file_fetcher::NAME,
    csv_reader::NAME,
    parquet_reader::NAME,
    batch_accumulator::NAME,
    copy_writer::NAME,
    export_pipeline::NAME,
    export_reader::NAME,
    exporter::NAME,
    object_writer::NAME,
    webhook_sender::NAME,
    export_scheduler::NAME,
    service_supervisor::NAME,
    job_coordinator::NAME,
    kafka_ingress::NAME,
    dlq::NAME,
    status_publisher::NAME,
    job_sweeper::NAME,
];

/// Registers the watched series at zero, with every label value the
/// alert rules and the dashboard may look for.
pub fn register_watched_series() {
    let kinds: Vec<&'static str> = Work::names().into_iter().map(|(kind, _)| kind).collect();
    let reasons = Reason::ALL.map(Reason::as_str);
    let group_types = GroupType::ALL.map(GroupType::as_str);
    crate::telemetry::register_watched_series(&crate::telemetry::Watched {
        kinds: &kinds,
        actors: &ACTORS,
        dead_letter_reasons: &reasons,
        group_types: &group_types,
    });
}
