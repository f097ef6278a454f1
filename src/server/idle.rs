//! How long a client connection may sit without a request: until its
//! first byte of a head within `--header-timeout` of opening (a client that
//! never sends a byte cannot hold a slot of `--max-connections`), the whole
//! head within `--header-timeout` of its first byte, and between requests
//! `--keepalive-timeout` (nginx's 75 s by default). A request in progress
//! has no such limit here: the upstream's timeouts govern it.
//!
//! `Watched` wraps the client stream to see bytes arrive; the service marks
//! each request's start and (through a guard dropped with the response
//! body) its end; `Activity::expired` resolves when the connection has
//! been idle or slow past its limit, and the connection is then closed.
//!
//! Nothing wakes the watcher when a request starts or ends: it sleeps no
//! longer than the shorter limit and looks again. Any deadline a change
//! can bring is at least that far off (see `expired`), so none is missed,
//! and a request costs no wake-up of its connection's task.
//!
//! The head's bytes are kept while it is read, up to `HEAD_KEPT`: hyper
//! drops a Content-Length that comes with Transfer-Encoding before the
//! request reaches us, and `framing` refuses that pair (RFC 9112 §6.3).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Head bytes kept for the Content-Length check; a longer head is judged
/// by what came first (hyper's own limits refuse much longer heads anyway).
const HEAD_KEPT: usize = 16 * 1024;

/// The limits a connection gets when accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdleLimits {
    pub header: Duration,
    pub keepalive: Duration,
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    /// Requests begun on this connection.
    begun: u64,
    /// Since when nothing runs: the connection opened, or its last response ended.
    idle_since: Instant,
    /// When the first byte of the next head arrived.
    head_since: Option<Instant>,
    head: Vec<u8>,
}

