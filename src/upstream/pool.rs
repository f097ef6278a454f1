//! The pool of kept-alive FastCGI connections to one upstream.
//!
//! - A permit per connection: open (idle + busy) never exceeds the size.
//! - Waiters queue FIFO (tokio's semaphore is fair), bounded in length and time.
//! - Idle connections are LIFO, checked for liveness at checkout, reaped after
//!   the idle timeout so dynamic php-fpm pools can shrink.
//! - A kept-alive connection pins a php-fpm worker; while a fresh connection
//!   still waits for its first byte (it may sit in php-fpm's backlog behind our
//!   own idle connections), connections coming back are closed, not idled.
//! - Failed connects back off, so a dead php-fpm is not hammered.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::conn::{self, Conn, ExchangeTimeouts, Outcome};
use super::{UpstreamAddr, UpstreamError};

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
    pub closed_after_use: AtomicU64,
    /// Connections closed on return because a fresh one waited for a worker.
    pub closed_for_waiter: AtomicU64,
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
const BACKOFF_MAX: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct PoolInner {
    settings: PoolSettings,
    /// Current size; may change when php-fpm's status page says so.
    size: AtomicUsize,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Conn>>,
    busy: AtomicUsize,
    waiting: AtomicUsize,
    /// Fresh connections whose request went out but no byte came back yet.
    fresh_awaiting_first_byte: AtomicUsize,
    backoff: Mutex<Backoff>,
    learning: Mutex<CapacityWindow>,
    /// Set once php-fpm itself told the size: learning from evidence stops.
    size_is_known: std::sync::atomic::AtomicBool,
    stats: PoolStats,
}

/// Evidence about php-fpm's real capacity, gathered over a window of releases.
#[derive(Debug, Default)]
struct CapacityWindow {
    releases: u32,
    closed_for_waiter: u32,
    /// Most connections known to hold a worker at once (busy and past their
    /// first byte, or reused) seen in this window.
    peak_served: usize,
    /// Requests queued for a connection at some release in this window.
    saw_waiters: bool,
}

/// Releases per capacity-learning window.
const LEARN_WINDOW: u32 = 64;

/// A cheap handle; clones share one pool.
#[derive(Debug, Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

/// One connection checked out of the pool, holding its permit. Dropping a
/// lease without `release` closes the connection and frees the slot.
#[derive(Debug)]
pub struct Lease {
    conn: Conn,
    guard: LeaseGuard,
    _permit: OwnedSemaphorePermit,
}

/// The bookkeeping of one lease, undone when it drops (released or not).
#[derive(Debug)]
pub(crate) struct LeaseGuard {
    pool: Arc<PoolInner>,
    awaiting_first_byte: bool,
}

