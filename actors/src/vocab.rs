//! The words every part of ferry shares: where a job stands, what an
//! import's rows become, what became of them, and how they are written.
//! It imports nothing from the crate, so anything may use it.

use serde::{Deserialize, Serialize};

/// Where a job stands. The only place its strings are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];
    /// A job in one of these may still run; a lease means something.
    pub const ACTIVE: [Self; 2] = [Self::Pending, Self::Running];
    pub const TERMINAL: [Self; 3] = [Self::Completed, Self::Failed, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        Self::TERMINAL.contains(&self)
    }

    /// `('PENDING', 'RUNNING')`: statuses as an SQL list of literals, which
    /// (unlike a bind parameter) lets the planner use the partial indexes.
    pub fn sql_list(statuses: &[Self]) -> String {
        let quoted: Vec<String> = statuses
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        format!("({})", quoted.join(", "))
    }
}

/// What an import's rows become.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// `nodes` (seed 004), from CSV or a reference list.
    Nodes,
    /// `match_suggestions` (seed 003), from Parquet.
    Matches,
}

impl Target {
    pub const ALL: [Self; 2] = [Self::Nodes, Self::Matches];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nodes => "nodes",
            Self::Matches => "matches",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// How an import's rows reach the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Each batch: COPY into a temp table, then `INSERT … ON CONFLICT DO UPDATE`.
    Upsert,
    /// The group had no rows: each batch tries a plain `INSERT` first and
    /// upserts only if it meets a conflict.
    Fast,
}

/// What an import does with the rows of its group that its input does not
/// hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportMode {
    /// Leaves them: the input's rows are inserted or updated.
    #[default]
    Upsert,
    /// Deletes them once the input is loaded: the group then holds exactly
    /// the input's rows.
    Sync,
}

impl ImportMode {
    pub const ALL: [Self; 2] = [Self::Upsert, Self::Sync];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upsert => "upsert",
            Self::Sync => "sync",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// What became of an import's rows. The one spelling of these counters:
/// checkpoints, outcomes, job rows, status events and reports all hold one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Data records consumed: loaded, merged as duplicates, or rejected.
    pub records: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Rows the table held already, the same: not written.
    #[serde(default)]
    pub unchanged: u64,
    /// Rows merged into another row of the same key (last row wins).
    pub duplicates: u64,
    pub rejected: u64,
    /// Rows of the group a sync deleted: its input did not hold them.
    #[serde(default)]
    pub deleted: u64,
}

impl Counts {
    /// Rows loaded: inserted, updated, found unchanged, or merged as
    /// duplicates.
    pub fn loaded(&self) -> u64 {
        self.inserted + self.updated + self.unchanged + self.duplicates
    }

    /// Adds what one write did.
    pub fn add(&mut self, w: Written) {
        self.inserted += w.inserted;
        self.updated += w.updated;
        self.unchanged += w.unchanged;
    }
}

/// What one write did with its rows: new ones inserted, changed ones
/// updated, the rest (the table held them, the same) left as they were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

impl std::ops::AddAssign for Written {
    fn add_assign(&mut self, w: Written) {
        self.inserted += w.inserted;
        self.updated += w.updated;
        self.unchanged += w.unchanged;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_targets_are_spelled_once() {
        for status in JobStatus::ALL {
            assert_eq!(JobStatus::parse(status.as_str()), Some(status));
        }
        for target in Target::ALL {
            assert_eq!(Target::parse(target.as_str()), Some(target));
        }
        for mode in ImportMode::ALL {
            assert_eq!(ImportMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(JobStatus::parse("running"), None);
        assert_eq!(
            JobStatus::sql_list(&JobStatus::ACTIVE),
            "('PENDING', 'RUNNING')"
        );
    }
}
