//! The service's actors, one per file: ServiceSupervisor → KafkaIngress,
//! DlqActor, StatusPublisher, JobSweeper (and, from `export` and `users`,
//! the WebhookSender and the ExportScheduler); and the JobCoordinator.
//! Each file exports `NAME` (its `actor` label), `Msg`, `Args`, `State`, a
//! `…Ref` alias and its `spawn`.

pub mod dlq;
pub mod job_coordinator;
pub mod job_sweeper;
pub mod kafka_ingress;
pub mod service_supervisor;
pub mod status_publisher;
