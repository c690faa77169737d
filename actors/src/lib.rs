//! # ferry-actors: the pipeline engine
//!
//! Supervised ractor actors and the plain domain code they run. Domain code
//! has no actors in it and is unit-tested on its own; an actor file owns a
//! mailbox, its state, supervision and metrics, and calls into it.
//!
//! # Layout
//!
//! - `settings`: the engine's configuration structs (`[database]`,
//!   `[import]`, `[retry]`), documented key by key.
//! - `job`: job, status, checkpoint and outcome types; `groupId` → UUID.
//! - `batch`: `NodeBatch` and `MatchBatch`, rows packed in one text arena;
//!   dedupe and routing.
//! - `checkpoint`: out-of-order batch commits → a contiguous checkpoint and
//!   the job's outcome.
//! - `formats`: compression sniffing, CSV rows to nodes, the rejects file.
//! - `pg`: connections, migrations, the job store, the binary COPY encoder
//!   and the nodes SQL (upsert and fast path).
//! - `source`: where an import reads from, and what it may not read.
//! - `storage`: S3-compatible object storage through aws-sdk-s3.
//! - `flow`: credits, the bound on every hop that carries data.
//! - `supervision`: the one restart policy every supervisor uses.
//! - `telemetry`: mailbox depth gauges and typed events (logs + metrics).
//! - `progress`: live counters of a running job.
//! - `error`: errors at a job attempt's boundary, retriable or not.
//! - `actors`: JobCoordinator → JobPipeline → FileFetcher → CsvReader →
//!   BatchAccumulator → CopyWriter × N.

pub mod actors;
pub mod batch;
pub mod checkpoint;
pub mod error;
pub mod flow;
pub mod formats;
pub mod job;
pub mod kafka;
pub mod pg;
pub mod progress;
pub mod settings;
pub mod source;
pub mod status;
pub mod storage;
pub mod supervision;
pub mod telemetry;
