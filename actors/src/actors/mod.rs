//! The actors, one per file. Each file exports `NAME` (its `actor` label),
//! `Msg`, `Args`, `State` and a `…Ref` alias.

pub mod batch_accumulator;
pub mod copy_writer;
pub mod csv_reader;
pub mod dlq;
pub mod export_pipeline;
pub mod export_reader;
pub mod export_scheduler;
pub mod exporter;
pub mod file_fetcher;
pub mod job_coordinator;
pub mod job_pipeline;
pub mod job_sweeper;
pub mod kafka_ingress;
pub mod object_writer;
pub mod parquet_reader;
pub mod refs_exporter;
pub mod service;
pub mod status_publisher;
pub mod webhook_sender;
