//! Upstream: `unix:`/`tcp:` addresses, dialing, one connection's
//! request/response drive (`conn`), request bodies (`body`) and the pool of
//! kept-alive connections (`pool`). Knows FastCGI records, not HTTP.

pub mod addr;
pub mod body;
mod capacity;
pub mod conn;
pub mod connect;
mod error;
pub mod listen_queue;
mod pipeline;
pub mod pool;
pub mod request;
mod slowness;

use std::time::Duration;
use tokio::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

pub use addr::UpstreamAddr;
pub use body::{RequestBody, Spool, SpoolError};
pub use conn::{ExchangeTimeouts, Output};
pub use connect::{AddrConnector, Connect};
pub use error::{BoxError, ClientError, FailureKind, UpstreamError};
pub use pipeline::route_key;
pub use pool::{set_worker_thread, ExchangeObserver, Pool, PoolSettings, PoolSnapshot, PoolStats};

/// Moves a moving average of durations (in µs; 0 = none yet) an eighth of
/// the way to `sample`: about the last 8 samples count. Racing updates lose
/// a sample, no more, so a load and a store do.
pub(crate) fn add_to_average(average_micros: &std::sync::atomic::AtomicU64, sample: Duration) {
    use std::sync::atomic::Ordering;
    let sample = u64::try_from(sample.as_micros()).unwrap_or(u64::MAX);
    let old = average_micros.load(Ordering::Relaxed);
    let new = if old == 0 {
        sample
    } else {
        old - old / 8 + sample / 8
    };
    average_micros.store(new, Ordering::Relaxed);
}

/// One request ready to go upstream: the encoded head (BEGIN_REQUEST, PARAMS,
/// and for small bodies already the whole STDIN) and the rest of the body.
#[derive(Debug)]
pub struct FcgiRequest {
    pub head: Bytes,
    pub body: RequestBody,
    /// Which URL path it is for (a hash; `pipeline::route_key`): requests
    /// are not sent ahead behind one whose path was recently slow.
    pub route: u64,
}

/// Where one request's time at the upstream went, each part measured where
/// it happens (pool wait, dial, first STDOUT record). Plain data, so
/// carrying it costs no allocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// Waiting for a free pool slot, over all attempts.
    pub queue: Duration,
    /// Dialling, when the attempt that answered used a new connection.
    pub connect: Option<Duration>,
    /// From the request's first write to php-fpm's first STDOUT record.
    pub first_byte: Option<Duration>,
}

/// What `forward` does with the time it measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Nothing: php-fpm's own pages (status), which are no client requests.
    Nothing,
    /// Tell the pool's observer (metrics).
    Observe,
    /// Observe, and send `Output::Timing` just before the first STDOUT
    /// (for the `Server-Timing` header).
    ObserveAndReport,
}

/// Hands the first-byte and total times of one request to the pool's
/// observer when the request ends, even when it ends by being dropped
/// (the client left): every request is counted once.
struct Stopwatch<'a> {
    pool: &'a Pool,
    started: Instant,
    timing: Timing,
    observe: bool,
}

impl Drop for Stopwatch<'_> {
    fn drop(&mut self) {
        if !self.observe {
            return;
        }
        if let Some(observer) = self.pool.observer() {
            if let Some(first) = self.timing.first_byte {
                observer.first_byte(first);
            }
            observer.finished(self.started.elapsed());
        }
    }
}

/// Runs one request through the pool, forwarding the response to `out`. On
/// failure, sends `Output::Failed` (unless the receiver is gone). Retries once
/// on a fresh connection when a reused one failed before any response byte
/// and the body can still be sent.
pub async fn forward(
    pool: Pool,
    mut request: FcgiRequest,
    out: mpsc::Sender<Output>,
    measure: Measure,
) {
    let mut watch = Stopwatch {
        pool: &pool,
        started: Instant::now(),
        timing: Timing::default(),
        observe: measure != Measure::Nothing,
    };
    let report = measure == Measure::ObserveAndReport;
    let mut retried = false;
    loop {
        // Only a request php-fpm gets whole at once may wait on a busy connection.
        let ahead = (request.body.is_empty() && !retried).then_some(&request.head);
        let mut lease = match pool.acquire(retried, ahead, request.route).await {
            Ok(lease) => lease,
            Err(e) => {
                let _ = out.send(Output::Failed(e)).await;
                return;
            }
        };
        watch.timing.queue += lease.waited();
        watch.timing.connect = lease.dialled();
        let reused = lease.is_reused();
        let result = conn::exchange_leased(
            &mut lease,
            request.head.clone(),
            &mut request.body,
            &out,
            pool.exchange_timeouts(),
            conn::Clock {
                timing: &mut watch.timing,
                report,
            },
        )
        .await;
        match result {
            Ok(outcome) => {
                lease.release(outcome);
                return;
            }
            Err(failure) => {
                drop(lease);
                // A spooled body can be sent again; a streamed one is gone.
                let retryable = reused
                    && !retried
                    && !failure.got_response_bytes
                    && (!failure.body_consumed || request.body.rewind())
                    && failure.error.is_retryable();
                if retryable {
                    pool.stats().note_retry();
                    tracing::debug!(error = %failure.error, "reused upstream connection failed before the response; retrying on a fresh one");
                    retried = true;
                    continue;
                }
                if failure.error.kind() != FailureKind::ClientGone {
                    let _ = out.send(Output::Failed(failure.error)).await;
                }
                return;
            }
        }
    }
}

/// How many response records may wait between php-fpm and a slow client.
const RESPONSE_QUEUE_DEPTH: usize = 8;

/// A request on its way through the pool, driven by whoever reads its
/// output: no task of its own, so no cross-thread hand-off per request.
/// Dropping it abandons the exchange (the connection is closed, not reused).
pub struct UpstreamResponse {
    rx: mpsc::Receiver<Output>,
    driver: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl std::fmt::Debug for UpstreamResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamResponse")
            .field("running", &self.driver.is_some())
            .finish()
    }
}

/// Starts `request` through `pool`; nothing happens until it is polled.
/// With `report_timing`, an `Output::Timing` comes just before the first STDOUT.
pub fn start(pool: Pool, request: FcgiRequest, report_timing: bool) -> UpstreamResponse {
    let (tx, rx) = mpsc::channel(RESPONSE_QUEUE_DEPTH);
    let measure = if report_timing {
        Measure::ObserveAndReport
    } else {
        Measure::Observe
    };
    UpstreamResponse {
        rx,
        driver: Some(Box::pin(forward(pool, request, tx, measure))),
    }
}

impl UpstreamResponse {
    /// The next piece of output, driving the exchange while none is queued.
    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Output>> {
        use std::task::Poll;
        loop {
            if let Poll::Ready(item) = self.rx.poll_recv(cx) {
                return Poll::Ready(item);
            }
            let Some(driver) = self.driver.as_mut() else {
                // Finished: the sender is gone, so the queue already said None.
                return Poll::Ready(None);
            };
            match driver.as_mut().poll(cx) {
                // The exchange dropped its sender; what it queued is still there.
                Poll::Ready(()) => self.driver = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    pub async fn recv(&mut self) -> Option<Output> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}
