//! Upstream: `unix:`/`tcp:` addresses, dialing, one connection's
//! request/response drive (`conn`), request bodies (`body`) and the pool of
//! kept-alive connections (`pool`). Knows FastCGI records, not HTTP.

pub mod addr;
pub mod balance;
pub mod body;
mod capacity;
pub mod conn;
pub mod connect;
mod error;
pub mod listen_queue;
pub mod output;
mod pipeline;
pub mod pool;
pub mod request;
mod slowness;

use std::time::Duration;
use tokio::time::Instant;

use bytes::Bytes;
use std::sync::Arc;

pub use addr::UpstreamAddr;
pub use balance::{BalanceSettings, HealthPolicy, Member, UpstreamSpec, Upstreams};
pub use body::{RequestBody, Spool, SpoolError};
pub use conn::ExchangeTimeouts;
pub use connect::{AddrConnector, Connect};
pub use error::{BoxError, ClientError, FailureKind, UpstreamError};
pub use output::{Output, OutputSink};
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

/// Hands the first-byte and total times of one request to the observer of
/// the pool that served it when the request ends, even when it ends by
/// being dropped (the client left): every request is counted once.
struct Stopwatch {
    pool: Option<Pool>,
    started: Instant,
    timing: Timing,
    observe: bool,
}

impl Stopwatch {
    fn new(measure: Measure) -> Stopwatch {
        Stopwatch {
            pool: None,
            started: Instant::now(),
            timing: Timing::default(),
            observe: measure != Measure::Nothing,
        }
    }
}

impl Drop for Stopwatch {
    fn drop(&mut self) {
        if !self.observe {
            return;
        }
        if let Some(observer) = self.pool.as_ref().and_then(|p| p.observer()) {
            if let Some(first) = self.timing.first_byte {
                observer.first_byte(first);
            }
            observer.finished(self.started.elapsed());
        }
    }
}

/// Why an attempt on one pool failed, and whether another may take it.
struct AttemptFailed {
    error: UpstreamError,
    /// The request never reached a php-fpm worker and can be sent whole
    /// again (its body unread, or spooled and rewound).
    may_go_elsewhere: bool,
}

/// Runs one request through `pool`, forwarding the response to `out`. On
/// failure, sends `Output::Failed` (unless the receiver is gone). Retries once
/// on a fresh connection when a reused one failed before any response byte
/// and the body can still be sent.
pub async fn forward(pool: Pool, mut request: FcgiRequest, out: OutputSink, measure: Measure) {
    let mut watch = Stopwatch::new(measure);
    watch.pool = Some(pool.clone());
    if let Err(failed) = attempt(&pool, &mut request, &out, &mut watch, measure).await {
        report(&out, failed.error).await;
    }
}

/// Like [`forward`], over several upstreams: each attempt goes to the one
/// `Upstreams::pick` chooses; a request that never reached php-fpm goes to
/// another one, each upstream at most once. One whose fate is unknown is
/// not sent again (502), as with one upstream. (A plain fn returning the
/// future: an `async fn` would keep its arguments twice, and this future
/// is boxed per request.)
#[allow(clippy::manual_async_fn)] // deliberate: an async fn keeps its arguments twice
pub fn forward_balanced(
    upstreams: Upstreams,
    mut request: FcgiRequest,
    out: OutputSink,
    measure: Measure,
) -> impl std::future::Future<Output = ()> {
    async move {
        let mut watch = Stopwatch::new(measure);
        let policy = upstreams.health_policy();
        let mut tried = Vec::new();
        let mut last_error = None;
        loop {
            let Some((member, _in_flight)) = upstreams.pick(&tried) else {
                let error = last_error.unwrap_or(UpstreamError::NoUpstream);
                report(&out, error).await;
                return;
            };
            watch.pool = Some(member.pool().clone());
            let result = attempt(member.pool(), &mut request, &out, &mut watch, measure).await;
            balance::judge(
                &member,
                policy,
                result.as_ref().map(|_| ()).map_err(|f| &f.error),
            );
            let Err(failed) = result else { return };
            if !failed.may_go_elsewhere {
                report(&out, failed.error).await;
                return;
            }
            tracing::debug!(upstream = %member.addr(), error = %failed.error, "the request did not reach this upstream; trying another");
            tried.push(member);
            if upstreams.members().len() > tried.len() {
                upstreams.note_failover();
            }
            last_error = Some(failed.error);
        }
    }
}

