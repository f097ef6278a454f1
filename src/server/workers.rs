//! The serving threads (thread per core): each runs its own single-threaded
//! tokio runtime, accepts on its own copy of every listening socket and
//! serves the connections it accepted from start to end, upstream work
//! included (`upstream::set_worker_thread`). No request's path wakes
//! another thread, as in nginx's process per core. The caller's runtime
//! keeps the rest: signals, reload, the admin listener, the pool's timers.
//! After work each thread polls briefly before it sleeps (`idle_poll`).

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::time::MissedTickBehavior;

use super::access_log;
use super::idle_poll;
use super::poll_priority;
use crate::listen::Listener;
use crate::metrics::IdlePollStats;

/// How often each serving thread's event loop wakes by itself. tokio
/// writes to the loop's eventfd whenever a timer is set earlier than the
/// loop's next planned wake, even from the loop's own thread; with no timer
/// pending, that was every request's first timer (hyper's header timeout,
/// the upstream read timeout): a `write` and an extra `epoll_wait` per
/// request (measured: 7.75 syscalls per hello.php at c=1, 0.93 of them that
/// `write`). A wake planned at most this far ahead makes those timers,
/// all longer, never the earliest.
const HEARTBEAT: Duration = Duration::from_millis(500);

/// The running serving threads.
#[derive(Debug)]
pub(crate) struct Workers {
    threads: Vec<Worker>,
}

#[derive(Debug)]
struct Worker {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    /// Told once the thread's runtime is gone, its tasks with it.
    ended: oneshot::Receiver<()>,
}

impl Workers {
    /// Starts `count` serving threads (at least one), each polling for
    /// `idle_poll` after work before it sleeps (zero: never).
    pub(crate) fn start(
        count: usize,
        idle_poll: Duration,
        idle_poll_stats: Arc<IdlePollStats>,
    ) -> io::Result<Workers> {
        let mut threads = Vec::with_capacity(count.max(1));
        // The threads log where the starting thread does (a test's own
        // subscriber included, not only the process-wide one).
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        for index in 0..count.max(1) {
            let dispatch = dispatch.clone();
            let idle_poll_stats = idle_poll_stats.clone();
            let mut builder = tokio::runtime::Builder::new_current_thread();
            builder.enable_all();
            if idle_poll.is_zero() {
                // Access lines are held, written before the thread waits
                // once they fill a write (`access_log::ThreadStderr`).
                builder.on_thread_park(access_log::write_held_lines_if_full);
            } else {
                // The same, and a nap first on a crowded machine.
                let stats = idle_poll_stats.clone();
                builder
                    .on_thread_park(move || idle_poll::before_wait(&stats))
                    .on_thread_unpark(idle_poll::wake_on_unpark)
                    // Blocking-pool threads are started from the serving
                    // thread, perhaps while it polls at SCHED_IDLE.
                    .on_thread_start(poll_priority::reset_inherited);
            }
            let runtime = builder.build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let (done, ended) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("serve-{index}"))
                .spawn(move || {
                    let _logs = tracing::dispatcher::set_default(&dispatch);
                    crate::upstream::set_worker_thread(index);
                    crate::metrics::claim_slot();
                    access_log::hold_lines_on_this_thread();
                    if !idle_poll.is_zero() {
                        idle_poll::prepare_thread();
                    }
                    // Runs the tasks spawned onto this runtime until told to stop.
                    runtime.block_on(async {
                        tokio::pin!(stopped);
                        if !idle_poll.is_zero() {
                            tokio::spawn(idle_poll::poll_while_idle(idle_poll, idle_poll_stats));
                        }
                        // And those that do not fill one, in time.
                        tokio::spawn(access_log::write_held_lines_in_time(
                            access_log::WRITTEN_WITHIN,
                            access_log::write_whole_lines,
                        ));
                        let mut heartbeat = tokio::time::interval(HEARTBEAT);
                        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
                        loop {
                            tokio::select! {
                                _ = &mut stopped => break,
                                _ = heartbeat.tick() => {}
                            }
                        }
                    });
                    // Whatever still runs (connections past the grace
                    // period) is dropped with the runtime, here.
                    drop(runtime);
                    // Including the lines of connections dropped just now.
                    access_log::write_held_lines();
                    let _ = done.send(());
                })?;
            threads.push(Worker {
                handle,
                stop: Some(stop),
                ended,
            });
        }
        Ok(Workers { threads })
    }

    pub(crate) fn handles(&self) -> Vec<Handle> {
        self.threads.iter().map(|w| w.handle.clone()).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.threads.len()
    }

    /// Stops every thread, dropping what still runs on it, and waits until
    /// they have ended.
    pub(crate) async fn stop(mut self) {
        self.tell_to_stop();
        for worker in self.threads.drain(..) {
            let _ = worker.ended.await;
        }
    }

    fn tell_to_stop(&mut self) {
        for worker in &mut self.threads {
            if let Some(stop) = worker.stop.take() {
                let _ = stop.send(());
            }
        }
    }
}

