//! What an exchange hands on as php-fpm answers (`Output`), and where it
//! goes (`OutputSink`): a channel read by another task, or the queue of an
//! `UpstreamResponse` whose reader drives the exchange itself.

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
    items: Mutex<Queued>,
    /// The queue may hold something: set by a push, cleared when a pop
    /// empties it, both under the lock. Read without it by the reader, on
    /// the thread that just polled the exchange (the only place anything
    /// is pushed), so it never reads false while something is queued.
    pushed: AtomicBool,
}

/// The most an inline queue holds.
pub const MAX_QUEUED: usize = 8;

/// Output in arrival order: a ring of `MAX_QUEUED` places inside the
/// queue's own allocation (a `VecDeque` would allocate again per request).
#[derive(Debug)]
pub struct Queued {
    places: [Option<Output>; MAX_QUEUED],
    /// Where the oldest is.
    front: usize,
    len: usize,
}

impl Queued {
    fn new() -> Queued {
        Queued {
            places: [const { None }; MAX_QUEUED],
            front: 0,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `out`; the caller has checked there is room (`depth` is at
    /// most `MAX_QUEUED`).
    fn push_back(&mut self, out: Output) {
        debug_assert!(self.len < MAX_QUEUED);
        self.places[(self.front + self.len) % MAX_QUEUED] = Some(out);
        self.len += 1;
    }

    fn pop_front(&mut self) -> Option<Output> {
        if self.len == 0 {
            return None;
        }
        let out = self.places[self.front].take();
        self.front = (self.front + 1) % MAX_QUEUED;
        self.len -= 1;
        out
    }

    /// The queued output, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Output> {
        (0..self.len).filter_map(|i| self.places[(self.front + i) % MAX_QUEUED].as_ref())
    }
}

impl InlineQueue {
    /// A queue holding at most `depth` pieces (at most `MAX_QUEUED`).
    pub fn new(depth: usize) -> Arc<InlineQueue> {
        debug_assert!(depth <= MAX_QUEUED);
        Arc::new(InlineQueue {
            depth: depth.min(MAX_QUEUED),
            items: Mutex::new(Queued::new()),
            pushed: AtomicBool::new(false),
        })
    }

    fn items(&self) -> MutexGuard<'_, Queued> {
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

    /// Everything queued, taken at once, if `wanted` says so of it (an
    /// empty list allocates nothing).
    pub fn take_all_if(&self, wanted: impl FnOnce(&Queued) -> bool) -> Option<Vec<Output>> {
        let mut items = self.items();
        let taken = wanted(&items).then(|| std::iter::from_fn(|| items.pop_front()).collect());
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

    #[test]
    fn inline_queue_keeps_order_around_its_ring_and_holds_back_when_full() {
        let queue = InlineQueue::new(MAX_QUEUED);
        let sink = OutputSink::Inline(queue.clone());
        let mut cx = Context::from_waker(Waker::noop());
        let texts = [
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12",
        ];
        let mut sent = 0;
        let mut taken = Vec::new();
        // Push until full, take three, push again: the places go round.
        while taken.len() < texts.len() {
            while sent < texts.len() {
                let mut send = pin!(sink.send(stdout(texts[sent])));
                if send.as_mut().poll(&mut cx).is_pending() {
                    assert_eq!(queue.items().len(), MAX_QUEUED, "pending only when full");
                    break;
                }
                sent += 1;
            }
            for _ in 0..3 {
                match queue.pop() {
                    Some(Output::Stdout(b)) => taken.push(b),
                    Some(other) => panic!("unexpected {other:?}"),
                    None => break,
                }
            }
        }
        assert_eq!(taken, texts);
        assert!(queue.pop().is_none());
        assert!(!queue.pushed.load(Ordering::Relaxed));

        // Taken whole after going round: oldest first, then empty.
        for text in ["a", "b", "c", "d", "e", "f"] {
            assert!(pin!(sink.send(stdout(text))).poll(&mut cx).is_ready());
        }
        for _ in 0..5 {
            queue.pop();
        }
        for text in ["g", "h"] {
            assert!(pin!(sink.send(stdout(text))).poll(&mut cx).is_ready());
        }
        let rest: Vec<_> = queue
            .take_all_if(|q| q.iter().count() == 3)
            .expect("taken")
            .into_iter()
            .map(|o| match o {
                Output::Stdout(b) => b,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(rest, ["f", "g", "h"]);
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
