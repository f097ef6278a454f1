//! The pool of kept-alive FastCGI connections to one upstream.
//!
//! - A permit per connection: open (idle + busy) never exceeds the size.
//! - Waiters queue FIFO (tokio's semaphore is fair), bounded in length and time.
//! - Idle connections are LIFO, checked for liveness at checkout, reaped after
//!   the idle timeout so dynamic php-fpm pools can shrink.
//! - A kept-alive connection pins a php-fpm worker, so a connection of ours
//!   waiting in php-fpm's listen backlog is served only when we close one.
//!   While one waits there, a connection coming back (or, if none comes, the
//!   oldest idle one) is closed to free its worker for it: php-fpm's backlog
//!   then serves our requests in order, as it does for nginx without
//!   keep-alive, and no kept-alive connection sits idle on a worker.
//! - Where php-fpm runs on this host the kernel says how many connections
//!   wait in that backlog (`connect`, `listen_queue`): the pool shrinks to
//!   the connections php-fpm accepted the moment one of ours waits, and
//!   tries one more every `PROBE_EVERY` while requests queue and nothing
//!   waits there. Elsewhere (remote tcp) a fresh connection without its
//!   first byte well past the usual time counts as waiting, and the size is
//!   learned from how often that happens (`capacity`).
//! - Failed connects back off, so a dead php-fpm is not hammered.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::capacity::{AwaitingFresh, ExactSizing, Learning, Stuck, Verdict, STUCK_MIN};
use super::conn::{self, Conn, ExchangeTimeouts};
use super::connect::{AddrConnector, Connect};
use super::pipeline::{Handoff, Pipeline};
use super::{UpstreamAddr, UpstreamError};

mod lease;
#[cfg(test)]
mod tests;
use lease::Held;
pub use lease::Lease;
pub(crate) use lease::LeaseGuard;

/// How the pool is set up; built from the config. A reload keeps the pool
/// (and its warm connections) when these are equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub addr: UpstreamAddr,
    pub max_conns: usize,
    pub max_idle: usize,
    pub queue_length: usize,
    pub connect_timeout: Duration,
    pub acquire_timeout: Duration,
    pub idle_timeout: Duration,
    pub read_timeout: Duration,
    /// Whether bodiless requests may be written ahead onto busy connections
    /// when all are busy (`pipeline`): while no exchange took longer than this.
    pub pipelining: Option<Duration>,
}

/// Counters, readable at any time (exposed by metrics later).
#[derive(Debug, Default)]
pub struct PoolStats {
    pub acquired: AtomicU64,
    pub waited_micros: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub reused: AtomicU64,
    /// Idle connections found closed by php-fpm (EOF/reset) at checkout.
    pub stale_dropped: AtomicU64,
    /// Idle connections closed by the idle timeout.
    pub idle_reaped: AtomicU64,
    pub retries: AtomicU64,
    /// Requests refused with 503: queue full or acquire timeout.
    pub saturated: AtomicU64,
    /// Connections closed on return because a fresh one waited for a worker.
    pub closed_for_waiter: AtomicU64,
    /// Times php-fpm's listen backlog was read (the exact signal).
    pub backlog_reads: AtomicU64,
}

/// Told the times of the pool's work as it happens (metrics implement it).
pub trait ExchangeObserver: Send + Sync + std::fmt::Debug {
    /// A new connection was dialled successfully, taking `took`.
    fn connected(&self, took: Duration);
    /// A client request's first STDOUT record came `after` its first write.
    fn first_byte(&self, after: Duration);
    /// A client request left the upstream (answered, failed or abandoned)
    /// `total` after it was handed to the pool.
    fn finished(&self, total: Duration);
}

/// A point-in-time view of the pool, for logs, tests and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSnapshot {
    pub size: usize,
    pub open: usize,
    pub idle: usize,
    pub busy: usize,
    pub waiting: usize,
    pub acquired: u64,
    pub waited_micros: u64,
    pub connects: u64,
    pub connect_failures: u64,
    pub reused: u64,
    pub stale_dropped: u64,
    pub idle_reaped: u64,
    pub retries: u64,
    pub saturated: u64,
    pub closed_for_waiter: u64,
    /// Requests written onto a connection while the one before still ran.
    pub sent_ahead: u64,
    /// Whether php-fpm's listen backlog can be read from here (`connect`).
    pub sees_backlog: bool,
    pub backlog_reads: u64,
}

