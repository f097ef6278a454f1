//! What an exchange hands on as php-fpm answers (`Output`), and where it
//! goes (`OutputSink`): a channel read by another task, or the queue of an
//! `UpstreamResponse` whose reader drives the exchange itself.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Timing, UpstreamError};

/// What the exchange sends to the HTTP side, in order.
#[derive(Debug)]
pub enum Output {
    Stdout(Bytes),
    Stderr(Bytes),
    /// The exchange failed; nothing follows.
    Failed(UpstreamError),
    /// Where the time went until now; sent just before the first STDOUT,
    /// and only when asked for (`upstream::start` with `report_timing`).
    Timing(Timing),
}

/// The reader is gone: nobody wants the rest of the answer.
#[derive(Debug, PartialEq, Eq)]
pub struct ReaderGone;

/// Where an exchange puts what it reads, holding it back (the exchange
/// waits) while `depth` pieces are queued and unread.
#[derive(Debug, Clone)]
pub enum OutputSink {
    /// Read by another task (php-fpm's own pages, the bench client).
    Channel(mpsc::Sender<Output>),
    /// The queue of the `UpstreamResponse` that owns (and alone polls) the
    /// exchange: a piece put here is seen within the same poll, so no
    /// waker is needed, and none is woken (a channel would wake the
    /// reader's own task for nothing and have it polled once more).
    Inline(Arc<InlineQueue>),
}

impl From<mpsc::Sender<Output>> for OutputSink {
    fn from(tx: mpsc::Sender<Output>) -> OutputSink {
        OutputSink::Channel(tx)
    }
}

impl OutputSink {
    /// Hands `out` on, waiting while the queue is full.
    pub async fn send(&self, out: Output) -> Result<(), ReaderGone> {
        match self {
            OutputSink::Channel(tx) => tx.send(out).await.map_err(|_| ReaderGone),
            OutputSink::Inline(queue) => {
                let mut out = Some(out);
                std::future::poll_fn(|_| queue.poll_push(&mut out)).await
            }
        }
    }

    /// Resolves when the reader is gone. An inline queue's reader owns the
    /// exchange, so its going drops the exchange too: never, from inside.
    pub async fn closed(&self) {
        match self {
            OutputSink::Channel(tx) => tx.closed().await,
            OutputSink::Inline(_) => std::future::pending().await,
        }
    }
}

/// One `UpstreamResponse`'s queue of output not yet read.
///
/// Pushed to and taken from only inside `UpstreamResponse::poll_recv` (the
/// exchange is polled there and nowhere else), so the lock is never
/// contended; it is there because the exchange must be `Send`. Not taking
/// it to find the queue empty keeps a usual answer to two locks (each a
/// pair of locked instructions): its push and its pop.
#[derive(Debug)]
pub struct InlineQueue {
    depth: usize,
    items: Mutex<VecDeque<Output>>,
    /// The queue may hold something: set by a push, cleared when a pop
    /// empties it, both under the lock. Read without it by the reader, on
    /// the thread that just polled the exchange (the only place anything
    /// is pushed), so it never reads false while something is queued.
    pushed: AtomicBool,
}

impl InlineQueue {
    pub fn new(depth: usize) -> Arc<InlineQueue> {
        Arc::new(InlineQueue {
            depth,
            items: Mutex::new(VecDeque::new()),
            pushed: AtomicBool::new(false),
        })
    }

    fn items(&self) -> MutexGuard<'_, VecDeque<Output>> {
        // A panic while the lock was held left a queue of whole items.
        self.items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `out` unless the queue is full. A full queue registers no
    /// waker: the reader polls the exchange again only once it has taken
    /// everything queued, and then there is room.
    fn poll_push(&self, out: &mut Option<Output>) -> Poll<Result<(), ReaderGone>> {
        let mut items = self.items();
        if items.len() >= self.depth {
            return Poll::Pending;
        }
        if let Some(out) = out.take() {
            items.push_back(out);
            self.pushed.store(true, Ordering::Relaxed);
        }
        Poll::Ready(Ok(()))
    }

