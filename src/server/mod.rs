//! The HTTP side: listeners (TCP, TLS and unix, bound or handed over by
//! systemd), hyper connections (HTTP/1.1 and HTTP/2, h2c on plain ones) with
//! their limits and timeouts, graceful drain, config reload, the per-request
//! handler, and `respond`, the one place where errors become HTTP statuses.

mod accel;
mod access_log;
pub mod activation;
mod conn_watch;
mod docroot;
pub mod forwarded;
mod framing;
mod handler;
mod idle;
pub(crate) mod idle_poll;
mod limits;
mod listeners;
mod nap_trial;
mod poll_priority;
pub mod reload;
pub mod respond;
mod site;
mod site_rules;
pub mod tls;
mod workers;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::watch;

use crate::config::{Config, ListenAddr};
pub use crate::listen::{bind, bind_beside, BindError, Listener};
use crate::metrics::Metrics;
use crate::upstream::{
    BalanceSettings, HealthPolicy, Member, Pool, PoolSettings, UpstreamAddr, Upstreams,
};
use forwarded::Forwarding;
use limits::HeadLimits;
use listeners::ListenerSet;
pub use reload::Reload;
use tls::ReloadableTls;

pub use access_log::{AccessLinesBeside, AccessLogFormat, BareAccessLines, ThreadStderr};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("{listen}: a TLS listener needs --tls-cert and --tls-key")]
    TlsWithoutCert { listen: String },
    #[error("cannot start the serving threads: {0}")]
    Workers(#[source] std::io::Error),
}

/// The state every request reads: built from the config, replaced whole by
/// a reload (requests in flight keep the one they started with).
#[derive(Debug)]
pub(crate) struct AppState {
    /// The sites, each with its routing, upstreams and rules.
    pub sites: site::Sites,
    /// Every site's upstreams.
    pub upstreams: Upstreams,
    pub limits: HeadLimits,
    pub forwarding: Forwarding,
    pub metrics: Arc<Metrics>,
    /// hyper's settings for connections accepted while this state is in force.
    pub http: Arc<auto::Builder<TokioExecutor>>,
    /// `Server-Timing` on PHP responses.
    pub server_timing: bool,
    pub access_log_format: AccessLogFormat,
    /// The certificate for TLS connections accepted while this state is in
    /// force; set whenever a TLS listener exists (`run` checks).
    pub tls: Option<Arc<ReloadableTls>>,
    /// The TLS handshake is part of getting the request head.
    pub handshake_timeout: std::time::Duration,
    /// How long connections accepted under this state may sit idle.
    pub idle_limits: idle::IdleLimits,
}

impl AppState {
    pub(crate) fn new(
        config: &Config,
        upstreams: Upstreams,
        metrics: Arc<Metrics>,
        tls: Option<Arc<ReloadableTls>>,
    ) -> AppState {
        let limits = HeadLimits {
            max_uri_length: config.max_uri_length,
            max_header_size: config.max_header_size,
            max_headers: config.max_headers,
        };
        AppState {
            sites: site::Sites::new(config, &upstreams),
            upstreams,
            http: Arc::new(http_builder(&limits)),
            limits,
            forwarding: Forwarding {
                trusted: config.trusted_proxies.clone(),
                header: config.real_ip_header,
            },
            metrics,
            server_timing: config.server_timing,
            access_log_format: config.access_log_format,
            tls,
            handshake_timeout: config.header_timeout,
            idle_limits: idle::IdleLimits {
                header: config.header_timeout,
                keepalive: config.keepalive_timeout,
            },
        }
    }
}

fn http_builder(limits: &HeadLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // `idle` times heads and the silences between them itself: hyper's
        // timer neither starts before a first byte nor allows a keep-alive
        // longer than the head timeout.
        .header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(limits.http1_buffer())
        .max_headers(limits.max_headers);
    builder
        .http2()
        .max_header_list_size(limits.http2_header_list());
    builder
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
    match &config.tls_set() {
        Some(set) => Ok(Some(Arc::new(ReloadableTls::load(set)?))),
        None => Ok(None),
    }
}

/// The addresses of `config.listen` to bind, given the sockets handed over
/// by systemd: those it already serves are skipped, and with any handed
/// over, the default address is not bound at all.
pub fn addresses_to_bind(config: &Config, inherited: &[Listener]) -> Vec<ListenAddr> {
    let served: Vec<ListenAddr> = inherited.iter().map(listeners::address_of).collect();
    listeners::wanted(config, !inherited.is_empty())
        .into_iter()
        .filter(|a| !served.contains(a))
        .collect()
}

