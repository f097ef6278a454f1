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
mod site_file;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_embedded;
#[cfg(test)]
mod tests_gateway;
#[cfg(test)]
mod tests_sites;
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
    /// How long a found PHP script is trusted without another stat.
    pub script_stat_cache: Duration,
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
    /// How long a serving thread polls after work before it sleeps; zero:
    /// it sleeps at once.
    pub idle_poll: Duration,
    /// Requests may be sent ahead onto busy upstream connections while no
    /// exchange took longer than this; None: never.
    pub upstream_pipelining: Option<Duration>,
    /// Error pages, in file order (`sites::rules`).
    pub error_page: Vec<crate::sites::ErrorPage>,
    /// Error pages replace PHP's own error answers too.
    pub intercept_errors: bool,
    pub add_header: Vec<crate::sites::HeaderRule>,
    pub redirect: Vec<crate::sites::Redirect>,
    pub deny: Vec<crate::sites::DenyRule>,
    pub redirect_to_https: bool,
    /// `[[site]]` tables, each resolved over the top level's values. Empty:
    /// the top level is the one site.
    pub site: Vec<SiteConfig>,
    /// The top level is a site of its own (it gave a root): requests no
    /// site's names match go to it unless a site says `default = true`.
    pub top_level_site: bool,
}

/// One `[[site]]`: the names it answers to and its settings (the top
/// level's where it sets none; only the per-site ones are read from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteConfig {
    pub server_names: Vec<crate::sites::ServerName>,
    pub default: bool,
    pub config: Config,
}

impl Config {
    /// The top level's certificate and key, when it has them.
    pub fn tls(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
        })
    }

    /// Every certificate served (the top level's and each site's), when
    /// there is any: what a TLS listener chooses from by SNI.
    pub fn tls_set(&self) -> Option<TlsSet> {
        let mut entries: Vec<(Vec<crate::sites::ServerName>, TlsFiles)> = Vec::new();
        let mut default = None;
        if let Some(files) = self.tls() {
            entries.push((Vec::new(), files));
            default = Some(0);
        }
        for site in &self.site {
            let Some(files) = site.config.tls() else {
                continue;
            };
            // A site that inherits the top level's certificate is served
            // it as the default; only its own need choosing by name.
            if self.tls().as_ref() == Some(&files) {
                continue;
            }
            if site.default && default.is_none() {
                default = Some(entries.len());
            }
            entries.push((site.server_names.clone(), files));
        }
        if entries.is_empty() {
            return None;
        }
        Some(TlsSet {
            entries,
            default: default.unwrap_or(0),
        })
    }
}

/// The certificates of the TLS listeners: each with the server names it
/// is chosen for (empty: only as the default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSet {
    pub entries: Vec<(Vec<crate::sites::ServerName>, TlsFiles)>,
    /// Index of the one served when the client names no site of ours.
    pub default: usize,
}