impl PoolStats {
    pub(crate) fn note_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[derive(Debug)]
struct Backoff {
    /// Connects are refused without dialing until then.
    until: Option<Instant>,
    next_delay: Duration,
}

const BACKOFF_MIN: Duration = Duration::from_millis(20);
/// How long a new connection may sit in php-fpm's accept queue before it
/// counts as waiting for a worker: a free worker takes it within
/// microseconds, a busy machine's scheduler may take a little longer.
const ACCEPT_GRACE: Duration = Duration::from_millis(2);
/// The longest a worker we freed counts as on its way to accept: past it,
/// the kernel's count is believed as it is.
const IN_TRANSIT_MAX: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct PoolInner {
    settings: PoolSettings,
    connector: Arc<dyn Connect>,
    /// Current size: learned from php-fpm's backlog, or told by its status page.
    size: AtomicUsize,
    permits: Arc<Semaphore>,
    /// Permits to retire as leases give them back, after a shrink below
    /// the connections in use.
    surplus: AtomicUsize,
    /// Sizing by the exact backlog signal (`capacity::ExactSizing`).
    exact: Mutex<ExactSizing>,
    /// Connections we closed to free their workers for ours in the
    /// backlog, with when and the backlog then: until the kernel's count
    /// drops below that, the worker is still on its way to accept one.
    freed_for_backlog: Mutex<Vec<(Instant, usize)>>,
    /// The backlog as last read.
    last_backlog: AtomicUsize,
    /// One of our connections waited in php-fpm's backlog at the current
    /// size: php-fpm has no worker free for one more (read lock-free when
    /// deciding whether to send a request ahead).
    at_capacity: AtomicBool,
    idle: Mutex<Vec<Conn>>,
    busy: AtomicUsize,
    waiting: AtomicUsize,
    /// Fresh connections whose request went out but no byte came back yet
    /// (the count, for a lock-free check on every release).
    fresh_awaiting_first_byte: AtomicUsize,
    /// The same connections, with when each was sent.
    awaiting: Mutex<Vec<AwaitingFresh>>,
    next_awaiting_id: AtomicU64,
    /// Moving average of the time to first byte on reused connections: what
    /// "normal" is, so a fresh connection is only called stuck well past it.
    reused_first_byte_micros: AtomicU64,
    backoff: Mutex<Backoff>,
    learning: Mutex<Learning>,
    /// Set once php-fpm itself told the size: learning from evidence stops.
    size_is_known: std::sync::atomic::AtomicBool,
    stats: PoolStats,
    observer: OnceLock<Arc<dyn ExchangeObserver>>,
    pub(crate) pipeline: Pipeline,
}

/// A cheap handle; clones share one pool.
#[derive(Debug, Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

impl Pool {
    pub fn new(settings: PoolSettings) -> Pool {
        let connector = Arc::new(AddrConnector::new(settings.addr.clone()));
        Pool::with_connector(settings, connector)
    }

    /// A pool that opens its connections through `connector` (the seam the
    /// pool's own tests use); `settings.addr` only names it in logs.
    pub fn with_connector(settings: PoolSettings, connector: Arc<dyn Connect>) -> Pool {
        let size = settings.max_conns.max(1);
        Pool {
            inner: Arc::new(PoolInner {
                connector,
                surplus: AtomicUsize::new(0),
                exact: Mutex::new(ExactSizing::default()),
                freed_for_backlog: Mutex::new(Vec::new()),
                last_backlog: AtomicUsize::new(0),
                at_capacity: AtomicBool::new(false),
                permits: Arc::new(Semaphore::new(size)),
                size: AtomicUsize::new(size),
                idle: Mutex::new(Vec::with_capacity(size)),
                busy: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
                fresh_awaiting_first_byte: AtomicUsize::new(0),
                awaiting: Mutex::new(Vec::new()),
                next_awaiting_id: AtomicU64::new(0),
                reused_first_byte_micros: AtomicU64::new(0),
                backoff: Mutex::new(Backoff {
                    until: None,
                    next_delay: BACKOFF_MIN,
                }),
                learning: Mutex::new(Learning::default()),
                size_is_known: std::sync::atomic::AtomicBool::new(false),
                stats: PoolStats::default(),
                observer: OnceLock::new(),
                pipeline: Pipeline::new(settings.pipelining),
                settings,
            }),
        }
    }