/// A configured server, before it runs; its upstreams can be watched (tests, metrics).
#[derive(Debug)]
pub struct Server {
    config: Config,
    upstreams: Upstreams,
    metrics: Arc<Metrics>,
    admin: Option<Listener>,
    inherited: Vec<Listener>,
    reload: Option<Reload>,
    tls: Option<Arc<ReloadableTls>>,
}

impl Server {
    /// `config.upstream` must be set: the binary fills it in with the
    /// embedded php-fpm's socket before calling this. Left empty, the pool
    /// dials an empty unix path, so every script request gets 502.
    pub fn new(config: Config) -> Server {
        let upstreams = Upstreams::new(balance_settings(&config));
        let metrics = Arc::new(Metrics::new(upstreams.clone()));
        Server {
            config,
            upstreams,
            metrics,
            admin: None,
            inherited: Vec::new(),
            reload: None,
            tls: None,
        }
    }

    /// The first upstream's pool (the only one with a single upstream).
    pub fn pool(&self) -> Pool {
        match self.upstreams.first_pool() {
            Some(pool) => pool,
            // Never: the settings always hold at least one upstream.
            None => Pool::new(pool_settings(&self.config)),
        }
    }

    pub fn upstreams(&self) -> Upstreams {
        self.upstreams.clone()
    }

    /// Looks upstream host names up through `resolver` (tests).
    pub fn with_resolver(mut self, resolver: Arc<dyn crate::upstream::balance::Resolve>) -> Server {
        self.upstreams = Upstreams::with_resolver(balance_settings(&self.config), resolver);
        self.metrics = Arc::new(Metrics::new(self.upstreams.clone()));
        self
    }

    /// Serves TLS with this certificate holder (from `load_tls`) instead of
    /// reading the configured files again.
    pub fn with_tls(mut self, tls: Option<Arc<ReloadableTls>>) -> Server {
        self.tls = tls;
        self
    }

    /// Serves `/healthz`, `/readyz` and `/metrics` on `listener` (bound by
    /// the caller, like the public ones, so tests can use port 0).
    pub fn with_admin(mut self, listener: Option<Listener>) -> Server {
        self.admin = listener;
        self
    }

    /// Also serves on sockets handed over by systemd (`activation`); a
    /// reload never closes them.
    pub fn with_inherited(mut self, listeners: Vec<Listener>) -> Server {
        self.inherited = listeners;
        self
    }

    /// Reloads the config whenever `reload` is triggered (SIGHUP).
    pub fn with_reload(mut self, reload: Reload) -> Server {
        self.reload = Some(reload);
        self
    }

    pub async fn run(
        mut self,
        listeners: Vec<Listener>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        if self.tls.is_none() {
            self.tls = load_tls(&self.config)?;
        }
        if self.tls.is_none() {
            let tls_listener = listeners
                .iter()
                .chain(self.inherited.iter())
                .find(|l| matches!(l, Listener::Tls(_)));
            if let Some(l) = tls_listener {
                return Err(ServeError::TlsWithoutCert {
                    listen: l.describe(),
                });
            }
        }
        serve(self, listeners, shutdown).await
    }
}

pub(crate) fn pool_settings(config: &Config) -> PoolSettings {
    PoolSettings {
        addr: upstream_of(config),
        max_conns: config.max_upstream_conns,
        max_idle: config.max_idle_conns,
        queue_length: config.queue_length,
        connect_timeout: config.connect_timeout,
        acquire_timeout: config.acquire_timeout,
        idle_timeout: config.idle_timeout,
        read_timeout: config.read_timeout,
        pipelining: config.upstream_pipelining,
        workers: workers::worker_count(config.workers),
    }
}

fn upstream_of(config: &Config) -> UpstreamAddr {
    config
        .upstream
        .first()
        .map(|spec| spec.address.clone())
        .unwrap_or_else(|| UpstreamAddr::Unix(PathBuf::new()))
}

/// The upstreams and how each one's pool is set up.
pub(crate) fn balance_settings(config: &Config) -> BalanceSettings {
    let upstreams = site::all_upstream_specs(config);
    BalanceSettings {
        upstreams,
        pool: pool_settings(config),
        health: HealthPolicy {
            max_fails: config.max_fails,
            fail_timeout: config.fail_timeout,
        },
        resolve_interval: config.resolve_interval,
    }
}

