//! How big the pool is: resizing (permits retired as leases come back),
//! and learning php-fpm's worker count from its listen backlog when the
//! kernel shows it (`ours_in_backlog`, `saw_backlog`, `probe_one_more`),
//! else from the time fresh connections wait for their first byte
//! (`stuck_fresh`, `learn_capacity`). Also whether requests may be sent
//! ahead now, which depends on the same knowledge.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::super::capacity::{Stuck, Verdict, STUCK_MIN};
use super::{PoolInner, ACCEPT_GRACE, IN_TRANSIT_MAX};

impl PoolInner {
    /// See `Pool::resize`.
    pub(super) fn resize(self: &Arc<Self>, new_size: usize, why: &str) {
        self.resize_noting(new_size, why, true);
    }

    /// `resize`, logged at info level when `notable`, else at debug (the
    /// probes and their refutations, several a second under overload).
    pub(super) fn resize_noting(self: &Arc<Self>, new_size: usize, why: &str, notable: bool) {
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
            self.wake_to_recheck(grow);
        } else if new_size < old {
            // Free permits go now; those held by busy connections as they
            // come back (`retire_permit`).
            let shrink = old - new_size;
            let forgotten = self.permits.forget_permits(shrink);
            self.surplus.fetch_add(shrink - forgotten, Ordering::AcqRel);
            // Idle connections beyond the new size go now (oldest first).
            let busy = self.busy.load(Ordering::Acquire);
            let idle = self.idle_count.load(Ordering::Acquire);
            self.drain_idle((idle + busy).saturating_sub(new_size).min(idle));
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
    pub(super) fn ours_in_backlog(&self) -> Option<usize> {
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
    pub(super) fn workers_on_their_way(&self, now: Instant, backlog: usize) -> usize {
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

    /// Runs `f` on the exact sizing state (None if a panic poisoned it),
    /// then publishes its next probe time for `probe_one_more`'s look and
    /// whether a probe is pending for `demand_ended`'s.
    pub(super) fn with_exact<R>(
        &self,
        f: impl FnOnce(&mut super::ExactSizing, Instant) -> R,
    ) -> Option<R> {
        let mut exact = self.exact.lock().ok()?;
        let now = Instant::now();
        let result = f(&mut exact, now);
        let gate = exact
            .next_probe_at()
            .map_or(0, |at| self.micros_since_created(at));
        self.probe_gate.store(gate, Ordering::Release);
        self.probe_pending
            .store(exact.probe_pending(), Ordering::Release);
        Some(result)
    }

    fn micros_since_created(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.created).as_micros()).unwrap_or(u64::MAX)
    }

    /// `in_backlog` of our connections wait in php-fpm's backlog (exact
    /// signal): php-fpm serves the others and has no worker for more, so
    /// the pool shrinks to them.
    pub(super) fn saw_backlog(self: &Arc<Self>, in_backlog: usize) {
        self.at_capacity.store(true, Ordering::Release);
        let open = self.busy.load(Ordering::Acquire) + self.idle_count.load(Ordering::Acquire);
        let Some((target, news)) =
            self.with_exact(|exact, now| exact.saw_backlog(now, open, in_backlog))
        else {
            return;
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
    pub(super) fn probe_one_more(self: &Arc<Self>) -> bool {
        let size = self.size.load(Ordering::Acquire);
        if size >= self.settings.max_conns
            || self.size_is_known.load(Ordering::Acquire)
            || self.fresh_awaiting_first_byte.load(Ordering::Acquire) > 0
            || !self.connector.sees_backlog()
        {
            return false;
        }
        // Most calls end here, without a lock.
        if self.micros_since_created(Instant::now()) < self.probe_gate.load(Ordering::Acquire) {
            return false;
        }
        // Checked and claimed under one lock: one probe per period, however
        // many threads find every connection busy at once.
        let claimed = self.with_exact(|exact, now| {
            let due = exact.probe_due(now);
            if due {
                exact.probed(now, size + 1);
            }
            due
        });
        if claimed != Some(true) {
            return false;
        }
        // Someone else's connection waiting there means no worker is free.
        self.stats.backlog_reads.fetch_add(1, Ordering::Relaxed);
        if self.connector.backlog() != Some(0) {
            self.with_exact(|exact, _| exact.probe_not_made());
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

    /// A fresh connection of ours got its first byte, and none awaits one:
    /// php-fpm serves every open connection of ours at once, which holds a
    /// probe up to that many.
    pub(super) fn all_served(&self) {
        if !self.probe_pending.load(Ordering::Acquire) {
            return;
        }
        let open = self.busy.load(Ordering::Acquire) + self.idle_count.load(Ordering::Acquire);
        self.with_exact(|exact, _| exact.served_at_once(open));
    }

    /// A connection goes idle with no request waiting: a probe made as the
    /// burst ended and never tried by a request is withdrawn, so the size
    /// stays what php-fpm was seen to serve (the next burst probes again).
    pub(super) fn demand_ended(self: &Arc<Self>) {
        if !self.probe_pending.load(Ordering::Acquire) || self.waiting.load(Ordering::Relaxed) > 0 {
            return;
        }
        let Some(Some(back_to)) = self.with_exact(|exact, _| exact.demand_ended()) else {
            return;
        };
        if self.size.load(Ordering::Acquire) == back_to + 1
            && !self.size_is_known.load(Ordering::Acquire)
        {
            self.resize_noting(
                back_to,
                "a probe for one more connection found no request left to try it",
                false,
            );
        }
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

    pub(super) fn stuck_after(&self) -> Duration {
        let usual = Duration::from_micros(self.reused_first_byte_micros.load(Ordering::Relaxed));
        STUCK_MIN.max(usual * 4)
    }

    /// Whether a fresh connection has waited for its first byte well past
    /// the usual time (evidence of php-fpm's backlog), and whether the
    /// connection coming back should be closed to free a php-fpm worker for
    /// it: one close per stuck connection and period.
    pub(super) fn stuck_fresh(&self) -> Stuck {
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
pub(super) fn learn_capacity(pool: &Arc<PoolInner>, awaiting: usize, saw_stuck: bool) {
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