    pub fn settings(&self) -> &PoolSettings {
        &self.inner.settings
    }

    pub fn stats(&self) -> &PoolStats {
        &self.inner.stats
    }

    /// Sets who is told the pool's timings; the first one set stays.
    pub fn set_observer(&self, observer: Arc<dyn ExchangeObserver>) {
        let _ = self.inner.observer.set(observer);
    }

    pub(crate) fn observer(&self) -> Option<&dyn ExchangeObserver> {
        self.inner.observer.get().map(|o| &**o)
    }

    pub fn exchange_timeouts(&self) -> ExchangeTimeouts {
        ExchangeTimeouts {
            read: self.inner.settings.read_timeout,
        }
    }

    /// The current size (most connections open at once).
    pub fn size(&self) -> usize {
        self.inner.size.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> PoolSnapshot {
        let inner = &self.inner;
        let s = &inner.stats;
        let idle = inner.idle.lock().map(|v| v.len()).unwrap_or(0);
        let busy = inner.busy.load(Ordering::Relaxed);
        PoolSnapshot {
            size: inner.size.load(Ordering::Relaxed),
            open: idle + busy,
            idle,
            busy,
            waiting: inner.waiting.load(Ordering::Relaxed),
            acquired: get(&s.acquired),
            waited_micros: get(&s.waited_micros),
            connects: get(&s.connects),
            connect_failures: get(&s.connect_failures),
            reused: get(&s.reused),
            stale_dropped: get(&s.stale_dropped),
            idle_reaped: get(&s.idle_reaped),
            retries: get(&s.retries),
            saturated: get(&s.saturated),
            closed_for_waiter: get(&s.closed_for_waiter),
            sent_ahead: get(&inner.pipeline.sent_ahead),
            sees_backlog: inner.connector.sees_backlog(),
            backlog_reads: get(&s.backlog_reads),
        }
    }

    /// Sets the size php-fpm reported (its status page): from then on the
    /// pool no longer guesses its capacity from backlog evidence.
    pub fn set_known_size(&self, size: usize, why: &str) {
        self.inner.size_is_known.store(true, Ordering::Release);
        self.resize(size, why);
    }

    /// Changes the pool size (e.g. to php-fpm's `max children`). Shrinking
    /// closes idle connections beyond the new size now; busy ones are
    /// closed, and their permits retired, as they come back.
    pub fn resize(&self, new_size: usize, why: &str) {
        self.inner.resize(new_size, why);
    }

    /// Waits (FIFO, bounded in length and time) for a slot, then hands out a
    /// live idle connection or dials a new one. `fresh_only` skips idle ones
    /// (the retry after a reused connection failed). `ahead`, the whole
    /// request of one without a streamed body, lets it be sent ahead onto a
    /// busy connection while it waits (`pipeline`); the lease then says so.
    /// `route` is its URL path's key (`pipeline::route_key`).
    pub async fn acquire(
        &self,
        fresh_only: bool,
        ahead: Option<&Bytes>,
        route: u64,
    ) -> Result<Lease, UpstreamError> {
        let inner = &self.inner;
        let mut ahead = ahead;
        let (permit, waited) = loop {
            if let Ok(permit) = inner.permits.clone().try_acquire_owned() {
                break (permit, Duration::ZERO);
            }
            // Every connection is busy: php-fpm may have a worker free.
            if inner.probe_one_more() {
                continue;
            }
            match self.wait_for_permit(ahead.take(), route).await? {
                (Granted::Permit(permit), waited) => break (permit, waited),
                (Granted::Handoff(Handoff::Ready(mut lease)), waited) => {
                    inner.stats.acquired.fetch_add(1, Ordering::Relaxed);
                    inner.stats.reused.fetch_add(1, Ordering::Relaxed);
                    lease.waited = waited;
                    lease.set_route(route);
                    return Ok(lease);
                }
                // php-fpm never read it: wait again, this time for a slot of its own.
                (Granted::Handoff(Handoff::NotSent), _) => continue,
                (Granted::Handoff(Handoff::Lost(e)), _) => return Err(e),
            }
        };
        inner.stats.acquired.fetch_add(1, Ordering::Relaxed);
        if !fresh_only {
            while let Some(mut conn) = self.pop_idle() {
                if conn.idle_since.elapsed() >= inner.settings.idle_timeout {
                    inner.stats.idle_reaped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if conn.is_stale() {
                    inner.stats.stale_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                inner.stats.reused.fetch_add(1, Ordering::Relaxed);
                return Ok(self.lease(conn, permit, waited, None, route));
            }
        }
        self.check_backoff()?;
        inner.stats.connects.fetch_add(1, Ordering::Relaxed);
        let dial_start = Instant::now();
        let connecting = inner.connector.connect();
        match conn::dial_with(
            connecting,
            &inner.settings.addr,
            inner.settings.connect_timeout,
        )
        .await
        {
            Ok(conn) => {
                let took = dial_start.elapsed();
                if let Some(observer) = self.observer() {
                    observer.connected(took);
                }
                self.connect_succeeded();
                Ok(self.lease(conn, permit, waited, Some(took), route))
            }
            Err(e) => {
                inner.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                self.connect_failed();
                Err(e)
            }
        }
    }

    /// A permit after waiting in the queue, or, for a request that may be
    /// sent ahead (`ahead`), a connection it was written onto; and how long
    /// that took.
    async fn wait_for_permit(
        &self,
        ahead: Option<&Bytes>,
        route: u64,
    ) -> Result<(Granted, Duration), UpstreamError> {
        let inner = &self.inner;
        let wait = inner.settings.acquire_timeout;
        let queued = inner.waiting.fetch_add(1, Ordering::AcqRel);
        let _unqueue = DecrementOnDrop(&inner.waiting);
        if queued >= inner.settings.queue_length {
            inner.stats.saturated.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(upstream = %inner.settings.addr, queue_length = inner.settings.queue_length, "upstream pool saturated: wait queue full");
            return Err(UpstreamError::QueueFull {
                length: inner.settings.queue_length,
            });
        }
        let started = Instant::now();
        let pipeline = &inner.pipeline;
        let ticket = ahead.and_then(|head| pipeline.enqueue(head, route));
        let permit = inner.permits.clone().acquire_owned();
        let res = match ticket {
            None => match tokio::time::timeout(wait, pipeline.waiting_for_a_slot(permit)).await {
                Ok(Ok(permit)) => Ok(Granted::Permit(permit)),
                Ok(Err(_)) | Err(_) => Err(()),
            },
            Some(mut ticket) => {
                #[allow(clippy::large_enum_variant)] // a local, never boxed
                enum First {
                    Permit(Option<OwnedSemaphorePermit>),
                    Handoff(Handoff),
                    TimedOut,
                }
                let first = tokio::select! {
                    biased;
                    handoff = ticket.receiver() => {
                        First::Handoff(handoff.unwrap_or(Handoff::Lost(UpstreamError::Closed)))
                    }
                    permit = permit => First::Permit(permit.ok()),
                    _ = tokio::time::sleep(wait) => First::TimedOut,
                };
                match first {
                    First::Handoff(handoff) => Ok(Granted::Handoff(handoff)),
                    First::Permit(Some(permit)) if ticket.withdraw(pipeline) => {
                        Ok(Granted::Permit(permit))
                    }
                    First::Permit(None) | First::TimedOut if ticket.withdraw(pipeline) => Err(()),
                    // Claimed meanwhile: the request is on a connection now,
                    // and that connection is its only way to a response.
                    _ => Ok(Granted::Handoff(ticket.handoff().await)),
                }
            }
        };
        let waited = started.elapsed();
        inner
            .stats
            .waited_micros
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
        match res {
            Ok(granted) => Ok((granted, waited)),
            // The semaphore is never closed; treat that like saturation anyway.
            Err(()) => {
                inner.stats.saturated.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(upstream = %inner.settings.addr, after = ?wait, "upstream pool saturated: no connection free in time");
                Err(UpstreamError::AcquireTimeout { after: wait })
            }
        }
    }

    fn lease(
        &self,
        conn: Conn,
        permit: OwnedSemaphorePermit,
        waited: Duration,
        dialled: Option<Duration>,
        route: u64,
    ) -> Lease {
        self.inner.busy.fetch_add(1, Ordering::Relaxed);
        Lease {
            held: Some(Held {
                conn,
                guard: LeaseGuard {
                    pool: self.inner.clone(),
                    permit: Some(permit),
                    awaiting_id: None,
                    reused: false,
                    route,
                    successors: VecDeque::new(),
                },
            }),
            waited,
            dialled,
            sent_ahead: false,
        }
    }

    fn pop_idle(&self) -> Option<Conn> {
        self.inner.idle.lock().ok()?.pop()
    }

    fn check_backoff(&self) -> Result<(), UpstreamError> {
        let Ok(backoff) = self.inner.backoff.lock() else {
            return Ok(());
        };
        match backoff.until {
            Some(until) if Instant::now() < until => Err(UpstreamError::Connect {
                addr: self.inner.settings.addr.to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "recent connects failed; backing off",
                ),
            }),
            _ => Ok(()),
        }
    }

    fn connect_failed(&self) {
        if let Ok(mut backoff) = self.inner.backoff.lock() {
            let delay = backoff.next_delay;
            backoff.until = Some(Instant::now() + delay);
            backoff.next_delay = (delay * 2).min(BACKOFF_MAX);
        }
    }

    fn connect_succeeded(&self) {
        if let Ok(mut backoff) = self.inner.backoff.lock() {
            backoff.until = None;
            backoff.next_delay = BACKOFF_MIN;
        }
    }

    /// Closes idle connections past the idle timeout; run periodically.
    pub fn reap_idle(&self) {
        let timeout = self.inner.settings.idle_timeout;
        let Ok(mut idle) = self.inner.idle.lock() else {
            return;
        };
        let before = idle.len();
        idle.retain(|c| c.idle_since.elapsed() < timeout);
        let reaped = before - idle.len();
        if reaped > 0 {
            self.inner
                .stats
                .idle_reaped
                .fetch_add(reaped as u64, Ordering::Relaxed);
        }
    }

    /// Reaps idle connections every half idle-timeout until the pool is dropped.
    pub fn spawn_reaper(&self) {
        let weak = Arc::downgrade(&self.inner);
        let every = (self.inner.settings.idle_timeout / 2).max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let pool = Pool { inner };
                pool.reap_idle();
                let snap = pool.snapshot();
                tracing::debug!(upstream = %pool.settings().addr, ?snap, "upstream pool");
            }
        });
    }
}

