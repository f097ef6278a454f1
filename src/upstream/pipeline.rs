//! Pipelining: when every pooled connection is busy, requests without a
//! streamed body may be written onto a connection whose current request is
//! still running (up to `MAX_BEHIND` of them). php-fpm then finds the next
//! request waiting when it ends the current one, instead of going to sleep
//! in `read` and being woken by our write. Measured here (hello.php, wrk
//! -c32, 4 workers): php-fpm's CPU per request 23 -> 11 µs, the gateway's
//! 21 -> 13.5 µs, since waking a process that is not asleep is cheap.
//!
//! The price is head-of-line blocking: a request behind waits for those
//! ahead, however long they run. So requests are only sent ahead:
//! - onto a reused connection (a live worker, not one in php-fpm's backlog)
//!   whose own request has no streamed body (php-fpm has all of it);
//! - when the request is small (`MAX_HEAD`): what waits in the socket
//!   unread must never fill it, or our write would wait for php-fpm while
//!   php-fpm waits for us to read its response;
//! - while no request that cannot be sent ahead waits for a connection:
//!   a connection with requests behind is handed on, never released, so it
//!   would otherwise never come free for that one;
//! - while the pool's recent exchanges were all fast: one that takes longer
//!   than the threshold (`--upstream-pipelining`, 10 ms by default) pauses
//!   pipelining for `PAUSE`. A slow request thus delays at most the
//!   `MAX_BEHIND` requests already behind it;
//! - and never for or behind a request for a URL path that was slow in the
//!   last `SLOW_PATH_REMEMBERED` (a long poll, an export): only the first
//!   slow request to a path can hold others up.
//!
//! What is written onto a connection stays there: when the request ahead
//! ends, the connection with the next request's response to come is handed
//! to that request (`Handoff::Ready`). When the request ahead is abandoned,
//! its response is read and dropped first (`Lease`'s drop), so the one behind
//! is not lost. When the connection dies before the request ahead ended,
//! php-fpm never read the one behind: it is sent again (`Handoff::NotSent`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::pool::Lease;
use super::UpstreamError;

/// The most requests written behind the running one on a connection. With
/// 4 php-fpm workers under wrk -c32: 2 behind gave 1.45x nginx's hello.php
/// rate, 4 gave 1.86x, 8 gave 2.0x; more also means more requests stuck
/// behind an unexpectedly slow one.
pub(crate) const MAX_BEHIND: usize = 4;
/// The largest request (head and inline body) sent ahead. With
/// `MAX_BEHIND` of them a connection holds at most 32 KiB that php-fpm has
/// not read: less than any socket buffer, so writing them never waits.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// How long a URL path that was slow gets no requests sent behind it.
const SLOW_PATH_REMEMBERED: Duration = Duration::from_secs(60);
/// Slow paths remembered at most; past it, the memory starts afresh.
const SLOW_PATHS_MAX: usize = 4096;
/// An exchange is slow only past this many times the usual one.
const USUAL_FACTOR: u64 = 4;
/// Exchanges before the usual time counts as known.
const USUAL_SAMPLES: u64 = 16;
/// How long pipelining stays off after something was slow.
pub(crate) const PAUSE: Duration = Duration::from_secs(2);

/// What a request that was sent ahead learns when the request before it ends.
/// The lease is kept inline: it travels in the oneshot channel's own
/// allocation, where a box would add one more per request sent ahead.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Handoff {
    /// The connection it was written to; its response comes next.
    Ready(Lease),
    /// The connection died before the request ahead ended, so php-fpm never
    /// read this one: it may be sent again.
    NotSent,
    /// The connection failed in a way that leaves open whether php-fpm ran it.
    Lost(UpstreamError),
}

const QUEUED: u8 = 0;
/// Taken by a running exchange, which writes it onto its connection.
const CLAIMED: u8 = 1;
/// The waiter got a connection of its own first.
const WITHDRAWN: u8 = 2;

/// A request that may be sent ahead, waiting to be claimed.
#[derive(Debug)]
struct Queued {
    head: Bytes,
    state: Arc<AtomicU8>,
    tx: oneshot::Sender<Handoff>,
}

