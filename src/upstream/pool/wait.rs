//! Waiting for a connection when none is free: FIFO for a pool slot
//! (tokio's fair semaphore), bounded in length and time, or, for a request
//! that may be sent ahead, for a connection it was written onto or one that
//! came free on its own serving thread (`pipeline`, `shard`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::super::pipeline::Handoff;
use super::super::UpstreamError;
use super::Pool;

impl Pool {
    /// A permit after waiting in the queue, or, for a request that may be
    /// sent ahead (`ahead`), a connection it was written onto; and how long
    /// that took.
    pub(super) async fn wait_for_permit(
        &self,
        shard: usize,
        ahead: Option<&Bytes>,
        route: u64,
    ) -> Result<(Granted, Duration), UpstreamError> {
        let inner = &self.inner;
        let wait = inner.settings.acquire_timeout;
        let queued = inner.waiting.fetch_add(1, Ordering::AcqRel);
        let _unqueue = DecrementOnDrop(&inner.waiting);
        let local = &inner.shards[shard];
        local.waiting.fetch_add(1, Ordering::AcqRel);
        let _unqueue_here = DecrementOnDrop(&local.waiting);
        if queued == 0 && inner.connector.sees_backlog() {
            inner.with_exact(|exact, now| exact.demand_began(now));
        }
        if queued >= inner.settings.queue_length {
            inner.stats.saturated.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(upstream = %inner.settings.addr, queue_length = inner.settings.queue_length, "upstream pool saturated: wait queue full");
            return Err(UpstreamError::QueueFull {
                length: inner.settings.queue_length,
            });
        }
        let started = Instant::now();
        let pipeline = &local.pipeline;
        let ticket = ahead.and_then(|head| pipeline.enqueue(head, route));
        // A request that may be sent ahead, on a thread holding its share
        // of the connections, waits for one of them only: a permit given
        // back elsewhere stays with that thread instead of pulling one of
        // its connections over here, and back again.
        let ticket_only = ticket.is_some() && inner.holds_its_share(shard);
        let _counted = ticket_only.then(|| {
            local.ticket_only.fetch_add(1, Ordering::AcqRel);
            DecrementOnDrop(&local.ticket_only)
        });
        // Made only where waited on: a ticket-only request needs none.
        let permit = || inner.permits.clone().acquire_owned();
        let res = match ticket {
            Some(mut ticket) if ticket_only => {
                match tokio::time::timeout(wait, ticket.receiver()).await {
                    Ok(handoff) => Ok(Granted::Handoff(
                        handoff.unwrap_or(Handoff::Lost(UpstreamError::Closed)),
                    )),
                    Err(_) if ticket.withdraw(pipeline) => Err(()),
                    Err(_) => Ok(Granted::Handoff(ticket.handoff().await)),
                }
            }
            None => match tokio::time::timeout(wait, pipeline.waiting_for_a_slot(permit())).await {
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
                    permit = permit() => First::Permit(permit.ok()),
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
        local
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
}

/// What waiting in the queue gave a request (returned, never stored).
#[allow(clippy::large_enum_variant)]
pub(super) enum Granted {
    Permit(OwnedSemaphorePermit),
    Handoff(Handoff),
}

pub(super) struct DecrementOnDrop<'a>(pub(super) &'a AtomicUsize);

impl Drop for DecrementOnDrop<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
