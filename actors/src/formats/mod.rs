//! File formats: compression sniffing, CSV rows to nodes, the rejects file.

pub mod compression;
pub mod csv;
pub mod rejects;