/// The pool's queue of requests that may be sent ahead, and whether
/// pipelining is on right now.
#[derive(Debug)]
pub(crate) struct Pipeline {
    /// An exchange slower than this pauses pipelining (a request behind a
    /// slow one waits for it); None: pipelining is off.
    slow: Option<Duration>,
    queue: Mutex<VecDeque<Queued>>,
    /// Entries in `queue` (a lock-free look on every exchange).
    queued: AtomicUsize,
    epoch: Instant,
    /// Microseconds after `epoch` until which pipelining is paused.
    paused_until: AtomicU64,
    /// Moving average of the exchanges that were not slow, in µs: what
    /// "usual" is, queueing in our own event loop included.
    usual_micros: AtomicU64,
    /// Exchanges that went into `usual_micros` (up to `USUAL_SAMPLES`).
    usual_samples: AtomicU64,
    /// Requests written ahead onto a busy connection.
    pub(crate) sent_ahead: AtomicU64,
    /// Requests waiting for a connection that cannot be sent ahead: while
    /// there are any, nothing is, so connections come free for them.
    others_waiting: AtomicUsize,
    /// URL paths (`route_key`) that were slow, and when.
    slow_paths: Mutex<HashMap<u64, Instant>>,
}

/// A URL path's key for remembering that it was slow (0 is "none").
pub fn route_key(path: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    path.hash(&mut hasher);
    hasher.finish().max(1)
}

/// A waiter's place in the queue.
#[derive(Debug)]
pub(crate) struct Ticket {
    state: Arc<AtomicU8>,
    rx: oneshot::Receiver<Handoff>,
}

impl Pipeline {
    pub(crate) fn new(slow: Option<Duration>) -> Pipeline {
        Pipeline {
            slow,
            queue: Mutex::new(VecDeque::new()),
            queued: AtomicUsize::new(0),
            epoch: Instant::now(),
            paused_until: AtomicU64::new(0),
            usual_micros: AtomicU64::new(0),
            usual_samples: AtomicU64::new(0),
            sent_ahead: AtomicU64::new(0),
            others_waiting: AtomicUsize::new(0),
            slow_paths: Mutex::new(HashMap::new()),
        }
    }

