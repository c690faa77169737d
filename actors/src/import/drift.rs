//! Schema drift (seed 003's "Schema Validation: catch format changes
//! early"): each completed import of a group records its file's columns
//! (a CSV header, normalised; a Parquet schema's field names), and the next
//! import of the group compares its own with them. What was added and what
//! was removed are listed in its status event and job view and counted by
//! `ferry_schema_drift_total`; a contract with `"onDrift": "fail"` fails the
//! job at the header, before a row is written.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;

use super::contract::OnDrift;
use super::table::Group;
use crate::job::terminal::End;
use crate::vocab::Target;

/// An import's columns, and how they differ from those of the group's last
/// completed import (nothing differs for a group's first).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub columns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

impl Drift {
    pub fn drifted(&self) -> bool {
        !self.added.is_empty() || !self.removed.is_empty()
    }

    /// The drift for a person, if there is any.
    pub fn summary(&self) -> Option<String> {
        summary(&self.added, &self.removed)
    }

    /// The terminal statement's part that records these columns as the
    /// group's, when the job's end was written.
    pub fn record(&self, end: &mut End) {
        let columns = end.bind(self.columns.clone());
        end.with(format!(
            "recorded AS (
                 INSERT INTO group_columns (domain_id, group_id, target, columns, job_id)
                 SELECT domain_id, group_id, kind, {columns}::text[], id FROM done
                 ON CONFLICT (domain_id, group_id, target) DO UPDATE
                 SET columns = EXCLUDED.columns, job_id = EXCLUDED.job_id, recorded_at = now())"
        ));
    }
}

/// Columns added and removed, for a person (none when both are empty).
pub fn summary(added: &[String], removed: &[String]) -> Option<String> {
    (!added.is_empty() || !removed.is_empty()).then(|| {
        format!(
            "added [{}], removed [{}] since the group's last import",
            added.join(", "),
            removed.join(", ")
        )
    })
}

/// Watches an import's files' columns against the group's last: shared by
/// the pipeline, which saves what it saw, and the readers, which report
/// each file's columns.
#[derive(Debug)]
pub struct DriftWatch {
    /// The columns of the group's last completed import, if it had one.
    baseline: Option<Vec<String>>,
    on_drift: OnDrift,
    seen: Mutex<Option<Drift>>,
}

impl DriftWatch {
    /// The columns the group's last completed import of `target` recorded.
    pub async fn baseline(
        c: &impl GenericClient,
        group: Group,
        target: Target,
    ) -> Result<Option<Vec<String>>, tokio_postgres::Error> {
        let row = c
            .query_opt(
                "SELECT columns FROM group_columns
                 WHERE domain_id = $1 AND group_id = $2 AND target = $3",
                &[&group.domain_id, &group.group_id, &target.as_str()],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// `resumed`: what an earlier attempt of the job saw.
    pub fn new(baseline: Option<Vec<String>>, on_drift: OnDrift, resumed: Option<Drift>) -> Self {
        Self {
            baseline,
            on_drift,
            seen: Mutex::new(resumed),
        }
    }

    /// A file's columns, as its reader found them. `Err`: they differ from
    /// the group's last and the contract says to fail.
    pub fn observe(&self, columns: &[String]) -> Result<(), String> {
        let Some(baseline) = &self.baseline else {
            self.merge(columns, Vec::new(), Vec::new());
            return Ok(());
        };
        let added: Vec<String> = columns
            .iter()
            .filter(|c| !baseline.contains(c))
            .cloned()
            .collect();
        let removed: Vec<String> = baseline
            .iter()
            .filter(|c| !columns.contains(c))
            .cloned()
            .collect();
        let drifted = !added.is_empty() || !removed.is_empty();
        let reason = (drifted && self.on_drift == OnDrift::Fail).then(|| {
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(format!("added {}", added.join(", ")));
            }
            if !removed.is_empty() {
                parts.push(format!("removed {}", removed.join(", ")));
            }
            format!(
                "the file's columns changed since the group's last import ({}), and the group's contract says onDrift: fail",
                parts.join("; ")
            )
        });
        self.merge(columns, added, removed);
        reason.map_or(Ok(()), Err)
    }

    /// What the job's files showed so far (none before a header was read).
    pub fn seen(&self) -> Option<Drift> {
        self.seen.lock().expect("not poisoned").clone()
    }

    /// The job's columns are its first file's; a later file's differences
    /// are added to the lists.
    fn merge(&self, columns: &[String], added: Vec<String>, removed: Vec<String>) {
        let mut seen = self.seen.lock().expect("not poisoned");
        let drift = seen.get_or_insert_with(|| Drift {
            columns: columns.to_vec(),
            ..Drift::default()
        });
        for (list, new) in [(&mut drift.added, added), (&mut drift.removed, removed)] {
            for c in new {
                if !list.contains(&c) {
                    list.push(c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &[&str]) -> Vec<String> {
        s.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn drift_lists_what_was_added_and_removed() {
        let watch = DriftWatch::new(Some(names(&["id", "email", "city"])), OnDrift::Report, None);
        assert_eq!(watch.observe(&names(&["id", "email", "zip"])), Ok(()));
        assert_eq!(
            watch.seen(),
            Some(Drift {
                columns: names(&["id", "email", "zip"]),
                added: names(&["zip"]),
                removed: names(&["city"]),
            })
        );
        let strict = DriftWatch::new(Some(names(&["id"])), OnDrift::Fail, None);
        assert_eq!(strict.observe(&names(&["id"])), Ok(()));
        assert!(strict
            .observe(&names(&["id", "age"]))
            .unwrap_err()
            .contains("(added age)"));
    }

    #[test]
    fn a_first_import_has_no_drift() {
        let watch = DriftWatch::new(None, OnDrift::Fail, None);
        assert_eq!(watch.observe(&names(&["a"])), Ok(()));
        assert!(!watch.seen().unwrap().drifted());
    }
}