impl Drop for Workers {
    /// Not stopped (the serve future was dropped): the threads still end.
    fn drop(&mut self) {
        self.tell_to_stop();
    }
}

/// A listening socket detached from any event loop, to be copied (the
/// same socket: one accept queue) into each serving thread.
#[derive(Debug)]
pub(crate) enum SharedListener {
    Tcp(std::net::TcpListener),
    Tls(std::net::TcpListener),
    Unix {
        listener: std::os::unix::net::UnixListener,
        path: PathBuf,
    },
}

impl SharedListener {
    pub(crate) fn from_listener(listener: Listener) -> io::Result<SharedListener> {
        Ok(match listener {
            Listener::Tcp(l) => SharedListener::Tcp(l.into_std()?),
            Listener::Tls(l) => SharedListener::Tls(l.into_std()?),
            Listener::Unix { listener, path } => SharedListener::Unix {
                listener: listener.into_std()?,
                path,
            },
        })
    }

    /// Another handle on the same socket (a duplicated descriptor).
    pub(crate) fn try_clone(&self) -> io::Result<SharedListener> {
        Ok(match self {
            SharedListener::Tcp(l) => SharedListener::Tcp(l.try_clone()?),
            SharedListener::Tls(l) => SharedListener::Tls(l.try_clone()?),
            SharedListener::Unix { listener, path } => SharedListener::Unix {
                listener: listener.try_clone()?,
                path: path.clone(),
            },
        })
    }

    /// Registers it with the event loop of the calling thread's runtime.
    pub(crate) fn into_listener(self) -> io::Result<Listener> {
        Ok(match self {
            SharedListener::Tcp(l) => Listener::Tcp(TcpListener::from_std(l)?),
            SharedListener::Tls(l) => Listener::Tls(TcpListener::from_std(l)?),
            SharedListener::Unix { listener, path } => Listener::Unix {
                listener: UnixListener::from_std(listener)?,
                path,
            },
        })
    }
}

/// `--workers`, or the CPU count when not given.
pub(crate) fn worker_count(configured: Option<usize>) -> usize {
    configured
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// Open client connections per serving thread: where each new one goes.
#[derive(Debug)]
pub(crate) struct Balance {
    open: Box<[AtomicUsize]>,
}

impl Balance {
    pub(crate) fn new(workers: usize) -> Arc<Balance> {
        Arc::new(Balance {
            open: (0..workers.max(1)).map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    /// The thread to serve a connection that thread `me` accepted: `me`,
    /// unless it holds two or more connections more than the thread with
    /// the fewest. Every thread's event loop watches the same accept queue,
    /// and the first awake takes a whole burst (wrk's 32 connections went
    /// 26/6), leaving the other thread's core idle.
    pub(crate) fn place(&self, me: usize) -> usize {
        let mine = self.open[me].load(Ordering::Relaxed);
        let (fewest, least) = self
            .open
            .iter()
            .enumerate()
            .map(|(i, n)| (i, n.load(Ordering::Relaxed)))
            .min_by_key(|&(_, n)| n)
            .unwrap_or((me, mine));
        if mine >= least + 2 {
            fewest
        } else {
            me
        }
    }

    /// Counts a connection on `worker` until the returned token drops.
    pub(crate) fn opened(self: &Arc<Self>, worker: usize) -> Placed {
        self.open[worker].fetch_add(1, Ordering::Relaxed);
        Placed {
            balance: self.clone(),
            worker,
        }
    }
}

/// One open client connection on a serving thread.
#[derive(Debug)]
pub(crate) struct Placed {
    balance: Arc<Balance>,
    worker: usize,
}

impl Drop for Placed {
    fn drop(&mut self) {
        self.balance.open[self.worker].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::Balance;

    #[test]
    fn a_thread_two_ahead_hands_new_connections_over() {
        let balance = Balance::new(2);
        // Thread 0 wakes first and accepts a burst.
        let mut held = Vec::new();
        for _ in 0..6 {
            let target = balance.place(0);
            held.push(balance.opened(target));
        }
        let on = |w: usize| held.iter().filter(|p| p.worker == w).count();
        assert_eq!((on(0), on(1)), (4, 2), "never more than 2 apart");
        // Connections on thread 1 close: thread 0's next ones go there.
        held.retain(|p| p.worker == 0);
        assert_eq!(balance.place(0), 1);
        drop(held);
        assert_eq!(balance.place(0), 0);
        assert_eq!(balance.place(1), 1);
    }
}