    fn now_micros(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Whether requests may be sent ahead now.
    pub(crate) fn is_open(&self) -> bool {
        self.slow.is_some() && self.now_micros() >= self.paused_until.load(Ordering::Relaxed)
    }

    fn pause(&self) {
        let until = self.now_micros().saturating_add(PAUSE.as_micros() as u64);
        if self.paused_until.swap(until, Ordering::Relaxed) <= self.now_micros() {
            tracing::debug!("upstream pipelining paused: a request was slow");
        }
    }

    /// An exchange for `route` ended `took` after its request went out.
    /// `under_load`: requests waited for a connection as it ended, so our
    /// own event loop may have stretched it.
    ///
    /// Slow means past the threshold and past `USUAL_FACTOR` times the usual
    /// exchange: with hundreds of clients on one thread our own event loop
    /// can take the threshold's 10 ms to come back to an exchange, and that
    /// is no slow script (measured: a path marked slow that way under wrk
    /// -c256 lost pipelining for a minute).
    pub(crate) fn exchange_took(&self, route: u64, took: Duration, under_load: bool) {
        let Some(threshold) = self.slow else {
            return;
        };
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let usual = self.usual_micros.load(Ordering::Relaxed);
        if took <= threshold || micros <= usual.saturating_mul(USUAL_FACTOR) {
            super::add_to_average(&self.usual_micros, took);
            if self.usual_samples.load(Ordering::Relaxed) < USUAL_SAMPLES {
                self.usual_samples.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        self.pause();
        // Until "usual" is known, a slow exchange under load (a cold start:
        // hundreds of clients arriving at once stretch the first exchanges)
        // only pauses; the minute-long memory of its path needs a known
        // usual, or an exchange that ran with nothing else waiting.
        let usual_known = self.usual_samples.load(Ordering::Relaxed) >= USUAL_SAMPLES;
        if route == 0 || (under_load && !usual_known) {
            return;
        }
        if let Ok(mut paths) = self.slow_paths.lock() {
            if paths.len() >= SLOW_PATHS_MAX {
                paths.clear();
            }
            paths.insert(route, Instant::now());
        }
    }

    /// Whether requests for `route` were slow lately: none are sent behind it.
    pub(crate) fn was_slow(&self, route: u64) -> bool {
        if route == 0 {
            return false;
        }
        let Ok(mut paths) = self.slow_paths.lock() else {
            return true;
        };
        match paths.get(&route) {
            Some(at) if at.elapsed() < SLOW_PATH_REMEMBERED => true,
            Some(_) => {
                paths.remove(&route);
                false
            }
            None => false,
        }
    }

    /// Queues a request (its whole FastCGI request in `head`) to be sent
    /// ahead by the next exchange that may. None when it may not be sent
    /// ahead now (paused, too big, its path `route` was slow lately, or a
    /// panic poisoned the queue): it then waits as usual.
    pub(crate) fn enqueue(&self, head: &Bytes, route: u64) -> Option<Ticket> {
        if !self.is_open() || head.len() > MAX_HEAD || self.was_slow(route) {
            return None;
        }
        let head = head.clone();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let (tx, rx) = oneshot::channel();
        let mut queue = self.queue.lock().ok()?;
        queue.push_back(Queued {
            head,
            state: state.clone(),
            tx,
        });
        self.queued.fetch_add(1, Ordering::AcqRel);
        Some(Ticket { state, rx })
    }

    /// Whether any request waits to be sent ahead (no lock taken).
    pub(crate) fn has_queued(&self) -> bool {
        self.queued.load(Ordering::Acquire) > 0
    }

    /// The oldest queued request, now claimed: the caller writes `head` onto
    /// its connection and keeps the sender for the hand-off.
    pub(crate) fn claim(&self) -> Option<(Bytes, oneshot::Sender<Handoff>)> {
        if self.queued.load(Ordering::Acquire) == 0
            || self.others_waiting.load(Ordering::Acquire) > 0
            || !self.is_open()
        {
            return None;
        }
        let mut queue = self.queue.lock().ok()?;
        while let Some(entry) = queue.pop_front() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            if entry
                .state
                .compare_exchange(QUEUED, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.sent_ahead.fetch_add(1, Ordering::Relaxed);
                return Some((entry.head, entry.tx));
            }
        }
        None
    }

    /// Waits for `slot` (a pool permit) as a request that cannot be sent
    /// ahead, which stops requests being sent ahead meanwhile.
    pub(crate) async fn waiting_for_a_slot<F: std::future::Future>(&self, slot: F) -> F::Output {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.others_waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.others_waiting);
        slot.await
    }

    fn remove(&self, state: &Arc<AtomicU8>) {
        if let Ok(mut queue) = self.queue.lock() {
            let before = queue.len();
            queue.retain(|q| !Arc::ptr_eq(&q.state, state));
            self.queued
                .fetch_sub(before - queue.len(), Ordering::AcqRel);
        }
    }
}

impl Ticket {
    /// Takes the request out of the queue, unless an exchange already
    /// claimed it (then it is on a connection and must wait for `handoff`).
    pub(crate) fn withdraw(&self, pipeline: &Pipeline) -> bool {
        let withdrawn = self
            .state
            .compare_exchange(QUEUED, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if withdrawn {
            pipeline.remove(&self.state);
        }
        withdrawn
    }

    /// Waits for the request ahead to end (claimed requests only).
    pub(crate) async fn handoff(mut self) -> Handoff {
        // The sender went away without a word: the exchange ahead was dropped
        // while writing this request, so whether php-fpm got it is unknown.
        (&mut self.rx)
            .await
            .unwrap_or(Handoff::Lost(UpstreamError::Closed))
    }

    /// The receiving end, for waiting on it alongside a permit.
    pub(crate) fn receiver(&mut self) -> &mut oneshot::Receiver<Handoff> {
        &mut self.rx
    }
}

impl Drop for Ticket {
    /// A request given up while queued (its client left) must not be sent
    /// ahead and run for nobody: `claim` skips it from now on.
    fn drop(&mut self) {
        let _ = self
            .state
            .compare_exchange(QUEUED, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn slow_is_past_the_threshold_and_well_past_the_usual() {
        let p = Pipeline::new(Some(10 * MS));
        let route = route_key("/hello.php");
        // Under load our own event loop stretches every exchange to ~6 ms.
        for _ in 0..32 {
            p.exchange_took(route, 6 * MS, false);
        }
        // 12 ms is past the threshold but only twice the usual: queueing.
        p.exchange_took(route, 12 * MS, false);
        assert!(p.is_open());
        assert!(!p.was_slow(route));
        // 300 ms is a slow script: pause, and remember its path.
        let report = route_key("/report.php");
        p.exchange_took(report, 300 * MS, false);
        assert!(!p.is_open());
        assert!(p.was_slow(report));
        assert!(!p.was_slow(route));
    }

    #[test]
    fn all_slow_pages_stay_slow() {
        let p = Pipeline::new(Some(10 * MS));
        for _ in 0..USUAL_SAMPLES {
            p.exchange_took(route_key("/hello.php"), MS, false);
        }
        let route = route_key("/slow.php");
        for _ in 0..16 {
            p.exchange_took(route, 300 * MS, false);
        }
        assert!(p.was_slow(route), "slow samples never make slowness usual");
    }

    #[test]
    fn a_cold_start_under_load_pauses_but_marks_no_path() {
        // The first exchanges, before any usual time is known, with
        // requests waiting: our own loop may have stretched them.
        let p = Pipeline::new(Some(10 * MS));
        let route = route_key("/hello.php");
        p.exchange_took(route, 30 * MS, true);
        assert!(!p.is_open());
        assert!(!p.was_slow(route));
        // One that ran alone is the script's own time.
        let report = route_key("/report.php");
        p.exchange_took(report, 300 * MS, false);
        assert!(p.was_slow(report));
    }
}
