//! What the pool learns about php-fpm's real capacity: from the kernel's
//! count of connections in php-fpm's listen backlog when it can see it
//! (`ExactSizing`), else from its own traffic (`Learning`: windows of
//! releases that saw, or did not see, fresh connections stuck in php-fpm's
//! backlog). When to probe for one connection more. Pure logic, fed by `pool`.

use std::time::Duration;
use tokio::time::Instant;

/// With the exact signal: how often, at most, the pool tries one connection
/// more while requests wait for one and php-fpm's backlog is empty. A try
/// that finds no worker costs one connect and one close; php-fpm's dynamic
/// pools add workers about once a second, so this keeps up with them.
pub(super) const PROBE_EVERY: Duration = Duration::from_millis(200);
/// Each probe php-fpm refutes (found full) doubles the wait before the
/// next, up to this; one that holds brings it back to `PROBE_EVERY`. A
/// static pool under sustained overload then pays a connect and a close
/// every 2 s, not 5 a second (measured: 5 % of hello.php's rate at c=256).
pub(super) const PROBE_EVERY_MAX: Duration = Duration::from_secs(2);

/// Sizing by the exact signal (the kernel's count of php-fpm's backlog).
#[derive(Debug)]
pub(super) struct ExactSizing {
    /// No probe before this instant.
    next_probe_at: Option<Instant>,
    /// The wait between probes now.
    interval: Duration,
    /// A probe was made and php-fpm has not been seen full since.
    probe_out: bool,
    /// The size the last probe tried, until php-fpm was seen serving that
    /// many of ours at once (it holds) or full (refuted). One left untried
    /// when demand ends is withdrawn: it says nothing of php-fpm.
    probe_pending: Option<usize>,
    /// The size last learned from the backlog.
    learned: Option<usize>,
}

impl Default for ExactSizing {
    fn default() -> Self {
        ExactSizing {
            next_probe_at: None,
            interval: PROBE_EVERY,
            probe_out: false,
            probe_pending: None,
            learned: None,
        }
    }
}

impl ExactSizing {
    /// `in_backlog` of our `open` connections wait for a worker: php-fpm
    /// serves the rest, so that is the size (at least 1), and whether it is
    /// news (not what was learned last time: a refuted probe is not).
    /// Holds off the next probe, since php-fpm just proved to have no
    /// worker free.
    pub(super) fn saw_backlog(
        &mut self,
        now: Instant,
        open: usize,
        in_backlog: usize,
    ) -> (usize, bool) {
        if std::mem::take(&mut self.probe_out) {
            // The probe found php-fpm full.
            self.interval = (self.interval * 2).min(PROBE_EVERY_MAX);
        }
        self.probe_pending = None;
        self.next_probe_at = Some(now + self.interval);
        let size = open.saturating_sub(in_backlog).max(1);
        let news = self.learned != Some(size);
        self.learned = Some(size);
        (size, news)
    }

    /// Whether a probe may be made now.
    pub(super) fn probe_due(&self, now: Instant) -> bool {
        self.next_probe_at.is_none_or(|at| now >= at)
    }

    /// No probe before this (None: one may be made now).
    pub(super) fn next_probe_at(&self) -> Option<Instant> {
        self.next_probe_at
    }

    /// Requests begin to queue after none did (a burst begins): php-fpm may
    /// have grown meanwhile, so probes come at the quickest again.
    pub(super) fn demand_began(&mut self, now: Instant) {
        self.interval = PROBE_EVERY;
        let soon = now + PROBE_EVERY;
        self.next_probe_at = Some(self.next_probe_at.map_or(soon, |at| at.min(soon)));
    }

    /// A probe to `to_size` connections is made at `now`. The one before
    /// held if php-fpm was not seen full since: then probes come at the
    /// quickest again.
    pub(super) fn probed(&mut self, now: Instant, to_size: usize) {
        if self.probe_out {
            self.interval = PROBE_EVERY;
        }
        self.probe_out = true;
        self.probe_pending = Some(to_size);
        self.next_probe_at = Some(now + self.interval);
    }

    /// The probe just claimed was not made after all (php-fpm's backlog was
    /// not empty).
    pub(super) fn probe_not_made(&mut self) {
        self.probe_pending = None;
    }

    /// Whether a probe waits to be tried or refuted.
    pub(super) fn probe_pending(&self) -> bool {
        self.probe_pending.is_some()
    }

    /// php-fpm serves `open` connections of ours at once, none of them in
    /// its backlog: a probe up to that many holds.
    pub(super) fn served_at_once(&mut self, open: usize) {
        if self.probe_pending.is_some_and(|size| open >= size) {
            self.probe_pending = None;
        }
    }

