//! Live progress of one job, for a progress bar or an API: plain atomics
//! written by the stages and read by whoever watches.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes read from the source (compressed, as stored).
    pub bytes_read: AtomicU64,
    /// Source size, when known (0 otherwise).
    pub bytes_total: AtomicU64,
    /// Data records parsed.
    pub records_read: AtomicU64,
    /// Records committed (the checkpoint).
    pub records_committed: AtomicU64,
    /// Records to go through, when known (an export's snapshot count).
    pub records_total: AtomicU64,
}

impl Progress {
    pub fn get(v: &AtomicU64) -> u64 {
        v.load(Ordering::Relaxed)
    }

    pub fn set(v: &AtomicU64, n: u64) {
        v.store(n, Ordering::Relaxed);
    }

    pub fn add(v: &AtomicU64, n: u64) {
        v.fetch_add(n, Ordering::Relaxed);
    }
}
