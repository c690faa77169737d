//! Seed 000's users export: at each tick of a schedule, every enabled
//! matching group's users not yet sent to the matching engine go out, and
//! exactly those are marked sent.
//!
//! - A COST_BASED group's users become a gzip CSV (the reference id, then
//!   metadata columns) in the store, announced by one [`FileMessage`]: seed
//!   004's `NodeExchange`, so another ferry can import the file as it is.
//! - A NON_COST_BASED group's reference ids go in [`IdsMessage`]s, split by
//!   [`IdChunker`] so none passes its limits.
//!
//! Each group's export is a job of the one queue. Its rows are read from
//! one snapshot (a retry writes the file again from its start, from a new
//! one), and its terminal write marks sent exactly the row versions that
//! snapshot saw ([`MARK_SENT`]): a user an import changed meanwhile stays
//! unsent and goes out at the next tick, with its change.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Compression, Destination, ExportSpec, Format};
use crate::kafka::FRAMING_BYTES;
use crate::settings::{ExportSettings, StorageSettings, UsersExportSettings};

/// The `channel` of a scheduled export.
pub const CHANNEL: &str = "SCHEDULE";

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
    /// A COST_BASED file's columns are every metadata key the group's
    /// unsent users have, read in the export's own snapshot (no columns
    /// were configured).
    #[serde(default)]
    pub all_keys: bool,
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

/// A group's export, as the scheduler makes it.
#[derive(Debug, Clone)]
pub struct GroupExport<'a> {
    pub domain_id: Uuid,
    pub group_key: &'a str,
    pub group_type: GroupType,
    pub run_id: Uuid,
    /// The file's metadata columns (COST_BASED); none: every key the
    /// group's unsent users have when the export reads them.
    pub columns: Vec<String>,
}

impl GroupExport<'_> {
    /// The export's spec: the group's unsent users, in reference id order,
    /// from one snapshot. `max_message_bytes` is the broker's limit; a
    /// message's payload keeps [`FRAMING_BYTES`] of it for the rest.
    pub fn spec(
        &self,
        users: &UsersExportSettings,
        exports: &ExportSettings,
        storage: &StorageSettings,
        max_message_bytes: usize,
    ) -> ExportSpec {
        let group_id = crate::job::group_uuid(self.group_key);
        let delivery = UsersDelivery {
            run_id: self.run_id,
            group_key: self.group_key.to_string(),
            group_id,
            group_type: self.group_type,
            topic: users.topic.clone(),
            dead_letter_topic: users.dlq_topic.clone(),
            all_keys: self.group_type == GroupType::CostBased && self.columns.is_empty(),
            max_ids_per_message: users.max_ids_per_message.max(1),
            max_message_bytes: max_message_bytes.saturating_sub(FRAMING_BYTES),
        };
        let mut fields = vec!["reference_id".to_string()];
        let (format, compression, destination) = match self.group_type {
            GroupType::CostBased => {
                fields.extend(self.columns.iter().map(|c| format!("metadata.{c}")));
                let key = format!(
                    "{}/{}/{}.csv.gz",
                    self.domain_id,
                    folder(self.group_key, group_id),
                    self.run_id
                );
                let key = match users.prefix.trim_matches('/') {
                    "" => key,
                    prefix => format!("{prefix}/{key}"),
                };
                let destination = if storage.configured() {
                    Destination::Store {
                        bucket: users.bucket.clone(),
                        key,
                    }
                } else {
                    Destination::Local {
                        path: exports.local_dir().join(key).display().to_string(),
                    }
                };
                (Format::Csv, Compression::Gzip, destination)
            }
            GroupType::NonCostBased => (
                Format::Json,
                Compression::None,
                Destination::Topic {
                    topic: users.topic.clone(),
                },
            ),
        };
        ExportSpec {
            object: "node".into(),
            fields,
            order: Some("reference_id".into()),
            filters: Some(serde_json::json!({
                "group_id": {"conditions": {"$is": [group_id.to_string()]}},
                "processed": {"conditions": {"$is": [false]}},
            })),
            format,
            compression,
            destination,
            user_id: None,
            webhook_url: None,
            channel: CHANNEL.into(),
            users: Some(delivery),
        }
    }
}