    /// No request waits any more. A probe neither held nor refuted by now
    /// found no request to try it (it came as a burst ended): the size to
    /// go back to, if so.
    pub(super) fn demand_ended(&mut self) -> Option<usize> {
        self.probe_pending.take().map(|size| size.saturating_sub(1))
    }
}
/// Evidence about php-fpm's real capacity, gathered over a window of releases.
#[derive(Debug, Default)]
pub(super) struct CapacityWindow {
    pub(super) releases: u32,
    /// Releases that found a fresh connection stuck in php-fpm's backlog.
    pub(super) saw_stuck: u32,
    /// Most connections known to hold a worker at once (busy and past their
    /// first byte, or reused) seen in this window.
    pub(super) peak_served: usize,
    /// Requests queued for a connection at some release in this window.
    pub(super) saw_waiters: bool,
    pub(super) started: Option<Instant>,
}

/// A fresh connection waiting for its first byte.
#[derive(Debug)]
pub(super) struct AwaitingFresh {
    pub(super) id: u64,
    pub(super) since: Instant,
    /// When a returning connection was last closed to free a worker for it.
    pub(super) freed_for_at: Option<Instant>,
}

/// What `stuck_fresh` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stuck {
    None,
    /// A stuck connection, already helped by a recent close.
    Seen,
    /// A stuck connection: close the returning one for it.
    Claimed,
}

/// A fresh connection counts as stuck in php-fpm's backlog only after this
/// long, or 4x the usual time to first byte when that is longer. Calling it
/// stuck sooner closed connections during every fresh connection's normal
/// first-byte wait; each close made the next request dial, and under load
/// that loop re-dialed most requests.
pub(super) const STUCK_MIN: Duration = Duration::from_millis(5);

/// Releases per capacity-learning window, and its shortest duration.
const LEARN_WINDOW: u32 = 64;
const LEARN_WINDOW_MIN_TIME: Duration = Duration::from_millis(50);

/// After a shrink, the pool waits this long before probing one connection
/// more; each probe that php-fpm's backlog refutes doubles the wait. Probing
/// every window (a few ms under load) kept a pool one above php-fpm's worker
/// count closing and re-dialing most of its connections.
pub(super) const PROBE_DELAY_MIN: Duration = Duration::from_secs(1);
pub(super) const PROBE_DELAY_MAX: Duration = Duration::from_secs(300);

/// Capacity learning: the current window, and when growing may be tried.
#[derive(Debug)]
pub(super) struct Learning {
    pub(super) window: CapacityWindow,
    /// No probe up before this instant (set by a shrink).
    pub(super) no_probe_before: Option<Instant>,
    pub(super) probe_delay: Duration,
    /// The last resize was a probe up, not yet confirmed by a clean window.
    pub(super) probing: bool,
}

impl Default for Learning {
    fn default() -> Self {
        Learning {
            window: CapacityWindow::default(),
            no_probe_before: None,
            probe_delay: PROBE_DELAY_MIN,
            probing: false,
        }
    }
}

/// What a finished learning window says about the pool size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Shrink { peak: usize },
    Grow,
    Keep,
}

impl Learning {
    /// Counts one release: `served` connections held a worker, a fresh one
    /// was (or was not) stuck, requests were (or were not) queued. At the end
    /// of a window, says what to do; `can_grow` is false at the configured
    /// size, where no probe is made.
    pub(super) fn record(
        &mut self,
        served: usize,
        saw_stuck: bool,
        saw_waiters: bool,
        can_grow: bool,
    ) -> Option<Verdict> {
        let w = &mut self.window;
        w.releases += 1;
        w.saw_stuck += u32::from(saw_stuck);
        w.peak_served = w.peak_served.max(served);
        w.saw_waiters |= saw_waiters;
        let started = *w.started.get_or_insert_with(Instant::now);
        // Enough releases, and long enough for a backlogged connection to
        // have been called stuck (at 20k req/s, 64 releases take 3 ms).
        if w.releases < LEARN_WINDOW || started.elapsed() < LEARN_WINDOW_MIN_TIME {
            return None;
        }
        Some(self.verdict(Instant::now(), can_grow))
    }

