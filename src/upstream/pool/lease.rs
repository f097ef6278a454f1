//! A connection checked out of the pool (`Lease`) and its bookkeeping
//! (`LeaseGuard`): giving it back, handing it to the requests written
//! behind it (`pipeline`), and what dropping it without a release does.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::super::capacity::{AwaitingFresh, Stuck};
use super::super::conn::{self, Conn, Outcome};
use super::super::pipeline::{Handoff, MAX_BEHIND, REFILL_AT};
use super::super::slowness::Verdict;
use super::super::UpstreamError;
use super::sizing::learn_capacity;
use super::PoolInner;

/// One connection checked out of the pool, holding its permit. Dropping a
/// lease without `release` closes the connection and frees the slot, except
/// when a request was sent ahead on it: then the current response is read
/// away first and the connection goes to that request.
#[derive(Debug)]
pub struct Lease {
    /// Always set until `release` or drop takes it.
    pub(super) held: Option<Held>,
    /// How long the request waited for its slot.
    pub(super) waited: Duration,
    /// How long dialling took, when the connection is new.
    pub(super) dialled: Option<Duration>,
    /// The request is already on the connection (it was sent ahead).
    pub(super) sent_ahead: bool,
}

#[derive(Debug)]
pub(super) struct Held {
    pub(super) conn: Conn,
    pub(super) guard: LeaseGuard,
}

/// With the exact backlog signal, how often a fresh connection still
/// without its first byte looks whether it waits in php-fpm's backlog
/// behind an idle connection of ours (a race the release rule can miss).
const EXACT_RECHECK: Duration = Duration::from_millis(10);

/// The bookkeeping of one lease, undone when it drops (released or not).
#[derive(Debug)]
pub(crate) struct LeaseGuard {
    pub(super) pool: Arc<PoolInner>,
    /// The serving thread's part of the pool this lease belongs to.
    pub(super) shard: usize,
    /// The pool slot; given back (or retired after a shrink) on drop, after
    /// the connection went back to the idle list.
    pub(super) permit: Option<OwnedSemaphorePermit>,
    /// Set while this lease's fresh connection waits for its first byte.
    pub(super) awaiting_id: Option<u64>,
    /// The request went out on a reused connection.
    pub(super) reused: bool,
    /// Connections closed for php-fpm's backlog when this fresh
    /// connection's request went out (`PoolStats::closed_for_waiter`).
    pub(super) closes_when_sent: u64,
    /// The current request's URL path (`pipeline::route_key`).
    pub(super) route: u64,
    /// The requests written behind the current one on this connection, in
    /// order, each told when its turn to read comes.
    pub(super) successors: VecDeque<oneshot::Sender<Handoff>>,
    /// Requests this connection took on this thread since it was checked
    /// out, after the first: its turn, when another thread waits for one.
    pub(super) turn: usize,
}

impl Lease {
    /// Whether the connection served a request before this one.
    pub fn is_reused(&self) -> bool {
        self.held.as_ref().is_some_and(|h| h.conn.is_reused())
    }

    /// How long the request waited in the queue for this slot.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// How long dialling took, when this connection is new.
    pub fn dialled(&self) -> Option<Duration> {
        self.dialled
    }

    /// Which URL path the request is for (`pipeline::route_key`): the
    /// request handed a connection gets it in place of the one before.
    pub(super) fn set_route(&mut self, route: u64) {
        if let Some(held) = self.held.as_mut() {
            held.guard.route = route;
        }
    }

    /// The request is already on the connection: only its response is to come.
    pub(crate) fn was_sent_ahead(&self) -> bool {
        self.sent_ahead
    }

