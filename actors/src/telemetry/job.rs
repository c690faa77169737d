//! Events of the job lifecycle and the JobCoordinator: ends, restarts, lost leases, claims, and what `/metrics` reads at scrape time.

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use uuid::Uuid;

use crate::vocab::JobStatus;

/// A job's pipeline failed in `stage` (an actor's `NAME`) and its job
/// runs again after a backoff, from its checkpoint.
pub struct JobRestarted<'a> {
    pub stage: &'static str,
    pub job_id: Uuid,
    pub attempt: i32,
    pub backoff: Duration,
    pub reason: &'a str,
}

impl JobRestarted<'_> {
    pub fn emit(self) {
        tracing::warn!(
            actor = self.stage,
            job_id = %self.job_id,
            attempt = self.attempt,
            backoff_ms = self.backoff.as_millis() as u64,
            reason = self.reason,
            "Restarting the job after a failure."
        );
        counter!("ferry_actor_restarts_total", "actor" => self.stage).increment(1);
    }
}

/// The service's supervisor starts a failed long-lived actor again after
/// a backoff.
pub struct ChildRestarted<'a> {
    pub actor: &'static str,
    pub backoff: Duration,
    pub reason: &'a str,
}

impl ChildRestarted<'_> {
    pub fn emit(self) {
        tracing::warn!(
            actor = self.actor,
            backoff_ms = self.backoff.as_millis() as u64,
            reason = self.reason,
            "Restarting an actor after a failure."
        );
        counter!("ferry_actor_restarts_total", "actor" => self.actor).increment(1);
    }
}

/// A job reached a terminal status.
pub struct JobFinished<'a> {
    pub job_id: Uuid,
    pub kind: &'static str,
    pub status: JobStatus,
    pub rows: u64,
    pub elapsed: Duration,
    pub reason: Option<&'a str>,
}

impl JobFinished<'_> {
    pub fn emit(self) {
        tracing::info!(
            job_id = %self.job_id,
            kind = self.kind,
            status = self.status.as_str(),
            rows = self.rows,
            secs = self.elapsed.as_secs_f64(),
            reason = self.reason,
            "Job finished."
        );
        counter!("ferry_jobs_total", "kind" => self.kind, "status" => self.status.as_str())
            .increment(1);
        histogram!("ferry_job_duration_seconds", "kind" => self.kind)
            .record(self.elapsed.as_secs_f64());
        if self.status == JobStatus::Completed {
            // The rows of the last job of each kind: a matches import far
            // below the recent ones means the engine degraded.
            gauge!("ferry_job_last_rows", "kind" => self.kind).set(self.rows as f64);
        }
    }
}

/// The retention sweep deleted finished jobs.
pub struct JobsSwept {
    pub jobs: u64,
    pub retention: Duration,
}

impl JobsSwept {
    pub fn emit(self) {
        if self.jobs > 0 {
            tracing::info!(
                jobs = self.jobs,
                retention_secs = self.retention.as_secs(),
                "Deleted finished jobs past their retention."
            );
            counter!("ferry_jobs_swept_total").increment(self.jobs);
        }
    }
}

/// This instance stopped a job whose lease another instance holds now
/// (it stalled past its lease, or the job was cancelled).
pub struct LeaseLost {
    pub job_id: Uuid,
}

impl LeaseLost {
    pub fn emit(self) {
        counter!("ferry_jobs_lease_lost_total").increment(1);
        tracing::warn!(job_id = %self.job_id, "Stopped a job whose lease was lost.");
    }
}

/// What `/metrics` reads at scrape time: jobs by status, how long the
/// oldest running job has run, and this process's resident memory.
pub struct Scraped<'a> {
    pub jobs: &'a [(&'static str, i64)],
    pub oldest_running: Duration,
    pub rss_bytes: Option<u64>,
}

impl Scraped<'_> {
    pub fn emit(self) {
        for (status, n) in self.jobs {
            gauge!("ferry_jobs", "status" => *status).set(*n as f64);
        }
        gauge!("ferry_job_oldest_running_seconds").set(self.oldest_running.as_secs_f64());
        if let Some(rss) = self.rss_bytes {
            gauge!("process_resident_memory_bytes").set(rss as f64);
        }
    }
}

/// Jobs this instance holds (claimed or running).
pub struct JobsHeld {
    pub jobs: usize,
}

impl JobsHeld {
    pub fn emit(self) {
        gauge!("ferry_jobs_running").set(self.jobs as f64);
    }
}

/// This instance claimed a job from the queue.
pub struct JobClaimed;

impl JobClaimed {
    pub fn emit(self) {
        counter!("ferry_jobs_claimed_total").increment(1);
    }
}
