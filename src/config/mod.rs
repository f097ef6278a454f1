//! Configuration: the command line, the TOML file, defaults and validation.
//!
//! The only I/O here is reading the config file and canonicalizing the
//! document root; no sockets are opened and nothing is spawned.
//!
//! Values are gathered into a `Layer` per source (file, flags), each value
//! parsed and checked as it is read so an error can name its flag or key.
//! The flag layer is put over the file layer, then defaults fill the gaps.

mod cli;
mod file;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_embedded;
#[cfg(test)]
mod tests_gateway;
#[cfg(test)]
mod tests_static;
#[cfg(test)]
mod tests_tls;
mod values;

pub use cli::{Cli, Command, ServeArgs};
pub(crate) use values::MAX_URI_LENGTH_CEILING;
pub use values::{parse_duration, parse_size, ListenAddr};

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::server::forwarded::{RealIpHeader, TrustedProxy};
use crate::server::AccessLogFormat;
use crate::upstream::UpstreamAddr;
use values::{
    check_ext, check_front_controller, check_index, check_internal_location, check_log_level,
    check_server_name, check_status_path, check_timeout, parse_cache_control_flag, parse_count,
    parse_count_or_zero, parse_head_limit, parse_pipelining, parse_uri_limit,
};

const DEFAULT_MAX_BODY_SIZE: u64 = 16 * 1024 * 1024;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
const DEFAULT_MAX_UPSTREAM_CONNS: usize = 8;
const DEFAULT_MAX_CONNECTIONS: usize = 4096;
const DEFAULT_QUEUE_LENGTH: usize = 1024;
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_LOG_LEVEL: &str = "info";
const DEFAULT_INDEX: &[&str] = &["index.php", "index.html"];
const DEFAULT_MAX_URI_LENGTH: usize = 8 * 1024;
const DEFAULT_MAX_HEADER_SIZE: usize = 32 * 1024;
const DEFAULT_MAX_HEADERS: usize = 100;
/// `pm.status_path` of the embedded php-fpm's pool, unless one is given.
pub const EMBEDDED_FPM_STATUS_PATH: &str = "/fpm-status";

fn default_listen() -> ListenAddr {
    ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 8080)))
}

