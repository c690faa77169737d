//! Jobs: where a job stands, and how it ends, for every kind of job and
//! knowing none of them.
//!
//! The job row in PostgreSQL is the source of truth. One module writes it,
//! [`lifecycle`] (its terminal statement composed in [`terminal`]), and one
//! reads it, [`store`]; an attempt's pipeline writes its progress through
//! its [`fence`]. What a kind adds (its columns, its checkpoint, its
//! terminal write, its pipeline) it says through [`Kind`]; the list of
//! kinds is `crate::kinds`. Every kind of job lives the same life:
//!
//! ```text
//!            claim (a lease)        start
//! PENDING ─────────────────▶ held ─────────▶ RUNNING ──finish──▶ COMPLETED | FAILED
//!                             ▲                 │
//!                             └──── fail ───────┘   (a retriable failure: the
//!                                                    next attempt resumes from
//!                                                    the checkpoint)
//! held ──give up──▶ FAILED            PENDING | RUNNING ──cancel──▶ CANCELLED
//! ```
//!
//! A lease that runs out (its instance died) makes the job claimable again,
//! RUNNING, with its checkpoint. Every write but `cancel` is fenced on the
//! lease: an instance that stalled past its lease changes nothing.

pub mod fence;
pub mod kind;
pub mod lifecycle;
pub mod store;
pub mod terminal;

use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use crate::vocab::JobStatus;
pub use kind::{Announce, Family, Kind, NewRow, Report, Run, Spawned, Spec};

/// Namespace for group ids that are not UUIDs: such a `groupId` maps to
/// `uuid_v5(GROUP_NAMESPACE, groupId)`, the same on every run.
pub const GROUP_NAMESPACE: Uuid = Uuid::from_u128(0x6a1c_9f0e_3b7d_4c25_9e41_8f2b_7d3a_1c05);

/// The most characters a group key (seed `groupId`) has.
pub const MAX_GROUP_KEY_CHARS: usize = 255;

/// A group key as every channel takes it (an import's `groupId`, `ferry
/// groups`, `/v1/groups`): trimmed, 1 to [`MAX_GROUP_KEY_CHARS`]
/// characters, no control characters.
pub fn group_key(raw: &str) -> Result<&str, String> {
    let key = raw.trim();
    if key.is_empty()
        || key.chars().count() > MAX_GROUP_KEY_CHARS
        || key.chars().any(char::is_control)
    {
        return Err(format!(
            "a group key is 1 to {MAX_GROUP_KEY_CHARS} characters, not all blank, without control characters"
        ));
    }
    Ok(key)
}

/// A seed `groupId` as a UUID: itself if it parses, else its UUIDv5.
pub fn group_uuid(group_key: &str) -> Uuid {
    Uuid::parse_str(group_key.trim())
        .unwrap_or_else(|_| Uuid::new_v5(&GROUP_NAMESPACE, group_key.trim().as_bytes()))
}

/// A lease owner name for this process: `role@host:pid:random`, unique
/// even when a pid is reused.
pub fn lease_owner(role: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let tag = Uuid::new_v4().simple().to_string();
    format!("{role}@{host}:{}:{}", std::process::id(), &tag[..8])
}

/// What a request asked for (of a kind: `nodes`, `matches`, `export`), as
/// a digest: kept with its idempotency key, so the same key with another
/// request is told apart from a retry. A JSON payload is digested as what
/// it says, not how it is spelled: the same request with other whitespace
/// or its keys in another order is the same request.
pub fn digest(kind: &str, payload: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(kind.as_bytes());
    hash.update([0]);
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(value) => {
            let mut text = Vec::with_capacity(payload.len());
            canonical(&value, &mut text);
            hash.update(&text);
        }
        Err(_) => hash.update(payload),
    }
    format!("sha256:{}", hex::encode(hash.finalize()))
}

/// A JSON value written compactly with every object's keys sorted.
fn canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    fn write(v: &impl serde::Serialize, out: &mut Vec<u8>) {
        serde_json::to_writer(out, v).expect("a JSON value writes to memory");
    }
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(key, out);
                out.push(b':');
                canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write(scalar, out),
    }
}

/// A job row: the life every kind shares, and `work`, the kind's own part
/// (what it was asked, how far it got, what it made).
#[derive(Debug, Clone)]
pub struct Job<K> {
    pub id: Uuid,
    pub status: JobStatus,
    pub domain_id: Uuid,
    pub attempts: i32,
    pub failure_reason: Option<String>,
    /// Where the terminal status event goes, if anywhere.
    pub status_topic: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Seconds from the first attempt's start to the finish (or to now,
    /// while running).
    pub duration_secs: Option<f64>,
    pub work: K,
}