/// What waiting in the queue gave a request (returned, never stored).
#[allow(clippy::large_enum_variant)]
enum Granted {
    Permit(OwnedSemaphorePermit),
    Handoff(Handoff),
}

struct DecrementOnDrop<'a>(&'a AtomicUsize);

impl Drop for DecrementOnDrop<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PoolInner {
    /// See `Pool::resize`.
    fn resize(self: &Arc<Self>, new_size: usize, why: &str) {
        self.resize_noting(new_size, why, true);
    }

    /// `resize`, logged at info level when `notable`, else at debug (the
    /// probes and their refutations, several a second under overload).
    fn resize_noting(self: &Arc<Self>, new_size: usize, why: &str, notable: bool) {
        let new_size = new_size.max(1);
        let old = self.size.swap(new_size, Ordering::AcqRel);
        if new_size > old {
            // Surplus permits still out are kept instead of retired first.
            let mut grow = new_size - old;
            while grow > 0 {
                let surplus = self.surplus.load(Ordering::Acquire);
                if surplus == 0 {
                    break;
                }
                let take = surplus.min(grow);
                if self
                    .surplus
                    .compare_exchange(surplus, surplus - take, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    grow -= take;
                }
            }
            self.permits.add_permits(grow);
        } else if new_size < old {
            // Free permits go now; those held by busy connections as they
            // come back (`retire_permit`).
            let shrink = old - new_size;
            let forgotten = self.permits.forget_permits(shrink);
            self.surplus.fetch_add(shrink - forgotten, Ordering::AcqRel);
            // Idle connections beyond the new size go now (oldest first).
            let busy = self.busy.load(Ordering::Acquire);
            if let Ok(mut idle) = self.idle.lock() {
                let excess = (idle.len() + busy).saturating_sub(new_size).min(idle.len());
                idle.drain(..excess);
            }
        }
        if new_size != old {
            if notable {
                tracing::info!(upstream = %self.settings.addr, from = old, to = new_size, "upstream pool resized: {why}");
            } else {
                tracing::debug!(upstream = %self.settings.addr, from = old, to = new_size, "upstream pool resized: {why}");
            }
        }
    }

