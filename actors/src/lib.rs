//! # ferry-actors: the pipeline engine
//!
//! Supervised ractor actors and the plain domain code they run. Domain code
//! has no actors in it and is unit-tested on its own; an actor file owns a
//! mailbox, its state, supervision and metrics, and calls into it. Each
//! folder that has actors keeps them in its `actors/`, one per file.
//!
//! # Layout
//!
//! - `vocab`: the words every part shares (`JobStatus`, `Target`,
//!   `Counts`, `WriteMode`); it imports nothing.
//! - `calendar`: dates as text, checked (export filters, data contracts).
//! - `error`: errors at the boundaries (`DbError`, `StoreError`, `Fenced`,
//!   `JobError` for every kind of job), retriable or not.
//! - `job`: jobs of every kind, knowing none: `Job<K>`, the `Kind` trait a
//!   kind implements, the lifecycle (`Held` → `Attempt` → `Fence`, every
//!   write fenced on the lease), the one terminal statement, the reads.
//! - `kinds`: the one list of kinds (`Work`), and what an end leaves to do.
//! - `pipeline`: what every pipeline root shares: the context it is
//!   spawned with, stages spawned and named, the watermark, the snapshot.
//! - `import`: seeds 003 and 004's imports (the `nodes` and `matches`
//!   kinds): requests, sources and file sets, formats, data contracts and
//!   schema drift, batches, tables, the commit tracker, the status event,
//!   and the import pipeline's actors.
//! - `export`: seeds 001 and 002's exports (the `export` kind): objects,
//!   filters, the plan, encoders, sinks, tokens, webhooks, the
//!   `ExportCompleted` event, and the export pipeline's actors.
//! - `users`: seed 000's scheduled users export (the `users_file` and
//!   `users_refs` kinds over the export pipeline), its schedule, its
//!   messages, its terminal write, and the ExportScheduler.
//! - `service`: `ferry serve`'s actors (ServiceSupervisor, JobCoordinator,
//!   KafkaIngress, DlqActor, StatusPublisher, JobSweeper), Kafka clients
//!   and the embedded broker, the outbox's events, queue workers' wake-ups.
//! - `pg`: connections and pools, migrations, API keys, matching groups.
//! - `settings`: the engine's configuration structs (`[database]`,
//!   `[import]`, `[jobs]`, `[kafka]`, `[storage]`, `[retry]`, `[exports]`),
//!   documented key by key.
//! - `storage`: S3-compatible object storage through aws-sdk-s3.
//! - `flow`: credits, the bound on every hop that carries data.
//! - `supervision`: the one restart policy every supervisor uses, and the
//!   circuit breaker.
//! - `telemetry`: mailbox depth gauges and typed events (logs + metrics).
//! - `progress`: live counters of a running job.

pub mod calendar;
pub mod error;
pub mod export;
pub mod flow;
pub mod import;
pub mod job;
pub mod kinds;
pub mod pg;
pub mod pipeline;
pub mod progress;
pub mod service;
pub mod settings;
pub mod storage;
pub mod supervision;
pub mod telemetry;
pub mod users;
pub mod vocab;