    /// Marks the request as on its way. A fresh connection may sit in
    /// php-fpm's backlog until its first byte arrives.
    pub fn request_sent(&mut self) {
        let Some(Held { conn, guard, .. }) = self.held.as_mut() else {
            return;
        };
        if conn.is_reused() {
            guard.reused = true;
            return;
        }
        if guard.awaiting_id.is_some() {
            return;
        }
        let pool = &guard.pool;
        guard.closes_when_sent = pool.stats.closed_for_waiter.load(Ordering::Relaxed);
        let id = pool.next_awaiting_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut awaiting) = pool.awaiting.lock() {
            awaiting.push(AwaitingFresh {
                id,
                since: Instant::now(),
                freed_for_at: None,
            });
            guard.awaiting_id = Some(id);
            pool.fresh_awaiting_first_byte
                .fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The connection and the bookkeeping to tell the pool about the first byte.
    pub(crate) fn parts(&mut self) -> Option<(&mut Conn, &mut LeaseGuard)> {
        self.held.as_mut().map(|h| (&mut h.conn, &mut h.guard))
    }

    /// Hands the connection to the request sent ahead on it, if any;
    /// otherwise returns it to the idle list when the exchange left it
    /// clean, no connection of ours waits in php-fpm's backlog for its
    /// worker, and the pool has room for it; else closes it. The permit goes
    /// with the connection to the request sent ahead, or is released.
    pub fn release(mut self, outcome: Outcome) {
        if outcome != Outcome::Reusable {
            // Dropping closes it, or first reads the response away for a
            // request sent ahead.
            return;
        }
        let Some(Held {
            mut conn,
            mut guard,
        }) = self.held.take()
        else {
            return;
        };
        guard.first_byte();
        let pool = guard.pool.clone();
        let worker_needed = match pool.ours_in_backlog() {
            Some(0) => false,
            Some(in_backlog) => {
                pool.saw_backlog(in_backlog);
                true
            }
            // No exact signal (remote tcp): judge by time to first byte.
            None => {
                let awaiting = pool.fresh_awaiting_first_byte.load(Ordering::Acquire);
                let stuck = if awaiting > 0 {
                    pool.stuck_fresh()
                } else {
                    Stuck::None
                };
                learn_capacity(&pool, awaiting, stuck != Stuck::None);
                stuck == Stuck::Claimed
            }
        };
        conn.uses += 1;
        if let Some(successor) = guard.successors.pop_front() {
            // Its response comes next on this connection, so it cannot be
            // closed for a stuck one. If the request gave up waiting, the
            // returned lease drops here: that closes the connection,
            // aborting its script as a client leaving would, or, with more
            // requests behind it, reads its response away for them.
            let next = Lease {
                held: Some(Held { conn, guard }),
                waited: Duration::ZERO,
                dialled: None,
                sent_ahead: true,
            };
            let _ = successor.send(Handoff::Ready(next));
            return;
        }
        if worker_needed {
            // Idle, it would pin the worker our waiting connection needs.
            pool.freed_a_worker();
            return;
        }
        // Requests queued since a burst began make no new acquire calls:
        // php-fpm growing meanwhile (a dynamic pool forking) is found here.
        // One waiter takes this connection; a probe is for the next.
        if pool.waiting.load(Ordering::Relaxed) > 1 {
            pool.probe_one_more();
        }
        // A request of this thread waits: it gets the connection as it is,
        // unless another thread's requests wait with too few connections
        // and this thread had its turn.
        if !guard.turn_is_over() {
            if let Some(waiter) = pool.shards[guard.shard].pipeline.claim_waiter() {
                guard.turn += 1;
                let free = Lease {
                    held: Some(Held { conn, guard }),
                    waited: Duration::ZERO,
                    dialled: None,
                    sent_ahead: false,
                };
                if let Err(Handoff::Free(back)) = waiter.send(Handoff::Free(free)) {
                    // It left meanwhile: the connection goes back as usual.
                    back.release(Outcome::Reusable);
                }
                return;
            }
        }
        pool.demand_ended();
        conn.idle_since = Instant::now();
        // After a shrink, open connections may outnumber the size: an idle
        // one beyond it would never be handed out, yet pin a php-fpm worker.
        pool.put_idle(guard.shard, conn);
        // `guard` (with the permit) drops here, after the connection is
        // back, so the next waiter finds it idle instead of dialing.
        drop(guard);
    }
}

impl Drop for Lease {
    /// A lease dropped with a request sent ahead on its connection (the
    /// client left, or the exchange failed): that request must not be lost,
    /// so the current response is read away in a task of its own and the
    /// connection then handed on.
    fn drop(&mut self) {
        let Some(held) = self.held.take() else {
            return;
        };
        if held.guard.successors.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut lease = Lease {
            held: Some(held),
            waited: Duration::ZERO,
            dialled: None,
            sent_ahead: false,
        };
        runtime.spawn(async move {
            let read_timeout = lease
                .held
                .as_ref()
                .map(|h| h.guard.pool.settings.read_timeout);
            let started = Instant::now();
            let finished = match (lease.held.as_mut(), read_timeout) {
                (Some(held), Some(after)) => conn::read_away(&mut held.conn, after).await,
                _ => Err(conn::ReadAwayFailure::Dead),
            };
            match finished {
                Ok(()) => {
                    // At least this long: a slow script still pauses pipelining.
                    if let Some(held) = lease.held.as_ref() {
                        held.guard.response_ended_after(started.elapsed(), false);
                    }
                    lease.release(Outcome::Reusable)
                }
                Err(failure) => {
                    let Some(held) = lease.held.as_mut() else {
                        return;
                    };
                    let successors = std::mem::take(&mut held.guard.successors);
                    // php-fpm closed before it finished: it never read the
                    // requests behind. Otherwise it may still run them.
                    let dead = matches!(failure, conn::ReadAwayFailure::Dead);
                    let mut error = match failure {
                        conn::ReadAwayFailure::Dead => None,
                        conn::ReadAwayFailure::Other(e) => Some(e),
                    };
                    for successor in successors {
                        let _ = successor.send(if dead {
                            Handoff::NotSent
                        } else {
                            Handoff::Lost(error.take().unwrap_or(UpstreamError::Closed))
                        });
                    }
                }
            }
        });
    }
}

impl LeaseGuard {
    /// The first byte came back `after` the request went out (the exchange
    /// times it): a reused connection's time feeds what "usual" is.
    pub(crate) fn first_byte_after(&mut self, after: Duration) {
        if std::mem::take(&mut self.reused) {
            super::super::add_to_average(&self.pool.reused_first_byte_micros, after);
        }
        self.first_byte();
    }

