//! A client connection served until it ends, its listener drains it, or
//! it has sat idle past its limit (`idle`), whichever comes first.
//!
//! The drain signal and the idle watch are polled only when their own
//! wakers fire, not at every wake-up of the connection's task (two or
//! three per request). Polled each time, the drain's watch channel took
//! its lock on every wake-up, one lock for all of a listener's connections
//! on every serving thread, and the idle watch re-polled its sleep.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use tokio::sync::watch;

/// Tells a listener's connections to finish the request in flight and
/// close, then waits until they have.
#[derive(Debug)]
pub(crate) struct Drain {
    tx: watch::Sender<()>,
}

/// A connection's end of its listener's `Drain`: the drain waits for it
/// to be dropped.
#[derive(Debug)]
pub(crate) struct DrainWatcher {
    rx: watch::Receiver<()>,
}

impl Drain {
    pub(crate) fn new() -> Drain {
        Drain {
            tx: watch::channel(()).0,
        }
    }

    /// Taken before the connection is accepted for good: a drain begun
    /// later still reaches it.
    pub(crate) fn watcher(&self) -> DrainWatcher {
        DrainWatcher {
            rx: self.tx.subscribe(),
        }
    }

    /// Signals every watcher, then resolves when all are dropped.
    pub(crate) async fn shutdown(self) {
        let _ = self.tx.send(());
        self.tx.closed().await;
    }
}

impl DrainWatcher {
    /// Resolves when the drain begins (or its `Drain` is gone).
    async fn drained(&mut self) {
        let _ = self.rx.changed().await;
    }
}

/// How a watched connection ended.
#[derive(Debug)]
pub(crate) enum Ended<T> {
    /// The connection future's own end (the client closed, an error, or
    /// the drain's graceful close done).
    Served(T),
    /// Idle or too slow past its limit: the connection is dropped, which
    /// closes it.
    Idle,
}

/// Drives `conn` to its end; when `drain` begins, calls `graceful_close`
/// on it once and keeps driving it; when `idle` resolves first, stops.
/// The caller pins `conn` and `idle` where they are made: passed by value,
/// an async fn keeps its argument and the pinned copy both, and the
/// connection future is most of a connection task's memory.
pub(crate) async fn serve<C: Future, I: Future<Output = ()>>(
    conn: Pin<&mut C>,
    graceful_close: fn(Pin<&mut C>),
    drain: &mut DrainWatcher,
    idle: Pin<&mut I>,
) -> Ended<C::Output> {
    let drained = std::pin::pin!(drain.drained());
    let side = Arc::new(SideWake {
        // Polled once at the start, to register their wakers.
        woken: AtomicBool::new(true),
        task: Mutex::new(None),
    });
    Watch {
        conn,
        graceful_close,
        drained: Some(drained),
        idle,
        side_waker: Waker::from(side.clone()),
        side,
        task: None,
    }
    .await
}

/// What the side futures' waker reaches: a flag that they need polling,
/// and the task to wake for it.
struct SideWake {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for SideWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Ok(task) = self.task.lock() {
            if let Some(task) = task.as_ref() {
                task.wake_by_ref();
            }
        }
    }
}

struct Watch<'a, C, D, I> {
    conn: Pin<&'a mut C>,
    graceful_close: fn(Pin<&mut C>),
    /// None once the drain has begun.
    drained: Option<Pin<&'a mut D>>,
    idle: Pin<&'a mut I>,
    side: Arc<SideWake>,
    side_waker: Waker,
    /// The task waker last handed to `side`.
    task: Option<Waker>,
}

