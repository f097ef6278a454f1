//! The pool's per-worker-thread parts: each serving thread keeps its own
//! idle connections, its own pipelining queue and its own counts, so a
//! request's upstream work stays on the thread that accepted it (its
//! connection's socket is registered with that thread's event loop).
//! Capacity stays shared: the permits and the learned size are the pool's,
//! a thread with no idle connection takes one another thread left idle
//! (`Pool::pop_idle`), and a thread holding more connections than one
//! whose requests wait stops sending requests ahead, so its connections
//! come free (`PoolInner::others_starved`).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::super::conn::Conn;
use super::super::pipeline::{Handoff, Pipeline};
use super::PoolInner;

thread_local! {
    /// Which serving thread this is (0 on any thread that never said).
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the calling thread as serving thread `index`: the pool then uses
/// that thread's part. Threads that never call it share part 0.
pub fn set_worker_thread(index: usize) {
    WORKER.with(|w| w.set(index));
}

#[cfg(test)]
tokio::task_local! {
    /// The pool's tests run "threads" as tasks on one thread: this says
    /// which serving thread a task plays.
    pub(super) static TEST_WORKER: usize;
}

pub(super) fn current_worker() -> usize {
    #[cfg(test)]
    if let Ok(index) = TEST_WORKER.try_with(|i| *i) {
        return index;
    }
    WORKER.with(Cell::get)
}

/// One serving thread's part of the pool. Aligned to its own cache lines:
/// the counts change on every request, and sharing a line with another
/// thread's part would make each write a cross-core miss.
#[derive(Debug)]
#[repr(align(128))]
pub(super) struct Shard {
    /// Connections kept alive for this thread, most recent last.
    pub(super) idle: Mutex<Vec<Conn>>,
    pub(super) pipeline: Pipeline,
    /// Leases held by this thread's requests (connections in use).
    pub(super) busy: AtomicUsize,
    /// This thread's requests waiting for a connection.
    pub(super) waiting: AtomicUsize,
    /// Of those, the ones waiting only for one of this thread's
    /// connections (`Pool::wait_for_permit`): when the thread's last
    /// connection ends, one is told to look again (`LeaseGuard`'s drop).
    pub(super) ticket_only: AtomicUsize,
    /// Leases this thread's requests got, of them on a kept-alive
    /// connection, and how long they waited: pool-wide counters written by
    /// every thread on every request would bounce one cache line between
    /// cores; the snapshot sums these instead.
    pub(super) acquired: AtomicU64,
    pub(super) reused: AtomicU64,
    pub(super) waited_micros: AtomicU64,
}

impl Shard {
    pub(super) fn new(pipelining: Option<Duration>) -> Shard {
        Shard {
            idle: Mutex::new(Vec::new()),
            pipeline: Pipeline::new(pipelining),
            busy: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            ticket_only: AtomicUsize::new(0),
            acquired: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            waited_micros: AtomicU64::new(0),
        }
    }

    pub(super) fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Tells the oldest request waiting for one of this thread's
    /// connections to look again (`Pool::acquire`), when some wait for
    /// those only. False when none was told.
    pub(super) fn tell_one_to_look_again(&self) -> bool {
        if self.ticket_only.load(Ordering::Acquire) == 0 {
            return false;
        }
        while let Some(waiter) = self.pipeline.claim_to_recheck() {
            if waiter.send(Handoff::NotSent).is_ok() {
                return true;
            }
        }
        false
    }
}

/// Whether a thread holding `mine` connections should let one go for a
/// thread holding `theirs` whose requests wait: when that thread has none,
/// or at least two fewer (one fewer would only move the imbalance over).
pub(super) fn should_yield(mine: usize, theirs: usize) -> bool {
    mine > 0 && (theirs == 0 || theirs + 1 < mine)
}

impl PoolInner {
    /// The calling thread's part of the pool.
    pub(super) fn local_shard(&self) -> usize {
        current_worker() % self.shards.len()
    }

    /// The most recent idle connection of `shard`.
    pub(super) fn take_idle(&self, shard: usize) -> Option<Conn> {
        let mut idle = self.shards[shard].idle.lock().ok()?;
        let conn = idle.pop()?;
        self.idle_count.fetch_sub(1, Ordering::AcqRel);
        Some(conn)
    }

    /// Keeps `conn` idle for `shard` when the pool has room for it (at
    /// most `max_idle` idle, at most `size` open); else it is closed.
    pub(super) fn put_idle(&self, shard: usize, conn: Conn) {
        let size = self.size.load(Ordering::Acquire);
        let busy = self.busy.load(Ordering::Acquire);
        // Counted first, so two threads cannot both take the last room.
        let before = self.idle_count.fetch_add(1, Ordering::AcqRel);
        if before < self.settings.max_idle && before + busy <= size {
            if let Ok(mut idle) = self.shards[shard].idle.lock() {
                idle.push(conn);
                return;
            }
        }
        self.idle_count.fetch_sub(1, Ordering::AcqRel);
    }

    /// Closes the idle connection that waited longest, of any thread.
    /// False when none was idle.
    pub(super) fn evict_oldest_idle(&self) -> bool {
        let oldest = self
            .shards
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, s.idle.lock().ok()?.first()?.idle_since)))
            .min_by_key(|&(_, since)| since);
        let Some((shard, _)) = oldest else {
            return false;
        };
        let Ok(mut idle) = self.shards[shard].idle.lock() else {
            return false;
        };
        if idle.is_empty() {
            return false;
        }
        drop(idle.remove(0));
        self.idle_count.fetch_sub(1, Ordering::AcqRel);
        true
    }

    /// Closes up to `excess` idle connections, the oldest of each thread first.
    pub(super) fn drain_idle(&self, mut excess: usize) {
        for shard in self.shards.iter() {
            if excess == 0 {
                return;
            }
            let Ok(mut idle) = shard.idle.lock() else {
                continue;
            };
            let n = excess.min(idle.len());
            idle.drain(..n);
            self.idle_count.fetch_sub(n, Ordering::AcqRel);
            excess -= n;
        }
    }

    /// The pool grew by `grow`: requests waiting only for their own
    /// thread's connections look again, as they may take a new one now.
    pub(super) fn wake_to_recheck(&self, grow: usize) {
        let mut left = grow;
        for shard in self.shards.iter() {
            while left > 0 && shard.tell_one_to_look_again() {
                left -= 1;
            }
        }
    }

    /// An exchange for `route` was slow: every serving thread pauses
    /// pipelining, and when `remember`, sends nothing behind that path.
    pub(super) fn slow_exchange(&self, route: u64, remember: bool) {
        let now = Instant::now();
        let mut was_running = false;
        for shard in self.shards.iter() {
            was_running |= shard.pipeline.slowness.pause();
            if remember {
                shard.pipeline.slowness.remember_slow(route, now);
            }
        }
        if was_running {
            tracing::debug!(upstream = %self.settings.addr, remembered = remember, "upstream pipelining paused: a request was slow");
        }
    }

    /// Whether idle connections exist, none of them `shard`'s.
    pub(super) fn idle_only_elsewhere(&self, shard: usize) -> bool {
        self.idle_count.load(Ordering::Acquire) > 0
            && self.shards[shard]
                .idle
                .lock()
                .is_ok_and(|idle| idle.is_empty())
    }

    /// Whether serving thread `shard` holds at least its share of the
    /// pool's connections (the size over the threads, rounded up).
    pub(super) fn holds_its_share(&self, shard: usize) -> bool {
        if self.shards.len() == 1 {
            return false;
        }
        let held = self.shards[shard].busy();
        let share = self
            .size
            .load(Ordering::Relaxed)
            .div_ceil(self.shards.len());
        held > 0 && held >= share
    }

    /// Whether a thread whose requests wait holds too few connections next
    /// to `shard`'s: then `shard` sends nothing more ahead, so one of its
    /// connections comes free for that thread (`should_yield`).
    pub(super) fn others_starved(&self, shard: usize) -> bool {
        if self.shards.len() == 1 {
            return false;
        }
        // Nobody else waits (the common case, even under load): one look
        // at the pool's count instead of one at every thread's.
        if self.waiting.load(Ordering::Relaxed) <= self.shards[shard].waiting() {
            return false;
        }
        let mine = self.shards[shard].busy();
        self.shards
            .iter()
            .enumerate()
            .any(|(i, s)| i != shard && s.waiting() > 0 && should_yield(mine, s.busy()))
    }
}

#[cfg(test)]
mod tests {
    use super::should_yield;

    #[test]
    fn yields_towards_balance_without_ping_pong() {
        // One connection in all: the thread without one gets a turn.
        assert!(should_yield(1, 0));
        assert!(should_yield(3, 1));
        assert!(!should_yield(2, 1), "3 in all split 2/1 stays");
        assert!(!should_yield(2, 2));
        assert!(!should_yield(0, 0));
    }
}
