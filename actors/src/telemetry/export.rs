//! Events of exports, their webhooks, and the scheduled users export.

use std::time::Duration;

use metrics::{counter, histogram};
use uuid::Uuid;

/// An export's part is in the store.
pub struct PartUploaded {
    pub bytes: u64,
    pub elapsed: Duration,
}

impl PartUploaded {
    pub fn emit(self) {
        counter!("ferry_export_bytes_total").increment(self.bytes);
        histogram!("ferry_export_part_seconds").record(self.elapsed.as_secs_f64());
    }
}

/// An export's rows are durable in its files (counted per part, not per
/// row).
pub struct RowsExported {
    pub object: String,
    pub rows: u64,
}

impl RowsExported {
    pub fn emit(self) {
        if self.rows > 0 {
            counter!("ferry_rows_exported_total", "object" => self.object).increment(self.rows);
        }
    }
}

/// What came of one attempt to deliver a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    Delivered,
    /// Tried again later.
    Retry,
    /// Given up.
    Failed,
}

impl WebhookOutcome {
    pub const ALL: [Self; 3] = [Self::Delivered, Self::Retry, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry => "retry",
            Self::Failed => "failed",
        }
    }
}

/// One delivery attempt of an export's webhook.
pub struct WebhookAttempted<'a> {
    pub delivery: i64,
    pub attempt: i32,
    pub status: Option<u16>,
    pub error: Option<&'a str>,
    pub outcome: WebhookOutcome,
}

impl WebhookAttempted<'_> {
    pub fn emit(self) {
        if self.outcome == WebhookOutcome::Delivered {
            tracing::info!(
                delivery = self.delivery,
                attempt = self.attempt,
                status = self.status,
                "Webhook delivered."
            );
        } else {
            tracing::warn!(
                delivery = self.delivery,
                attempt = self.attempt,
                status = self.status,
                error = self.error,
                outcome = self.outcome.as_str(),
                "Webhook delivery failed."
            );
        }
        counter!("ferry_webhook_attempts_total", "outcome" => self.outcome.as_str()).increment(1);
    }
}

/// A scheduled users export's tick, as the instance that ran it saw it.
pub struct UsersRunStarted {
    pub elapsed: Duration,
}

impl UsersRunStarted {
    pub fn emit(self) {
        counter!("ferry_users_export_runs_total").increment(1);
        histogram!("ferry_users_export_run_start_seconds").record(self.elapsed.as_secs_f64());
    }
}

/// The last export of a users export run ended: the run's duration from
/// its tick.
pub struct UsersRunEnded {
    pub run_id: Uuid,
    pub elapsed: Duration,
}

impl UsersRunEnded {
    pub fn emit(self) {
        histogram!("ferry_users_export_run_seconds").record(self.elapsed.as_secs_f64());
        tracing::info!(run_id = %self.run_id, seconds = self.elapsed.as_secs_f64(), "Users export run ended.");
    }
}

/// What a tick did with one matching group: `started`, `overlapped` (its
/// previous export still runs), `empty` (no new users) or `invalid` (a
/// group type ferry does not know; seed 000's
/// `users_export_invalid_group_type`).
pub struct UsersGroupScheduled<'a> {
    pub group_type: &'a str,
    pub outcome: &'static str,
}

impl UsersGroupScheduled<'_> {
    pub fn emit(self) {
        let group_type = match self.outcome {
            "invalid" => "unknown".to_string(),
            _ => self.group_type.to_string(),
        };
        counter!("ferry_users_export_groups_total", "group_type" => group_type, "outcome" => self.outcome)
            .increment(1);
    }
}

/// A group's users export ended: its users, files and messages, and how
/// long it took (seed 000's `users_export_group_duration`, without the
/// group id: labels stay few).
pub struct UsersExported {
    pub group_type: &'static str,
    pub outcome: &'static str,
    pub users: u64,
    pub files: u64,
    pub messages: u64,
    pub elapsed: Duration,
}

impl UsersExported {
    pub fn emit(self) {
        let labels = [("group_type", self.group_type), ("outcome", self.outcome)];
        histogram!("ferry_users_export_group_seconds", &labels).record(self.elapsed.as_secs_f64());
        counter!("ferry_users_exported_total", "group_type" => self.group_type)
            .increment(self.users);
        counter!("ferry_users_export_files_total", "group_type" => self.group_type)
            .increment(self.files);
        counter!("ferry_users_export_messages_total", "group_type" => self.group_type)
            .increment(self.messages);
    }
}
