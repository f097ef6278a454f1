//! Upstream: `unix:`/`tcp:` addresses, dialing, one connection's
//! request/response drive (`conn`), request bodies (`body`) and the pool of
//! kept-alive connections (`pool`). Knows FastCGI records, not HTTP.

pub mod addr;
pub mod body;
pub mod conn;
pub mod fpm_status;
pub mod pool;

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

pub use addr::UpstreamAddr;
pub use body::{RequestBody, Spool, SpoolError};
pub use conn::{ExchangeTimeouts, Output};
pub use pool::{Pool, PoolSettings, PoolSnapshot, PoolStats};

use crate::fastcgi::{DecodeError, ProtocolStatus};

/// Everything that can go wrong between us and the upstream, each carrying
/// what failed and which named timeout fired. `server::respond` maps these to statuses.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to upstream {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connect-timeout: upstream {addr} did not accept within {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
    #[error("acquire-timeout: no upstream connection free within {after:?}")]
    AcquireTimeout { after: Duration },
    #[error("queue-length: {length} requests already wait for an upstream connection")]
    QueueFull { length: usize },
    #[error("writing the request to the upstream failed: {0}")]
    Write(#[source] std::io::Error),
    #[error("reading the response from the upstream failed: {0}")]
    Read(#[source] std::io::Error),
    #[error("the upstream closed the connection before the end of the response")]
    Closed,
    #[error("malformed FastCGI from upstream: {0}")]
    Protocol(#[from] DecodeError),
    #[error("the upstream refused the request: {0:?}")]
    Refused(ProtocolStatus),
    #[error("read-timeout: no response head from upstream within {after:?}")]
    HeadTimeout { after: Duration },
    #[error("read-timeout: upstream sent nothing for {after:?} mid-response")]
    ReadTimeout { after: Duration },
    #[error("the client went away")]
    ClientGone,
    #[error("reading the request body from the client failed: {0}")]
    ClientBody(String),
    #[error("reading the spooled request body failed: {0}")]
    Spool(String),
}

/// One request ready to go upstream: the encoded head (BEGIN_REQUEST, PARAMS,
/// and for small bodies already the whole STDIN) and the rest of the body.
#[derive(Debug)]
pub struct FcgiRequest {
    pub head: Bytes,
    pub body: RequestBody,
}

/// Runs one request through the pool, forwarding the response to `out`. On
/// failure, sends `Output::Failed` (unless the receiver is gone). Retries once
/// on a fresh connection when a reused one failed before any response byte
/// and the body can still be sent.
pub async fn forward(pool: Pool, mut request: FcgiRequest, out: mpsc::Sender<Output>) {
    let mut retried = false;
    loop {
        let mut lease = match pool.acquire(retried).await {
            Ok(lease) => lease,
            Err(e) => {
                let _ = out.send(Output::Failed(e)).await;
                return;
            }
        };
        let reused = lease.conn().is_reused();
        let result = conn::exchange_leased(
            &mut lease,
            request.head.clone(),
            &mut request.body,
            &out,
            pool.exchange_timeouts(),
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
                    && matches!(
                        failure.error,
                        UpstreamError::Write(_) | UpstreamError::Read(_) | UpstreamError::Closed
                    );
                if retryable {
                    pool.stats().note_retry();
                    tracing::debug!(error = %failure.error, "reused upstream connection failed before the response; retrying on a fresh one");
                    retried = true;
                    continue;
                }
                if !matches!(failure.error, UpstreamError::ClientGone) {
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
pub fn start(pool: Pool, request: FcgiRequest) -> UpstreamResponse {
    let (tx, rx) = mpsc::channel(RESPONSE_QUEUE_DEPTH);
    UpstreamResponse {
        rx,
        driver: Some(Box::pin(forward(pool, request, tx))),
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