async fn report(out: &OutputSink, error: UpstreamError) {
    if error.kind() != FailureKind::ClientGone {
        let _ = out.send(Output::Failed(error)).await;
    }
}

/// One pool's go at the request, with its one retry on a fresh connection.
async fn attempt(
    pool: &Pool,
    request: &mut FcgiRequest,
    out: &OutputSink,
    watch: &mut Stopwatch,
    measure: Measure,
) -> Result<(), AttemptFailed> {
    let report = measure == Measure::ObserveAndReport;
    let mut retried = false;
    loop {
        // Only a request php-fpm gets whole at once may wait on a busy connection.
        let ahead = (request.body.is_empty() && !retried).then_some(&request.head);
        let mut lease = match pool.acquire(retried, ahead, request.route).await {
            Ok(lease) => lease,
            Err(error) => {
                // Nothing was written on this try, and a retry only comes
                // with the body rewound: it can be sent whole.
                let may_go_elsewhere = error.before_sending();
                return Err(AttemptFailed {
                    error,
                    may_go_elsewhere,
                });
            }
        };
        watch.timing.queue += lease.waited();
        watch.timing.connect = lease.dialled();
        let reused = lease.is_reused();
        let result = conn::exchange_leased(
            &mut lease,
            // Borrowed: written from here, and copied by nobody.
            &request.head,
            &mut request.body,
            out,
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
                return Ok(());
            }
            Err(failure) => {
                drop(lease);
                // A spooled body can be sent again; a streamed one is gone.
                let resendable = !failure.got_response_bytes
                    && (!failure.body_consumed || request.body.rewind());
                if reused && !retried && resendable && failure.error.is_retryable() {
                    pool.stats().note_retry();
                    tracing::debug!(error = %failure.error, "reused upstream connection failed before the response; retrying on a fresh one");
                    retried = true;
                    continue;
                }
                let may_go_elsewhere = resendable && failure.error.before_sending();
                return Err(AttemptFailed {
                    error: failure.error,
                    may_go_elsewhere,
                });
            }
        }
    }
}

/// How many response records may wait between php-fpm and a slow client.
const RESPONSE_QUEUE_DEPTH: usize = output::MAX_QUEUED;

/// A request on its way through the pool, driven by whoever reads its
/// output: no task of its own, so no cross-thread hand-off per request.
/// Dropping it abandons the exchange (the connection is closed, not reused).
pub struct UpstreamResponse {
    /// What the exchange has read and the reader not yet taken; filled
    /// only while `poll_recv` polls the exchange.
    queue: Arc<output::InlineQueue>,
    driver: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl std::fmt::Debug for UpstreamResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamResponse")
            .field("running", &self.driver.is_some())
            .finish()
    }
}

/// Starts `request` through `upstreams`; nothing happens until it is polled.
/// With `report_timing`, an `Output::Timing` comes just before the first STDOUT.
pub fn start(upstreams: Upstreams, request: FcgiRequest, report_timing: bool) -> UpstreamResponse {
    let measure = if report_timing {
        Measure::ObserveAndReport
    } else {
        Measure::Observe
    };
    UpstreamResponse::driving(|sink| forward_balanced(upstreams, request, sink, measure))
}

/// Starts `request` through one pool, without balancing (its own tests).
#[cfg(test)]
pub(crate) fn start_on_pool(pool: Pool, request: FcgiRequest) -> UpstreamResponse {
    UpstreamResponse::driving(|sink| forward(pool, request, sink, Measure::Observe))
}

