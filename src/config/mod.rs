//! Configuration: the command line, the TOML file, defaults and validation.
//!
//! The only I/O here is reading the config file and canonicalizing the
//! document root; no sockets are opened and nothing is spawned.
//!
//! Each setting is declared once, in `settings`. Values are gathered into
//! a `Layer` per source (file, flags), each value parsed and checked as it
//! is read so an error can name its flag or key. The flag layer is put over
//! the file layer, then defaults fill the gaps and `finish` validates.

mod file;
pub mod settings;
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
mod types;
mod values;

use settings::Layer;
pub use settings::ServeArgs;
pub use types::{AccessLogFormat, RealIpHeader, TrustedProxy};
pub(crate) use values::MAX_URI_LENGTH_CEILING;
pub use values::{parse_duration, parse_size, ListenAddr};

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::upstream::UpstreamSpec;

/// `pm.status_path` of the embedded php-fpm's pool, unless one is given.
pub const EMBEDDED_FPM_STATUS_PATH: &str = "/fpm-status";

/// The fully resolved and validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Addresses to accept HTTP on; never empty.
    pub listen: Vec<ListenAddr>,
    /// Empty: no upstream was given, so php-fpm runs embedded
    /// (`crate::fpm::embedded`); the binary fills this in once it listens.
    pub upstream: Vec<UpstreamSpec>,
    /// Passive health of several upstreams (`upstream::balance`).
    pub max_fails: u32,
    pub fail_timeout: Duration,
    /// How often `fpm-ping-path` is asked of each upstream.
    pub health_interval: Duration,
    /// How often upstream host names are looked up again.
    pub resolve_interval: Duration,
    /// Canonical path of an existing directory, as resolved at load.
    pub root: PathBuf,
    /// The root as given, made absolute but not resolved: served requests
    /// resolve it again each second (a symlink switch deploys a release).
    pub root_as_given: PathBuf,
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
    /// A kept-alive connection idle longer than this between requests is closed.
    pub keepalive_timeout: Duration,
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
    /// Certificate for the `https` listeners; given with `tls_key` or not
    /// at all. With it, bare TCP listen addresses have been resolved to
    /// `ListenAddr::Https`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Runtime worker threads; None: one per CPU.
    pub workers: Option<usize>,
    /// Requests may be sent ahead onto busy upstream connections while no
    /// exchange took longer than this; None: never.
    pub upstream_pipelining: Option<Duration>,
}

