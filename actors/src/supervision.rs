//! The one restart policy: at most `max_restarts` within `window`, waiting
//! an exponentially growing, jittered backoff before each; past that the
//! failure escalates (the job is FAILED). ractor has no restart policy of its
//! own, so every supervisor in ferry uses this one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

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

#[cfg(test)]
mod tests {
    use super::*;

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
