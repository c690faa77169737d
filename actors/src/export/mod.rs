//! Exports: rows of one domain out of PostgreSQL, into files in a store.
//!
//! - `kind`: the export as a kind of job (its row, its terminal write, its
//!   pipeline, its files deleted when it fails); `request`: a request (the
//!   API's, the CLI's, the scheduler's) checked and made a spec; `store`:
//!   the API's reads of exports; `event`: `ExportCompleted`.
//! - `actors`: ExportPipeline → ExportReader (or several RangeReaders) →
//!   Exporter → ObjectWriter, and the WebhookSender.
//!
//! The plain domain code the export actors run:
//!
//! - `format`: the formats and compressions; `destination`: where files
//!   go.
//! - `object`: what can be exported (the built-in `node` and
//!   `match_suggestion`, and objects declared in `[[exports.objects]]`),
//!   with columns and types read from the catalog.
//! - `filter`: Voucherify-style filters compiled to SQL, values always bind
//!   parameters, identifiers only the object's known columns.
//! - `sql`: bound values, quoted known identifiers, and what a request
//!   that cannot run gets (`Invalid`).
//! - `plan`: a request checked against its object, and the one query an
//!   export runs (fields, tenant predicate, filters, total order, keyset
//!   continuation).
//! - `value`: PostgreSQL's binary values as text and JSON.
//! - `encode`: rows as CSV, JSON or JSONL, compressed in members that a
//!   part of a file can end on.
//! - `parquet`: rows as Parquet, typed from PostgreSQL's types.
//! - `split`: an export's rows cut into ranges of its order key, for
//!   several readers in one snapshot.
//! - `sink`: where a file's parts go (an S3 multipart upload, or a local
//!   file) and how an unfinished one is picked up again.
//! - `token`: signed download links, and webhook signatures.
//! - `webhook`: which webhook URLs may be called (no SSRF), and one
//!   delivery.

pub mod actors;
pub mod destination;
pub mod encode;
pub mod event;
pub mod filter;
pub mod format;
pub mod kind;
pub mod object;
pub mod parquet;
pub mod plan;
pub mod request;
pub mod sink;
pub mod split;
pub mod sql;
pub mod store;
pub mod token;
pub mod value;
pub mod webhook;

use serde::{Deserialize, Serialize};

use tokio_postgres::GenericClient;

pub use self::destination::Destination;
pub use self::format::{Compression, Format};
use crate::error::JobError;
use crate::job::fence::Fence;
use crate::job::{NewJob, NewRow, Spec};
use crate::settings::ExportSettings;

/// The encoder for `format`.
pub fn encoder(
    format: Format,
    compression: Compression,
    fields: &[plan::OutField],
    settings: &ExportSettings,
) -> Box<dyn encode::FileEncoder> {
    match format {
        Format::Parquet => Box::new(parquet::ParquetEncoder::new(fields, compression, settings)),
        text => Box::new(text_encoder(text, compression, fields, settings)),
    }
}

/// The encoder for a text `format` (CSV, JSON, JSONL).
pub fn text_encoder(
    format: Format,
    compression: Compression,
    fields: &[plan::OutField],
    settings: &ExportSettings,
) -> encode::TextEncoder {
    encode::TextEncoder::new(format, fields, encode::Member::new(compression, settings))
}

/// What an export was asked to do, as stored on its job: checked against
/// its object when it was created, and planned again at each attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSpec {
    /// The object's name (`node`, `match_suggestion`, a declared one).
    pub object: String,
    /// The output's columns, in order (the object's defaults when the
    /// request named none).
    pub fields: Vec<String>,
    /// `field` or `-field`; `None`: the primary key's order.
    pub order: Option<String>,
    /// The request's filters, as given.
    pub filters: Option<serde_json::Value>,
    pub format: Format,
    pub compression: Compression,
    pub destination: Destination,
    /// Who asked (a JWT's subject), for the completion event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Where the completion is POSTed, signed (checked when the export was
    /// asked for, and again before each delivery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// Who asked for it: `API`, `CLI`, `SCHEDULE`.
    #[serde(default = "default_channel")]
    pub channel: String,
    /// A metadata field's column is named by its key alone (`city`, not
    /// `metadata.city`), as an import of the file names it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bare_metadata_names: bool,
    /// Only the rows of this group not yet sent: changed since the group's
    /// watermark (the users export's; see [`sql::unsent`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsent_of: Option<uuid::Uuid>,
}

