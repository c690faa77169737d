//! # ferry-actors: the pipeline engine
//!
//! Supervised ractor actors and the plain domain code they run. Domain code
//! has no actors in it and is unit-tested on its own; an actor file owns a
//! mailbox, its state, supervision and metrics, and calls into it.
//!
//! # Layout
//!
//! - `settings`: the engine's configuration structs (`[database]`,
//!   `[import]`, `[jobs]`, `[kafka]`, `[storage]`, `[retry]`), documented
//!   key by key.
//! - `job`: jobs and their one lifecycle. `job::lifecycle` makes every
//!   write to a job row (create, claim, start, checkpoint, fail, finish,
//!   give up, cancel, sweep), each fenced on the lease; `job::store` reads
//!   rows and never guesses. Also the `Counts` of an import, its
//!   `Checkpoint`, its `Outcome`; `groupId` → UUID.
//! - `export`: exports' domain code: exportable objects read from the
//!   catalog, the filter compiler, the query plan with keyset continuation,
//!   value codecs, the CSV/JSON/JSONL/Parquet encoders, and the sinks (S3
//!   multipart, local files).
//! - `status`: the status event a job's end is announced with (seed 004's
//!   `NodesTransferJobExchange`) and the id lists it carries.
//! - `batch`: rows packed in one text arena (`NodeBatch`, `MatchBatch`);
//!   dedupe and routing.
//! - `checkpoint`: out-of-order batch commits → a contiguous checkpoint and
//!   the job's outcome.
//! - `formats`: compression sniffing, CSV rows to nodes, Parquet columns to
//!   match suggestions, limits, the rejects file.
//! - `pg`: connections and pools, migrations, API keys, the binary COPY
//!   encoder, the target tables (`Table`: nodes, match suggestions), saved
//!   rejects.
//! - `kafka`: client settings, topic routes, request payloads
//!   (`NodeExchange`) and their validation, DLQ headers, the embedded
//!   broker.
//! - `source`: where an import reads from, and what it may not read.
//! - `files`: a multi-file import's set (a prefix, a glob, a list): its
//!   listing, kept in the checkpoint, and how far through it a job is.
//! - `storage`: S3-compatible object storage through aws-sdk-s3.
//! - `flow`: credits, the bound on every hop that carries data.
//! - `supervision`: the one restart policy every supervisor uses.
//! - `telemetry`: mailbox depth gauges and typed events (logs + metrics).
//! - `progress`: live counters of a running job.
//! - `error`: errors at a job attempt's boundary, retriable or not.
//! - `actors`: the service (Service → KafkaIngress, DlqActor,
//!   StatusPublisher, JobSweeper), and the jobs: JobCoordinator →
//!   JobPipeline → FileFetcher → CsvReader | ParquetReader →
//!   BatchAccumulator → CopyWriter × N (the per-file input stages in
//!   `job_pipeline/input.rs`).

pub mod actors;
pub mod batch;
pub mod checkpoint;
pub mod error;
pub mod export;
pub mod files;
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