impl Pool {
    pub fn new(settings: PoolSettings) -> Pool {
        let size = settings.max_conns.max(1);
        Pool {
            inner: Arc::new(PoolInner {
                permits: Arc::new(Semaphore::new(size)),
                size: AtomicUsize::new(size),
                idle: Mutex::new(Vec::with_capacity(size)),
                busy: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
                fresh_awaiting_first_byte: AtomicUsize::new(0),
                backoff: Mutex::new(Backoff {
                    until: None,
                    next_delay: BACKOFF_MIN,
                }),
                learning: Mutex::new(CapacityWindow::default()),
                size_is_known: std::sync::atomic::AtomicBool::new(false),
                stats: PoolStats::default(),
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
        }
    }

    /// Sets the size php-fpm reported (its status page): from then on the
    /// pool no longer guesses its capacity from backlog evidence.
    pub fn set_known_size(&self, size: usize, why: &str) {
        self.inner.size_is_known.store(true, Ordering::Release);
        self.resize(size, why);
    }

    /// Changes the pool size (e.g. to php-fpm's `max children`). Shrinking
    /// takes effect as busy connections come back.
    pub fn resize(&self, new_size: usize, why: &str) {
        let new_size = new_size.max(1);
        let inner = &self.inner;
        let old = inner.size.swap(new_size, Ordering::AcqRel);
        if new_size > old {
            inner.permits.add_permits(new_size - old);
        } else if new_size < old {
            let inner = inner.clone();
            // Permits held by busy connections are taken as they come back.
            tokio::spawn(async move {
                for _ in 0..(old - new_size) {
                    match inner.permits.acquire().await {
                        Ok(p) => p.forget(),
                        Err(_) => return,
                    }
                }
            });
        }
        if new_size != old {
            tracing::info!(upstream = %inner.settings.addr, from = old, to = new_size, "upstream pool resized: {why}");
        }
    }

    /// Waits (FIFO, bounded in length and time) for a slot, then hands out a
    /// live idle connection or dials a new one. `fresh_only` skips idle ones
    /// (the retry after a reused connection failed).
    pub async fn acquire(&self, fresh_only: bool) -> Result<Lease, UpstreamError> {
        let inner = &self.inner;
        let permit = match inner.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => self.wait_for_permit().await?,
        };
        inner.stats.acquired.fetch_add(1, Ordering::Relaxed);
        if !fresh_only {
            while let Some(conn) = self.pop_idle() {
                if conn.idle_since.elapsed() >= inner.settings.idle_timeout {
                    inner.stats.idle_reaped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if conn.is_stale() {
                    inner.stats.stale_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                inner.stats.reused.fetch_add(1, Ordering::Relaxed);
                return Ok(self.lease(conn, permit));
            }
        }
        self.check_backoff()?;
        inner.stats.connects.fetch_add(1, Ordering::Relaxed);
        match conn::dial(&inner.settings.addr, inner.settings.connect_timeout).await {
            Ok(conn) => {
                self.connect_succeeded();
                Ok(self.lease(conn, permit))
            }
            Err(e) => {
                inner.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                self.connect_failed();
                Err(e)
            }
        }
    }

    async fn wait_for_permit(&self) -> Result<OwnedSemaphorePermit, UpstreamError> {
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
        let res = tokio::time::timeout(wait, inner.permits.clone().acquire_owned()).await;
        inner
            .stats
            .waited_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match res {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat that like saturation anyway.
            Ok(Err(_)) | Err(_) => {
                inner.stats.saturated.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(upstream = %inner.settings.addr, after = ?wait, "upstream pool saturated: no connection free in time");
                Err(UpstreamError::AcquireTimeout { after: wait })
            }
        }
    }

    fn lease(&self, conn: Conn, permit: OwnedSemaphorePermit) -> Lease {
        self.inner.busy.fetch_add(1, Ordering::Relaxed);
        Lease {
            conn,
            guard: LeaseGuard {
                pool: self.inner.clone(),
                awaiting_first_byte: false,
            },
            _permit: permit,
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

struct DecrementOnDrop<'a>(&'a AtomicUsize);

impl Drop for DecrementOnDrop<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Lease {
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Marks a fresh connection whose request is on its way: until its first
    /// byte arrives it may be waiting in php-fpm's backlog.
    pub fn request_sent(&mut self) {
        let guard = &mut self.guard;
        if !self.conn.is_reused() && !guard.awaiting_first_byte {
            guard.awaiting_first_byte = true;
            guard
                .pool
                .fresh_awaiting_first_byte
                .fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The connection and the bookkeeping to tell the pool about the first byte.
    pub(crate) fn parts(&mut self) -> (&mut Conn, &mut LeaseGuard) {
        (&mut self.conn, &mut self.guard)
    }

    /// Returns the connection to the idle list when the exchange left it
    /// clean and no fresh connection is waiting for a worker; else closes it.
    /// The permit is released either way.
    pub fn release(self, outcome: Outcome) {
        let Lease {
            mut conn,
            mut guard,
            _permit,
        } = self;
        guard.first_byte();
        let pool = guard.pool.clone();
        if outcome != Outcome::Reusable {
            pool.stats.closed_after_use.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let awaiting = pool.fresh_awaiting_first_byte.load(Ordering::Acquire);
        learn_capacity(&pool, awaiting);
        if awaiting > 0 {
            // Our idle connection would pin the worker that connection needs.
            pool.stats.closed_for_waiter.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let max_idle = pool.settings.max_idle;
        conn.uses += 1;
        conn.idle_since = Instant::now();
        if let Ok(mut idle) = pool.idle.lock() {
            if idle.len() < max_idle {
                idle.push(conn);
            }
        };
        // `guard` and `_permit` drop here, after the connection is back, so
        // the next waiter finds it idle instead of dialing.
    }
}

/// When most connections coming back had to be closed because fresh ones
/// sat in php-fpm's backlog, the pool is larger than php-fpm's worker count:
/// shrink it to the most connections php-fpm was seen serving at once.
fn learn_capacity(pool: &Arc<PoolInner>, awaiting: usize) {
    if pool.size_is_known.load(Ordering::Acquire) {
        return;
    }
    let busy = pool.busy.load(Ordering::Acquire);
    let served = busy.saturating_sub(awaiting).max(1);
    let verdict: (bool, bool, usize) = {
        let Ok(mut w) = pool.learning.lock() else {
            return;
        };
        w.releases += 1;
        if awaiting > 0 {
            w.closed_for_waiter += 1;
        }
        w.peak_served = w.peak_served.max(served);
        w.saw_waiters |= pool.waiting.load(Ordering::Relaxed) > 0;
        if w.releases < LEARN_WINDOW {
            return;
        }
        let shrink = w.closed_for_waiter * 2 > w.releases;
        let grow = w.closed_for_waiter == 0 && w.saw_waiters;
        let peak = w.peak_served;
        *w = CapacityWindow::default();
        (shrink, grow, peak)
    };
    let size = pool.size.load(Ordering::Acquire);
    let floor = (pool.settings.max_conns / 2).max(1);
    let handle = Pool {
        inner: pool.clone(),
    };
    match verdict {
        // Step down, not straight to the peak: worker restarts (pm.max_requests)
        // make a moment look smaller than php-fpm really is.
        // Never below half the configured size: a freshly respawned worker also
        // delays first bytes, and closing for it breeds more fresh connections.
        (true, _, peak) if size > floor => {
            let target = peak.max(size - (size / 4).max(1)).max(floor);
            handle.resize(
                target,
                &format!("learned: fresh connections kept waiting in php-fpm's backlog (it served {peak} at once at most)"),
            );
        }
        // Demand and no backlog seen: try one more, up to the configured size.
        (false, true, _) if size < pool.settings.max_conns => {
            handle.resize(
                size + 1,
                "no backlog seen under load; probing one more connection",
            );
        }
        _ => {}
    }
}

impl LeaseGuard {
    pub(crate) fn first_byte(&mut self) {
        if self.awaiting_first_byte {
            self.awaiting_first_byte = false;
            self.pool
                .fresh_awaiting_first_byte
                .fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.first_byte();
        self.pool.busy.fetch_sub(1, Ordering::Relaxed);
    }
}
