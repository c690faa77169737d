//! Seed 000's users export: at each tick of a schedule, every enabled
//! matching group's users not yet sent to the matching engine go out, and
//! exactly those count as sent.
//!
//! - A COST_BASED group's users become a gzip CSV (the reference id, then
//!   metadata columns) in the store, announced by one [`FileMessage`]: seed
//!   004's `NodeExchange`, so another ferry can import the file as it is.
//! - A NON_COST_BASED group's reference ids go in [`ids::IdsMessage`]s,
//!   split by [`ids::IdChunker`] so none passes its limits.
//!
//! What a group has been sent is a watermark: the snapshot of its last
//! delivered export, one row of `group_watermarks` whatever the group's
//! size. A user is unsent when the transaction that last changed it (its
//! `changed_xid`) is not visible in that snapshot; an index on it finds
//! them, so a run reads the users changed since the last one, not the
//! group ([`crate::export::sql::unsent`]).
//!
//! Each group's export is a job of the one queue, of one of two kinds
//! (`users_file`, `users_refs`: [`kind`]), over the export pipeline. Its
//! rows are read from one snapshot (a retry writes its output again from
//! its start, from a new one), and its terminal write ([`terminal`])
//! makes that snapshot the group's watermark: a user an import changed
//! meanwhile stays unsent and goes out at the next tick, with its change.
//! `ferry groups reset` clears a watermark ([`crate::pg::groups::reset`]).
//!
//! - `schedule`: when the export fires, and what one tick starts.
//! - `ids`: reference ids packed into messages, as an export encoder;
//!   `pending`: where they wait until the terminal write releases them.
//! - `actors`: the ExportScheduler.

pub mod actors;
pub mod ids;
pub mod kind;
pub mod pending;
pub mod schedule;
pub mod terminal;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::export::object::Catalog;
use crate::export::plan::{Invalid, EVERY_METADATA_KEY};
use crate::export::request::{Channel, ExportRequest};
use crate::export::{Compression, Destination, ExportSpec, Format};
use crate::job::{NewJob, NewRow, Spec};
use crate::service::kafka::FRAMING_BYTES;
use crate::settings::{ExportSettings, StorageSettings, UsersExportSettings};

/// How a group's users go to the matching engine (seed 000; read in any
/// case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GroupType {
    /// A file in the store, and a message pointing at it.
    CostBased,
    /// The reference ids themselves, in messages.
    NonCostBased,
}

impl GroupType {
    pub const ALL: [Self; 2] = [Self::CostBased, Self::NonCostBased];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CostBased => "COST_BASED",
            Self::NonCostBased => "NON_COST_BASED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// What a group's export delivers, stored on its spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersDelivery {
    /// The tick this export belongs to.
    pub run_id: Uuid,
    /// The group as the imports name it, and its UUID.
    pub group_key: String,
    pub group_id: Uuid,
    pub group_type: GroupType,
    /// Where the messages go, and where one the broker refuses for good
    /// goes.
    pub topic: String,
    pub dead_letter_topic: String,
    /// A NON_COST_BASED message's limits.
    pub max_ids_per_message: usize,
    pub max_message_bytes: usize,
}

impl UsersDelivery {
    /// The key of every message of the group: one partition keeps their
    /// order.
    pub fn message_key(&self, domain: Uuid) -> String {
        format!("{domain}:{}", self.group_key)
    }
}

/// What a group's export was asked: the export of its unsent users, and
/// what it delivers. Stored as `{"export": …, "users": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersSpec {
    pub export: ExportSpec,
    pub users: UsersDelivery,
}

impl Spec for UsersSpec {
    fn kind(&self) -> &'static str {
        name(self.users.group_type)
    }

    fn columns(&self, row: &mut NewRow) {
        row.set(
            "spec",
            serde_json::to_value(self).expect("a spec serialises"),
        );
    }
}

/// A request for a group's export.
pub type NewUsersExport = NewJob<UsersSpec>;

/// A COST_BASED group's export: a file.
pub const FILE: &str = "users_file";
/// A NON_COST_BASED group's export: its reference ids, in messages.
pub const REFS: &str = "users_refs";

/// The `kind` of a group's export.
pub fn name(group_type: GroupType) -> &'static str {
    match group_type {
        GroupType::CostBased => FILE,
        GroupType::NonCostBased => REFS,
    }
}

/// `('users_file', 'users_refs')`, for SQL.
pub fn sql_list() -> String {
    format!("('{FILE}', '{REFS}')")
}

/// A group's users export: the export of its unsent users, and what it
/// delivers.
#[derive(Debug, Clone)]
pub struct Users {
    pub export: crate::export::Export,
    pub delivery: UsersDelivery,
}

/// A group's export, as the scheduler makes it.
#[derive(Debug, Clone)]
pub struct GroupExport<'a> {
    pub domain_id: Uuid,
    pub group_key: &'a str,
    pub group_id: Uuid,
    pub group_type: GroupType,
    pub run_id: Uuid,
    /// The file's metadata columns (COST_BASED); none: every key the
    /// group's unsent users have when the export reads them.
    pub columns: Vec<String>,
}

/// What a group's export needs of the settings.
pub struct Planned<'a> {
    pub catalog: &'a Catalog,
    pub users: &'a UsersExportSettings,
    pub exports: &'a ExportSettings,
    pub storage: &'a StorageSettings,
    /// The broker's limit; a message's payload keeps [`FRAMING_BYTES`] of
    /// it for the rest.
    pub max_message_bytes: usize,
}

