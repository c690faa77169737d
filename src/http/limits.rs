//! Per-caller bounds. [`Permits`]: at most so many requests in flight, or
//! event streams open, per caller. [`Limiter`]: token buckets, so each
//! caller may create `exports.create_per_minute` exports a minute, in
//! bursts up to that many; over either, 429 with when to try again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;

/// At most `limit` of something held at once per caller.
pub struct Permits {
    limit: usize,
    /// What is held, as an error says it ("requests in flight").
    what: &'static str,
    by_caller: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Permits {
    pub fn new(limit: usize, what: &'static str) -> Self {
        Self {
            limit: limit.max(1),
            what,
            by_caller: Mutex::new(HashMap::new()),
        }
    }

    /// One of `caller`'s permits, held until dropped; 429 when it has
    /// `limit` already.
    pub fn take(&self, caller: &str) -> Result<OwnedSemaphorePermit, ApiError> {
        let permits = {
            let mut by_caller = self.by_caller.lock().expect("no panic while held");
            if by_caller.len() > 10_000 {
                // Forget callers that hold nothing.
                by_caller.retain(|_, s| Arc::strong_count(s) > 1);
            }
            by_caller
                .entry(caller.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.limit)))
                .clone()
        };
        permits.try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!("this key has {} {} already", self.limit, self.what),
            )
            .retry_after(1)
        })
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct Limiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of `caller`'s bucket, or says when there is one.
    pub fn take(&self, caller: &str) -> Result<(), ApiError> {
        let (capacity, rate) = (
            f64::from(self.per_minute),
            f64::from(self.per_minute) / 60.0,
        );
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("no panic while held");
        if buckets.len() > 10_000 {
            // Forget callers whose buckets are full again.
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < capacity);
        }
        let bucket = buckets.entry(caller.to_string()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u32;
        Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "at most {} exports a minute; try again in {wait} s",
                self.per_minute
            ),
        )
        .retry_after(wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_bounded_and_callers_are_apart() {
        let limiter = Limiter::new(3);
        for _ in 0..3 {
            assert!(limiter.take("a").is_ok());
        }
        assert!(limiter.take("a").is_err());
        assert!(
            limiter.take("b").is_ok(),
            "another caller has its own bucket"
        );
    }
}