/// The fully resolved and validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Addresses to accept HTTP on; never empty.
    pub listen: Vec<ListenAddr>,
    /// `None`: no upstream was given, so php-fpm runs embedded
    /// (`crate::embedded_fpm`); the binary fills this in once it listens.
    pub upstream: Option<UpstreamAddr>,
    /// Canonical path of an existing directory.
    pub root: PathBuf,
    /// Plain file names tried in order for a directory request; may be empty
    /// only if the file says `index = []`.
    pub index: Vec<String>,
    /// URL path starting with `/`.
    pub front_controller: Option<String>,
    pub server_name: Option<String>,
    pub max_body_size: u64,
    pub connect_timeout: Duration,
    /// No data from the upstream for this long → 504.
    pub read_timeout: Duration,
    /// The client must send its request head within this.
    pub header_timeout: Duration,
    pub grace_period: Duration,
    /// At least 1.
    pub max_upstream_conns: usize,
    /// At least 1.
    pub max_connections: usize,
    /// A level or a filter directive; non-empty, trimmed.
    pub log_level: String,
    /// Extra FastCGI params from the file's `[params]` table, in file order.
    pub params: Vec<(String, String)>,
    /// php-fpm's status page path, to size the pool from `max children`.
    pub fpm_status_path: Option<String>,
    /// True when the pool size comes from the status page (a status path was
    /// given and `max-upstream-conns` was not).
    pub size_from_fpm_status: bool,
    /// Most idle upstream connections; 0 disables reuse.
    pub max_idle_conns: usize,
    /// Requests that may wait for a connection at once.
    pub queue_length: usize,
    pub acquire_timeout: Duration,
    pub idle_timeout: Duration,
    /// Only the front controller runs; requires `front_controller`.
    pub php_only_front_controller: bool,
    /// Lowercase extensions without the dot, never sent as static files.
    pub never_serve_ext: Vec<String>,
    /// Serve and run files whose real location is outside the root.
    pub follow_symlinks_outside_root: bool,
    /// (lowercase extension, Cache-Control value) for static files.
    pub cache_control: Vec<(String, String)>,
    /// Longest request target (path and query) in bytes; longer → 414.
    pub max_uri_length: usize,
    /// Largest header block (request line excluded) in bytes; larger → 431.
    pub max_header_size: usize,
    /// Most request header lines; more → 431.
    pub max_headers: usize,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<TrustedProxy>,
    pub real_ip_header: RealIpHeader,
    /// URI path prefixes (no trailing slash) clients get 404 for; reachable
    /// only through `X-Accel-Redirect`.
    pub internal_locations: Vec<String>,
    /// Canonical directory `X-Sendfile` may serve from; `None` ignores it.
    pub sendfile_dir: Option<PathBuf>,
    /// gzip/brotli for PHP responses of text-like types.
    pub compress: bool,
    /// The embedded php-fpm's binary; `None` searches PATH and /usr/sbin.
    pub php_fpm: Option<PathBuf>,
    /// The embedded php-fpm's worker count; `None` = from the CPU count.
    pub fpm_children: Option<usize>,
    /// Where /healthz, /readyz and /metrics are served; `None` = nowhere.
    pub admin_listen: Option<ListenAddr>,
    /// php-fpm's `ping.path`, for /readyz.
    pub fpm_ping_path: Option<String>,
    /// `listen` came from the default, not a flag or the file: with sockets
    /// handed over by systemd, only those are served.
    pub listen_is_default: bool,
    /// `Server-Timing` on PHP responses.
    pub server_timing: bool,
    pub access_log_format: AccessLogFormat,
    /// Certificate and key for the `https` listeners; with it, bare TCP
    /// listen addresses have been resolved to `ListenAddr::Https`.
    pub tls: Option<TlsFiles>,
    /// Runtime worker threads; None: one per CPU.
    pub workers: Option<usize>,
    /// Requests may be sent ahead onto busy upstream connections while no
    /// exchange took longer than this; None: never.
    pub upstream_pipelining: Option<Duration>,
}

/// `tls-cert` and `tls-key`: paths as given (not canonicalized, so a
/// symlink swapped by a renewal tool is followed on reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why the configuration was rejected. `Display` is a single line naming
/// the flag, file key or path at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The io error is rendered in the message rather than exposed as
    // `source`, so error-chain printers do not repeat it.
    #[error("cannot read config file {}: {}", path.display(), io_reason(error))]
    Read { path: PathBuf, error: io::Error },

    #[error("{}: TOML syntax error{}: {message}", path.display(), at(*position))]
    Syntax {
        path: PathBuf,
        /// 1-based line and column, when the parser reported a location.
        position: Option<(usize, usize)>,
        message: String,
    },

    #[error(
        "{}: unknown key `{key}` (expected one of: {})",
        path.display(),
        file::KEYS.join(", ")
    )]
    UnknownKey { path: PathBuf, key: String },

    #[error("{}: key `{key}`: {message}", path.display())]
    FileValue {
        path: PathBuf,
        key: String,
        message: String,
    },

    #[error("{flag}: {message}")]
    Flag { flag: &'static str, message: String },

    #[error("missing root: give --root or `root` in the config file")]
    MissingRoot,

    #[error("root `{}`: {reason}", path.display())]
    Root { path: PathBuf, reason: String },

    #[error("sendfile-dir `{}`: {reason}", path.display())]
    SendfileDir { path: PathBuf, reason: String },

    #[error(
        "php-only-front-controller needs a front controller: give --front-controller or \
         `front-controller` in the config file"
    )]
    PhpOnlyWithoutFrontController,

    #[error(
        "--{given} (`{given}` in the config file) is given without --{missing} \
         (`{missing}`): give both or neither"
    )]
    TlsHalf {
        given: &'static str,
        missing: &'static str,
    },

    #[error(
        "--listen `{addr}`: https needs a certificate: give --tls-cert and --tls-key \
         (tls-cert and tls-key in the config file)"
    )]
    HttpsWithoutCert { addr: ListenAddr },

    #[error("--admin-listen `{addr}`: the admin listener serves plain HTTP only")]
    AdminHttps { addr: ListenAddr },
}

