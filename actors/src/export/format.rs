//! The file formats an export writes, and how a text format is
//! compressed.

use serde::{Deserialize, Serialize};

/// A file format an export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// RFC 4180, with a header row.
    Csv,
    /// One JSON array of objects, streamed.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// Apache Parquet, typed columns, compressed inside (zstd).
    Parquet,
}

impl Format {
    pub const ALL: [Self; 4] = [Self::Csv, Self::Json, Self::Jsonl, Self::Parquet];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Json => "json",
            Self::Jsonl => "jsonl",
            Self::Parquet => "parquet",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv",
            Self::Json => "application/json",
            Self::Jsonl => "application/x-ndjson",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// Whether an unfinished file can be continued after a restart: a
    /// Parquet file's footer describes every row group, so a Parquet file
    /// is written again from its start.
    pub fn resumes_mid_file(self) -> bool {
        !matches!(self, Self::Parquet)
    }
}

/// How a text format is compressed (Parquet compresses inside).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    pub const ALL: [Self; 3] = [Self::Gzip, Self::Zstd, Self::None];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
            Self::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Gzip => ".gz",
            Self::Zstd => ".zst",
            Self::None => "",
        }
    }
}