fn default_channel() -> String {
    "API".into()
}

impl Spec for ExportSpec {
    fn kind(&self) -> &'static str {
        kind::KIND
    }

    fn columns(&self, row: &mut NewRow) {
        row.set(
            "spec",
            serde_json::to_value(self).expect("a spec serialises"),
        );
    }
}

/// A request for an export.
pub type NewExport = NewJob<ExportSpec>;

/// An export: what was asked, how far it got, what it made.
#[derive(Debug, Clone)]
pub struct Export {
    pub spec: ExportSpec,
    pub checkpoint: ExportCheckpoint,
    /// Set once it ended DONE.
    pub result: Option<ExportResult>,
    /// When its files were deleted, past `exports.retention`.
    pub expired_at: Option<String>,
}

impl Export {
    /// What it made so far, as its last checkpoint says.
    pub fn checkpointed(&self) -> ExportResult {
        ExportResult {
            rows: self.checkpoint.rows,
            bytes: self.checkpoint.bytes(),
            files: self.checkpoint.files.clone(),
            data_as_of: self.checkpoint.data_as_of.clone(),
        }
    }
}

/// How an export ended.
#[derive(Debug, Clone)]
pub struct ExportOutcome {
    /// What it made (so far, when it failed).
    pub result: ExportResult,
    /// `None`: COMPLETED (the API says DONE).
    pub failure_reason: Option<String>,
    /// The snapshot every row was read from, when one was (an export that
    /// was read from one snapshot start to end: see `Resume::FromStart`).
    pub snapshot: Option<String>,
}

impl ExportOutcome {
    /// An export given up on (or cancelled): what its last checkpoint says
    /// it made, and why it ended.
    pub fn as_checkpointed(export: &Export, reason: &str) -> Self {
        Self {
            result: export.checkpointed(),
            failure_reason: Some(reason.to_string()),
            snapshot: None,
        }
    }
}

/// A file an export finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDone {
    pub location: Destination,
    pub rows: u64,
    pub bytes: u64,
}

/// A part of an unfinished file that is in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartDone {
    pub number: i32,
    /// The store's tag for the part (S3's ETag; empty for a local file).
    pub etag: String,
    pub bytes: u64,
}

/// The keyset position after a row: the text of its order key (when the
/// export has one) and of its primary key columns.
pub type Position = Vec<Option<String>>;

/// The file being written, as far as its parts are in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFile {
    pub index: usize,
    pub location: Destination,
    /// The S3 multipart upload, once started.
    pub upload_id: Option<String>,
    pub parts: Vec<PartDone>,
    /// Rows in the parts above.
    pub rows: u64,
    /// Where the file began: rows before it, and the position after the
    /// last of them (a file that cannot be continued is written again from
    /// here).
    pub start_rows: u64,
    pub start: Option<Position>,
}

impl OpenFile {
    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }
}

/// How far an export got: every row before `position` is in a finished
/// file or a stored part of the open one. A restart continues after it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportCheckpoint {
    /// When the first attempt's snapshot was taken.
    pub data_as_of: Option<String>,
    /// The last attempt's snapshot (`pg_current_snapshot()`), for an
    /// export that marks what it read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Rows every snapshot so far counted (the progress total).
    pub total: u64,
    pub rows: u64,
    pub position: Option<Position>,
    pub files: Vec<FileDone>,
    pub open: Option<OpenFile>,
}

impl ExportCheckpoint {
    /// Bytes in finished files and stored parts.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum::<u64>()
            + self.open.as_ref().map_or(0, OpenFile::bytes)
    }
}