    /// The response ended `after` the request went out (the exchange times
    /// it): a slow one pauses pipelining (`pipeline`).
    pub(crate) fn response_ended_after(&self, after: Duration, fresh: bool) {
        // A fresh connection's time includes its wait in php-fpm's backlog:
        // when one of ours was closed to free a worker meanwhile, it may
        // have waited, and its time says nothing of the script (a probe
        // for one more connection, the pool's first burst).
        if fresh
            && self.pool.stats.closed_for_waiter.load(Ordering::Relaxed) != self.closes_when_sent
        {
            return;
        }
        let under_load = self.pool.waiting.load(Ordering::Relaxed) > 0;
        let verdict = self.pool.shards[self.shard]
            .pipeline
            .slowness
            .exchange_took(self.route, after, under_load);
        if let Verdict::Slow { remember } = verdict {
            self.pool.slow_exchange(self.route, remember);
        }
    }

    /// Ends the wait for the first byte, if this lease was still waiting.
    pub(crate) fn first_byte(&mut self) {
        self.end_first_byte_wait(true);
    }

    /// Ends the wait for the first byte, which came (`came`) or never will
    /// (the lease is dropped): only one that came shows php-fpm serving it.
    fn end_first_byte_wait(&mut self, came: bool) {
        if let Some(id) = self.awaiting_id.take() {
            if let Ok(mut awaiting) = self.pool.awaiting.lock() {
                awaiting.retain(|a| a.id != id);
            }
            let awaiting_before = self
                .pool
                .fresh_awaiting_first_byte
                .fetch_sub(1, Ordering::AcqRel);
            if came && awaiting_before == 1 {
                self.pool.all_served();
            }
        }
    }
}

impl LeaseGuard {
    /// How many waiting requests may be written onto this connection now,
    /// behind those already there: the places free of `MAX_BEHIND` behind
    /// the running one, if requests wait and the pool allows sending ahead.
    /// Once this lease's own response has ended (`ended`), its first
    /// successor is the one running.
    ///
    /// While more than `REFILL_AT` wait behind the running one, none: the
    /// places freed meanwhile are filled together later, in one write
    /// (`conn::send_ahead`), one syscall and, over tcp, one pass through
    /// the loopback path for two or more requests, while php-fpm still
    /// finds requests waiting.
    pub(crate) fn places_to_fill(&self, ended: bool) -> usize {
        let pipeline = &self.pool.shards[self.shard].pipeline;
        let behind_running = self.successors.len() - usize::from(ended && self.has_successor());
        if behind_running > REFILL_AT
            || !pipeline.has_queued()
            || pipeline.was_slow(self.route)
            || !self.pool.may_send_ahead()
        {
            return 0;
        }
        let places = MAX_BEHIND.saturating_sub(behind_running);
        // No more than the rest of this thread's turn (`turn_is_over`).
        let left_in_turn = MAX_BEHIND.saturating_sub(self.turn);
        if places > left_in_turn && self.pool.others_starved(self.shard) {
            left_in_turn
        } else {
            places
        }
    }

