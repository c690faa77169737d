//! # ferry: the application shell
//!
//! The `ferry` binary's pieces, kept in a library so that the tests and the
//! benchmarks drive exactly the code users run. The engine (actors and
//! domain code) is the `ferry-actors` crate; dependencies point one way,
//! from here to there.
//!
//! # Layout
//!
//! - `config`: layered configuration (built-in `config/default.toml`, file,
//!   `FERRY__…` env vars; flags are applied by `main`).
//! - `telemetry`: tracing setup (text or JSON logs).
//! - `cli`: one module per subcommand (`import`, `jobs`, `serve`, `apikey`,
//!   `dlq`, `migrate`, `demo`), each with its clap arguments beside its
//!   handler.
//! - `report`: the end-of-import report, as text or JSON.
//! - `service`: `ferry serve` assembled (database, broker or an embedded
//!   one, the supervised actors, HTTP), and its shutdown.
//! - `http`: the API (`/v1/imports`, with the API's own view of a job),
//!   health and metrics endpoints.
//! - `topics`: reading a Kafka topic from its start (DLQ, status events).
//! - `localpg`: a throwaway PostgreSQL cluster for the demo, tests, benches.
//! - `locals3`: a local S3 server (s3s-fs) for the same.
//! - `sample`: deterministic sample files.

pub mod cli;
pub mod config;
pub mod http;
pub mod localpg;
pub mod locals3;
pub mod report;
pub mod sample;
pub mod service;
pub mod telemetry;
pub mod topics;
