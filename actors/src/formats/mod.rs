//! File formats: compression sniffing, input limits, CSV rows to nodes,
//! the rejects file.

pub mod compression;
pub mod csv;
pub mod limits;
pub mod rejects;
