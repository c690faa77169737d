//! End-to-end tests of the `ferry` binary against a real PostgreSQL.

mod harness;

mod api_limits;
mod bad_input;
mod browser;
mod cli;
mod contract;
mod data_contracts;
mod export_filters;
mod exports;
mod exports_api;
mod faults;
mod hardening;
mod import_nodes;
mod job_queue;
mod limits;
mod matches;
mod multi_file;
mod operations;
mod parallel_exports;
mod reference_lists;
mod s3;
mod service;
mod service_faults;
mod sync;
mod users_export;
mod users_watermark;
mod webhooks;