    /// Closes the window and decides, holding back probes after a shrink.
    pub(super) fn verdict(&mut self, now: Instant, can_grow: bool) -> Verdict {
        let w = std::mem::take(&mut self.window);
        if w.saw_stuck * 2 > w.releases {
            if self.probing {
                self.probe_delay = (self.probe_delay * 2).min(PROBE_DELAY_MAX);
            }
            self.probing = false;
            self.no_probe_before = Some(now + self.probe_delay);
            return Verdict::Shrink {
                peak: w.peak_served,
            };
        }
        if w.saw_stuck == 0 {
            if self.probing {
                // The probe held: php-fpm really serves that many.
                self.probing = false;
                self.probe_delay = PROBE_DELAY_MIN;
            }
            let may_probe = self.no_probe_before.is_none_or(|t| now >= t);
            if w.saw_waiters && may_probe && can_grow {
                self.probing = true;
                return Verdict::Grow;
            }
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(releases: u32, stuck: u32, waiters: bool) -> CapacityWindow {
        CapacityWindow {
            releases,
            saw_stuck: stuck,
            peak_served: 4,
            saw_waiters: waiters,
            started: None,
        }
    }

    #[test]
    fn probes_wait_after_a_shrink_and_back_off_when_refuted() {
        let mut l = Learning::default();
        let t0 = Instant::now();
        l.window = window(64, 40, true);
        assert_eq!(l.verdict(t0, true), Verdict::Shrink { peak: 4 });
        // Demand without backlog right after the shrink: no probe yet.
        l.window = window(64, 0, true);
        assert_eq!(
            l.verdict(t0 + Duration::from_millis(10), true),
            Verdict::Keep
        );
        l.window = window(64, 0, true);
        let t1 = t0 + PROBE_DELAY_MIN;
        assert_eq!(l.verdict(t1, true), Verdict::Grow);
        // The probe is refuted: the next one waits twice as long.
        l.window = window(64, 50, true);
        assert_eq!(l.verdict(t1, true), Verdict::Shrink { peak: 4 });
        assert_eq!(l.probe_delay, PROBE_DELAY_MIN * 2);
        l.window = window(64, 0, true);
        assert_eq!(l.verdict(t1 + PROBE_DELAY_MIN, true), Verdict::Keep);
        l.window = window(64, 0, true);
        assert_eq!(l.verdict(t1 + PROBE_DELAY_MIN * 2, true), Verdict::Grow);
    }

    #[test]
    fn a_probe_that_holds_resets_the_delay() {
        let mut l = Learning {
            probe_delay: PROBE_DELAY_MIN * 8,
            probing: true,
            ..Learning::default()
        };
        l.window = window(64, 0, false);
        assert_eq!(l.verdict(Instant::now(), true), Verdict::Keep);
        assert_eq!(l.probe_delay, PROBE_DELAY_MIN);
        assert!(!l.probing);
    }

    #[test]
    fn exact_sizing_is_what_php_fpm_accepted_and_probes_are_spaced() {
        let mut e = ExactSizing::default();
        let t0 = Instant::now();
        assert!(e.probe_due(t0));
        assert_eq!(e.saw_backlog(t0, 8, 6), (2, true));
        assert!(!e.probe_due(t0 + PROBE_EVERY / 2));
        assert!(e.probe_due(t0 + PROBE_EVERY));
        e.probed(t0 + PROBE_EVERY, 3);
        assert!(!e.probe_due(t0 + PROBE_EVERY + PROBE_EVERY / 2));
        // Refuted: the next waits twice as long.
        let t1 = t0 + PROBE_EVERY * 2;
        assert_eq!(e.saw_backlog(t1, 3, 1), (2, false));
        assert!(!e.probe_due(t1 + PROBE_EVERY));
        assert!(e.probe_due(t1 + PROBE_EVERY * 2));
        e.probed(t1 + PROBE_EVERY * 2, 3);
        // A burst beginning after none brings the quickest back too.
        let mut f = ExactSizing::default();
        f.probed(t0, 4);
        f.saw_backlog(t0, 3, 1);
        f.probed(t0 + PROBE_EVERY * 2, 4);
        f.saw_backlog(t0 + PROBE_EVERY * 2, 3, 1);
        assert!(!f.probe_due(t0 + PROBE_EVERY * 5));
        f.demand_began(t0 + PROBE_EVERY * 3);
        assert!(f.probe_due(t0 + PROBE_EVERY * 4));
        // Held (php-fpm not seen full): the one after comes at the quickest.
        let t2 = t1 + PROBE_EVERY * 4;
        e.probed(t2, 3);
        assert!(e.probe_due(t2 + PROBE_EVERY));
        // Never below one connection, whatever the kernel says.
        assert_eq!(e.saw_backlog(t0, 3, 5), (1, true));
    }

    #[test]
    fn a_probe_no_request_tried_is_withdrawn_when_demand_ends() {
        let t0 = Instant::now();
        // Untried: back to the size before it.
        let mut e = ExactSizing::default();
        e.probed(t0, 6);
        assert!(e.probe_pending());
        e.served_at_once(5);
        assert_eq!(e.demand_ended(), Some(5));
        assert_eq!(e.demand_ended(), None, "withdrawn once");
        // Held: php-fpm served 6 of ours at once.
        e.probed(t0 + PROBE_EVERY, 6);
        e.served_at_once(6);
        assert!(!e.probe_pending());
        assert_eq!(e.demand_ended(), None);
        // Refuted: the backlog reading already set the size.
        e.probed(t0 + PROBE_EVERY * 2, 7);
        e.saw_backlog(t0 + PROBE_EVERY * 2, 7, 1);
        assert_eq!(e.demand_ended(), None);
    }

    #[test]
    fn no_growth_without_waiting_requests() {
        let mut l = Learning {
            window: window(64, 0, false),
            ..Learning::default()
        };
        assert_eq!(l.verdict(Instant::now(), true), Verdict::Keep);
    }
}
