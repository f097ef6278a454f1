//! Whether requests may be sent ahead (`pipeline`) as far as slowness
//! goes: which exchanges were slow, which URL paths are slow, and the
//! pause after a slow one. One per serving thread; a verdict of slow is
//! spread to every thread by the pool (`Slowness::pause`,
//! `Slowness::remember_slow`), so each thread reads only its own.
//!
//! Slow means past the threshold (`--upstream-pipelining`) and past
//! `USUAL_FACTOR` times the usual exchange. A path seen fast many times
//! (`KNOWN_FAST`) is called slow only when it is slow a second time, in an
//! exchange that began after the first slow one ended: a stall of our own
//! thread or of the machine (measured here: 10–30 ms on a busy 2-core VM)
//! stretches every exchange in flight at once, and that is one event, no
//! slow script. Before, one such stall marked /hello.php slow for a minute
//! and cost the whole run its pipelining.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use quick_cache::unsync::Cache;
use tokio::time::Instant;

/// How long a URL path that was slow gets no requests sent behind it.
const SLOW_PATH_REMEMBERED: Duration = Duration::from_secs(60);
/// Paths remembered at most; past it, those seen least lately go.
const PATHS_MAX: usize = 4096;
/// An exchange is slow only past this many times the usual one.
const USUAL_FACTOR: u64 = 4;
/// Exchanges before the usual time counts as known.
const USUAL_SAMPLES: u64 = 16;
/// Fast exchanges after which a path counts as known fast, and after which
/// a first slow exchange of it is forgotten.
const KNOWN_FAST: u16 = 16;
/// How long pipelining stays off after something was slow.
pub(crate) const PAUSE: Duration = Duration::from_secs(2);

/// What one exchange showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not slow.
    Usual,
    /// Slow, but a path known fast: a second slow one is needed.
    Noted,
    /// Slow: pause pipelining everywhere, and, when `remember`, send
    /// nothing behind this path for `SLOW_PATH_REMEMBERED`.
    Slow { remember: bool },
}

#[derive(Debug, Default, Clone)]
struct PathRecord {
    /// Fast exchanges in a row (saturating).
    fast: u16,
    /// When a first slow exchange of a known-fast path ended.
    strike: Option<Instant>,
    /// When the path was found slow.
    slow_at: Option<Instant>,
}

fn new_record() -> Result<PathRecord, Infallible> {
    Ok(PathRecord::default())
}

#[derive(Debug)]
pub(crate) struct Slowness {
    /// None: pipelining is off.
    threshold: Option<Duration>,
    epoch: Instant,
    /// Microseconds after `epoch` until which pipelining is paused.
    paused_until: AtomicU64,
    /// Moving average of the exchanges that were not slow, in µs: what
    /// "usual" is, queueing in our own event loop included.
    usual_micros: AtomicU64,
    /// Exchanges that went into `usual_micros` (up to `USUAL_SAMPLES`).
    usual_samples: AtomicU64,
    /// Paths seen lately; past `PATHS_MAX`, those seen least lately go.
    paths: Mutex<Cache<u64, PathRecord>>,
}

impl Slowness {
    pub(crate) fn new(threshold: Option<Duration>) -> Slowness {
        Slowness {
            threshold,
            epoch: Instant::now(),
            paused_until: AtomicU64::new(0),
            usual_micros: AtomicU64::new(0),
            usual_samples: AtomicU64::new(0),
            paths: Mutex::new(Cache::new(PATHS_MAX)),
        }
    }