    /// The oldest piece queued; without taking the lock when nothing is.
    pub fn pop(&self) -> Option<Output> {
        if !self.pushed.load(Ordering::Relaxed) {
            return None;
        }
        let mut items = self.items();
        let item = items.pop_front();
        if items.is_empty() {
            self.pushed.store(false, Ordering::Relaxed);
        }
        item
    }

    /// Everything queued, taken at once, if `wanted` says so of it.
    pub fn take_all_if(
        &self,
        wanted: impl FnOnce(&VecDeque<Output>) -> bool,
    ) -> Option<Vec<Output>> {
        let mut items = self.items();
        let taken = wanted(&items).then(|| items.drain(..).collect());
        if items.is_empty() {
            self.pushed.store(false, Ordering::Relaxed);
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Waker};

    fn stdout(text: &'static str) -> Output {
        Output::Stdout(Bytes::from_static(text.as_bytes()))
    }

    #[test]
    fn inline_queue_knows_it_is_empty_without_its_lock_only_when_it_is() {
        let queue = InlineQueue::new(4);
        let sink = OutputSink::Inline(queue.clone());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(queue.pop().is_none());
        assert!(!queue.pushed.load(Ordering::Relaxed));
        for text in ["a", "b"] {
            let sent = pin!(sink.send(stdout(text))).poll(&mut cx);
            assert_eq!(sent, Poll::Ready(Ok(())));
        }
        assert!(matches!(queue.pop(), Some(Output::Stdout(b)) if b == "a"));
        assert!(queue.pushed.load(Ordering::Relaxed), "one is still queued");
        assert!(matches!(queue.pop(), Some(Output::Stdout(b)) if b == "b"));
        assert!(!queue.pushed.load(Ordering::Relaxed), "emptied by the pop");
        assert!(queue.pop().is_none());
        let sent = pin!(sink.send(stdout("c"))).poll(&mut cx);
        assert_eq!(sent, Poll::Ready(Ok(())));
        assert!(matches!(queue.pop(), Some(Output::Stdout(b)) if b == "c"));
        // Taken whole: empty again.
        let sent = pin!(sink.send(stdout("d"))).poll(&mut cx);
        assert_eq!(sent, Poll::Ready(Ok(())));
        assert_eq!(queue.take_all_if(|_| true).map(|v| v.len()), Some(1));
        assert!(!queue.pushed.load(Ordering::Relaxed));
    }

    #[test]
    fn inline_queue_holds_the_sender_back_at_its_depth_and_keeps_order() {
        let queue = InlineQueue::new(2);
        let sink = OutputSink::Inline(queue.clone());
        let mut cx = Context::from_waker(Waker::noop());
        for text in ["a", "b"] {
            let sent = pin!(sink.send(stdout(text))).poll(&mut cx);
            assert_eq!(sent, Poll::Ready(Ok(())));
        }
        let mut third = pin!(sink.send(stdout("c")));
        assert_eq!(
            third.as_mut().poll(&mut cx),
            Poll::Pending,
            "full at depth 2"
        );
        let texts: Vec<_> = std::iter::from_fn(|| queue.pop())
            .map(|o| match o {
                Output::Stdout(b) => b,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(texts, ["a", "b"]);
        assert_eq!(third.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
        assert!(matches!(queue.pop(), Some(Output::Stdout(b)) if b == "c"));
        assert!(queue.pop().is_none());
    }

    #[tokio::test]
    async fn channel_sink_says_when_the_reader_is_gone() {
        let (tx, rx) = mpsc::channel(1);
        let sink = OutputSink::from(tx);
        drop(rx);
        assert_eq!(sink.send(stdout("x")).await, Err(ReaderGone));
    }
}
