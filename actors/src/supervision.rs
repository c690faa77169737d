//! The one restart policy: at most `max_restarts` within `window`, waiting
//! an exponentially growing, jittered backoff before each; past that the
//! failure escalates (the job is FAILED). ractor has no restart policy of its
//! own, so every supervisor in ferry uses this one.

use std::collections::VecDeque;
use std::time::Duration;

// The runtime's clock: a paused test moves it, and the policy with it.
use tokio::time::Instant;

use crate::settings::RetrySettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Restart { after: Duration },
    GiveUp,
}

#[derive(Debug, Clone)]
pub struct RestartPolicy {
    settings: RetrySettings,
    recent: VecDeque<Instant>,
}

impl RestartPolicy {
    pub fn new(settings: RetrySettings) -> Self {
        Self {
            settings,
            recent: VecDeque::new(),
        }
    }

    /// Call on each failure; says whether to restart and after how long.
    pub fn on_failure(&mut self, now: Instant) -> Decision {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.settings.window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() as u32 >= self.settings.max_restarts {
            return Decision::GiveUp;
        }
        self.recent.push_back(now);
        let n = self.recent.len() as u32;
        Decision::Restart {
            after: jittered(backoff(&self.settings, n)),
        }
    }
}

/// The n-th (1-based) backoff before jitter: initial × 2^(n-1), capped.
pub fn backoff(settings: &RetrySettings, n: u32) -> Duration {
    let factor = 2u32.saturating_pow(n.saturating_sub(1));
    settings
        .initial_backoff
        .saturating_mul(factor)
        .min(settings.max_backoff)
}

/// Between half and all of `d`, so that restarts of many jobs spread out.
pub fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// Failures in a row that open a [`Breaker`].
pub const BREAKER_THRESHOLD: u32 = 3;

/// A circuit breaker in front of a service (the object store, the broker):
/// after [`BREAKER_THRESHOLD`] failures in a row it opens, and callers wait
/// out a jittered backoff that doubles with each further failure, instead
/// of each hammering the service with its own retries. One success closes
/// it.
#[derive(Debug, Clone)]
pub struct Breaker {
    settings: RetrySettings,
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    pub fn new(settings: RetrySettings) -> Self {
        Self {
            settings,
            failures: 0,
            open_until: None,
        }
    }

    /// How long a caller waits before its call, if the breaker is open.
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        self.open_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    pub fn success(&mut self) {
        self.failures = 0;
        self.open_until = None;
    }

    /// Notes a failure; returns how long the breaker is open, when this
    /// failure opened it (or kept it open).
    pub fn failure(&mut self, now: Instant) -> Option<Duration> {
        self.failures += 1;
        if self.failures < BREAKER_THRESHOLD {
            return None;
        }
        let open = jittered(backoff(
            &self.settings,
            self.failures - BREAKER_THRESHOLD + 1,
        ));
        self.open_until = Some(now + open);
        Some(open)
    }

    pub fn is_open(&self, now: Instant) -> bool {
        self.wait(now).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_breaker_opens_after_failures_in_a_row_and_one_success_closes_it() {
        let mut b = Breaker::new(settings());
        let t0 = Instant::now();
        assert_eq!(b.failure(t0), None);
        assert_eq!(b.failure(t0), None);
        assert!(!b.is_open(t0));
        let open = b.failure(t0).expect("the third failure opens it");
        assert!(open >= Duration::from_millis(50) && open <= Duration::from_millis(100));
        assert!(b.is_open(t0));
        assert!(!b.is_open(t0 + open));
        // Still failing: open longer, up to the cap.
        let longer = b.failure(t0).unwrap();
        assert!(longer >= Duration::from_millis(100), "{longer:?}");
        for _ in 0..10 {
            assert!(b.failure(t0).unwrap() <= Duration::from_millis(350));
        }
        b.success();
        assert!(!b.is_open(t0));
        assert_eq!(b.failure(t0), None, "counting starts again");
    }

    fn settings() -> RetrySettings {
        RetrySettings {
            max_restarts: 3,
            window: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            batch_attempts: 3,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = settings();
        let got: Vec<_> = (1..=4).map(|n| backoff(&s, n).as_millis()).collect();
        assert_eq!(got, [100, 200, 350, 350]);
    }

    /// The window is measured on the runtime's clock: once old failures
    /// leave it, restarts are allowed again.
    #[tokio::test(start_paused = true)]
    async fn failures_leave_the_window_as_time_passes() {
        let mut p = RestartPolicy::new(settings());
        for _ in 0..3 {
            assert!(matches!(
                p.on_failure(Instant::now()),
                Decision::Restart { .. }
            ));
        }
        assert_eq!(p.on_failure(Instant::now()), Decision::GiveUp);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(
            p.on_failure(Instant::now()),
            Decision::GiveUp,
            "still within"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        let Decision::Restart { after } = p.on_failure(Instant::now()) else {
            panic!("the window moved on")
        };
        assert!(after <= Duration::from_millis(100), "counting starts again");
    }

    #[test]
    fn gives_up_after_max_restarts_in_the_window() {
        let mut p = RestartPolicy::new(settings());
        let t0 = Instant::now();
        for i in 0..3 {
            let d = p.on_failure(t0 + Duration::from_secs(i));
            let Decision::Restart { after } = d else {
                panic!("restart {i} refused")
            };
            let full = backoff(&settings(), i as u32 + 1);
            assert!(after <= full && after >= full / 2, "{after:?} vs {full:?}");
        }
        assert_eq!(p.on_failure(t0 + Duration::from_secs(4)), Decision::GiveUp);
        // Once the old failures leave the window, restarts are allowed again.
        assert!(matches!(
            p.on_failure(t0 + Duration::from_secs(200)),
            Decision::Restart { .. }
        ));
    }
}
