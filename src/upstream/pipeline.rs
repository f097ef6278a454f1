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
//!   pipelining for `slowness::PAUSE` on every serving thread. A slow
//!   request thus delays at most the `MAX_BEHIND` requests already behind it;
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

/// The most requests waiting on a connection behind its running one. More
/// behind means more requests stuck behind an unexpectedly slow one, and
/// fewer refill writes, each one that finds a php-fpm worker asleep in
/// `read` paying its wake (over tcp, a wake of a halted CPU, inside our
/// `writev`). 4 (refilled at 2) left the workers asleep 0.45 times per
/// request at one serving thread (hello.php, wrk -c32, 4 workers, tcp);
/// 16 (refilled at 8), 2 serving threads, tcp, wrk -c256: 47-51k req/s at
/// 15.9-17.3 µs of our CPU per request, php-fpm asleep 0.08-0.09 times per
/// request, against 36-38k at 22.2-23.1 µs and 0.34-0.39 with 4 and 40-44k
/// at 18.3-20.6 µs with 8 (three 3-s runs each against one process, each
/// server in its own session). With one thread, 16 against 8 there: 13.2-
/// 14.6 against 13.9-16.5 µs.
pub(crate) const MAX_BEHIND: usize = 16;

/// While more than this many wait behind the running request, places freed
/// stay empty and are filled together later, as many as fit in one write
/// (`LeaseGuard::places_to_fill`).
pub(crate) const REFILL_AT: usize = MAX_BEHIND / 2;

/// The largest request (head and inline body) sent ahead: `MAX_BEHIND` of
/// them leave at most 64 KiB unread by php-fpm in its socket, less than a
/// socket's buffer (unix: 208 KiB, tcp: 128 KiB to start with), so writing
/// them never waits.
pub(crate) const MAX_HEAD: usize = 64 * 1024 / MAX_BEHIND;
// A deeper pipeline must not shrink it below a usual request's size unseen.
const _: () = assert!(MAX_HEAD >= 4 * 1024);

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
    /// ahead now (paused, larger than `MAX_HEAD`, its path `route` was slow
    /// lately, or a panic poisoned the queue): it then waits as usual.
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
    fn a_request_larger_than_max_head_is_not_queued() {
        let pipeline = Pipeline::new(Some(Duration::from_millis(10)));
        let fits = Bytes::from(vec![0u8; MAX_HEAD]);
        let too_big = Bytes::from(vec![0u8; MAX_HEAD + 1]);
        assert!(pipeline.enqueue(&too_big, 1).is_none());
        assert!(!pipeline.has_queued());
        assert!(pipeline.enqueue(&fits, 1).is_some());
        assert!(pipeline.has_queued());
    }
}