/// Starts each upstream's background work: the idle reaper, a log line
/// of its size and why; with a status path, following php-fpm's size; with
/// a ping path, the health probe. What it starts
/// stops when the upstream leaves or `Upstreams::stop` (a reload).
pub(crate) fn start_upstreams(config: &Config, upstreams: &Upstreams, metrics: &Arc<Metrics>) {
    let status_path = config.fpm_status_path.clone();
    let follow = config.size_from_fpm_status;
    let probe = config.fpm_ping_path.clone();
    let health_interval = config.health_interval;
    let connect_timeout = config.connect_timeout;
    // Weak: the metrics hold the upstreams, which hold this starter; a
    // strong reference would keep both (and every idle connection, each
    // pinning a php-fpm worker) alive after the server is gone.
    let metrics = Arc::downgrade(metrics);
    upstreams.start(Arc::new(move |member: &Arc<Member>| {
        let pool = member.pool();
        pool.spawn_reaper();
        if let Some(metrics) = metrics.upgrade() {
            metrics.observe_pool(pool);
        }
        let upstream = member.addr();
        warn_if_exposed(upstream);
        let size = pool.settings().max_conns;
        let mut tasks = Vec::new();
        match &status_path {
            None => tracing::info!(%upstream, size, "upstream pool size from max-upstream-conns"),
            Some(path) => {
                if !follow {
                    tracing::info!(%upstream, size, "upstream pool size from max-upstream-conns (given explicitly; the status page is only reported)");
                }
                let metrics = metrics.clone();
                let label = upstream.to_string();
                let task = crate::fpm::status::spawn_follower(pool.clone(), path.clone(), follow, move |status| {
                    if let Some(metrics) = metrics.upgrade() {
                        metrics.record_fpm_status(&label, status.clone())
                    }
                });
                tasks.push(task.abort_handle());
            }
        }
        if let Some(path) = &probe {
            let task = crate::fpm::health::spawn_probe(member, path.clone(), health_interval, connect_timeout);
            tasks.push(task.abort_handle());
        }
        tasks
    }));
}

/// Anyone who can speak FastCGI to php-fpm can run code (PHP ini values ride
/// in params), so a TCP upstream off this host deserves a loud reminder.
fn warn_if_exposed(upstream: &crate::upstream::UpstreamAddr) {
    if !upstream.is_local() {
        tracing::warn!(%upstream, "the upstream is not on loopback: make sure php-fpm's listen.allowed_clients lists only this gateway (a php-fpm reachable by others runs arbitrary code)");
    }
}

pub(crate) fn admin_state(
    config: &Config,
    metrics: &Arc<Metrics>,
    upstreams: &Upstreams,
) -> crate::admin::AdminState {
    crate::admin::AdminState {
        metrics: metrics.clone(),
        upstreams: upstreams.clone(),
        connect_timeout: config.connect_timeout,
        ping_path: config.fpm_ping_path.clone(),
    }
}

async fn serve(
    server: Server,
    listeners: Vec<Listener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let Server {
        config,
        upstreams,
        metrics,
        admin,
        inherited,
        reload,
        tls,
    } = server;
    let workers = workers::Workers::start(
        workers::worker_count(config.workers),
        config.idle_poll,
        metrics.idle_poll_stats(),
    )
    .map_err(ServeError::Workers)?;
    tracing::info!(workers = workers.len(), "threads started");
    start_upstreams(&config, &upstreams, &metrics);
    let state = Arc::new(AppState::new(
        &config,
        upstreams.clone(),
        metrics.clone(),
        tls,
    ));
    let shared = Arc::new(ArcSwap::new(state));

    let mut set = ListenerSet::new(shared.clone(), config.max_connections, workers.handles());
    for listener in inherited {
        set.start(listener, None, true);
    }
    for listener in listeners {
        let configured = listeners::configured_for(&config.listen, &listener);
        set.start(listener, configured, false);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut admin_task = None;
    let admin_shared = admin.map(|admin| {
        let admin_shared = Arc::new(ArcSwap::from_pointee(admin_state(
            &config, &metrics, &upstreams,
        )));
        admin_task = Some(tokio::spawn(crate::admin::serve(
            admin,
            admin_shared.clone(),
            stop_rx,
        )));
        admin_shared
    });

    let mut live = reload::Live {
        config,
        shared,
        admin: admin_shared,
        listeners: set,
        metrics,
        upstreams,
    };
    reload::until_shutdown(&mut live, reload, shutdown).await;

    let reload::Live {
        config,
        listeners,
        upstreams,
        ..
    } = live;
    tracing::info!(grace = ?config.grace_period, "shutting down: no new connections, draining in-flight requests");
    let _ = stop_tx.send(true);
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    if listeners.shutdown(config.grace_period).await {
        tracing::info!("drained; bye");
    } else {
        tracing::warn!("grace period over; closing the remaining connections");
    }
    workers.stop().await;
    // Probes, followers and lookups end here, not with the runtime.
    upstreams.stop();
    Ok(())
}
