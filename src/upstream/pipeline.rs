//! Pipelining: when every pooled connection is busy, requests without a
//! streamed body may be written onto a connection whose current request is
//! still running (up to `Depth::most` of them). php-fpm then finds the next
//! request waiting when it ends the current one, instead of going to sleep
//! in `read` and being woken by our write. Measured here (hello.php, wrk
//! -c32, 4 workers): php-fpm's CPU per request 23 -> 11 µs, the gateway's
//! 21 -> 13.5 µs, since waking a process that is not asleep is cheap.
//!
//! The price is head-of-line blocking: a request behind waits for those
//! ahead, however long they run. So requests are only sent ahead:
//! - onto a reused connection (a live worker, not one in php-fpm's backlog)
//!   whose own request has no streamed body (php-fpm has all of it);
//! - when the request is small (`Depth::largest_head`): what waits in the
//!   socket unread must never fill it, or our write would wait for php-fpm
//!   while php-fpm waits for us to read its response;
//! - while no request that cannot be sent ahead waits for a connection:
//!   a connection with requests behind is handed on, never released, so it
//!   would otherwise never come free for that one;
//! - while the pool's recent exchanges were all fast: one that takes longer
//!   than the threshold (`--upstream-pipelining`, 10 ms by default) pauses
//!   pipelining for `slowness::PAUSE` on every serving thread. A slow
//!   request thus delays at most the `Depth::most` requests already behind it;
//! - and never for or behind a request for a URL path that was slow in the
//!   last minute (a long poll, an export): only the first slow request to
//!   a path (the first two, for a path seen fast many times) can hold
//!   others up (`slowness`).
//!
//! What is written onto a connection stays there: when the request ahead
//! ends, the connection with the next request's response to come is handed
//! to that request (`Handoff::Ready`). When the request ahead is abandoned,
//! its response is read and dropped first (`Lease`'s drop), so the one behind
//! is not lost. When the connection dies before the request ahead ended,
//! php-fpm never read the one behind: it is sent again (`Handoff::NotSent`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::pool::Lease;
use super::slowness::Slowness;
use super::UpstreamError;

/// How many requests may wait on a connection behind its running one
/// (`most`), and from how few behind it is refilled (`refill_at`: while
/// more wait, places freed stay empty and are filled together later, as
/// many as fit in one write; `LeaseGuard::places_to_fill`). More behind
/// also means more requests stuck behind an unexpectedly slow one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Depth {
    pub most: usize,
    pub refill_at: usize,
}

/// The deepest a connection's pipeline gets (`Depth::for_threads`).
pub(crate) const MAX_BEHIND: usize = 16;

/// The most a connection's requests behind may hold together, unread by
/// php-fpm: less than a socket's buffer (unix: 208 KiB, tcp: 128 KiB to
/// start with), so writing them never waits.
const MOST_UNREAD: usize = 64 * 1024;

/// The largest request (head and inline body) sent ahead at any depth.
const MOST_HEAD: usize = 8 * 1024;

impl Depth {
    /// With one serving thread, that thread does every client's HTTP work
    /// and refills every connection: the deeper the pipelines, the more
    /// requests each write carries and the fewer times php-fpm's workers
    /// run dry and sleep in `read`, to be woken by the next write (over
    /// tcp a wake of a halted CPU, paid in our `writev`). 4 behind
    /// (refilled at 2) left them asleep 0.45 times per request (hello.php,
    /// wrk -c32, 4 workers, tcp); 8 (refilled at 4) took hello over tcp at
    /// c=256 from 1.06x to 1.36x nginx's rate, at 0.84x its CPU per
    /// request instead of 1.08x (one A/B run, 1 worker each;
    /// docs/benchmarks.md); 16 (refilled at 8) there 13.2-14.6 µs of our
    /// CPU per request against 13.9-16.5 µs with 8 (4 interleaved rounds,
    /// each server in its own session). With several threads, 8 kept
    /// php-fpm so busy that the threads ran out of work and slept about
    /// once per request, waking at each answer (tcp, c=256: 30-41k req/s
    /// against 33-38k with 4), so 4 there.
    pub(crate) fn for_threads(threads: usize) -> Depth {
        if threads <= 1 {
            Depth {
                most: MAX_BEHIND,
                refill_at: MAX_BEHIND / 2,
            }
        } else {
            Depth {
                most: 4,
                refill_at: 2,
            }
        }
    }

