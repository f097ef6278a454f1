//! The pool of kept-alive FastCGI connections to one upstream: a permit per
//! connection (open = idle + busy never exceeds `max_conns`), a LIFO idle
//! list checked for liveness at checkout, and counters.
//!
//! Sizing to php-fpm's status page, idle reaping and pinned-worker handling
//! build on this seam (see issue 3).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::conn::{self, Conn, ExchangeTimeouts, Outcome};
use super::{UpstreamAddr, UpstreamError};

/// How the pool is set up; built from the config.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub addr: UpstreamAddr,
    pub max_conns: usize,
    pub max_idle: usize,
    pub connect_timeout: Duration,
    pub acquire_timeout: Duration,
    pub idle_timeout: Duration,
    pub read_timeout: Duration,
}

/// Counters, readable at any time (exposed by metrics later).
#[derive(Debug, Default)]
pub struct PoolStats {
    pub acquired: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub reused: AtomicU64,
    pub stale_dropped: AtomicU64,
    pub retries: AtomicU64,
    pub acquire_timeouts: AtomicU64,
    pub closed_after_use: AtomicU64,
}

impl PoolStats {
    pub(crate) fn note_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct PoolInner {
    settings: PoolSettings,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Conn>>,
    stats: PoolStats,
}

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
    pool: Arc<PoolInner>,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    pub fn new(settings: PoolSettings) -> Pool {
        let max = settings.max_conns.max(1);
        Pool {
            inner: Arc::new(PoolInner {
                permits: Arc::new(Semaphore::new(max)),
                idle: Mutex::new(Vec::with_capacity(max)),
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

    /// Idle connections right now.
    pub fn idle_count(&self) -> usize {
        self.inner.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Connections checked out right now.
    pub fn busy_count(&self) -> usize {
        self.inner.settings.max_conns.max(1) - self.inner.permits.available_permits()
    }

    /// Waits (FIFO, bounded by the acquire timeout) for a slot, then hands out
    /// a live idle connection or dials a new one. `fresh_only` skips idle ones
    /// (used for the retry after a reused connection failed).
    pub async fn acquire(&self, fresh_only: bool) -> Result<Lease, UpstreamError> {
        let inner = &self.inner;
        let wait = inner.settings.acquire_timeout;
        let permit = match tokio::time::timeout(wait, inner.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            // The semaphore is never closed; treat it like saturation anyway.
            Ok(Err(_)) | Err(_) => {
                inner.stats.acquire_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(upstream = %inner.settings.addr, after = ?wait, "upstream pool saturated: no connection free in time");
                return Err(UpstreamError::AcquireTimeout { after: wait });
            }
        };
        inner.stats.acquired.fetch_add(1, Ordering::Relaxed);
        if !fresh_only {
            while let Some(conn) = self.pop_idle() {
                let expired = conn.idle_since.elapsed() >= inner.settings.idle_timeout;
                if expired || conn.is_stale() {
                    inner.stats.stale_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                inner.stats.reused.fetch_add(1, Ordering::Relaxed);
                return Ok(Lease {
                    conn,
                    pool: inner.clone(),
                    _permit: permit,
                });
            }
        }
        inner.stats.connects.fetch_add(1, Ordering::Relaxed);
        match conn::dial(&inner.settings.addr, inner.settings.connect_timeout).await {
            Ok(conn) => Ok(Lease {
                conn,
                pool: inner.clone(),
                _permit: permit,
            }),
            Err(e) => {
                inner.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn pop_idle(&self) -> Option<Conn> {
        self.inner.idle.lock().ok()?.pop()
    }
}

impl Lease {
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Returns the connection to the idle list when the exchange left it
    /// clean, else closes it. The permit is released either way.
    pub fn release(self, outcome: Outcome) {
        let Lease {
            mut conn,
            pool,
            _permit,
        } = self;
        if outcome != Outcome::Reusable {
            pool.stats.closed_after_use.fetch_add(1, Ordering::Relaxed);
            return;
        }
        conn.uses += 1;
        conn.idle_since = Instant::now();
        let max_idle = pool.settings.max_idle;
        if let Ok(mut idle) = pool.idle.lock() {
            if idle.len() < max_idle {
                idle.push(conn);
            }
        };
        // `_permit` drops here, after the connection is back, so the next
        // waiter finds it idle instead of dialing.
    }
}