impl Config {
    /// The certificate and key, when TLS is configured.
    pub fn tls(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
        })
    }
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
    #[error("cannot read config file {}: {}", one_line(path.display()), io_reason(error))]
    Read { path: PathBuf, error: io::Error },

    #[error(
        "{}: TOML syntax error{}: {}",
        one_line(path.display()),
        at(*position),
        one_line(message)
    )]
    Syntax {
        path: PathBuf,
        /// 1-based line and column, when the parser reported a location.
        position: Option<(usize, usize)>,
        message: String,
    },

    #[error(
        "{}: unknown key `{}` (expected one of: {})",
        one_line(path.display()),
        one_line(key),
        settings::keys().collect::<Vec<_>>().join(", ")
    )]
    UnknownKey { path: PathBuf, key: String },

    #[error(
        "{}: key `{}`: {}",
        one_line(path.display()),
        one_line(key),
        one_line(message)
    )]
    FileValue {
        path: PathBuf,
        key: String,
        message: String,
    },

    #[error("{flag}: {}", one_line(message))]
    Flag { flag: &'static str, message: String },

    #[error("missing root: give --root or `root` in the config file")]
    MissingRoot,

    /// A setting `finish` needs a value for has no default in `SETTINGS`.
    #[error("`{key}` has no built-in default (a mistake in settings.rs)")]
    NoDefault { key: &'static str },

    #[error("root `{}`: {}", one_line(path.display()), one_line(reason))]
    Root { path: PathBuf, reason: String },

    #[error("sendfile-dir `{}`: {}", one_line(path.display()), one_line(reason))]
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

/// Text a user gave (a value, key or path) as an error shows it: control
/// characters escaped (`\n`, `\u{1b}`), so the message stays one line
/// whatever the file or flag held.
fn one_line(text: impl std::fmt::Display) -> String {
    let text = text.to_string();
    if !text.contains(char::is_control) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
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

/// Builds the config for `serve`: the file named by `--config` (if any),
/// overridden by the flags given, then defaults and validation.
pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
    let file = match &args.config {
        Some(path) => file::read(path)?,
        None => Layer::default(),
    };
    let flags = Layer::from_flags(args)?;
    finish(flags.over(file))
}

/// Builds the config from a file alone, as `serve --config FILE` with no
/// other flags would; used by `check-config`.
pub fn check_file(path: &Path) -> Result<Config, ConfigError> {
    finish(file::read(path)?)
}

/// [`check_file`] on text already read: `path` only names the file in
/// errors and anchors its relative paths; nothing is read from it. For the
/// fuzz targets (`fuzz/`), which would otherwise write a file per input.
#[doc(hidden)]
pub fn check_text(path: &Path, text: &str) -> Result<Config, ConfigError> {
    finish(file::parse(path, text)?)
}

/// Defaults fill what `given` lacks; then the settings are checked together.
fn finish(given: Layer) -> Result<Config, ConfigError> {
    // What depends on whether a value was given at all, before defaults.
    let listen_is_default = given.listen.is_none();
    // The pool sizes itself from the status page unless given a size.
    let pool_size_given = given.max_upstream_conns.is_some();
    let layer = given.over(Layer::defaults()?);
    let missing = |key: &'static str| ConfigError::NoDefault { key };

    let upstream = layer.upstream.unwrap_or_default();
    // The embedded php-fpm publishes its status page here, so the pool
    // sizes itself to its workers like it would for any php-fpm.
    let fpm_status_path = match (&upstream, layer.fpm_status_path) {
        (u, None) if u.is_empty() => Some(EMBEDDED_FPM_STATUS_PATH.to_owned()),
        (_, given) => given,
    };
    let size_from_fpm_status = fpm_status_path.is_some() && !pool_size_given;
    let read_timeout = layer.read_timeout.ok_or(missing("read-timeout"))?;
    let max_upstream_conns = layer
        .max_upstream_conns
        .ok_or(missing("max-upstream-conns"))?;
    let root_given = layer.root.ok_or(ConfigError::MissingRoot)?;
    let root = resolve_root(root_given.clone())?;
    let root_as_given = std::path::absolute(&root_given).unwrap_or_else(|_| root.clone());
    let sendfile_dir = layer.sendfile_dir.map(resolve_sendfile_dir).transpose()?;
    let php_only_front_controller = layer.php_only_front_controller.unwrap_or(false);
    if php_only_front_controller && layer.front_controller.is_none() {
        return Err(ConfigError::PhpOnlyWithoutFrontController);
    }
    let tls = tls_files(layer.tls_cert, layer.tls_key)?;
    let listen = resolve_listen(layer.listen.ok_or(missing("listen"))?, tls.is_some())?;
    if let Some(addr @ ListenAddr::Https(_)) = &layer.admin_listen {
        return Err(ConfigError::AdminHttps { addr: addr.clone() });
    }
    let (tls_cert, tls_key) = tls.map_or((None, None), |t| (Some(t.cert), Some(t.key)));
    Ok(Config {
        listen,
        upstream,
        max_fails: layer.max_fails.ok_or(missing("max-fails"))?,
        fail_timeout: layer.fail_timeout.ok_or(missing("fail-timeout"))?,
        health_interval: layer.health_interval.ok_or(missing("health-interval"))?,
        resolve_interval: layer.resolve_interval.ok_or(missing("resolve-interval"))?,
        root,
        root_as_given,
        index: layer.index.unwrap_or_default(),
        front_controller: layer.front_controller,
        server_name: layer.server_name,
        max_body_size: layer.max_body_size.ok_or(missing("max-body-size"))?,
        connect_timeout: layer.connect_timeout.ok_or(missing("connect-timeout"))?,
        read_timeout,
        header_timeout: layer.header_timeout.ok_or(missing("header-timeout"))?,
        keepalive_timeout: layer
            .keepalive_timeout
            .ok_or(missing("keepalive-timeout"))?,
        grace_period: layer.grace_period.ok_or(missing("grace-period"))?,
        max_upstream_conns,
        max_connections: layer.max_connections.ok_or(missing("max-connections"))?,
        log_level: layer.log_level.ok_or(missing("log-level"))?,
        params: layer.params.unwrap_or_default(),
        fpm_status_path,
        size_from_fpm_status,
        // Idle connections beyond the pool size could never be used.
        max_idle_conns: layer
            .max_idle_conns
            .map_or(max_upstream_conns, |n| n.min(max_upstream_conns)),
        queue_length: layer.queue_length.ok_or(missing("queue-length"))?,
        // A request waiting for a connection waits, as it would in php-fpm's
        // own backlog behind nginx, as long as php-fpm may take to answer:
        // no 503 where nginx would serve. `queue-length` bounds the waiting.
        acquire_timeout: layer.acquire_timeout.unwrap_or(read_timeout),
        idle_timeout: layer.idle_timeout.ok_or(missing("idle-timeout"))?,
        php_only_front_controller,
        never_serve_ext: layer.never_serve_ext.unwrap_or_default(),
        follow_symlinks_outside_root: layer.follow_symlinks_outside_root.unwrap_or(false),
        cache_control: layer.cache_control.unwrap_or_default(),
        max_uri_length: layer.max_uri_length.ok_or(missing("max-uri-length"))?,
        max_header_size: layer.max_header_size.ok_or(missing("max-header-size"))?,
        max_headers: layer.max_headers.ok_or(missing("max-headers"))?,
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
        tls_cert,
        tls_key,
        listen_is_default,
        workers: layer.workers,
        upstream_pipelining: layer
            .upstream_pipelining
            .ok_or(missing("upstream-pipelining"))?,
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