impl TlsSet {
    pub fn default_files(&self) -> &TlsFiles {
        &self.entries[self.default.min(self.entries.len() - 1)].1
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

    #[error("site[{site}]: no root: give the site a `root`, or one at the top level")]
    SiteWithoutRoot { site: usize },

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
fn finish(mut given: Layer) -> Result<Config, ConfigError> {
    let site_layers = given.site.take().unwrap_or_default();
    // What depends on whether a value was given at all, before defaults.
    let listen_is_default = given.listen.is_none();
    // The pool sizes itself from the status page unless given a size.
    let pool_size_given = given.max_upstream_conns.is_some();
    let top_level_site = given.root.is_some() || site_layers.is_empty();
    let layer = given.over(Layer::defaults()?);
    let mut sites = Vec::with_capacity(site_layers.len());
    for (i, site) in site_layers.into_iter().enumerate() {
        let mut own = site.layer;
        let own_size = own.max_upstream_conns.is_some();
        own.site = None;
        // A site that redirects every request (`return 301 …` alone, as
        // www → apex) never routes: it needs no root of its own.
        let redirects_all = own
            .redirect
            .as_ref()
            .is_some_and(|r| r.iter().any(|r| r.when == crate::sites::PathMatch::All));
        if own.root.is_none() && layer.root.is_none() && redirects_all {
            own.root = Some(PathBuf::from("/"));
        }
        let config = build(
            own.over(layer.clone()),
            Scope::Site(i),
            listen_is_default,
            pool_size_given || own_size,
        )?;
        sites.push(SiteConfig {
            server_names: site.server_names,
            default: site.default,
            config,
        });
    }
    let mut layer = layer;
    if !top_level_site {
        // No root of its own: the top level carries the default site's
        // (it is not served as a site).
        let default = sites.iter().find(|s| s.default).or(sites.first());
        layer.root = default.map(|s| s.config.root_as_given.clone());
    }
    let any_site_tls = sites.iter().any(|s| s.config.tls_cert.is_some());
    let mut config = build(
        layer,
        Scope::Top { any_site_tls },
        listen_is_default,
        pool_size_given,
    )?;
    config.top_level_site = top_level_site;
    config.site = sites;
    Ok(config)
}

/// Which part of the file a config is built for.
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// The top level; `any_site_tls`: a `[[site]]` has a certificate, so
    /// `https://` listeners are possible without one here.
    Top { any_site_tls: bool },
    /// `[[site]]` number `i` (its listeners are the top level's).
    Site(usize),
}

fn build(
    layer: Layer,
    scope: Scope,
    listen_is_default: bool,
    pool_size_given: bool,
) -> Result<Config, ConfigError> {
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
    let root_given = layer.root.ok_or(match scope {
        Scope::Top { .. } => ConfigError::MissingRoot,
        Scope::Site(i) => ConfigError::SiteWithoutRoot { site: i },
    })?;
    let root = resolve_root(root_given.clone())?;
    let root_as_given = std::path::absolute(&root_given).unwrap_or_else(|_| root.clone());
    let sendfile_dir = layer.sendfile_dir.map(resolve_sendfile_dir).transpose()?;
    let php_only_front_controller = layer.php_only_front_controller.unwrap_or(false);
    if php_only_front_controller && layer.front_controller.is_none() {
        return Err(ConfigError::PhpOnlyWithoutFrontController);
    }
    let tls = tls_files(layer.tls_cert, layer.tls_key)?;
    let raw_listen = layer.listen.ok_or(missing("listen"))?;
    let listen = match scope {
        Scope::Top { any_site_tls } => {
            resolve_listen(raw_listen, tls.is_some(), tls.is_some() || any_site_tls)?
        }
        // Not served from here: the top level's are.
        Scope::Site(_) => raw_listen,
    };
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
        script_stat_cache: layer
            .script_stat_cache
            .ok_or(missing("script-stat-cache"))?,
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
        idle_poll: layer.idle_poll.ok_or(missing("idle-poll"))?,
        upstream_pipelining: layer
            .upstream_pipelining
            .ok_or(missing("upstream-pipelining"))?,
        error_page: layer.error_page.unwrap_or_default(),
        intercept_errors: layer.intercept_errors.unwrap_or(false),
        add_header: layer.add_header.unwrap_or_default(),
        redirect: layer.redirect.unwrap_or_default(),
        deny: layer.deny.unwrap_or_default(),
        redirect_to_https: layer.redirect_to_https.unwrap_or(false),
        site: Vec::new(),
        top_level_site: true,
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

/// With a certificate at the top level, a bare TCP address serves TLS;
/// without any (top level or a site's), `https://` cannot be served.
fn resolve_listen(
    addrs: Vec<ListenAddr>,
    tls: bool,
    any_tls: bool,
) -> Result<Vec<ListenAddr>, ConfigError> {
    addrs
        .into_iter()
        .map(|addr| match addr {
            ListenAddr::Tcp(sa) if tls => Ok(ListenAddr::Https(sa)),
            ListenAddr::Https(_) if !any_tls => Err(ConfigError::HttpsWithoutCert { addr }),
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