/// A group's folder: its key when that is a safe path segment, else the
/// key made safe and the start of its UUID (so `a/b` and `a_b` do not
/// share a file).
fn folder(key: &str, group_id: Uuid) -> String {
    let safe = file_safe(key);
    match safe == key {
        true => safe,
        false => format!("{safe}-{}", &group_id.simple().to_string()[..8]),
    }
}

/// A group key as one path segment: anything but `A-Za-z0-9._-` becomes
/// `_` (the key itself is in the message).
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

/// How an [`IdsMessage`]'s `parts` is written while its export still
/// runs (`null`: not known yet). The terminal write, which knows how many
/// messages there are, writes the number in its place. It cannot occur
/// inside an id: quotes in a JSON string are escaped.
pub const PARTS_UNKNOWN: &str = "\"parts\":null";

/// Part of a NON_COST_BASED group's reference ids: seed 004's reference
/// list (`referenceIds`), numbered within the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdsMessage {
    pub domain_id: Uuid,
    pub group_id: String,
    pub group_type: GroupType,
    pub run_id: Uuid,
    pub exported_at: String,
    /// From 1.
    pub part: u32,
    /// Set by the terminal write (`null` until then).
    pub parts: Option<u32>,
    pub reference_ids: Vec<String>,
}

/// Packs reference ids into messages of at most `max_ids` ids and
/// `max_bytes` bytes of JSON, in order.
pub struct IdChunker {
    head: IdsMessage,
    max_ids: usize,
    max_bytes: usize,
    /// The JSON size of `head` with its ids (and a 10-digit `parts`).
    bytes: usize,
}

/// One id too large for any message.
#[derive(Debug, thiserror::Error)]
#[error("reference id `{0}` does not fit in a message of {1} bytes")]
pub struct TooLarge(pub String, pub usize);

impl IdChunker {
    /// Messages like `head` (whose ids are dropped), numbered from its
    /// `part`.
    pub fn new(mut head: IdsMessage, max_ids: usize, max_bytes: usize) -> Self {
        head.reference_ids.clear();
        let mut chunker = Self {
            head,
            max_ids: max_ids.max(1),
            max_bytes,
            bytes: 0,
        };
        chunker.bytes = chunker.empty_size();
        chunker
    }

    /// The JSON size of `head` with no ids; `null` (`parts`) becomes a
    /// number of up to 10 digits.
    fn empty_size(&self) -> usize {
        serde_json::to_string(&self.head)
            .expect("a message serialises")
            .len()
            + 6
    }

    /// Adds `id`; a message that is full comes back (the id then begins
    /// the next one).
    pub fn push(&mut self, id: String) -> Result<Option<String>, TooLarge> {
        let size = id_size(&id);
        let fits =
            |c: &Self| c.head.reference_ids.len() < c.max_ids && c.bytes + size <= c.max_bytes;
        let mut full = None;
        if !fits(self) {
            if self.head.reference_ids.is_empty() {
                return Err(TooLarge(id, self.max_bytes));
            }
            full = self.take();
            if !fits(self) {
                return Err(TooLarge(id, self.max_bytes));
            }
        }
        self.bytes += size;
        self.head.reference_ids.push(id);
        Ok(full)
    }

    /// The message being filled, if it holds any id; the next one is
    /// numbered after it.
    pub fn take(&mut self) -> Option<String> {
        if self.head.reference_ids.is_empty() {
            return None;
        }
        let json = serde_json::to_string(&self.head).expect("a message serialises");
        self.head.reference_ids.clear();
        self.head.part += 1;
        self.bytes = self.empty_size();
        Some(json)
    }

    /// Messages taken so far.
    pub fn parts(&self) -> u32 {
        self.head.part - 1
    }
}

/// Now, as the messages say it (RFC 3339, UTC, milliseconds).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An id's bytes in the JSON list: quoted, escaped as serde_json escapes
/// (`\"`, `\\`, the short escapes, `\u00XX` for other control
/// characters), and a comma. Counted, not serialised: it runs once per id.
fn id_size(id: &str) -> usize {
    let escaped: usize = id
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum();
    escaped + 3
}