    /// Whether a permit coming back is one too many after a shrink: then it
    /// is forgotten instead of released.
    pub(super) fn retire_permit(&self) -> bool {
        let mut surplus = self.surplus.load(Ordering::Acquire);
        while surplus > 0 {
            match self.surplus.compare_exchange(
                surplus,
                surplus - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => surplus = now,
            }
        }
        false
    }

    /// How many of our fresh connections wait in php-fpm's listen backlog,
    /// when the kernel can tell (`Connect::backlog`); None elsewhere. Read
    /// only while a fresh connection of ours awaits its first byte, so a
    /// pool at its size pays nothing for it.
    fn ours_in_backlog(&self) -> Option<usize> {
        if !self.connector.sees_backlog() {
            return None;
        }
        if self.fresh_awaiting_first_byte.load(Ordering::Acquire) == 0 {
            return Some(0);
        }
        // A connection just made may be in the queue only until a free
        // worker wakes to accept it: not evidence yet.
        let now = Instant::now();
        let settled = self.awaiting.lock().map_or(0, |awaiting| {
            awaiting
                .iter()
                .filter(|a| now.duration_since(a.since) >= ACCEPT_GRACE)
                .count()
        });
        if settled == 0 {
            return Some(0);
        }
        self.stats.backlog_reads.fetch_add(1, Ordering::Relaxed);
        // Others' connections may wait there too; ours are at most
        // `settled`, less those a worker we just freed is about to take.
        let backlog = self.connector.backlog()?;
        self.last_backlog.store(backlog, Ordering::Relaxed);
        let on_their_way = self.workers_on_their_way(now, backlog);
        Some(backlog.min(settled).saturating_sub(on_their_way))
    }

