//! The HTTP side: listeners (TCP, TLS and unix), hyper connections (HTTP/1.1
//! and HTTP/2, h2c on plain ones) with their limits and timeouts, graceful
//! drain, the per-request handler, and `respond`, the one place where errors
//! become HTTP statuses.

mod accel;
mod access_log;
mod body;
pub mod forwarded;
mod handler;
mod limits;
mod php_stderr;
pub mod respond;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::either::Either;

use crate::cgi::params::{Endpoint, TlsInfo};
use crate::config::{Config, ListenAddr};
use crate::metrics::Metrics;
use crate::route::RouteConfig;
use crate::static_files::StaticConfig;
use crate::upstream::{Pool, PoolSettings, UpstreamAddr};
use forwarded::Forwarding;
use limits::HeadLimits;
use tls::ReloadableTls;

pub use access_log::AccessLogFormat;
pub use body::BodyError;
pub use body::GatewayBody;

/// A bound listening socket.
#[derive(Debug)]
pub enum Listener {
    /// Plain HTTP/1.1, and HTTP/2 with prior knowledge (h2c).
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
    /// TLS; h2 or http/1.1 as ALPN chose. Needs a configured certificate.
    Tls(TcpListener),
}

impl Listener {
    /// How to reach it, for logs: `http://127.0.0.1:8080`,
    /// `https://127.0.0.1:8443` or `unix:/path`.
    pub fn describe(&self) -> String {
        let tcp = |scheme: &str, l: &TcpListener| match l.local_addr() {
            Ok(a) => format!("{scheme}://{a}"),
            Err(_) => format!("{scheme}://?"),
        };
        match self {
            Listener::Tcp(l) => tcp("http", l),
            Listener::Tls(l) => tcp("https", l),
            Listener::Unix { path, .. } => format!("unix:{}", path.display()),
        }
    }

    /// The bound address of a TCP or TLS listener (port 0 resolved).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) | Listener::Tls(l) => l.local_addr().ok(),
            Listener::Unix { .. } => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("{listen}: a TLS listener needs --tls-cert and --tls-key")]
    TlsWithoutCert { listen: String },
}

