//! The running accept loops, one per listening socket, each stoppable on its
//! own: a config reload adds and removes listeners while the others keep
//! accepting. Every request reads the per-request state in force at that
//! moment, so a reload reaches keep-alive connections too.
//!
//! A stopped listener's connections drain through its `Drain`
//! (`conn_watch`): each accept loop takes a watcher from it for every
//! connection it accepts (connections may be served on another serving
//! thread; the watcher goes along), and stopping the listener tells them
//! all to finish the request in flight and close. It watches only hyper
//! connections, so the accept loops and TLS handshakes stop on a watch
//! channel of the listener's own.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{header, Request};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::runtime::Handle;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::either::Either;

use super::conn_watch::{self, Drain, DrainWatcher, Ended};
use super::idle::{self, Activity, Watched};
use super::workers::{Balance, Placed, SharedListener};
use super::{framing, handler, AppState, Listener};
use crate::cgi::params::{Endpoint, TlsInfo};
use crate::config::{Config, ListenAddr};
use crate::listen::{accept_any, Accepted, ClientStream};

/// One listener's accept loop.
#[derive(Debug)]
struct Running {
    /// The address it serves, compared with the config's `listen` on reload.
    addr: ListenAddr,
    /// The `listen` entry it was bound for, as written (`127.0.0.1:0` stays
    /// port 0, so a reload does not take it for a new address).
    configured: Option<ListenAddr>,
    /// Handed over by the service manager: never closed or re-bound by a
    /// reload, its socket file never removed (systemd owns it).
    inherited: bool,
    /// Stops its accept loops, and the TLS handshakes of its connections.
    stop: watch::Sender<bool>,
    /// Drains its connections once the accept loops have ended; each
    /// accept loop holds a clone while it runs.
    graceful: Arc<Drain>,
    /// One accept loop per serving thread, each on its own copy of the socket.
    tasks: Vec<JoinHandle<()>>,
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
    /// The drains of stopped listeners (`Drain::shutdown`), each
    /// done once all of that listener's connections have closed.
    draining: JoinSet<()>,
    /// The serving threads' runtimes (`workers`): every listener accepts on
    /// each of them.
    workers: Arc<[Handle]>,
    balance: Arc<Balance>,
}

impl ListenerSet {
    pub fn new(
        state: Arc<ArcSwap<AppState>>,
        max_connections: usize,
        workers: Vec<Handle>,
    ) -> ListenerSet {
        let max_connections = max_connections.max(1);
        ListenerSet {
            running: Vec::new(),
            state,
            permits: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            draining: JoinSet::new(),
            balance: Balance::new(workers.len()),
            workers: workers.into(),
        }
    }