    /// Workers we freed for our backlog that have not taken a connection
    /// from it yet, judged by the kernel's count `backlog` now.
    fn workers_on_their_way(&self, now: Instant, backlog: usize) -> usize {
        self.freed_for_backlog.lock().map_or(0, |mut freed| {
            freed.retain(|&(at, then)| backlog >= then && now.duration_since(at) < IN_TRANSIT_MAX);
            freed.len()
        })
    }

    /// A connection of ours is closed so its worker takes one from the backlog.
    pub(super) fn freed_a_worker(&self) {
        self.stats.closed_for_waiter.fetch_add(1, Ordering::Relaxed);
        if self.connector.sees_backlog() {
            let backlog = self.last_backlog.load(Ordering::Relaxed);
            if let Ok(mut freed) = self.freed_for_backlog.lock() {
                freed.push((Instant::now(), backlog));
            }
        }
    }

    /// `in_backlog` of our connections wait in php-fpm's backlog (exact
    /// signal): php-fpm serves the others and has no worker for more, so
    /// the pool shrinks to them.
    fn saw_backlog(self: &Arc<Self>, in_backlog: usize) {
        self.at_capacity.store(true, Ordering::Release);
        let open = self.busy.load(Ordering::Acquire) + self.idle.lock().map_or(0, |i| i.len());
        let (target, news) = match self.exact.lock() {
            Ok(mut exact) => exact.saw_backlog(Instant::now(), open, in_backlog),
            Err(_) => return,
        };
        if self.size_is_known.load(Ordering::Acquire) {
            return;
        }
        if target < self.size.load(Ordering::Acquire) {
            self.resize_noting(
                target,
                &format!("learned: php-fpm accepted {target} of our connections while {in_backlog} waited in its backlog"),
                news,
            );
        }
    }