/// One connection's requests and silences.
#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<State>,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            state: Mutex::new(State {
                in_flight: 0,
                begun: 0,
                idle_since: Instant::now(),
                head_since: None,
                head: Vec::new(),
            }),
        })
    }

    fn bytes_in(&self, data: &[u8]) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        if s.in_flight > 0 || data.is_empty() {
            return;
        }
        if s.head_since.is_none() {
            s.head_since = Some(Instant::now());
        }
        let room = HEAD_KEPT.saturating_sub(s.head.len());
        s.head.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// A request's head was read: from now on its own timeouts govern.
    /// `inspect` sees the head's bytes as they came (possibly with the
    /// start of the body). Drop the returned guard when its response ends.
    pub(crate) fn begin<T>(self: &Arc<Self>, inspect: impl FnOnce(&[u8]) -> T) -> (T, InFlight) {
        let seen = match self.state.lock() {
            Ok(mut s) => {
                s.in_flight += 1;
                s.begun += 1;
                s.head_since = None;
                let seen = inspect(&s.head);
                s.head.clear();
                seen
            }
            Err(_) => inspect(&[]),
        };
        (seen, InFlight(self.clone()))
    }

    fn ended(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.in_flight = s.in_flight.saturating_sub(1);
            if s.in_flight == 0 {
                s.idle_since = Instant::now();
            }
        }
    }

    /// When the connection must close if nothing changes; None while a
    /// request runs.
    fn deadline(&self, limits: IdleLimits) -> Option<Instant> {
        let s = self.state.lock().ok()?;
        if s.in_flight > 0 {
            return None;
        }
        Some(match (s.head_since, s.begun) {
            (Some(first_byte), _) => first_byte + limits.header,
            // Never a byte yet: as long as a head may take.
            (None, 0) => s.idle_since + limits.header,
            (None, _) => s.idle_since + limits.keepalive,
        })
    }

    /// Resolves once the connection has been idle, or reading one head,
    /// past its limit.
    ///
    /// Sleeps until the current deadline or the shorter limit from now,
    /// whichever comes first, then looks again. Any deadline set by a
    /// later change (a head's first byte, a request's end) lies at least the
    /// shorter limit after that change, so after this wake-up: none is
    /// passed unseen.
    pub(crate) async fn expired(&self, limits: IdleLimits) {
        let step = limits.header.min(limits.keepalive);
        loop {
            let now = Instant::now();
            let wake = match self.deadline(limits) {
                Some(at) if at <= now => return,
                Some(at) => at.min(now + step),
                None => now + step,
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// A request in progress; dropped with its response body.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.ended();
    }
}

/// A client stream whose incoming bytes `Activity` sees, and whose reads
/// and writes keep its thread polling (`idle_poll`).
pub(crate) struct Watched<S> {
    stream: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub(crate) fn new(stream: S, activity: Arc<Activity>) -> Watched<S> {
        Watched { stream, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            super::idle_poll::note_work();
            this.activity.bytes_in(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        super::idle_poll::note_work();
        Pin::new(&mut self.get_mut().stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        super::idle_poll::note_work();
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Whether a request head (as read, maybe with body bytes after it) has a
/// Content-Length header line.
pub(crate) fn head_has_content_length(raw: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    // A partial or odd head still yields the headers read so far.
    let _ = req.parse(raw);
    req.headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("content-length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: IdleLimits = IdleLimits {
        header: Duration::from_secs(10),
        keepalive: Duration::from_secs(75),
    };

    #[tokio::test(start_paused = true)]
    async fn silence_costs_the_header_timeout_then_the_keepalive_one() {
        let activity = Activity::new();
        let opened = Instant::now();
        // Never a byte: closed after the header timeout.
        activity.expired(LIMITS).await;
        assert_eq!(opened.elapsed(), LIMITS.header);

        let activity = Activity::new();
        activity.bytes_in(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let ((), request) = activity.begin(|_| ());
        // A request runs as long as it takes.
        let waiting = tokio::time::timeout(Duration::from_secs(600), activity.expired(LIMITS));
        assert!(waiting.await.is_err());
        drop(request);
        let ended = Instant::now();
        activity.expired(LIMITS).await;
        assert_eq!(ended.elapsed(), LIMITS.keepalive);
    }

    #[tokio::test(start_paused = true)]
    async fn a_watcher_running_throughout_sees_every_deadline() {
        let activity = Activity::new();
        let opened = Instant::now();
        let watcher = tokio::spawn({
            let activity = activity.clone();
            async move { activity.expired(LIMITS).await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        activity.bytes_in(b"GET / HTTP/1.1\r\n\r\n");
        let ((), request) = activity.begin(|_| ());
        // A long request: no limit while it runs.
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert!(!watcher.is_finished());
        drop(request);
        let ended = Instant::now();
        // A slow next head, begun 20 s into the keep-alive wait: its own
        // limit (10 s) ends the connection, before the keep-alive one.
        tokio::time::sleep(Duration::from_secs(20)).await;
        activity.bytes_in(b"GE");
        watcher.await.unwrap();
        assert_eq!(ended.elapsed(), Duration::from_secs(30));
        assert_eq!(opened.elapsed(), Duration::from_secs(335));
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_begun_must_end_within_the_header_timeout() {
        let activity = Activity::new();
        let ((), first) = activity.begin(|_| ());
        drop(first);
        tokio::time::sleep(Duration::from_secs(30)).await;
        // The next head starts, slowly: its limit counts from its first byte.
        let started = Instant::now();
        activity.bytes_in(b"GET / HT");
        activity.expired(LIMITS).await;
        assert_eq!(started.elapsed(), LIMITS.header);
    }

    #[test]
    fn the_head_kept_tells_a_content_length_hyper_dropped() {
        let head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello";
        assert!(head_has_content_length(head));
        let chunked_only = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(!head_has_content_length(chunked_only));
        let activity = Activity::new();
        activity.bytes_in(head);
        let (seen, _request) = activity.begin(head_has_content_length);
        assert!(seen);
        // The next head starts empty.
        let (seen, _second) = activity.begin(|raw| raw.len());
        assert_eq!(seen, 0);
    }
}