    /// Starts accepting on `listener`, bound for the `configured` address
    /// (None: handed over by systemd).
    pub fn start(&mut self, listener: Listener, configured: Option<ListenAddr>, inherited: bool) {
        let addr = address_of(&listener);
        let (stop, stop_rx) = watch::channel(false);
        let upstream = self.state.load().upstreams.describe();
        tracing::info!(listen = %listener.describe(), inherited, %upstream, root = %self.state.load().sites.default_site().docroot.configured().display(), "serving");
        let shared = match SharedListener::from_listener(listener) {
            Ok(shared) => shared,
            Err(e) => {
                tracing::error!(listen = %addr, error = %e, "cannot hand the listener to the serving threads");
                return;
            }
        };
        let graceful = Arc::new(Drain::new());
        let shared_state = AcceptShared {
            state: self.state.clone(),
            graceful: graceful.clone(),
            permits: self.permits.clone(),
            workers: self.workers.clone(),
            balance: self.balance.clone(),
        };
        let mut tasks = Vec::with_capacity(self.workers.len());
        for (me, worker) in self.workers.iter().enumerate() {
            let copy = match shared.try_clone() {
                Ok(copy) => copy,
                Err(e) => {
                    tracing::error!(listen = %addr, error = %e, "cannot copy the listener for a serving thread");
                    continue;
                }
            };
            let accept_shared = shared_state.clone();
            let stop_rx = stop_rx.clone();
            let listen = addr.clone();
            tasks.push(worker.spawn(async move {
                // Registered here, with this thread's event loop.
                match copy.into_listener() {
                    Ok(listener) => accept_loop(listener, me, accept_shared, stop_rx).await,
                    Err(e) => {
                        tracing::error!(listen = %listen, error = %e, "a serving thread cannot accept on the listener")
                    }
                }
            }));
        }
        self.running.push(Running {
            addr,
            configured,
            inherited,
            stop,
            graceful,
            tasks,
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
        self.running.iter().any(|r| r.is(addr))
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
            .partition(|r| r.inherited || wanted.iter().any(|a| r.is(a)));
        self.running = keep;
        // Forget the drains that are over.
        while self.draining.try_join_next().is_some() {}
        for r in gone {
            tracing::info!(listen = %r.addr, "no longer listed: stopped accepting; its connections drain");
            self.stop(r).await;
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
    /// to finish, those of listeners a reload removed too. True when all did.
    pub async fn shutdown(mut self, grace: Duration) -> bool {
        for r in std::mem::take(&mut self.running) {
            self.stop(r).await;
        }
        let draining = &mut self.draining;
        tokio::time::timeout(grace, async {
            while draining.join_next().await.is_some() {}
        })
        .await
        .is_ok()
    }

    /// Stops `r`'s accept loops, then tells its connections to finish the
    /// request in flight and close, without waiting for them.
    async fn stop(&mut self, r: Running) {
        let _ = r.stop.send(true);
        for task in r.tasks {
            let _ = task.await;
        }
        // Every connection it accepted has its watcher now, and the accept
        // loops' clones are gone with their tasks.
        match Arc::try_unwrap(r.graceful) {
            Ok(graceful) => {
                self.draining.spawn(graceful.shutdown());
            }
            // Not reached: only the accept loops held clones.
            Err(_) => {
                tracing::warn!(listen = %r.addr, "an accept loop outlived its task; its connections are neither told to drain nor waited for")
            }
        }
        // Our socket, our file: a later start would otherwise find it stale.
        if let (ListenAddr::Unix(path), false) = (&r.addr, r.inherited) {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Running {
    /// Whether this listener is the one `addr` asks for.
    fn is(&self, addr: &ListenAddr) -> bool {
        self.configured.as_ref() == Some(addr) || same_socket(&self.addr, addr)
    }
}

/// `127.0.0.1:80` and `http://127.0.0.1:80` name the same plain listener.
fn same_socket(a: &ListenAddr, b: &ListenAddr) -> bool {
    let plain = |x: &ListenAddr| match x {
        ListenAddr::Http(sa) => ListenAddr::Tcp(*sa),
        other => other.clone(),
    };
    plain(a) == plain(b)
}

/// The `listen` entry of `wanted` that `listener` was bound for: the same
/// socket, or the same IP where the entry asked for any port (0).
pub(super) fn configured_for(wanted: &[ListenAddr], listener: &Listener) -> Option<ListenAddr> {
    let actual = address_of(listener);
    wanted
        .iter()
        .find(|want| {
            same_socket(want, &actual)
                || match (want, &actual) {
                    (ListenAddr::Tcp(w) | ListenAddr::Http(w), ListenAddr::Tcp(a))
                    | (ListenAddr::Https(w), ListenAddr::Https(a)) => {
                        w.port() == 0 && w.ip() == a.ip()
                    }
                    _ => false,
                }
        })
        .cloned()
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
        Listener::Tls(l) => match l.local_addr() {
            Ok(a) => ListenAddr::Https(a),
            Err(_) => ListenAddr::Unix(PathBuf::new()),
        },
        Listener::Unix { path, .. } => ListenAddr::Unix(path.clone()),
    }
}

/// What every accept loop of a listener shares: the per-request state,
/// the listener's drain, the connection limit, and the serving threads to
/// place connections on.
#[derive(Clone)]
struct AcceptShared {
    state: Arc<ArcSwap<AppState>>,
    graceful: Arc<Drain>,
    permits: Arc<Semaphore>,
    workers: Arc<[Handle]>,
    balance: Arc<Balance>,
}

/// Accepts on serving thread `me`'s copy of a listening socket, and serves
/// each connection on the thread with the fewest (`Balance::place`):
/// nearly always this one.
async fn accept_loop(
    listener: Listener,
    me: usize,
    shared: AcceptShared,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = accept_any(&listener) => a,
            _ = stop.changed() => return,
        };
        let (accepted, remote, local) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // The permit after the accept: taken before, every idle listener held
        // one, and with a small max-connections one listener starved the
        // others. This loop accepts nothing more until the permit comes, so a
        // flood still waits in the kernel backlog, one connection per listener
        // waiting here.
        // At the limit, a slot usually frees soon (silent connections go
        // after the header timeout); past that wait, the newcomer gets a
        // clean close rather than a hang.
        let wait = shared.state.load().idle_limits.header;
        let permit = tokio::select! {
            p = tokio::time::timeout(wait, shared.permits.clone().acquire_owned()) => match p {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::warn!(waited = ?wait, "max-connections reached: a new connection was closed");
                    drop(accepted);
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let target = shared.balance.place(me);
        let conn = Conn {
            permit,
            placed: shared.balance.opened(target),
            // Taken here, before the loop can end: the drain then waits for it.
            drain: shared.graceful.watcher(),
            state: shared.state.clone(),
            stop: stop.clone(),
            remote,
            local,
        };
        if target == me {
            conn.spawn(accepted);
            continue;
        }
        let worker = &shared.workers[target];
        match accepted.move_to(worker) {
            Ok(moved) => {
                // Its task goes to the runtime entered here.
                let _there = worker.enter();
                conn.spawn(moved);
            }
            Err(e) => tracing::debug!(error = %e, "a connection could not move threads"),
        }
    }
}

/// One client connection and what it holds while it is open: its
/// connection permit, its place on a serving thread, its listener's drain.
struct Conn {
    permit: OwnedSemaphorePermit,
    placed: Placed,
    drain: DrainWatcher,
    state: Arc<ArcSwap<AppState>>,
    /// Its listener's stop, which abandons a TLS handshake in progress.
    stop: watch::Receiver<bool>,
    remote: Endpoint,
    local: Endpoint,
}

impl Conn {
    /// Serves it to the end in a task of its own on the current runtime.
    /// Two task kinds, so a plain connection's task is not sized for the
    /// TLS handshake and stream it never uses: the task lives as long as
    /// the connection, idle or not.
    fn spawn(self, accepted: Accepted) {
        let Conn {
            permit,
            placed,
            drain,
            state,
            stop,
            remote,
            local,
        } = self;
        let held = (permit, placed);
        let stream: ClientStream = match accepted {
            Accepted::Tcp(s) => Either::Left(s),
            Accepted::Unix(s) => Either::Right(s),
            Accepted::Tls(s) => {
                tokio::spawn(async move {
                    let _held = held;
                    serve_tls_conn(s, state, stop, drain, remote, local).await
                });
                return;
            }
        };
        tokio::spawn(async move {
            let _held = held;
            serve_conn(stream, state, drain, remote, local, None).await
        });
    }
}

/// Negotiates TLS with the certificate in force when the connection came
/// in, then serves it.
async fn serve_tls_conn(
    tcp: tokio::net::TcpStream,
    state: Arc<ArcSwap<AppState>>,
    mut stop: watch::Receiver<bool>,
    drain: DrainWatcher,
    remote: Endpoint,
    local: Endpoint,
) {
    let current = state.load();
    let (Some(tls), timeout) = (current.tls.clone(), current.handshake_timeout) else {
        return;
    };
    drop(current);
    let done = tokio::select! {
        done = tls.handshake(tcp, timeout) => done,
        _ = stop.changed() => return,
    };
    if let Some((stream, info)) = done {
        serve_conn(stream, state, drain, remote, local, Some(info)).await;
    }
}

/// Serves one connection's requests until it closes or the drain ends it.
async fn serve_conn<S>(
    stream: S,
    state: Arc<ArcSwap<AppState>>,
    mut drain: DrainWatcher,
    remote: Endpoint,
    local: Endpoint,
    tls: Option<TlsInfo>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The connection's HTTP settings (buffer sizes, idle limits) are those
    // in force when it was accepted.
    let (builder, limits) = {
        let current = state.load();
        (current.http.clone(), current.idle_limits)
    };
    let activity = Activity::new();
    let io = TokioIo::new(Watched::new(stream, activity.clone()));
    let requests = activity.clone();
    let service = service_fn(move |mut req: Request<Incoming>| {
        // hyper drops a Content-Length sent beside Transfer-Encoding; the
        // head as read still has it (`framing` refuses the pair).
        let te = req.headers().contains_key(header::TRANSFER_ENCODING);
        let (dropped_length, in_flight) =
            requests.begin(|raw| te && idle::head_has_content_length(raw));
        if dropped_length {
            req.extensions_mut().insert(framing::DroppedContentLength);
        }
        // One atomic load per request: a reload reaches kept-alive
        // connections, and a request in flight keeps the state it began with.
        let state = state.load_full();
        // Boxed: hyper keeps a slot the size of this future for every
        // connection, idle ones too; the request's own state (~2.3 KB) is
        // better allocated only while a request runs.
        let handling = Box::pin(handler::handle(state, remote, local, tls, req, in_flight));
        async move { Ok::<_, std::convert::Infallible>(handling.await) }
    });
    // Once the listener stops, hyper finishes the request in flight (the
    // open streams, after a GOAWAY, on HTTP/2) and closes the connection.
    // Pinned here, each future once in this task's memory (`conn_watch::serve`).
    let conn = std::pin::pin!(builder.serve_connection(io, service));
    let idle = std::pin::pin!(activity.expired(limits));
    match conn_watch::serve(conn, |conn| conn.graceful_shutdown(), &mut drain, idle).await {
        Ended::Served(Ok(())) => {}
        Ended::Served(Err(e)) => {
            tracing::debug!(error = %e, "client connection ended with an error");
        }
        Ended::Idle => {
            // Idle, or a head too slow: closing it frees its slot.
            tracing::debug!(client = ?remote, "client connection closed: idle or slow past its limit");
        }
    }
}