/// io::Error's Display ends in " (os error N)", which is noise to a user.
fn io_reason(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_owned(),
        _ => text,
    }
}

fn at(position: Option<(usize, usize)>) -> String {
    match position {
        Some((line, column)) => format!(" at line {line}, column {column}"),
        None => String::new(),
    }
}

/// The values one source provided; `None` means "not given here".
#[derive(Debug, Default)]
struct Layer {
    listen: Option<Vec<ListenAddr>>,
    upstream: Option<UpstreamAddr>,
    /// Already joined onto the config file's directory when it came from one.
    root: Option<PathBuf>,
    index: Option<Vec<String>>,
    front_controller: Option<String>,
    server_name: Option<String>,
    max_body_size: Option<u64>,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    header_timeout: Option<Duration>,
    grace_period: Option<Duration>,
    max_upstream_conns: Option<usize>,
    max_connections: Option<usize>,
    log_level: Option<String>,
    params: Option<Vec<(String, String)>>,
    fpm_status_path: Option<String>,
    max_idle_conns: Option<usize>,
    queue_length: Option<usize>,
    acquire_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    php_only_front_controller: Option<bool>,
    never_serve_ext: Option<Vec<String>>,
    follow_symlinks_outside_root: Option<bool>,
    cache_control: Option<Vec<(String, String)>>,
    max_uri_length: Option<usize>,
    max_header_size: Option<usize>,
    max_headers: Option<usize>,
    trusted_proxies: Option<Vec<TrustedProxy>>,
    real_ip_header: Option<RealIpHeader>,
    internal_locations: Option<Vec<String>>,
    /// Already joined onto the config file's directory when it came from one.
    sendfile_dir: Option<PathBuf>,
    compress: Option<bool>,
    /// Already joined onto the config file's directory when it came from one.
    php_fpm: Option<PathBuf>,
    fpm_children: Option<usize>,
    admin_listen: Option<ListenAddr>,
    fpm_ping_path: Option<String>,
    server_timing: Option<bool>,
    access_log_format: Option<AccessLogFormat>,
    /// Already joined onto the config file's directory when it came from one.
    tls_cert: Option<PathBuf>,
    /// Already joined onto the config file's directory when it came from one.
    tls_key: Option<PathBuf>,
    workers: Option<usize>,
    upstream_pipelining: Option<Option<Duration>>,
}

impl Layer {
    /// Values from `self` win; `lower` fills what `self` lacks.
    fn over(self, lower: Layer) -> Layer {
        Layer {
            listen: self.listen.or(lower.listen),
            upstream: self.upstream.or(lower.upstream),
            root: self.root.or(lower.root),
            index: self.index.or(lower.index),
            front_controller: self.front_controller.or(lower.front_controller),
            server_name: self.server_name.or(lower.server_name),
            max_body_size: self.max_body_size.or(lower.max_body_size),
            connect_timeout: self.connect_timeout.or(lower.connect_timeout),
            read_timeout: self.read_timeout.or(lower.read_timeout),
            header_timeout: self.header_timeout.or(lower.header_timeout),
            grace_period: self.grace_period.or(lower.grace_period),
            max_upstream_conns: self.max_upstream_conns.or(lower.max_upstream_conns),
            max_connections: self.max_connections.or(lower.max_connections),
            log_level: self.log_level.or(lower.log_level),
            params: self.params.or(lower.params),
            fpm_status_path: self.fpm_status_path.or(lower.fpm_status_path),
            max_idle_conns: self.max_idle_conns.or(lower.max_idle_conns),
            queue_length: self.queue_length.or(lower.queue_length),
            acquire_timeout: self.acquire_timeout.or(lower.acquire_timeout),
            idle_timeout: self.idle_timeout.or(lower.idle_timeout),
            php_only_front_controller: self
                .php_only_front_controller
                .or(lower.php_only_front_controller),
            never_serve_ext: self.never_serve_ext.or(lower.never_serve_ext),
            follow_symlinks_outside_root: self
                .follow_symlinks_outside_root
                .or(lower.follow_symlinks_outside_root),
            cache_control: self.cache_control.or(lower.cache_control),
            max_uri_length: self.max_uri_length.or(lower.max_uri_length),
            max_header_size: self.max_header_size.or(lower.max_header_size),
            max_headers: self.max_headers.or(lower.max_headers),
            trusted_proxies: self.trusted_proxies.or(lower.trusted_proxies),
            real_ip_header: self.real_ip_header.or(lower.real_ip_header),
            internal_locations: self.internal_locations.or(lower.internal_locations),
            sendfile_dir: self.sendfile_dir.or(lower.sendfile_dir),
            compress: self.compress.or(lower.compress),
            php_fpm: self.php_fpm.or(lower.php_fpm),
            fpm_children: self.fpm_children.or(lower.fpm_children),
            admin_listen: self.admin_listen.or(lower.admin_listen),
            fpm_ping_path: self.fpm_ping_path.or(lower.fpm_ping_path),
            server_timing: self.server_timing.or(lower.server_timing),
            access_log_format: self.access_log_format.or(lower.access_log_format),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
            workers: self.workers.or(lower.workers),
            upstream_pipelining: self.upstream_pipelining.or(lower.upstream_pipelining),
        }
    }
}