impl<C: Future, D: Future, I: Future> Future for Watch<'_, C, D, I> {
    type Output = Ended<C::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // Before the flag is read: a side wake-up after that reading then
        // wakes this task again.
        if !this.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            if let Ok(mut task) = this.side.task.lock() {
                *task = Some(cx.waker().clone());
            }
            this.task = Some(cx.waker().clone());
        }
        // A load first: the swap's write only when a side future woke.
        if this.side.woken.load(Ordering::Acquire) && this.side.woken.swap(false, Ordering::AcqRel)
        {
            let mut side_cx = Context::from_waker(&this.side_waker);
            if let Some(drained) = this.drained.as_mut() {
                if drained.as_mut().poll(&mut side_cx).is_ready() {
                    this.drained = None;
                    (this.graceful_close)(this.conn.as_mut());
                }
            }
            if this.idle.as_mut().poll(&mut side_cx).is_ready() {
                return Poll::Ready(Ended::Idle);
            }
        }
        this.conn.as_mut().poll(cx).map(Ended::Served)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// A future the test steers: counts its polls, keeps the last waker,
    /// resolves once fired.
    #[derive(Default)]
    struct Probe {
        polls: AtomicUsize,
        fired: AtomicBool,
        waker: Mutex<Option<Waker>>,
    }

    impl Probe {
        fn polls(&self) -> usize {
            self.polls.load(Ordering::Relaxed)
        }
        /// Wakes whoever polled it last, without firing it.
        fn wake(&self) {
            if let Some(w) = self.waker.lock().expect("test lock").take() {
                w.wake();
            }
        }
        fn fire(&self) {
            self.fired.store(true, Ordering::Relaxed);
            self.wake();
        }
        fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            if self.fired.load(Ordering::Relaxed) {
                return Poll::Ready(());
            }
            *self.waker.lock().expect("test lock") = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// The idle watch's stand-in.
    struct Side(Arc<Probe>);

    impl Future for Side {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.0.poll(cx)
        }
    }

    /// The connection's stand-in: ends when fired, with the number of
    /// graceful closes it was given.
    struct Conn {
        probe: Arc<Probe>,
        closes: usize,
    }

    impl Future for Conn {
        type Output = usize;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            let closes = self.closes;
            self.probe.poll(cx).map(|()| closes)
        }
    }

    fn close(conn: Pin<&mut Conn>) {
        let this = conn.get_mut();
        this.closes += 1;
        this.probe.fired.store(true, Ordering::Relaxed);
    }

    fn conn() -> (Conn, Arc<Probe>) {
        let probe = Arc::new(Probe::default());
        let conn = Conn {
            probe: probe.clone(),
            closes: 0,
        };
        (conn, probe)
    }

    /// `serve` with the futures owned, for spawning.
    async fn serve_owned<I: Future<Output = ()>>(
        conn: Conn,
        mut drain: DrainWatcher,
        idle: I,
    ) -> Ended<usize> {
        let conn = std::pin::pin!(conn);
        let idle = std::pin::pin!(idle);
        serve(conn, close, &mut drain, idle).await
    }

    /// A watched connection running in a task of its own, past its first poll.
    async fn started() -> (
        Drain,
        Arc<Probe>,
        Arc<Probe>,
        tokio::task::JoinHandle<Ended<usize>>,
    ) {
        let drain = Drain::new();
        let (conn, conn_probe) = conn();
        let idle = Arc::new(Probe::default());
        let served = tokio::spawn(serve_owned(conn, drain.watcher(), Side(idle.clone())));
        settle().await;
        (drain, conn_probe, idle, served)
    }

    /// The connection ended after one graceful close, and the drain then
    /// saw its watcher gone.
    async fn closed_once_then_drained(ended: Ended<usize>, shutting: tokio::task::JoinHandle<()>) {
        assert!(matches!(ended, Ended::Served(1)), "{ended:?}");
        tokio::time::timeout(Duration::from_secs(5), shutting)
            .await
            .expect("the drain completes")
            .expect("no panic");
    }

    async fn settle() {
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_side_futures_are_polled_again_only_when_their_waker_fires() {
        let (drain, conn_probe, idle, served) = started().await;
        assert_eq!((conn_probe.polls(), idle.polls()), (1, 1));
        // The connection's task woken again and again, as reads and the
        // upstream wake it: the idle watch is not polled for that.
        for _ in 0..5 {
            conn_probe.wake();
            settle().await;
        }
        assert_eq!((conn_probe.polls(), idle.polls()), (6, 1));
        // Its own waker fires (the sleep ends, nothing expired yet): it is
        // polled, and the connection with it.
        idle.wake();
        settle().await;
        assert_eq!((conn_probe.polls(), idle.polls()), (7, 2));
        // The drain begins: the connection is told once, and ends.
        let shutting = tokio::spawn(drain.shutdown());
        let ended = tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("the drained connection ends")
            .expect("no panic");
        closed_once_then_drained(ended, shutting).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_watch_that_fires_ends_the_connection_without_a_close() {
        let (drain, conn_probe, idle, served) = started().await;
        idle.fire();
        let ended = tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("the idle connection ends")
            .expect("no panic");
        assert!(matches!(ended, Ended::Idle), "{ended:?}");
        assert!(
            !conn_probe.fired.load(Ordering::Relaxed),
            "no graceful close"
        );
        // Its watcher went with it: nothing left to wait for.
        tokio::time::timeout(Duration::from_secs(5), drain.shutdown())
            .await
            .expect("the drain completes at once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_begun_before_the_first_poll_still_closes_the_connection() {
        let drain = Drain::new();
        let watcher = drain.watcher();
        let shutting = tokio::spawn(drain.shutdown());
        settle().await;
        let (conn, _) = conn();
        let ended = tokio::time::timeout(
            Duration::from_secs(5),
            serve_owned(conn, watcher, std::future::pending()),
        )
        .await
        .expect("ends");
        closed_once_then_drained(ended, shutting).await;
    }
}