    /// Every connection is busy and a request must wait: when php-fpm's
    /// backlog is visible and empty, try one connection more (at most every
    /// `PROBE_EVERY`, up to the configured size). True when the pool grew.
    fn probe_one_more(self: &Arc<Self>) -> bool {
        let size = self.size.load(Ordering::Acquire);
        if size >= self.settings.max_conns
            || self.size_is_known.load(Ordering::Acquire)
            || self.fresh_awaiting_first_byte.load(Ordering::Acquire) > 0
            || !self.connector.sees_backlog()
        {
            return false;
        }
        // Checked and claimed under one lock: one probe per period, however
        // many threads find every connection busy at once.
        let claimed = self.exact.lock().is_ok_and(|mut exact| {
            let now = Instant::now();
            let due = exact.probe_due(now);
            if due {
                exact.probed(now);
            }
            due
        });
        if !claimed {
            return false;
        }
        // Someone else's connection waiting there means no worker is free.
        self.stats.backlog_reads.fetch_add(1, Ordering::Relaxed);
        if self.connector.backlog() != Some(0) {
            return false;
        }
        self.at_capacity.store(false, Ordering::Release);
        self.resize_noting(
            size + 1,
            "requests wait and php-fpm's backlog is empty: trying one more connection",
            false,
        );
        true
    }

    /// Whether a request may be written behind a running one now: not
    /// while a connection of ours may still wait for a worker, nor while
    /// php-fpm may have a worker free (the pool has not yet found its size).
    pub(super) fn may_send_ahead(&self) -> bool {
        if self.fresh_awaiting_first_byte.load(Ordering::Acquire) > 0 {
            return false;
        }
        !self.connector.sees_backlog()
            || self.at_capacity.load(Ordering::Acquire)
            || self.size_is_known.load(Ordering::Acquire)
            || self.size.load(Ordering::Acquire) >= self.settings.max_conns
    }

    fn stuck_after(&self) -> Duration {
        let usual = Duration::from_micros(self.reused_first_byte_micros.load(Ordering::Relaxed));
        STUCK_MIN.max(usual * 4)
    }

    /// Whether a fresh connection has waited for its first byte well past
    /// the usual time (evidence of php-fpm's backlog), and whether the
    /// connection coming back should be closed to free a php-fpm worker for
    /// it: one close per stuck connection and period.
    fn stuck_fresh(&self) -> Stuck {
        let stuck_after = self.stuck_after();
        let Ok(mut awaiting) = self.awaiting.lock() else {
            return Stuck::None;
        };
        let now = Instant::now();
        let mut seen = Stuck::None;
        for a in awaiting.iter_mut() {
            if now.duration_since(a.since) < stuck_after {
                continue;
            }
            if a.freed_for_at
                .is_none_or(|at| now.duration_since(at) >= stuck_after)
            {
                a.freed_for_at = Some(now);
                return Stuck::Claimed;
            }
            seen = Stuck::Seen;
        }
        seen
    }
}

/// When most releases found a fresh connection stuck in php-fpm's backlog,
/// the pool is larger than php-fpm's worker count: shrink it towards the most
/// connections php-fpm was seen serving at once (`capacity` decides when).
fn learn_capacity(pool: &Arc<PoolInner>, awaiting: usize, saw_stuck: bool) {
    if pool.size_is_known.load(Ordering::Acquire) {
        return;
    }
    let served = pool
        .busy
        .load(Ordering::Acquire)
        .saturating_sub(awaiting)
        .max(1);
    let saw_waiters = pool.waiting.load(Ordering::Relaxed) > 0;
    let size = pool.size.load(Ordering::Acquire);
    let can_grow = size < pool.settings.max_conns;
    let verdict = match pool.learning.lock() {
        Ok(mut learning) => learning.record(served, saw_stuck, saw_waiters, can_grow),
        Err(_) => None,
    };
    let Some(verdict) = verdict else {
        return;
    };
    let floor = (pool.settings.max_conns / 2).max(1);
    let handle = pool;
    match verdict {
        // Step down, not straight to the peak: worker restarts (pm.max_requests)
        // make a moment look smaller than php-fpm really is.
        // Never below half the configured size: a freshly respawned worker also
        // delays first bytes, and closing for it breeds more fresh connections.
        Verdict::Shrink { peak } if size > floor => {
            let target = peak.max(size - (size / 4).max(1)).max(floor);
            handle.resize(
                target,
                &format!("learned: fresh connections kept waiting in php-fpm's backlog (it served {peak} at once at most)"),
            );
        }
        // Demand and no backlog seen: try one more, up to the configured size.
        Verdict::Grow => {
            handle.resize(
                size + 1,
                "no backlog seen under load; probing one more connection",
            );
        }
        _ => {}
    }
}