/// Builds the config for `serve`: the file named by `--config` (if any),
/// overridden by the flags given, then defaults and validation.
pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
    let file = match &args.config {
        Some(path) => file::read(path)?,
        None => Layer::default(),
    };
    let flags = flag_layer(args)?;
    finish(flags.over(file))
}

/// Builds the config from a file alone, as `serve --config FILE` with no
/// other flags would; used by `check-config`.
pub fn check_file(path: &Path) -> Result<Config, ConfigError> {
    finish(file::read(path)?)
}

fn flag_layer(args: &ServeArgs) -> Result<Layer, ConfigError> {
    fn flag<T>(
        name: &'static str,
        value: &Option<String>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        value
            .as_deref()
            .map(|v| {
                parse(v).map_err(|message| ConfigError::Flag {
                    flag: name,
                    message,
                })
            })
            .transpose()
    }
    // Repeated flags: absent when not given at all, so the file's list stays.
    fn flags<T>(
        name: &'static str,
        values: &[String],
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<Vec<T>>, ConfigError> {
        if values.is_empty() {
            return Ok(None);
        }
        values
            .iter()
            .map(|v| {
                parse(v).map_err(|message| ConfigError::Flag {
                    flag: name,
                    message,
                })
            })
            .collect::<Result<Vec<T>, _>>()
            .map(Some)
    }
    let duration = |d: &str| parse_duration(d).and_then(check_timeout);

    Ok(Layer {
        listen: flags("--listen", &args.listen, str::parse)?,
        upstream: flag("--upstream", &args.upstream, |s| {
            s.parse::<UpstreamAddr>().map_err(|e| e.to_string())
        })?,
        // Relative to the current directory: canonicalization resolves it so.
        root: args.root.clone(),
        index: flags("--index", &args.index, check_index)?,
        front_controller: flag(
            "--front-controller",
            &args.front_controller,
            check_front_controller,
        )?,
        server_name: flag("--server-name", &args.server_name, check_server_name)?,
        max_body_size: flag("--max-body-size", &args.max_body_size, parse_size)?,
        connect_timeout: flag("--connect-timeout", &args.connect_timeout, duration)?,
        read_timeout: flag("--read-timeout", &args.read_timeout, duration)?,
        header_timeout: flag("--header-timeout", &args.header_timeout, duration)?,
        grace_period: flag("--grace-period", &args.grace_period, parse_duration)?,
        max_upstream_conns: flag(
            "--max-upstream-conns",
            &args.max_upstream_conns,
            parse_count,
        )?,
        max_connections: flag("--max-connections", &args.max_connections, parse_count)?,
        log_level: flag("--log-level", &args.log_level, check_log_level)?,
        params: None,
        fpm_status_path: flag(
            "--fpm-status-path",
            &args.fpm_status_path,
            check_status_path,
        )?,
        max_idle_conns: flag(
            "--max-idle-conns",
            &args.max_idle_conns,
            parse_count_or_zero,
        )?,
        queue_length: flag("--queue-length", &args.queue_length, parse_count_or_zero)?,
        acquire_timeout: flag("--acquire-timeout", &args.acquire_timeout, duration)?,
        idle_timeout: flag("--idle-timeout", &args.idle_timeout, duration)?,
        // A boolean flag can only switch on; absent leaves the file's value.
        php_only_front_controller: args.php_only_front_controller.then_some(true),
        never_serve_ext: flags("--never-serve-ext", &args.never_serve_ext, check_ext)?,
        follow_symlinks_outside_root: args.follow_symlinks_outside_root.then_some(true),
        cache_control: flags(
            "--cache-control",
            &args.cache_control,
            parse_cache_control_flag,
        )?,
        max_uri_length: flag("--max-uri-length", &args.max_uri_length, parse_uri_limit)?,
        max_header_size: flag("--max-header-size", &args.max_header_size, parse_head_limit)?,
        max_headers: flag("--max-headers", &args.max_headers, parse_count)?,
        trusted_proxies: flags("--trusted-proxy", &args.trusted_proxy, str::parse)?,
        real_ip_header: flag("--real-ip-header", &args.real_ip_header, str::parse)?,
        internal_locations: flags(
            "--internal-location",
            &args.internal_location,
            check_internal_location,
        )?,
        sendfile_dir: args.sendfile_dir.clone(),
        compress: args.compress.then_some(true),
        php_fpm: args.php_fpm.clone(),
        fpm_children: flag("--fpm-children", &args.fpm_children, parse_count)?,
        admin_listen: flag("--admin-listen", &args.admin_listen, str::parse)?,
        fpm_ping_path: flag("--fpm-ping-path", &args.fpm_ping_path, check_status_path)?,
        server_timing: args.server_timing.then_some(true),
        access_log_format: flag("--access-log-format", &args.access_log_format, str::parse)?,
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        workers: flag("--workers", &args.workers, parse_count)?,
        upstream_pipelining: flag(
            "--upstream-pipelining",
            &args.upstream_pipelining,
            parse_pipelining,
        )?,
    })
}

fn finish(layer: Layer) -> Result<Config, ConfigError> {
    let upstream = layer.upstream;
    // The embedded php-fpm publishes its status page here, so the pool
    // sizes itself to its workers like it would for any php-fpm.
    let fpm_status_path = match (&upstream, layer.fpm_status_path) {
        (None, None) => Some(EMBEDDED_FPM_STATUS_PATH.to_owned()),
        (_, given) => given,
    };
    let size_from_fpm_status = fpm_status_path.is_some() && layer.max_upstream_conns.is_none();
    let read_timeout = layer.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT);
    let max_upstream_conns = layer
        .max_upstream_conns
        .unwrap_or(DEFAULT_MAX_UPSTREAM_CONNS);
    let root = resolve_root(layer.root.ok_or(ConfigError::MissingRoot)?)?;
    let sendfile_dir = layer.sendfile_dir.map(resolve_sendfile_dir).transpose()?;
    let php_only_front_controller = layer.php_only_front_controller.unwrap_or(false);
    if php_only_front_controller && layer.front_controller.is_none() {
        return Err(ConfigError::PhpOnlyWithoutFrontController);
    }
    let listen_is_default = layer.listen.is_none();
    let tls = tls_files(layer.tls_cert, layer.tls_key)?;
    let listen = resolve_listen(
        layer.listen.unwrap_or_else(|| vec![default_listen()]),
        tls.is_some(),
    )?;
    if let Some(addr @ ListenAddr::Https(_)) = &layer.admin_listen {
        return Err(ConfigError::AdminHttps { addr: addr.clone() });
    }
    Ok(Config {
        listen,
        upstream,
        root,
        index: layer
            .index
            .unwrap_or_else(|| DEFAULT_INDEX.iter().map(|s| (*s).to_owned()).collect()),
        front_controller: layer.front_controller,
        server_name: layer.server_name,
        max_body_size: layer.max_body_size.unwrap_or(DEFAULT_MAX_BODY_SIZE),
        connect_timeout: layer.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        read_timeout,
        header_timeout: layer.header_timeout.unwrap_or(DEFAULT_HEADER_TIMEOUT),
        grace_period: layer.grace_period.unwrap_or(DEFAULT_GRACE_PERIOD),
        max_upstream_conns,
        max_connections: layer.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        log_level: layer
            .log_level
            .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned()),
        params: layer.params.unwrap_or_default(),
        fpm_status_path,
        size_from_fpm_status,
        // Idle connections beyond the pool size could never be used.
        max_idle_conns: layer
            .max_idle_conns
            .map_or(max_upstream_conns, |n| n.min(max_upstream_conns)),
        queue_length: layer.queue_length.unwrap_or(DEFAULT_QUEUE_LENGTH),
        // A request waiting for a connection waits, as it would in php-fpm's
        // own backlog behind nginx, as long as php-fpm may take to answer:
        // no 503 where nginx would serve. `queue-length` bounds the waiting.
        acquire_timeout: layer.acquire_timeout.unwrap_or(read_timeout),
        idle_timeout: layer.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT),
        php_only_front_controller,
        never_serve_ext: layer.never_serve_ext.unwrap_or_else(|| {
            crate::route::DEFAULT_NEVER_SERVE_EXT
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        }),
        follow_symlinks_outside_root: layer.follow_symlinks_outside_root.unwrap_or(false),
        cache_control: layer.cache_control.unwrap_or_default(),
        max_uri_length: layer.max_uri_length.unwrap_or(DEFAULT_MAX_URI_LENGTH),
        max_header_size: layer.max_header_size.unwrap_or(DEFAULT_MAX_HEADER_SIZE),
        max_headers: layer.max_headers.unwrap_or(DEFAULT_MAX_HEADERS),
        trusted_proxies: layer.trusted_proxies.unwrap_or_default(),
        real_ip_header: layer.real_ip_header.unwrap_or_default(),
        internal_locations: layer.internal_locations.unwrap_or_default(),
        sendfile_dir,
        compress: layer.compress.unwrap_or(false),
        php_fpm: layer.php_fpm,
        fpm_children: layer.fpm_children,
        admin_listen: layer.admin_listen,
        fpm_ping_path: layer.fpm_ping_path,
        server_timing: layer.server_timing.unwrap_or(false),
        access_log_format: layer.access_log_format.unwrap_or_default(),
        tls,
        listen_is_default,
        workers: layer.workers,
        upstream_pipelining: layer
            .upstream_pipelining
            .unwrap_or(Some(values::PIPELINING_SLOW_DEFAULT)),
    })
}