/// Binds every configured address. A stale unix socket file (nobody
/// listening) is replaced; a live one is an error.
pub async fn bind(addrs: &[ListenAddr]) -> Result<Vec<Listener>, ServeError> {
    let mut out = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let err = |source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        };
        match addr {
            ListenAddr::Tcp(sa) | ListenAddr::Http(sa) => {
                out.push(Listener::Tcp(TcpListener::bind(sa).await.map_err(err)?))
            }
            ListenAddr::Https(sa) => {
                out.push(Listener::Tls(TcpListener::bind(sa).await.map_err(err)?))
            }
            ListenAddr::Unix(path) => {
                if path.exists() && tokio::net::UnixStream::connect(path).await.is_err() {
                    let _ = std::fs::remove_file(path);
                }
                let listener = UnixListener::bind(path).map_err(err)?;
                out.push(Listener::Unix {
                    listener,
                    path: path.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// Per-process state shared by every request.
#[derive(Debug)]
pub(crate) struct AppState {
    pub route: RouteConfig,
    pub pool: Pool,
    pub extra_params: Vec<(String, String)>,
    pub server_name: Option<String>,
    pub max_body_size: u64,
    pub static_files: StaticConfig,
    pub limits: HeadLimits,
    pub forwarding: Forwarding,
    pub sendfile_dir: Option<PathBuf>,
    /// gzip/brotli for PHP responses that qualify.
    pub compress: bool,
    pub metrics: Arc<Metrics>,
    /// `Server-Timing` on PHP responses.
    pub server_timing: bool,
    pub access_log_format: AccessLogFormat,
}

/// Serves HTTP on `listeners` until `shutdown` completes, then stops
/// accepting and lets in-flight requests finish within the grace period.
pub async fn run(
    config: Config,
    listeners: Vec<Listener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    Server::new(config).run(listeners, shutdown).await
}

/// Binds `--admin-listen`, when given.
pub async fn bind_admin(config: &Config) -> Result<Option<Listener>, ServeError> {
    match &config.admin_listen {
        Some(addr) => Ok(bind(std::slice::from_ref(addr)).await?.pop()),
        None => Ok(None),
    }
}

/// Reads `--tls-cert`/`--tls-key`, when given; the binary calls it before
/// starting php-fpm so a bad certificate fails fast. Keep the holder to
/// reload it; `run` reads the files itself when not handed one.
pub fn load_tls(config: &Config) -> Result<Option<Arc<ReloadableTls>>, ServeError> {
    match &config.tls {
        Some(files) => Ok(Some(Arc::new(ReloadableTls::load(files)?))),
        None => Ok(None),
    }
}

/// A configured server, before it runs; its pool can be watched (tests, metrics).
#[derive(Debug)]
pub struct Server {
    config: Config,
    state: Arc<AppState>,
    admin: Option<Listener>,
    tls: Option<Arc<ReloadableTls>>,
}

impl Server {
    /// `config.upstream` must be set: the binary fills it in with the
    /// embedded php-fpm's socket before calling this. Left empty, the pool
    /// dials an empty unix path, so every script request gets 502.
    pub fn new(config: Config) -> Server {
        let pool = Pool::new(PoolSettings {
            addr: upstream_of(&config),
            max_conns: config.max_upstream_conns,
            max_idle: config.max_idle_conns,
            queue_length: config.queue_length,
            connect_timeout: config.connect_timeout,
            acquire_timeout: config.acquire_timeout,
            idle_timeout: config.idle_timeout,
            read_timeout: config.read_timeout,
        });
        let metrics = Arc::new(Metrics::new(pool.clone()));
        let state = Arc::new(AppState {
            route: RouteConfig {
                root: config.root.clone(),
                index: config.index.clone(),
                front_controller: config.front_controller.clone(),
                php_only_front_controller: config.php_only_front_controller,
                never_serve_ext: config.never_serve_ext.clone(),
                follow_symlinks_outside_root: config.follow_symlinks_outside_root,
                internal_locations: config.internal_locations.clone(),
            },
            pool,
            extra_params: config.params.clone(),
            server_name: config.server_name.clone(),
            max_body_size: config.max_body_size,
            static_files: StaticConfig::new(&config.cache_control),
            limits: HeadLimits {
                max_uri_length: config.max_uri_length,
                max_header_size: config.max_header_size,
                max_headers: config.max_headers,
            },
            forwarding: Forwarding {
                trusted: config.trusted_proxies.clone(),
                header: config.real_ip_header,
            },
            sendfile_dir: config.sendfile_dir.clone(),
            compress: config.compress,
            metrics,
            server_timing: config.server_timing,
            access_log_format: config.access_log_format,
        });
        Server {
            config,
            state,
            admin: None,
            tls: None,
        }
    }

    pub fn pool(&self) -> Pool {
        self.state.pool.clone()
    }

    /// Serves `/healthz`, `/readyz` and `/metrics` on `listener` (bound by
    /// the caller, like the public ones, so tests can use port 0).
    pub fn with_admin(mut self, listener: Option<Listener>) -> Server {
        self.admin = listener;
        self
    }

    /// Serves TLS with this certificate holder (from `load_tls`) instead of
    /// reading the configured files again.
    pub fn with_tls(mut self, tls: Option<Arc<ReloadableTls>>) -> Server {
        self.tls = tls;
        self
    }

    pub async fn run(
        self,
        listeners: Vec<Listener>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let tls = match self.tls {
            Some(tls) => Some(tls),
            None => load_tls(&self.config)?,
        };
        if tls.is_none() {
            if let Some(l) = listeners.iter().find(|l| matches!(l, Listener::Tls(_))) {
                return Err(ServeError::TlsWithoutCert {
                    listen: l.describe(),
                });
            }
        }
        serve(
            self.config,
            self.state,
            listeners,
            self.admin,
            tls,
            shutdown,
        )
        .await
    }
}

fn upstream_of(config: &Config) -> UpstreamAddr {
    config
        .upstream
        .clone()
        .unwrap_or_else(|| UpstreamAddr::Unix(PathBuf::new()))
}

/// Logs the pool size and why; with a status path, follows php-fpm's size.
fn size_pool(config: &Config, pool: &Pool, metrics: &Arc<Metrics>) {
    let upstream = upstream_of(config);
    let Some(path) = config.fpm_status_path.clone() else {
        tracing::info!(%upstream, size = config.max_upstream_conns, "upstream pool size from max-upstream-conns");
        return;
    };
    let follow = config.size_from_fpm_status;
    if !follow {
        tracing::info!(%upstream, size = config.max_upstream_conns, "upstream pool size from max-upstream-conns (given explicitly; the status page is only reported)");
    }
    let metrics = metrics.clone();
    crate::upstream::fpm_status::spawn_follower(pool.clone(), path, follow, move |status| {
        metrics.record_fpm_status(status.clone())
    });
}

/// Anyone who can speak FastCGI to php-fpm can run code (PHP ini values ride
/// in params), so a TCP upstream off this host deserves a loud reminder.
fn warn_if_exposed(upstream: &crate::upstream::UpstreamAddr) {
    if !upstream.is_local() {
        tracing::warn!(%upstream, "the upstream is not on loopback: make sure php-fpm's listen.allowed_clients lists only this gateway (a php-fpm reachable by others runs arbitrary code)");
    }
}

async fn serve(
    config: Config,
    state: Arc<AppState>,
    listeners: Vec<Listener>,
    admin: Option<Listener>,
    tls: Option<Arc<ReloadableTls>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    state.pool.spawn_reaper();
    size_pool(&config, &state.pool, &state.metrics);
    warn_if_exposed(&upstream_of(&config));

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .keep_alive(true)
        .max_buf_size(state.limits.http1_buffer())
        .max_headers(state.limits.max_headers);
    builder
        .http2()
        .max_header_list_size(state.limits.http2_header_list());
    let reload_task = tls.clone().map(tls::spawn_reload_on_sighup);
    let shared = Arc::new(ConnShared {
        state: state.clone(),
        builder,
        tls,
        // The handshake is part of getting the request head.
        handshake_timeout: config.header_timeout,
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    // Each connection task holds a clone; when all are gone, the drain is over.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let conn_permits = Arc::new(Semaphore::new(config.max_connections.max(1)));

    let mut accept_tasks = Vec::new();
    let socket_files: Vec<PathBuf> = listeners
        .iter()
        .filter_map(|l| match l {
            Listener::Unix { path, .. } => Some(path.clone()),
            Listener::Tcp(_) | Listener::Tls(_) => None,
        })
        .collect();
    for listener in listeners {
        tracing::info!(listen = %listener.describe(), upstream = %upstream_of(&config), root = %config.root.display(), "serving");
        accept_tasks.push(tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            stop_rx.clone(),
            alive_tx.clone(),
            conn_permits.clone(),
        )));
    }
    drop(alive_tx);
    if let Some(admin) = admin {
        let admin_state = Arc::new(crate::admin::AdminState {
            metrics: state.metrics.clone(),
            upstream: upstream_of(&config),
            connect_timeout: config.connect_timeout,
            ping_path: config.fpm_ping_path.clone(),
        });
        accept_tasks.push(tokio::spawn(crate::admin::serve(
            admin,
            admin_state,
            stop_rx.clone(),
        )));
    }

    shutdown.await;
    tracing::info!(grace = ?config.grace_period, "shutting down: no new connections, draining in-flight requests");
    let _ = stop_tx.send(true);
    if let Some(task) = reload_task {
        task.abort();
    }
    for task in accept_tasks {
        let _ = task.await;
    }
    match tokio::time::timeout(config.grace_period, alive_rx.recv()).await {
        Ok(_) => tracing::info!("drained; bye"),
        Err(_) => tracing::warn!("grace period over; closing the remaining connections"),
    }
    // Our sockets, our files: a later start would otherwise find them stale.
    for path in socket_files {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// What every connection of every listener shares.
struct ConnShared {
    state: Arc<AppState>,
    builder: auto::Builder<TokioExecutor>,
    /// Set whenever a TLS listener exists (`run` checks).
    tls: Option<Arc<ReloadableTls>>,
    handshake_timeout: Duration,
}

/// A just-accepted connection: ready for hyper, or TLS still to negotiate
/// (done in the connection's own task, never in the accept loop).
enum Accepted {
    Plain(ClientIo),
    Tls(tokio::net::TcpStream),
}

async fn accept_loop(
    listener: Listener,
    shared: Arc<ConnShared>,
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
            a = accept_conn(&listener) => a,
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
        let shared = shared.clone();
        let mut stop = stop.clone();
        let alive = alive.clone();
        tokio::spawn(async move {
            let _alive = alive;
            let _permit = permit;
            match accepted {
                Accepted::Plain(io) => serve_conn(io, &shared, stop, remote, local, None).await,
                Accepted::Tls(tcp) => {
                    let Some(tls) = &shared.tls else { return };
                    let done = tokio::select! {
                        done = tls.handshake(tcp, shared.handshake_timeout) => done,
                        _ = stop.changed() => return,
                    };
                    if let Some((stream, info)) = done {
                        let io = TokioIo::new(stream);
                        serve_conn(io, &shared, stop, remote, local, Some(info)).await;
                    }
                }
            }
        });
    }
}

/// Serves one connection's requests until it closes or the drain ends it.
async fn serve_conn<I>(
    io: I,
    shared: &ConnShared,
    mut stop: watch::Receiver<bool>,
    remote: Endpoint,
    local: Endpoint,
    tls: Option<TlsInfo>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let state = shared.state.clone();
    let service = service_fn(move |req| {
        let state = state.clone();
        async move {
            Ok::<_, std::convert::Infallible>(handler::handle(state, remote, local, tls, req).await)
        }
    });
    let conn = shared.builder.serve_connection(io, service);
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
}

async fn accept_conn(listener: &Listener) -> std::io::Result<(Accepted, Endpoint, Endpoint)> {
    match listener {
        Listener::Tls(l) => {
            let (s, remote, local) = accept_tcp(l).await?;
            Ok((Accepted::Tls(s), remote, local))
        }
        other => {
            let (io, remote, local) = accept(other).await?;
            Ok((Accepted::Plain(io), remote, local))
        }
    }
}

/// An accepted client connection over TCP or a unix socket.
pub(crate) type ClientStream = Either<tokio::net::TcpStream, tokio::net::UnixStream>;
/// Either kind of accepted stream, as hyper IO.
pub(crate) type ClientIo = TokioIo<ClientStream>;

/// Accepts a connection to serve without TLS. A `Tls` listener is accepted
/// as plain TCP here: only the admin listener takes this path, and the
/// config refuses `https://` for it.
pub(crate) async fn accept(listener: &Listener) -> std::io::Result<(ClientIo, Endpoint, Endpoint)> {
    match listener {
        Listener::Tcp(l) | Listener::Tls(l) => {
            let (s, remote, local) = accept_tcp(l).await?;
            Ok((TokioIo::new(Either::Left(s)), remote, local))
        }
        Listener::Unix { listener, .. } => {
            let (s, _) = listener.accept().await?;
            Ok((
                TokioIo::new(Either::Right(s)),
                Endpoint::Unix,
                Endpoint::Unix,
            ))
        }
    }
}

async fn accept_tcp(
    l: &TcpListener,
) -> std::io::Result<(tokio::net::TcpStream, Endpoint, Endpoint)> {
    let (s, peer) = l.accept().await?;
    let _ = s.set_nodelay(true);
    let local = s.local_addr()?;
    Ok((s, Endpoint::Tcp(peer), Endpoint::Tcp(local)))
}
