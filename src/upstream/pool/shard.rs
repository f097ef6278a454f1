//! The pool's per-worker-thread parts: each serving thread keeps its own
//! idle connections, its own pipelining queue and its own counts, so a
//! request's upstream work stays on the thread that accepted it (its
//! connection's socket is registered with that thread's event loop).
//! Capacity stays shared: the permits and the learned size are the pool's,
//! a thread with no idle connection takes one another thread left idle
//! (`Pool::steal_idle`), and a thread holding more connections than one
//! whose requests wait stops sending requests ahead, so its connections
//! come free (`PoolInner::others_starved`).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::super::conn::Conn;
use super::super::pipeline::Pipeline;

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
}

impl Shard {
    pub(super) fn new(pipelining: Option<Duration>) -> Shard {
        Shard {
            idle: Mutex::new(Vec::new()),
            pipeline: Pipeline::new(pipelining),
            busy: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            ticket_only: AtomicUsize::new(0),
        }
    }

    pub(super) fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// Whether a thread holding `mine` connections should let one go for a
/// thread holding `theirs` whose requests wait: when that thread has none,
/// or at least two fewer (one fewer would only move the imbalance over).
pub(super) fn should_yield(mine: usize, theirs: usize) -> bool {
    mine > 0 && (theirs == 0 || theirs + 1 < mine)
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