impl<K> Job<K> {
    /// The same job with its kind's part turned into another view of it
    /// (a kind's own type out of the list of kinds, and back).
    pub fn map<V>(self, f: impl FnOnce(K) -> V) -> Job<V> {
        Job {
            id: self.id,
            status: self.status,
            domain_id: self.domain_id,
            attempts: self.attempts,
            failure_reason: self.failure_reason,
            status_topic: self.status_topic,
            created_at: self.created_at,
            updated_at: self.updated_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            duration_secs: self.duration_secs,
            work: f(self.work),
        }
    }
}

impl<K> Job<K> {
    /// The same job, with `work` as its kind's part.
    pub fn with<V>(&self, work: V) -> Job<V> {
        Job {
            id: self.id,
            status: self.status,
            domain_id: self.domain_id,
            attempts: self.attempts,
            failure_reason: self.failure_reason.clone(),
            status_topic: self.status_topic.clone(),
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
            started_at: self.started_at.clone(),
            finished_at: self.finished_at.clone(),
            duration_secs: self.duration_secs,
            work,
        }
    }
}

impl<K: Kind> Job<K> {
    /// Its `kind` column: the metric label and the log's `kind` field.
    pub fn kind(&self) -> &'static str {
        self.work.name()
    }
}

/// A request for a job: what every kind's row starts with, and `spec`,
/// what its kind was asked.
#[derive(Debug, Clone)]
pub struct NewJob<S> {
    /// The job's id, chosen first (an export's default file names hold it).
    pub id: Uuid,
    pub domain_id: Uuid,
    /// A second request with the same key gets the first one's job.
    pub idempotency_key: Option<String>,
    /// A digest of the request, kept with its key: a second request with
    /// the key but another digest is a conflict, not the first one again.
    pub request_hash: Option<String>,
    /// Where the job's terminal status event is published; `None`: nowhere.
    pub status_topic: Option<String>,
    /// Where the request came from (a Kafka message's coordinates, the API).
    pub origin: Option<serde_json::Value>,
    pub spec: S,
}

impl<S> NewJob<S> {
    /// A request of `domain_id` for `spec`, with a new (time-ordered) id.
    pub fn new(domain_id: Uuid, spec: S) -> Self {
        Self {
            id: Uuid::now_v7(),
            domain_id,
            idempotency_key: None,
            request_hash: None,
            status_topic: None,
            origin: None,
            spec,
        }
    }

    /// The same request, deduplicated by `key`.
    pub fn keyed(self, key: String) -> Self {
        Self {
            idempotency_key: Some(key),
            ..self
        }
    }

    /// The same request, with a digest of what it asked for.
    pub fn hashed(self, hash: String) -> Self {
        Self {
            request_hash: Some(hash),
            ..self
        }
    }

    /// The same request, announcing its end on `topic`.
    pub fn reporting_to(self, topic: String) -> Self {
        Self {
            status_topic: Some(topic),
            ..self
        }
    }

    /// The same request, saying where it came from.
    pub fn from_origin(self, origin: serde_json::Value) -> Self {
        Self {
            origin: Some(origin),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_map_to_uuids() {
        let u = "0b5c3f4e-8f0a-4c1e-9f6e-2d7a4b1c3e5f";
        assert_eq!(group_uuid(u).to_string(), u);
        assert_eq!(group_uuid("mentors-2024"), group_uuid(" mentors-2024 "));
        assert_ne!(group_uuid("mentors-2024"), group_uuid("mentees-2024"));
        assert_eq!(group_uuid("mentors-2024").get_version_num(), 5);
    }

    #[test]
    fn a_digest_is_of_the_kind_and_what_the_request_says() {
        assert_eq!(
            digest("nodes", br#"{"a": 1, "b": [2, {"c": "d"}]}"#),
            digest("nodes", b"{ \"b\":[2,{ \"c\" : \"d\"}],\n\"a\":1 }"),
            "spelled otherwise, the same request"
        );
        assert_ne!(
            digest("nodes", br#"{"a": 1}"#),
            digest("nodes", br#"{"a": 2}"#)
        );
        let a = digest("nodes", b"{}");
        assert_eq!(a, digest("nodes", b"{}"));
        assert_ne!(a, digest("matches", b"{}"));
        assert!(a.starts_with("sha256:"));
    }
}
