//! File formats: compression sniffing, input limits, CSV rows to nodes,
//! Parquet rows to match suggestions, the rejects file.

pub mod compression;
pub mod csv;
pub mod limits;
pub mod parquet;
pub mod rejects;
