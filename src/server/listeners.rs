//! The running accept loops, one per listening socket, each stoppable on its
//! own: a config reload adds and removes listeners while the others keep
//! accepting. Every request reads the per-request state in force at that
//! moment, so a reload reaches keep-alive connections too.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use super::{accept, handler, AppState, Listener};
use crate::config::{Config, ListenAddr};

/// One listener's accept loop.
#[derive(Debug)]
struct Running {
    /// The address it serves, compared with the config's `listen` on reload.
    addr: ListenAddr,
    /// Handed over by the service manager: never closed or re-bound by a
    /// reload, its socket file never removed (systemd owns it).
    inherited: bool,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Every public listener, the connection limit they share, and the drain
/// tracking of their connections.
#[derive(Debug)]
pub(super) struct ListenerSet {
    running: Vec<Running>,
    state: Arc<ArcSwap<AppState>>,
    permits: Arc<Semaphore>,
    /// The `max-connections` the permits were sized for.
    max_connections: usize,
    /// Each connection task holds a clone; when all are gone the drain is over.
    alive: Option<mpsc::Sender<()>>,
    alive_rx: mpsc::Receiver<()>,
}

impl ListenerSet {
    pub fn new(state: Arc<ArcSwap<AppState>>, max_connections: usize) -> ListenerSet {
        let max_connections = max_connections.max(1);
        let (alive, alive_rx) = mpsc::channel(1);
        ListenerSet {
            running: Vec::new(),
            state,
            permits: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            alive: Some(alive),
            alive_rx,
        }
    }

    /// Starts accepting on `listener`.
    pub fn start(&mut self, listener: Listener, inherited: bool) {
        let Some(alive) = self.alive.clone() else {
            return; // Shutting down: nothing new starts.
        };
        let addr = address_of(&listener);
        let (stop, stop_rx) = watch::channel(false);
        let upstream = self.state.load().pool.settings().addr.clone();
        tracing::info!(listen = %listener.describe(), inherited, %upstream, root = %self.state.load().route.root.display(), "serving");
        let task = tokio::spawn(accept_loop(
            listener,
            self.state.clone(),
            stop_rx,
            alive,
            self.permits.clone(),
        ));
        self.running.push(Running {
            addr,
            inherited,
            stop,
            task,
        });
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn has_inherited(&self) -> bool {
        self.running.iter().any(|r| r.inherited)
    }

    /// True when a running listener already serves `addr`.
    pub fn serves(&self, addr: &ListenAddr) -> bool {
        self.running.iter().any(|r| &r.addr == addr)
    }

    /// The addresses `config` wants that no listener serves yet.
    pub fn missing(&self, config: &Config) -> Vec<ListenAddr> {
        wanted(config, self.has_inherited())
            .iter()
            .filter(|a| !self.serves(a))
            .cloned()
            .collect()
    }

    /// Stops the listeners `config` no longer lists (never inherited ones);
    /// their open connections finish their requests and close.
    pub async fn stop_unlisted(&mut self, config: &Config) {
        let wanted = wanted(config, self.has_inherited());
        let (keep, gone): (Vec<Running>, Vec<Running>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|r| r.inherited || wanted.contains(&r.addr));
        self.running = keep;
        for r in gone {
            tracing::info!(listen = %r.addr, "no longer listed: stopped accepting; its connections drain");
            stop(r).await;
        }
    }

    /// Resizes the connection limit; fewer permits take effect as
    /// connections close.
    pub fn set_max_connections(&mut self, n: usize) {
        let n = n.max(1);
        let old = std::mem::replace(&mut self.max_connections, n);
        if n > old {
            self.permits.add_permits(n - old);
        } else if n < old {
            let permits = self.permits.clone();
            tokio::spawn(async move {
                for _ in 0..(old - n) {
                    match permits.acquire().await {
                        Ok(p) => p.forget(),
                        Err(_) => return,
                    }
                }
            });
        }
    }

    /// Stops every listener, then waits up to `grace` for their connections
    /// to finish. True when all did.
    pub async fn shutdown(mut self, grace: Duration) -> bool {
        for r in std::mem::take(&mut self.running) {
            stop(r).await;
        }
        drop(self.alive.take());
        tokio::time::timeout(grace, self.alive_rx.recv())
            .await
            .is_ok()
    }
}

/// What `config` asks to listen on. Sockets handed over by systemd replace
/// the default address; addresses given explicitly are served as well.
pub(super) fn wanted(config: &Config, inherited: bool) -> Vec<ListenAddr> {
    if inherited && config.listen_is_default {
        Vec::new()
    } else {
        config.listen.clone()
    }
}

/// The address a listener serves: TCP's real one (port 0 resolved), a unix
/// socket's path.
pub(super) fn address_of(listener: &Listener) -> ListenAddr {
    match listener {
        Listener::Tcp(l) => match l.local_addr() {
            Ok(a) => ListenAddr::Tcp(a),
            Err(_) => ListenAddr::Unix(PathBuf::new()),
        },
        Listener::Unix { path, .. } => ListenAddr::Unix(path.clone()),
    }
}

async fn stop(r: Running) {
    let _ = r.stop.send(true);
    let _ = r.task.await;
    // Our socket, our file: a later start would otherwise find it stale.
    if let (ListenAddr::Unix(path), false) = (&r.addr, r.inherited) {
        let _ = std::fs::remove_file(path);
    }
}

async fn accept_loop(
    listener: Listener,
    state: Arc<ArcSwap<AppState>>,
    mut stop: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
    permits: Arc<Semaphore>,
) {
    loop {
        // A permit first, so a flood of connections waits in the kernel backlog.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let accepted = tokio::select! {
            a = accept(&listener) => a,
            _ = stop.changed() => return,
        };
        let (io, remote, local) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // The connection's HTTP settings (header timeout, buffer sizes) are
        // those in force when it was accepted.
        let builder = state.load().http.clone();
        let state = state.clone();
        let mut stop = stop.clone();
        let alive = alive.clone();
        tokio::spawn(async move {
            let _alive = alive;
            let _permit = permit;
            let service = service_fn(move |req| {
                // One atomic load per request: a reload reaches kept-alive
                // connections, and a request in flight keeps the state it began with.
                let state = state.load_full();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        handler::handle(state, remote, local, req).await,
                    )
                }
            });
            let conn = builder.serve_connection(io, service);
            tokio::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, "client connection ended with an error");
                    }
                }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "client connection ended with an error while draining");
                    }
                }
            }
        });
    }
}
