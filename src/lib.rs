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
//! - `cli`: one module per subcommand (`import`, `jobs`, `migrate`, `demo`).
//! - `report`: the end-of-import report, as text or JSON.
//! - `localpg`: a throwaway PostgreSQL cluster for the demo, tests, benches.
//! - `locals3`: a local S3 server (s3s-fs) for the same.
//! - `sample`: deterministic sample files.
//! - `service`: `ferry serve` assembled, and its shutdown.
//! - `http`: the API, health and metrics endpoints.
//! - `topics`: reading a Kafka topic from its start (DLQ, status events).

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
