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
//!   tries one more (`capacity::PROBE_EVERY`, backing off while php-fpm
//!   is found full) while requests queue and nothing
//!   waits there. Elsewhere (remote tcp) a fresh connection without its
//!   first byte well past the usual time counts as waiting, and the size is
//!   learned from how often that happens (`capacity`).
//! - Failed connects back off, so a dead php-fpm is not hammered.
//! - One budget for all serving threads, a part per thread (`shard`): its
//!   idle connections, its queue of requests to send ahead; waiting when
//!   nothing is free is `wait`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::capacity::{AwaitingFresh, ExactSizing, Learning};
use super::conn::{self, Conn, ExchangeTimeouts};
use super::connect::{AddrConnector, Connect};
use super::pipeline::Handoff;
use super::{UpstreamAddr, UpstreamError};

mod lease;
mod shard;
mod sizing;
#[cfg(test)]
mod tests;
mod wait;
use lease::Held;
pub use lease::Lease;
pub(crate) use lease::LeaseGuard;
pub use shard::set_worker_thread;
use shard::Shard;
use wait::Granted;

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
    /// Serving threads (`--workers`): each gets its own part of the pool
    /// (`shard`).
    pub workers: usize,
}

/// Counters, readable at any time (exposed by metrics later). The ones
/// every request moves are each serving thread's own (`Shard`).
#[derive(Debug, Default)]
pub struct PoolStats {
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
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
    /// Idle connections taken over from another serving thread.
    pub moved_threads: AtomicU64,
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
    /// Writes that carried them: fewer, as requests are gathered.
    pub send_ahead_writes: u64,
    /// Whether php-fpm's listen backlog can be read from here (`connect`).
    pub sees_backlog: bool,
    pub backlog_reads: u64,
    /// New connections whose request has no answer yet (may wait in php-fpm's backlog).
    pub fresh_awaiting: usize,
    /// php-fpm was seen full at this size: requests may be sent ahead.
    pub at_capacity: bool,
    /// Pool slots free now, and slots still to retire after a shrink.
    pub permits_free: usize,
    pub permits_to_retire: usize,
    pub moved_threads: u64,
    /// Connections in use per serving thread.
    pub busy_per_thread: Vec<usize>,
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
    /// Sizing by the exact backlog signal (`capacity::ExactSizing`); only
    /// through `with_exact`, which keeps `probe_gate` in step.
    exact: Mutex<ExactSizing>,
    /// `exact`'s next probe time as µs after `created`, for a lock-free
    /// look on every release while requests queue (the probe is due a few
    /// times a second at most).
    probe_gate: AtomicU64,
    /// `exact` has a probe not yet tried nor refuted (`ExactSizing::
    /// probe_pending`), for a lock-free look as connections go idle.
    probe_pending: AtomicBool,
    created: Instant,
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
    /// Each serving thread's idle connections, pipelining queue and counts.
    shards: Box<[Shard]>,
    /// Idle connections over all shards (kept with each list's changes).
    idle_count: AtomicUsize,
    /// Leases out, over all shards.
    busy: AtomicUsize,
    /// Requests waiting for a connection, over all shards.
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
                probe_gate: AtomicU64::new(0),
                probe_pending: AtomicBool::new(false),
                created: Instant::now(),
                freed_for_backlog: Mutex::new(Vec::new()),
                last_backlog: AtomicUsize::new(0),
                at_capacity: AtomicBool::new(false),
                permits: Arc::new(Semaphore::new(size)),
                size: AtomicUsize::new(size),
                shards: (0..settings.workers.max(1))
                    .map(|_| Shard::new(settings.pipelining))
                    .collect(),
                idle_count: AtomicUsize::new(0),
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
        let idle = inner.idle_count.load(Ordering::Relaxed);
        let busy = inner.busy.load(Ordering::Relaxed);
        PoolSnapshot {
            size: inner.size.load(Ordering::Relaxed),
            open: idle + busy,
            idle,
            busy,
            waiting: inner.waiting.load(Ordering::Relaxed),
            acquired: inner.shards.iter().map(|s| get(&s.acquired)).sum(),
            waited_micros: inner.shards.iter().map(|s| get(&s.waited_micros)).sum(),
            connects: get(&s.connects),
            connect_failures: get(&s.connect_failures),
            reused: inner.shards.iter().map(|s| get(&s.reused)).sum(),
            stale_dropped: get(&s.stale_dropped),
            idle_reaped: get(&s.idle_reaped),
            retries: get(&s.retries),
            saturated: get(&s.saturated),
            closed_for_waiter: get(&s.closed_for_waiter),
            sent_ahead: inner
                .shards
                .iter()
                .map(|s| get(&s.pipeline.sent_ahead))
                .sum(),
            send_ahead_writes: inner
                .shards
                .iter()
                .map(|s| get(&s.pipeline.send_ahead_writes))
                .sum(),
            sees_backlog: inner.connector.sees_backlog(),
            backlog_reads: get(&s.backlog_reads),
            fresh_awaiting: inner.fresh_awaiting_first_byte.load(Ordering::Relaxed),
            at_capacity: inner.at_capacity.load(Ordering::Relaxed),
            permits_free: inner.permits.available_permits(),
            permits_to_retire: inner.surplus.load(Ordering::Relaxed),
            moved_threads: get(&s.moved_threads),
            busy_per_thread: inner.shards.iter().map(Shard::busy).collect(),
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
        let shard = inner.local_shard();
        let mut ahead = ahead;
        let (permit, waited) = loop {
            // A free permit with this thread's connections all busy means
            // another thread's connection sits idle: taking it over costs
            // two thread hops and leaves that thread short. A request that
            // may be sent ahead, on a thread holding its share, waits for
            // one of this thread's connections instead.
            // The idle lists' lock last: the thread's own counts rule most
            // requests out first (all of them with one serving thread).
            let leave_it =
                ahead.is_some() && inner.holds_its_share(shard) && inner.idle_only_elsewhere(shard);
            if !leave_it {
                if let Ok(permit) = inner.permits.clone().try_acquire_owned() {
                    break (permit, Duration::ZERO);
                }
            }
            // Every connection is busy: php-fpm may have a worker free.
            if inner.probe_one_more() {
                continue;
            }
            match self.wait_for_permit(shard, ahead.take(), route).await? {
                (Granted::Permit(permit), waited) => break (permit, waited),
                (
                    Granted::Handoff(Handoff::Ready(mut lease) | Handoff::Free(mut lease)),
                    waited,
                ) => {
                    inner.shards[shard].acquired.fetch_add(1, Ordering::Relaxed);
                    inner.shards[shard].reused.fetch_add(1, Ordering::Relaxed);
                    lease.waited = waited;
                    lease.set_route(route);
                    return Ok(lease);
                }
                // php-fpm never read it: wait again, this time for a slot of its own.
                (Granted::Handoff(Handoff::NotSent), _) => continue,
                (Granted::Handoff(Handoff::Lost(e)), _) => return Err(e),
            }
        };
        inner.shards[shard].acquired.fetch_add(1, Ordering::Relaxed);
        if !fresh_only {
            while let Some(mut conn) = self.pop_idle(shard) {
                if conn.idle_since.elapsed() >= inner.settings.idle_timeout {
                    inner.stats.idle_reaped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if conn.is_stale() {
                    inner.stats.stale_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                inner.shards[shard].reused.fetch_add(1, Ordering::Relaxed);
                return Ok(self.lease(shard, conn, permit, waited, None, route));
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
                Ok(self.lease(shard, conn, permit, waited, Some(took), route))
            }
            Err(e) => {
                inner.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                self.connect_failed();
                Err(e)
            }
        }
    }

    fn lease(
        &self,
        shard: usize,
        conn: Conn,
        permit: OwnedSemaphorePermit,
        waited: Duration,
        dialled: Option<Duration>,
        route: u64,
    ) -> Lease {
        self.inner.busy.fetch_add(1, Ordering::Relaxed);
        self.inner.shards[shard]
            .busy
            .fetch_add(1, Ordering::Relaxed);
        Lease {
            held: Some(Held {
                conn,
                guard: LeaseGuard {
                    pool: self.inner.clone(),
                    shard,
                    permit: Some(permit),
                    awaiting_id: None,
                    reused: false,
                    closes_when_sent: 0,
                    route,
                    successors: VecDeque::new(),
                    turn: 0,
                },
            }),
            waited,
            dialled,
            sent_ahead: false,
        }
    }

    /// An idle connection: this thread's most recent, else one another
    /// thread left idle, moved over to this thread's event loop (stealing
    /// is rare: a thread keeps what it uses, and only one short of
    /// connections finds another's free).
    fn pop_idle(&self, shard: usize) -> Option<Conn> {
        let inner = &self.inner;
        while let Some(conn) = inner.take_idle(shard) {
            if conn.is_home() {
                return Some(conn);
            }
            // Opened by a thread that shares this part (the control
            // thread's status reads use part 0).
            match conn.rehome() {
                Ok(conn) => {
                    inner.stats.moved_threads.fetch_add(1, Ordering::Relaxed);
                    return Some(conn);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "an idle upstream connection could not move threads; closed");
                    inner.stats.stale_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if inner.idle_count.load(Ordering::Acquire) == 0 {
            return None;
        }
        for other in (0..inner.shards.len()).filter(|&i| i != shard) {
            while let Some(conn) = inner.take_idle(other) {
                match conn.rehome() {
                    Ok(conn) => {
                        inner.stats.moved_threads.fetch_add(1, Ordering::Relaxed);
                        return Some(conn);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "an idle upstream connection could not move threads; closed");
                        inner.stats.stale_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        None
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
        let inner = &self.inner;
        let timeout = inner.settings.idle_timeout;
        let mut reaped = 0;
        for shard in inner.shards.iter() {
            let Ok(mut idle) = shard.idle.lock() else {
                continue;
            };
            let before = idle.len();
            idle.retain(|c| c.idle_since.elapsed() < timeout);
            let gone = before - idle.len();
            inner.idle_count.fetch_sub(gone, Ordering::AcqRel);
            reaped += gone;
        }
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