    /// The oldest request waiting to be sent ahead, claimed for this
    /// connection (after `places_to_fill` said how many may be).
    pub(crate) fn claim_successor(&self) -> Option<(Bytes, oneshot::Sender<Handoff>)> {
        self.pool.shards[self.shard].pipeline.claim()
    }

    /// Whether this thread should let the connection go to another whose
    /// requests wait with too few connections (`PoolInner::others_starved`):
    /// once it served `MAX_BEHIND` more requests on it. Each thread thus
    /// gets a turn of a few requests, pipelined, even on a pool of one.
    fn turn_is_over(&self) -> bool {
        self.turn >= MAX_BEHIND && self.pool.others_starved(self.shard)
    }

    /// Claimed requests went onto the connection in one write.
    pub(crate) fn wrote_ahead(&self) {
        self.pool.shards[self.shard]
            .pipeline
            .send_ahead_writes
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The claimed request is on the connection, behind those already there.
    pub(crate) fn set_successor(&mut self, successor: oneshot::Sender<Handoff>) {
        self.successors.push_back(successor);
        self.turn += 1;
    }

    pub(crate) fn has_successor(&self) -> bool {
        !self.successors.is_empty()
    }

    /// While a fresh connection awaits its first byte: when to look again
    /// whether it is stuck in php-fpm's backlog.
    pub(crate) fn stuck_check_at(&self) -> Option<Instant> {
        let id = self.awaiting_id?;
        let awaiting = self.pool.awaiting.lock().ok()?;
        let me = awaiting.iter().find(|a| a.id == id)?;
        let period = if self.pool.connector.sees_backlog() {
            EXACT_RECHECK
        } else {
            self.pool.stuck_after()
        };
        Some(me.freed_for_at.unwrap_or(me.since) + period)
    }

    /// Called when this fresh connection has waited past `stuck_check_at`:
    /// idle connections of ours may be what pins every php-fpm worker (no
    /// connection comes back to be closed for it), so close the oldest one.
    pub(crate) fn free_a_worker(&mut self) {
        let Some(id) = self.awaiting_id else {
            return;
        };
        let pool = &self.pool;
        if let Ok(mut awaiting) = pool.awaiting.lock() {
            if let Some(me) = awaiting.iter_mut().find(|a| a.id == id) {
                me.freed_for_at = Some(Instant::now());
            }
        }
        if pool.idle_count.load(Ordering::Acquire) == 0 {
            return;
        }
        if pool.connector.sees_backlog() {
            // Close an idle one only when ours really waits (the kernel says).
            match pool.ours_in_backlog() {
                Some(in_backlog) if in_backlog > 0 => pool.saw_backlog(in_backlog),
                _ => return,
            }
        }
        if pool.evict_oldest_idle() {
            pool.freed_a_worker();
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.end_first_byte_wait(false);
        self.pool.busy.fetch_sub(1, Ordering::Relaxed);
        let shard = &self.pool.shards[self.shard];
        let held_before = shard.busy.fetch_sub(1, Ordering::Relaxed);
        // The thread's last connection ended: requests waiting for one of
        // them only would wait in vain; one looks again (it then waits for
        // a permit too, or takes the one given back below).
        if held_before == 1 {
            shard.tell_one_to_look_again();
        }
        if let Some(permit) = self.permit.take() {
            if self.pool.retire_permit() {
                permit.forget();
            }
        }
    }
}