/// Every metadata key the group's unsent users have, in order (keys that
/// are not `a-z0-9_`, which no import writes, are left out). Parameters:
/// `$1` the domain, `$2` the group. The keys are made distinct before they
/// are checked: checked per row, the query took 26 s instead of 2 s over a
/// million users.
pub const METADATA_KEYS: &str = "SELECT k FROM (
         SELECT DISTINCT jsonb_object_keys(metadata) AS k FROM nodes
         WHERE domain_id = $1 AND group_id = $2 AND NOT processed) keys
     WHERE k ~ '^[a-z0-9_]{1,128}$' AND k <> 'reference_id'
     ORDER BY k";

/// Marks sent the group's users whose current row version is the one the
/// export's snapshot (`$snapshot`) saw: a user changed since (by an import)
/// has a newer version, is left unsent, and goes out at the next tick.
/// Parameters: `$domain`, `$group`, `$snapshot` (a `pg_snapshot` as text).
pub fn mark_sent_sql(domain: &str, group: &str, snapshot: &str) -> String {
    format!(
        "UPDATE nodes n SET processed = true
         FROM (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS now_xid) x
         WHERE n.domain_id = {domain} AND n.group_id = {group} AND NOT n.processed
           AND pg_visible_in_snapshot(ferry_full_xid(n.xmin, x.now_xid), {snapshot}::text::pg_snapshot)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> IdsMessage {
        IdsMessage {
            domain_id: Uuid::nil(),
            group_id: "g".into(),
            group_type: GroupType::NonCostBased,
            run_id: Uuid::nil(),
            exported_at: "2026-12-01T00:00:00Z".into(),
            part: 1,
            parts: None,
            reference_ids: Vec::new(),
        }
    }

    fn chunk(ids: &[String], max_ids: usize, max_bytes: usize) -> Vec<IdsMessage> {
        let mut c = IdChunker::new(head(), max_ids, max_bytes);
        let mut out: Vec<String> = Vec::new();
        for id in ids {
            out.extend(c.push(id.clone()).unwrap());
        }
        out.extend(c.take());
        out.iter()
            .map(|m| serde_json::from_str(m).unwrap())
            .collect()
    }

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
    fn ids_split_by_count_and_by_bytes_keep_their_order() {
        let ids: Vec<String> = (0..1000).map(|i| format!("user-{i:05}\"é")).collect();
        for (max_ids, max_bytes) in [(100, 1 << 20), (1000, 2000), (7, 300)] {
            let parts = chunk(&ids, max_ids, max_bytes);
            let mut seen = Vec::new();
            for (i, m) in parts.iter().enumerate() {
                assert_eq!(m.part as usize, i + 1);
                assert!(m.reference_ids.len() <= max_ids);
                let mut json = serde_json::to_string(m).unwrap();
                json = json.replace(PARTS_UNKNOWN, "\"parts\":4294967295");
                assert!(json.len() <= max_bytes, "{} > {max_bytes}", json.len());
                seen.extend(m.reference_ids.iter().cloned());
            }
            assert_eq!(seen, ids, "every id once, in order");
        }
    }

    #[test]
    fn an_id_is_sized_as_serde_json_writes_it() {
        for id in ["u1", "a\"b\\c", "tab\there\u{1}\u{7f}", "é中\n"] {
            let written = serde_json::to_string(id).unwrap().len() + 1;
            assert_eq!(id_size(id), written, "{id:?}");
        }
    }

    #[test]
    fn an_id_that_fits_no_message_is_an_error() {
        let mut c = IdChunker::new(head(), 10, 200);
        assert!(c.push("x".repeat(300)).is_err());
        assert!(c.take().is_none());
    }

    #[test]
    fn group_keys_become_safe_path_segments() {
        assert_eq!(file_safe("mentors 2024/../x"), "mentors_2024_.._x");
        assert_eq!(file_safe(".."), "group");
        let id = |k: &str| crate::job::group_uuid(k);
        assert_eq!(folder("mentors-2024", id("mentors-2024")), "mentors-2024");
        assert_ne!(folder("a/b", id("a/b")), folder("a_b", id("a_b")));
        assert!(folder("a/b", id("a/b")).starts_with("a_b-"));
    }
}