fn tls_files(cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<Option<TlsFiles>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::TlsHalf {
            given: "tls-cert",
            missing: "tls-key",
        }),
        (None, Some(_)) => Err(ConfigError::TlsHalf {
            given: "tls-key",
            missing: "tls-cert",
        }),
    }
}

/// With a certificate, a bare TCP address serves TLS; without one,
/// `https://` cannot be served.
fn resolve_listen(addrs: Vec<ListenAddr>, tls: bool) -> Result<Vec<ListenAddr>, ConfigError> {
    addrs
        .into_iter()
        .map(|addr| match addr {
            ListenAddr::Tcp(sa) if tls => Ok(ListenAddr::Https(sa)),
            ListenAddr::Https(_) if !tls => Err(ConfigError::HttpsWithoutCert { addr }),
            other => Ok(other),
        })
        .collect()
}

/// Canonicalized so later containment checks compare real paths.
fn resolve_root(path: PathBuf) -> Result<PathBuf, ConfigError> {
    existing_dir(path, |path, reason| ConfigError::Root { path, reason })
}

fn resolve_sendfile_dir(path: PathBuf) -> Result<PathBuf, ConfigError> {
    existing_dir(path, |path, reason| ConfigError::SendfileDir {
        path,
        reason,
    })
}

/// The canonical form of an existing directory; `error` names the setting.
fn existing_dir(
    path: PathBuf,
    error: impl Fn(PathBuf, String) -> ConfigError,
) -> Result<PathBuf, ConfigError> {
    let fail = |reason: &str| error(path.clone(), reason.to_owned());
    if path.as_os_str().is_empty() {
        return Err(fail("the path is empty"));
    }
    let canonical = std::fs::canonicalize(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => fail("no such directory"),
        _ => fail(&io_reason(&e)),
    })?;
    if !canonical.is_dir() {
        return Err(fail("not a directory"));
    }
    Ok(canonical)
}