/// What the ObjectWriter stored, in the order it stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A file began (or goes on): its upload is open.
    Begun(OpenFile),
    /// The next part of the open file, with the rows that end in it and
    /// the position after the last of them.
    Part {
        part: PartDone,
        rows: u64,
        position: Option<Position>,
    },
    /// The open file is complete.
    File {
        file: FileDone,
        start_rows: u64,
        position: Option<Position>,
    },
}

impl ExportCheckpoint {
    /// The checkpoint once `stored` is in the store; returns the rows that
    /// it made durable. A file that can be continued counts its rows with
    /// each part; one that cannot (Parquet, whose footer lists every row
    /// group) once it is complete. `Err`: a part of no open file.
    pub fn apply(&mut self, stored: Stored, resumes_mid_file: bool) -> Result<u64, String> {
        match stored {
            Stored::Begun(open) => {
                self.open = Some(open);
                Ok(0)
            }
            Stored::Part {
                part,
                rows,
                position,
            } => {
                let open = self.open.as_mut().ok_or("a part of no open file")?;
                open.parts.push(part);
                open.rows += rows;
                if !resumes_mid_file {
                    return Ok(0);
                }
                self.rows += rows;
                self.position = position;
                Ok(rows)
            }
            Stored::File {
                file,
                start_rows,
                position,
            } => {
                let rows = file.rows;
                if !resumes_mid_file {
                    self.rows = start_rows + rows;
                    self.position = position;
                }
                self.open = None;
                self.files.push(file);
                Ok(if resumes_mid_file { 0 } else { rows })
            }
        }
    }
}

/// Records an export's progress: what is stored, where to go on from, and
/// the rows its row shows.
pub async fn save(
    c: &impl GenericClient,
    fence: &Fence,
    cp: &ExportCheckpoint,
) -> Result<(), JobError> {
    let (rows, total) = (cp.rows as i64, cp.total as i64);
    fence
        .checkpoint(c, cp, |row| {
            row.set("processed_rows", rows);
            row.set("total_rows", total);
        })
        .await
        .map_err(JobError::from)
}

/// What a finished export made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportResult {
    pub files: Vec<FileDone>,
    pub rows: u64,
    pub bytes: u64,
    /// When the snapshot the rows were read from was taken (the first
    /// one, for an export resumed after a restart).
    pub data_as_of: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored_parts(resumes: bool) -> (ExportCheckpoint, Vec<u64>) {
        let location = Destination::Local { path: "/x".into() };
        let open = OpenFile {
            index: 0,
            location: location.clone(),
            upload_id: None,
            parts: Vec::new(),
            rows: 0,
            start_rows: 0,
            start: None,
        };
        let part = |n: i32| PartDone {
            number: n,
            etag: String::new(),
            bytes: 10,
        };
        let at = |k: &str| Some(vec![Some(k.to_string())]);
        let mut cp = ExportCheckpoint::default();
        let counted = [
            Stored::Begun(open),
            Stored::Part {
                part: part(1),
                rows: 3,
                position: at("c"),
            },
            Stored::Part {
                part: part(2),
                rows: 2,
                position: at("e"),
            },
            Stored::File {
                file: FileDone {
                    location,
                    rows: 5,
                    bytes: 20,
                },
                start_rows: 0,
                position: at("e"),
            },
        ]
        .into_iter()
        .map(|s| cp.apply(s, resumes).unwrap())
        .collect();
        (cp, counted)
    }

    #[test]
    fn rows_count_with_each_part_or_once_the_file_is_whole() {
        let (text, counted) = stored_parts(true);
        assert_eq!(counted, [0, 3, 2, 0]);
        assert_eq!((text.rows, text.files.len(), text.open), (5, 1, None));
        assert_eq!(text.position, Some(vec![Some("e".into())]));
        let (parquet, counted) = stored_parts(false);
        assert_eq!(counted, [0, 0, 0, 5], "a Parquet file counts when whole");
        assert_eq!(parquet.rows, 5);
        assert_eq!(parquet.bytes(), 20);
        let mut none = ExportCheckpoint::default();
        let stray = Stored::Part {
            part: PartDone {
                number: 1,
                etag: String::new(),
                bytes: 1,
            },
            rows: 1,
            position: None,
        };
        assert!(none.apply(stray, true).is_err());
    }
}