impl GroupExport<'_> {
    /// The export's spec: the group's unsent users, in reference id order,
    /// from one snapshot; export `id` of its domain.
    pub fn spec(&self, planned: &Planned<'_>, id: Uuid) -> Result<UsersSpec, Invalid> {
        let users = planned.users;
        let delivery = UsersDelivery {
            run_id: self.run_id,
            group_key: self.group_key.to_string(),
            group_id: self.group_id,
            group_type: self.group_type,
            topic: users.topic.clone(),
            dead_letter_topic: users.dlq_topic.clone(),
            max_ids_per_message: users.max_ids_per_message.max(1),
            max_message_bytes: planned.max_message_bytes.saturating_sub(FRAMING_BYTES),
        };
        let mut request = ExportRequest {
            fields: vec!["reference_id".to_string()],
            order: Some("reference_id".into()),
            unsent_of: Some(self.group_id),
            bare_metadata_names: true,
            ..ExportRequest::of("node", Channel::Schedule)
        };
        match self.group_type {
            GroupType::CostBased => {
                match self.columns.is_empty() {
                    true => request.fields.push(EVERY_METADATA_KEY.into()),
                    false => request
                        .fields
                        .extend(self.columns.iter().map(|c| format!("metadata.{c}"))),
                }
                let key = format!(
                    "{}/{}/{}.csv.gz",
                    self.domain_id,
                    folder(self.group_key, self.group_id),
                    self.run_id
                );
                let key = match users.prefix.trim_matches('/') {
                    "" => key,
                    prefix => format!("{prefix}/{key}"),
                };
                request.destination = Some(match planned.storage.configured() {
                    true => Destination::Store {
                        bucket: users.bucket.clone(),
                        key,
                    },
                    false => Destination::Local {
                        path: planned.exports.local_dir().join(key).display().to_string(),
                    },
                });
                request.format = Some(Format::Csv);
                request.compression = Some(Compression::Gzip);
            }
            GroupType::NonCostBased => {
                request.destination = Some(Destination::Topic {
                    topic: users.topic.clone(),
                });
                request.format = Some(Format::Json);
                request.compression = Some(Compression::None);
            }
        }
        let export = request.into_spec(
            planned.catalog,
            planned.exports,
            planned.storage,
            self.domain_id,
            id,
        )?;
        Ok(UsersSpec {
            export,
            users: delivery,
        })
    }
}

/// The most bytes of a group's key in its folder's name (a name has at
/// most 255 bytes, and a key may have 255 characters of four bytes).
const FOLDER_KEY_BYTES: usize = 100;

/// A group's folder: its key when that is a safe, short path segment, else
/// the key made safe, cut to [`FOLDER_KEY_BYTES`], and the start of its
/// UUID (so `a/b` and `a_b`, or two long keys alike at their start, do not
/// share a file).
fn folder(key: &str, group_id: Uuid) -> String {
    let safe = file_safe(key);
    match safe == key && safe.len() <= FOLDER_KEY_BYTES {
        true => safe,
        false => format!(
            "{}-{}",
            &safe[..safe.len().min(FOLDER_KEY_BYTES)],
            &group_id.simple().to_string()[..8]
        ),
    }
}

/// A group key as one path segment: anything but `A-Za-z0-9._-` becomes
/// `_` (the key itself is in the message), so the segment is ASCII.
fn file_safe(key: &str) -> String {
    let safe: String = key
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    match safe.trim_start_matches('.') {
        "" => "group".into(),
        s => s.to_string(),
    }
}

/// A COST_BASED group's file, announced: seed 004's `NodeExchange` (which
/// ferry's imports read) and what the run adds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileMessage {
    pub domain_id: Uuid,
    pub group_id: String,
    pub file_path: String,
    pub file_name: String,
    pub content_type: String,
    pub group_type: GroupType,
    pub rows: u64,
    pub bytes: u64,
    pub run_id: Uuid,
    pub exported_at: String,
}

/// Now, as the messages say it (RFC 3339, UTC, milliseconds).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_types_read_in_any_case() {
        assert_eq!(GroupType::parse("cost_based"), Some(GroupType::CostBased));
        assert_eq!(
            GroupType::parse(" Non_Cost_Based "),
            Some(GroupType::NonCostBased)
        );
        assert_eq!(GroupType::parse("PREMIUM"), None);
    }

    #[test]
    fn group_keys_become_safe_path_segments() {
        assert_eq!(file_safe("mentors 2024/../x"), "mentors_2024_.._x");
        assert_eq!(file_safe(".."), "group");
        let id = |k: &str| crate::job::group_uuid(k);
        assert_eq!(folder("mentors-2024", id("mentors-2024")), "mentors-2024");
        assert_ne!(folder("a/b", id("a/b")), folder("a_b", id("a_b")));
        assert!(folder("a/b", id("a/b")).starts_with("a_b-"));
        // The longest keys, of four-byte characters or of ASCII, make a
        // folder a file system takes, each its own.
        let emoji = "🦀".repeat(255);
        let long = format!("{}x", "a".repeat(254));
        let other = format!("{}y", "a".repeat(254));
        for key in [&emoji, &long, &other] {
            assert!(folder(key, id(key)).len() <= FOLDER_KEY_BYTES + 9, "{key}");
        }
        assert_ne!(folder(&long, id(&long)), folder(&other, id(&other)));
    }
}