    fn now_micros(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Whether pipelining is on and not paused.
    pub(crate) fn is_open(&self) -> bool {
        self.threshold.is_some() && self.now_micros() >= self.paused_until.load(Ordering::Relaxed)
    }

    /// Pipelining stops for `PAUSE` from now. True when it was running.
    pub(crate) fn pause(&self) -> bool {
        let now = self.now_micros();
        let until = now.saturating_add(PAUSE.as_micros() as u64);
        self.paused_until.swap(until, Ordering::Relaxed) <= now
    }

    /// Nothing goes behind `route` for `SLOW_PATH_REMEMBERED` from `at`.
    pub(crate) fn remember_slow(&self, route: u64, at: Instant) {
        if route == 0 {
            return;
        }
        if let Ok(mut paths) = self.paths.lock() {
            let Ok(Some(mut record)) = paths.get_mut_or_insert_with(&route, new_record) else {
                return;
            };
            record.slow_at = Some(at);
            record.fast = 0;
            record.strike = None;
        }
    }

    /// An exchange for `route` ended `took` after its request went out.
    /// `under_load`: requests waited for a connection as it ended, so our
    /// own event loop may have stretched it.
    pub(crate) fn exchange_took(&self, route: u64, took: Duration, under_load: bool) -> Verdict {
        let Some(threshold) = self.threshold else {
            return Verdict::Usual;
        };
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let usual = self.usual_micros.load(Ordering::Relaxed);
        let slow = took > threshold && micros > usual.saturating_mul(USUAL_FACTOR);
        if !slow {
            super::add_to_average(&self.usual_micros, took);
            if self.usual_samples.load(Ordering::Relaxed) < USUAL_SAMPLES {
                self.usual_samples.fetch_add(1, Ordering::Relaxed);
            }
            self.note_fast(route);
            return Verdict::Usual;
        }
        let now = Instant::now();
        if route != 0 {
            let Ok(mut paths) = self.paths.lock() else {
                return Verdict::Slow { remember: false };
            };
            if let Some(mut record) = paths.get_mut(&route) {
                if record.fast >= KNOWN_FAST {
                    let began = now.checked_sub(took).unwrap_or(now);
                    match record.strike {
                        // Began after the first slow one ended: the path is slow.
                        Some(first_ended) if began >= first_ended => {}
                        // In flight during the first: the same stall.
                        Some(_) => return Verdict::Noted,
                        None => {
                            record.strike = Some(now);
                            return Verdict::Noted;
                        }
                    }
                }
            }
        }
        // Until "usual" is known, a slow exchange under load (a cold start:
        // hundreds of clients arriving at once stretch the first exchanges)
        // only pauses; the minute-long memory of its path needs a known
        // usual, or an exchange that ran with nothing else waiting.
        let usual_known = self.usual_samples.load(Ordering::Relaxed) >= USUAL_SAMPLES;
        Verdict::Slow {
            remember: route != 0 && (usual_known || !under_load),
        }
    }

    fn note_fast(&self, route: u64) {
        if route == 0 {
            return;
        }
        let Ok(mut paths) = self.paths.lock() else {
            return;
        };
        let Ok(Some(mut record)) = paths.get_mut_or_insert_with(&route, new_record) else {
            return;
        };
        record.fast = record.fast.saturating_add(1);
        if record.fast >= KNOWN_FAST {
            record.strike = None;
        }
    }

    /// Whether requests for `route` were slow lately: none are sent behind it.
    pub(crate) fn was_slow(&self, route: u64) -> bool {
        if route == 0 {
            return false;
        }
        let Ok(mut paths) = self.paths.lock() else {
            return true;
        };
        let Some(mut record) = paths.get_mut(&route) else {
            return false;
        };
        match record.slow_at {
            Some(at) if at.elapsed() < SLOW_PATH_REMEMBERED => true,
            Some(_) => {
                record.slow_at = None;
                false
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn route(path: &str) -> u64 {
        super::super::route_key(path)
    }

    /// Applies a slow verdict as the pool does.
    fn judge(s: &Slowness, route: u64, took: Duration, under_load: bool) -> Verdict {
        let verdict = s.exchange_took(route, took, under_load);
        if let Verdict::Slow { remember } = verdict {
            s.pause();
            if remember {
                s.remember_slow(route, Instant::now());
            }
        }
        verdict
    }

    /// `times` exchanges of 1 ms for `route`.
    fn answered_fast(s: &Slowness, route: u64, times: usize) {
        for _ in 0..times {
            assert_eq!(judge(s, route, MS, false), Verdict::Usual);
        }
    }

    #[test]
    fn slow_is_past_the_threshold_and_well_past_the_usual() {
        let s = Slowness::new(Some(10 * MS));
        let hello = route("/hello.php");
        // Under load our own event loop stretches every exchange to ~6 ms.
        for _ in 0..32 {
            judge(&s, hello, 6 * MS, false);
        }
        // 12 ms is past the threshold but only twice the usual: queueing.
        assert_eq!(judge(&s, hello, 12 * MS, false), Verdict::Usual);
        assert!(s.is_open());
        // 300 ms of a path never seen fast is a slow script: pause, and
        // remember its path.
        let report = route("/report.php");
        judge(&s, report, 300 * MS, false);
        assert!(!s.is_open());
        assert!(s.was_slow(report));
        assert!(!s.was_slow(hello));
    }

    #[test]
    fn all_slow_pages_stay_slow() {
        let s = Slowness::new(Some(10 * MS));
        for _ in 0..USUAL_SAMPLES {
            judge(&s, route("/hello.php"), MS, false);
        }
        let slow = route("/slow.php");
        for _ in 0..16 {
            judge(&s, slow, 300 * MS, false);
        }
        assert!(s.was_slow(slow), "slow samples never make slowness usual");
    }

    #[test]
    fn a_cold_start_under_load_pauses_but_marks_no_path() {
        let s = Slowness::new(Some(10 * MS));
        let hello = route("/hello.php");
        judge(&s, hello, 30 * MS, true);
        assert!(!s.is_open());
        assert!(!s.was_slow(hello));
        // One that ran alone is the script's own time.
        let report = route("/report.php");
        judge(&s, report, 300 * MS, false);
        assert!(s.was_slow(report));
    }

    #[tokio::test(start_paused = true)]
    async fn one_stall_does_not_make_a_known_fast_path_slow() {
        let s = Slowness::new(Some(10 * MS));
        let hello = route("/hello.php");
        answered_fast(&s, hello, 32);
        // A 40 ms stall stretches the four exchanges in flight at once.
        tokio::time::advance(40 * MS).await;
        for _ in 0..4 {
            assert_eq!(judge(&s, hello, 40 * MS, false), Verdict::Noted);
        }
        assert!(s.is_open(), "one stall pauses nothing");
        assert!(!s.was_slow(hello));
        // Fast again: the stall is forgotten; the next stall is one again.
        answered_fast(&s, hello, KNOWN_FAST.into());
        tokio::time::advance(40 * MS).await;
        assert_eq!(judge(&s, hello, 40 * MS, false), Verdict::Noted);
        assert!(s.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn a_known_fast_path_slow_twice_in_a_row_is_slow() {
        let s = Slowness::new(Some(10 * MS));
        let search = route("/search.php");
        answered_fast(&s, search, 32);
        tokio::time::advance(300 * MS).await;
        assert_eq!(judge(&s, search, 300 * MS, false), Verdict::Noted);
        // The next one began after that one ended, and was slow too.
        tokio::time::advance(300 * MS).await;
        assert_eq!(
            judge(&s, search, 300 * MS, false),
            Verdict::Slow { remember: true }
        );
        assert!(!s.is_open());
        assert!(s.was_slow(search));
    }
}
