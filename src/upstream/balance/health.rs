//! Passive health, with nginx's meaning: `max-fails` failures within
//! `fail-timeout` take an upstream out for `fail-timeout`. An active probe
//! (php-fpm's ping page, run from `fpm::health`) can also take it out until
//! a probe succeeds again.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// When failures take an upstream out, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Failures within `fail_timeout` that take an upstream out; 0 = never.
    pub max_fails: u32,
    pub fail_timeout: Duration,
}

impl Default for HealthPolicy {
    fn default() -> HealthPolicy {
        HealthPolicy {
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
        }
    }
}

/// One upstream's health. The request path reads two atomics; the lock is
/// taken only when something failed.
#[derive(Debug)]
pub(super) struct Health {
    /// Where the millisecond clock below starts.
    epoch: Instant,
    /// Out until this many ms after `epoch`; 0 = in.
    out_until_ms: AtomicU64,
    /// Failures counted in the current window (a copy of `window.count`
    /// so a success can skip the lock when there were none).
    fails: AtomicU32,
    window: Mutex<Window>,
    /// The last active probe failed.
    probe_failed: AtomicBool,
}

#[derive(Debug, Default)]
struct Window {
    count: u32,
    started: Option<Instant>,
}

impl Health {
    pub(super) fn new() -> Health {
        Health {
            epoch: Instant::now(),
            out_until_ms: AtomicU64::new(0),
            fails: AtomicU32::new(0),
            window: Mutex::new(Window::default()),
            probe_failed: AtomicBool::new(false),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// In service: not taken out by failures, and the last probe (if any) passed.
    pub(super) fn is_up(&self, now: Instant) -> bool {
        !self.probe_failed.load(Ordering::Relaxed) && !self.is_out(now)
    }

    fn is_out(&self, now: Instant) -> bool {
        let until = self.out_until_ms.load(Ordering::Relaxed);
        until != 0 && self.ms(now) < until
    }

    /// Counts a failure; true when it took the upstream out just now.
    pub(super) fn failed(&self, policy: HealthPolicy, now: Instant) -> bool {
        if policy.max_fails == 0 {
            return false;
        }
        let Ok(mut window) = self.window.lock() else {
            return false;
        };
        let expired = window
            .started
            .is_none_or(|started| now.saturating_duration_since(started) >= policy.fail_timeout);
        if expired {
            *window = Window {
                count: 0,
                started: Some(now),
            };
        }
        window.count += 1;
        self.fails.store(window.count, Ordering::Relaxed);
        if window.count < policy.max_fails || self.is_out(now) {
            return false;
        }
        // Out for fail-timeout; the next failure after that starts afresh.
        let until = self.ms(now + policy.fail_timeout).max(1);
        self.out_until_ms.store(until, Ordering::Relaxed);
        *window = Window::default();
        self.fails.store(0, Ordering::Relaxed);
        true
    }

    /// A request went through: earlier failures no longer count.
    pub(super) fn succeeded(&self) {
        if self.fails.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Ok(mut window) = self.window.lock() {
            *window = Window::default();
            self.fails.store(0, Ordering::Relaxed);
        }
    }

    /// The result of an active probe; true when it changed the verdict.
    pub(super) fn probed(&self, ok: bool) -> bool {
        let changed = self.probe_failed.swap(!ok, Ordering::Relaxed) == ok;
        if ok {
            // A passing probe also ends a passive time-out: it is back.
            self.out_until_ms.store(0, Ordering::Relaxed);
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn one_failure_takes_it_out_for_fail_timeout() {
        let health = Health::new();
        let policy = HealthPolicy {
            max_fails: 1,
            fail_timeout: 10 * SECOND,
        };
        assert!(health.is_up(Instant::now()));
        assert!(health.failed(policy, Instant::now()));
        assert!(!health.is_up(Instant::now()));
        assert!(!health.is_up(Instant::now() + 9 * SECOND));
        assert!(health.is_up(Instant::now() + 10 * SECOND));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_count_within_the_window_only() {
        let health = Health::new();
        let policy = HealthPolicy {
            max_fails: 3,
            fail_timeout: 10 * SECOND,
        };
        assert!(!health.failed(policy, Instant::now()));
        assert!(!health.failed(policy, Instant::now()));
        tokio::time::advance(11 * SECOND).await;
        // The window ran out: this is the first of a new one.
        assert!(!health.failed(policy, Instant::now()));
        assert!(!health.failed(policy, Instant::now()));
        assert!(health.is_up(Instant::now()));
        assert!(health.failed(policy, Instant::now()));
        assert!(!health.is_up(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_clears_the_count() {
        let health = Health::new();
        let policy = HealthPolicy {
            max_fails: 2,
            fail_timeout: 10 * SECOND,
        };
        assert!(!health.failed(policy, Instant::now()));
        health.succeeded();
        assert!(!health.failed(policy, Instant::now()));
        assert!(health.is_up(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn max_fails_zero_never_takes_it_out() {
        let health = Health::new();
        let policy = HealthPolicy {
            max_fails: 0,
            fail_timeout: 10 * SECOND,
        };
        for _ in 0..10 {
            assert!(!health.failed(policy, Instant::now()));
        }
        assert!(health.is_up(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_takes_it_out_and_brings_it_back() {
        let health = Health::new();
        assert!(health.probed(false));
        assert!(!health.is_up(Instant::now()));
        assert!(!health.probed(false), "no change");
        assert!(health.failed(HealthPolicy::default(), Instant::now()));
        assert!(health.probed(true));
        assert!(
            health.is_up(Instant::now()),
            "a passing probe ends the time-out"
        );
    }
}