impl UpstreamResponse {
    /// The exchange `make` builds around the sink of a new queue, not yet
    /// polled.
    fn driving<F>(make: impl FnOnce(OutputSink) -> F) -> UpstreamResponse
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let queue = output::InlineQueue::new(RESPONSE_QUEUE_DEPTH);
        let driver = make(OutputSink::Inline(queue.clone()));
        UpstreamResponse {
            queue,
            driver: Some(Box::pin(driver)),
        }
    }

    /// The next piece of output, driving the exchange while none is queued.
    /// Pending only when nothing is queued and the exchange waits on
    /// php-fpm or a timer, whose wakers it registered.
    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Output>> {
        use std::task::Poll;
        loop {
            if let Some(item) = self.queue.pop() {
                return Poll::Ready(Some(item));
            }
            let Some(driver) = self.driver.as_mut() else {
                // Finished, and all it queued is taken.
                return Poll::Ready(None);
            };
            match driver.as_mut().poll(cx) {
                // What the exchange queued before it ended is still there.
                Poll::Ready(()) => self.driver = None,
                // Waiting, perhaps with output queued in this poll.
                Poll::Pending => {
                    return self
                        .queue
                        .pop()
                        .map_or(Poll::Pending, |item| Poll::Ready(Some(item)))
                }
            }
        }
    }

    /// The rest of the output at once, when the exchange has already ended
    /// and all it left queued is STDOUT and STDERR, with at most
    /// `max_stdout` bytes of STDOUT: the reader then knows the whole body.
    /// None, taking nothing, while it runs, after a failure, or past the
    /// limit.
    pub fn take_ended(&mut self, max_stdout: usize) -> Option<Vec<Output>> {
        if self.driver.is_some() {
            return None;
        }
        self.queue.take_all_if(|items| {
            let mut stdout = 0;
            items.iter().all(|item| match item {
                Output::Stdout(data) => {
                    stdout += data.len();
                    stdout <= max_stdout
                }
                Output::Stderr(_) | Output::Timing(_) => true,
                Output::Failed(_) => false,
            })
        })
    }

    pub async fn recv(&mut self) -> Option<Output> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

#[cfg(test)]
mod response_tests {
    use super::*;

    fn stdout(text: &'static str) -> Output {
        Output::Stdout(Bytes::from_static(text.as_bytes()))
    }

    /// A response whose exchange queues `items` and then ends (or, with
    /// `ends` false, waits for more).
    fn response(items: Vec<Output>, ends: bool) -> UpstreamResponse {
        UpstreamResponse::driving(move |sink| async move {
            for item in items {
                if sink.send(item).await.is_err() {
                    return;
                }
            }
            if !ends {
                std::future::pending::<()>().await;
            }
        })
    }

    #[tokio::test]
    async fn the_rest_is_taken_at_once_only_once_it_ended_whole_and_well() {
        // Ended: the head's piece is read, the rest taken at once.
        let mut rx = response(
            vec![
                stdout("head"),
                stdout("ab"),
                Output::Stderr("note".into()),
                stdout("c"),
            ],
            true,
        );
        assert!(matches!(rx.recv().await, Some(Output::Stdout(b)) if b == "head"));
        let rest = rx.take_ended(3).expect("ended whole");
        assert_eq!(rest.len(), 3);
        assert!(rx.recv().await.is_none(), "nothing left behind");

        // Over the limit, or still running, or failed: nothing is taken.
        let mut rx = response(vec![stdout("head"), stdout("ab"), stdout("cd")], true);
        rx.recv().await;
        assert!(rx.take_ended(3).is_none());
        assert!(matches!(rx.recv().await, Some(Output::Stdout(b)) if b == "ab"));

        let mut rx = response(vec![stdout("head"), stdout("ab")], false);
        rx.recv().await;
        assert!(rx.take_ended(100).is_none());
        assert!(matches!(rx.recv().await, Some(Output::Stdout(b)) if b == "ab"));

        let mut rx = response(
            vec![stdout("head"), Output::Failed(UpstreamError::Closed)],
            true,
        );
        rx.recv().await;
        assert!(rx.take_ended(100).is_none());
        assert!(matches!(rx.recv().await, Some(Output::Failed(_))));
    }
}