    /// The largest request (head and inline body) sent ahead: the most
    /// behind (`most`) of them together hold no more than `MOST_UNREAD`.
    pub(crate) fn largest_head(&self) -> usize {
        (MOST_UNREAD / self.most.max(1)).min(MOST_HEAD)
    }
}

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
    /// A connection that came free on the waiter's own serving thread: the
    /// request is not on it yet, the waiter writes it (`Pool::acquire`).
    /// Handing it over directly keeps it on that thread, where a permit
    /// given back would go to the oldest waiter of any thread.
    Free(Lease),
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
    /// Slow exchanges and paths, and the pause after one.
    pub(crate) slowness: Slowness,
    queue: Mutex<VecDeque<Queued>>,
    /// Entries in `queue` (a lock-free look on every exchange).
    queued: AtomicUsize,
    /// Requests written ahead onto a busy connection.
    pub(crate) sent_ahead: AtomicU64,
    /// Writes that carried them (several requests gathered into one).
    pub(crate) send_ahead_writes: AtomicU64,
    /// Requests waiting for a connection that cannot be sent ahead: while
    /// there are any, nothing is, so connections come free for them.
    others_waiting: AtomicUsize,
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
            slowness: Slowness::new(slow),
            queue: Mutex::new(VecDeque::new()),
            queued: AtomicUsize::new(0),
            sent_ahead: AtomicU64::new(0),
            send_ahead_writes: AtomicU64::new(0),
            others_waiting: AtomicUsize::new(0),
        }
    }

    /// Whether requests may be sent ahead now.
    pub(crate) fn is_open(&self) -> bool {
        self.slowness.is_open()
    }

    /// Whether requests for `route` were slow lately: none are sent behind it.
    pub(crate) fn was_slow(&self, route: u64) -> bool {
        self.slowness.was_slow(route)
    }

    /// Queues a request (its whole FastCGI request in `head`) to be sent
    /// ahead by the next exchange that may. None when it may not be sent
    /// ahead now (paused, larger than `largest_head`, its path `route` was
    /// slow lately, or a panic poisoned the queue): it then waits as usual.
    pub(crate) fn enqueue(&self, head: &Bytes, route: u64, largest_head: usize) -> Option<Ticket> {
        if !self.is_open() || head.len() > largest_head || self.was_slow(route) {
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
        if self.others_waiting.load(Ordering::Acquire) > 0 || !self.is_open() {
            return None;
        }
        let (head, tx) = self.take_oldest()?;
        self.sent_ahead.fetch_add(1, Ordering::Relaxed);
        Some((head, tx))
    }

    /// The oldest queued request, now claimed to be handed a free
    /// connection (`Handoff::Free`) rather than sent ahead; under the same
    /// rules, so a request that cannot be sent ahead is not passed over.
    /// Pipelining paused or not: the request is not sent ahead.
    pub(crate) fn claim_waiter(&self) -> Option<oneshot::Sender<Handoff>> {
        if self.others_waiting.load(Ordering::Acquire) > 0 {
            return None;
        }
        self.take_oldest().map(|(_, tx)| tx)
    }

    /// The oldest queued request, claimed only to be told to wait again
    /// (`Handoff::NotSent`), whatever else waits.
    pub(crate) fn claim_to_recheck(&self) -> Option<oneshot::Sender<Handoff>> {
        self.take_oldest().map(|(_, tx)| tx)
    }

    fn take_oldest(&self) -> Option<(Bytes, oneshot::Sender<Handoff>)> {
        if self.queued.load(Ordering::Acquire) == 0 {
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

    #[test]
    fn the_requests_behind_hold_no_more_than_most_unread_together() {
        for threads in [1, 2, 4, 64] {
            let depth = Depth::for_threads(threads);
            assert!(depth.most <= MAX_BEHIND, "{depth:?}");
            assert!(
                depth.largest_head() * depth.most <= MOST_UNREAD,
                "{depth:?}"
            );
        }
        // One thread: 16 behind, each at most 4 KiB; several: 4, at most 8.
        assert_eq!(Depth::for_threads(1).largest_head(), 4 * 1024);
        assert_eq!(Depth::for_threads(2).largest_head(), 8 * 1024);
    }

    #[test]
    fn a_request_larger_than_the_largest_head_is_not_queued() {
        let pipeline = Pipeline::new(Some(Duration::from_millis(10)));
        let largest = Depth::for_threads(1).largest_head();
        let fits = Bytes::from(vec![0u8; largest]);
        let too_big = Bytes::from(vec![0u8; largest + 1]);
        assert!(pipeline.enqueue(&too_big, 1, largest).is_none());
        assert!(!pipeline.has_queued());
        let ticket = pipeline.enqueue(&fits, 1, largest);
        assert!(ticket.is_some());
        assert!(pipeline.has_queued());
    }
}
