//! Every setting of `serve`, declared once: its key (the flag without its
//! dashes, and the config file's key), how the command line gives it, how
//! its value is parsed, its default, whether a reload applies it, and its
//! help text.
//!
//! From this one list come the `serve` flags (`ServeArgs`), the file's keys,
//! the per-source `Layer` and how layers stack, the defaults, which keys a
//! reload changed or must keep, and the table in docs/configuration.md.
//! A setting added here and nowhere else is a flag, a key and a table row;
//! `Config` must have a field of the same name (the build fails otherwise).

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command};
use toml::Value;

use super::file::{self, FileCtx};
use super::types::{AccessLogFormat, RealIpHeader, TrustedProxy};
use super::values::{
    check_ext, check_front_controller, check_index, check_internal_location, check_log_level,
    check_server_name, check_status_path, check_timeout, parse_cache_control_flag, parse_count,
    parse_count_or_zero, parse_duration, parse_head_limit, parse_idle_poll, parse_pipelining,
    parse_size, parse_uri_limit, ListenAddr,
};
use super::{Config, ConfigError};
use crate::upstream::UpstreamSpec;

/// How the command line gives a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// `--key VALUE` once.
    One,
    /// `--key VALUE`, repeatable; the file takes a string or an array.
    Many,
    /// `--key PATH`, relative to the current directory (in the file: to
    /// the file's directory).
    Path,
    /// `--key` switches it on; the file takes true or false.
    Switch,
    /// Only in the config file (a table).
    FileOnly,
}

/// Whether SIGHUP applies a changed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    Live,
    /// The running value stays (with a warning) until a restart.
    Restart,
}

/// What a setting is when neither the flags nor the file give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// Unset: the feature is off or the value absent.
    Unset,
    /// This text, parsed as the flag's value would be.
    Fixed(&'static str),
    /// Worked out from other settings or the machine, as described.
    Derived(&'static str),
}

/// One setting, as `--help` and the docs present it.
#[derive(Debug)]
pub struct Setting {
    pub key: &'static str,
    pub flag: FlagKind,
    /// The value's placeholder in `--help` (none for switches).
    pub value_name: &'static str,
    pub default: DefaultValue,
    pub reload: Reload,
    pub help: &'static str,
}

macro_rules! flag_type {
    (One) => { Option<String> };
    (Many) => { Vec<String> };
    (Path) => { Option<PathBuf> };
    (Switch) => { bool };
    (FileOnly) => { () };
}

macro_rules! from_matches {
    (One, $m:expr, $key:expr) => {
        $m.try_get_one::<String>($key)
            .map_err(matches_error)?
            .cloned()
    };
    (Many, $m:expr, $key:expr) => {
        $m.try_get_many::<String>($key)
            .map_err(matches_error)?
            .map(|values| values.cloned().collect())
            .unwrap_or_default()
    };
    (Path, $m:expr, $key:expr) => {
        $m.try_get_one::<PathBuf>($key)
            .map_err(matches_error)?
            .cloned()
    };
    (Switch, $m:expr, $key:expr) => {
        $m.try_get_one::<bool>($key)
            .map_err(matches_error)?
            .copied()
            .unwrap_or(false)
    };
    (FileOnly, $m:expr, $key:expr) => {
        ()
    };
}

macro_rules! flag_value {
    (One, $given:expr, $flag:expr, [$parse:expr]) => {
        $given
            .as_deref()
            .map(|text: &str| ($parse)(text).map_err(|message| flag_error($flag, message)))
            .transpose()
    };
    // Absent when not given at all, so the file's list stays.
    (Many, $given:expr, $flag:expr, [$parse:expr]) => {
        if $given.is_empty() {
            Ok(None)
        } else {
            $given
                .iter()
                .map(|text| ($parse)(text.as_str()).map_err(|message| flag_error($flag, message)))
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        }
    };
    (Path, $given:expr, $flag:expr, []) => {
        Ok::<_, ConfigError>($given.clone())
    };
    // A switch can only switch on; absent leaves the file's value.
    (Switch, $given:expr, $flag:expr, []) => {
        Ok::<_, ConfigError>($given.then_some(true))
    };
    (FileOnly, $given:expr, $flag:expr, []) => {
        Ok::<_, ConfigError>(None)
    };
}

macro_rules! default_doc {
    (Unset) => {
        DefaultValue::Unset
    };
    (Fixed, $text:literal) => {
        DefaultValue::Fixed($text)
    };
    (Derived, $text:literal) => {
        DefaultValue::Derived($text)
    };
}

macro_rules! default_value {
    (Unset, $kind:ident, $flag:expr, $parse:tt) => {
        Ok::<_, ConfigError>(None)
    };
    (Derived, $text:literal, $kind:ident, $flag:expr, $parse:tt) => {
        Ok::<_, ConfigError>(None)
    };
    (Fixed, $text:literal, Switch, $flag:expr, []) => {
        on_off($text)
            .map(Some)
            .map_err(|message| default_error($flag, message))
    };
    (Fixed, $text:literal, Many, $flag:expr, [$parse:expr]) => {
        $text
            .split_whitespace()
            .map($parse)
            .collect::<Result<Vec<_>, String>>()
            .map(Some)
            .map_err(|message| default_error($flag, message))
    };
    (Fixed, $text:literal, One, $flag:expr, [$parse:expr]) => {
        ($parse)($text)
            .map(Some)
            .map_err(|message| default_error($flag, message))
    };
}

macro_rules! file_value {
    // The setting's own reading of the file's value.
    ($ctx:expr, $value:expr, $key:expr, $kind:ident, $parse:tt, [$read:expr], []) => {
        ($read)($value).map_err(|message| $ctx.bad($key, message))
    };
    // A table, whose errors name `key.entry`.
    ($ctx:expr, $value:expr, $key:expr, $kind:ident, $parse:tt, [], [$table:expr]) => {
        ($table)($ctx, $value)
    };
    ($ctx:expr, $value:expr, $key:expr, One, [$parse:expr], [], []) => {
        file::string($value)
            .and_then($parse)
            .map_err(|message| $ctx.bad($key, message))
    };
    ($ctx:expr, $value:expr, $key:expr, Many, [$parse:expr], [], []) => {
        file::string_list($value)
            .and_then(|items| items.into_iter().map($parse).collect())
            .map_err(|message| $ctx.bad($key, message))
    };
    ($ctx:expr, $value:expr, $key:expr, Path, [], [], []) => {
        file::path($ctx.base_dir, $value).map_err(|message| $ctx.bad($key, message))
    };
    ($ctx:expr, $value:expr, $key:expr, Switch, [], [], []) => {
        file::boolean($value).map_err(|message| $ctx.bad($key, message))
    };
}

macro_rules! settings {
    ($(
        $field:ident: $ty:ty {
            key: $key:literal,
            flag: $kind:ident($value_name:literal),
            $(parse: $parse:expr,)?
            $(file: $read:expr,)?
            $(table: $table:expr,)?
            default: $default:ident $(($default_text:literal))?,
            reload: $reload:ident,
            help: $help:literal $(,)?
        }
    ),* $(,)?) => {
        /// Every setting, in the order `--help` lists them.
        pub const SETTINGS: &[Setting] = &[$(Setting {
            key: $key,
            flag: FlagKind::$kind,
            value_name: $value_name,
            default: default_doc!($default $(, $default_text)?),
            reload: Reload::$reload,
            help: $help,
        }),*];

        /// `serve`'s command line: each value as given, parsed by `load` so a
        /// bad flag and a bad file key get the same message, named after
        /// where the value came from. Unset when not given, so the file's
        /// value stays.
        #[derive(Debug, Clone, Default)]
        pub struct ServeArgs {
            /// The TOML config file.
            pub config: Option<PathBuf>,
            $(pub $field: flag_type!($kind),)*
        }

        impl clap::FromArgMatches for ServeArgs {
            fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
                Ok(ServeArgs {
                    config: m.try_get_one::<PathBuf>(CONFIG_FLAG).map_err(matches_error)?.cloned(),
                    $($field: from_matches!($kind, m, $key),)*
                })
            }

            fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
                *self = Self::from_arg_matches(m)?;
                Ok(())
            }
        }

        /// The values one source provided; `None` means "not given here".
        /// Paths from a file are already joined onto the file's directory.
        #[derive(Debug, Default, Clone)]
        pub(super) struct Layer {
            $(pub(super) $field: Option<$ty>,)*
        }

        impl Layer {
            /// Values from `self` win; `lower` fills what `self` lacks.
            pub(super) fn over(self, lower: Layer) -> Layer {
                Layer { $($field: self.$field.or(lower.$field),)* }
            }

            pub(super) fn from_flags(args: &ServeArgs) -> Result<Layer, ConfigError> {
                Ok(Layer {
                    $($field: flag_value!($kind, args.$field, concat!("--", $key), [$($parse)?])?,)*
                })
            }

            /// The fixed defaults, parsed from their text in `SETTINGS`.
            pub(super) fn defaults() -> Result<Layer, ConfigError> {
                Ok(Layer {
                    $($field: default_value!(
                        $default $(, $default_text)?, $kind, concat!("--", $key), [$($parse)?]
                    )?,)*
                })
            }

            /// Sets the setting the file's `key` names; false when none does.
            pub(super) fn set_from_file(
                &mut self,
                ctx: &FileCtx<'_>,
                key: &str,
                value: &Value,
            ) -> Result<bool, ConfigError> {
                match key {
                    $($key => {
                        self.$field = Some(file_value!(
                            ctx, value, $key, $kind, [$($parse)?], [$($read)?], [$($table)?]
                        )?);
                    })*
                    _ => return Ok(false),
                }
                Ok(true)
            }
        }

        /// The keys whose value differs between two configs, in `SETTINGS`
        /// order.
        pub fn changed_keys(old: &Config, new: &Config) -> Vec<&'static str> {
            let mut keys = Vec::new();
            $(if old.$field != new.$field {
                keys.push($key);
            })*
            keys
        }

        /// Puts the running value back into `new` for every restart-only
        /// setting it changes; returns their keys.
        pub fn keep_restart_only(old: &Config, new: &mut Config) -> Vec<&'static str> {
            let mut kept = Vec::new();
            $(if Reload::$reload == Reload::Restart && old.$field != new.$field {
                new.$field = old.$field.clone();
                kept.push($key);
            })*
            kept
        }
    };
}

const CONFIG_FLAG: &str = "config";

fn matches_error(error: clap::parser::MatchesError) -> clap::Error {
    clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, error)
}

fn flag_error(flag: &'static str, message: String) -> ConfigError {
    ConfigError::Flag { flag, message }
}

/// A default that does not parse is a mistake in `SETTINGS`; a unit test
/// parses them all, and this keeps it an error rather than a panic.
fn default_error(flag: &'static str, message: String) -> ConfigError {
    ConfigError::Flag {
        flag,
        message: format!("built-in default: {message}"),
    }
}

fn timeout(text: &str) -> Result<std::time::Duration, String> {
    parse_duration(text).and_then(check_timeout)
}

fn on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("{other:?} is not on or off")),
    }
}

fn upstream_spec(text: &str) -> Result<UpstreamSpec, String> {
    text.parse::<UpstreamSpec>()
}

fn parse_max_fails(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .map_err(|_| format!("`{text}`: expected a whole number (0 = never)"))
}

settings! {
    listen: Vec<ListenAddr> {
        key: "listen",
        flag: Many("ADDR"),
        parse: str::parse::<ListenAddr>,
        file: file::listen_list,
        default: Fixed("127.0.0.1:8080"),
        reload: Live,
        help: "Address to accept HTTP on: 127.0.0.1:8080, [::1]:8080 or unix:/path/to.sock; \
               with --tls-cert a TCP address serves TLS unless written http://HOST:PORT \
               (https://HOST:PORT asks for TLS); repeat for several ([::]:PORT takes IPv4 \
               clients too, unless an IPv4 address with that port is also given)",
    },
    upstream: Vec<UpstreamSpec> {
        key: "upstream",
        flag: Many("ADDR"),
        parse: upstream_spec,
        table: file::upstreams,
        default: Derived("php-fpm started as our child on a private socket"),
        reload: Live,
        help: "FastCGI server (php-fpm): unix:/path/to.sock or tcp:host:port, optionally \
               followed by weight=N, max-conns=N and backup (in the file, [[upstream]] tables \
               with address, weight, max-conns, backup); repeat for several: requests go to \
               the one with the fewest outstanding per weight; a tcp name with several \
               addresses is one upstream per address. A reload may change them, but not to \
               or from the embedded php-fpm",
    },
    root: PathBuf {
        key: "root",
        flag: Path("DIR"),
        default: Unset,
        reload: Live,
        help: "Document root (required); scripts are looked up below it",
    },
    index: Vec<String> {
        key: "index",
        flag: Many("NAME"),
        parse: check_index,
        default: Fixed("index.php index.html"),
        reload: Live,
        help: "File name tried when a directory is requested; repeat for several, tried in \
               order; a PHP one runs, another is sent as a file",
    },
    front_controller: String {
        key: "front-controller",
        flag: One("PATH"),
        parse: check_front_controller,
        default: Unset,
        reload: Live,
        help: "Script that handles requests matching no file, e.g. /index.php",
    },
    server_name: String {
        key: "server-name",
        flag: One("NAME"),
        parse: check_server_name,
        default: Unset,
        reload: Live,
        help: "Server name passed to scripts as SERVER_NAME",
    },
    max_body_size: u64 {
        key: "max-body-size",
        flag: One("BYTES"),
        parse: parse_size,
        file: file::size,
        default: Fixed("16M"),
        reload: Live,
        help: "Largest request body accepted, in bytes or with k/M/G suffix; larger gets 413",
    },
    connect_timeout: std::time::Duration {
        key: "connect-timeout",
        flag: One("DUR"),
        parse: timeout,
        default: Fixed("5s"),
        reload: Live,
        help: "Time allowed to connect to the upstream, e.g. 5s or 500ms",
    },
    read_timeout: std::time::Duration {
        key: "read-timeout",
        flag: One("DUR"),
        parse: timeout,
        default: Fixed("60s"),
        reload: Live,
        help: "Longest wait for data from the upstream before answering 504",
    },
    header_timeout: std::time::Duration {
        key: "header-timeout",
        flag: One("DUR"),
        parse: timeout,
        default: Fixed("10s"),
        reload: Live,
        help: "Time a client has to send its request head, counted from its first byte; a new \
               connection that sends nothing is closed after it too",
    },
    keepalive_timeout: std::time::Duration {
        key: "keepalive-timeout",
        flag: One("DUR"),
        parse: timeout,
        default: Fixed("75s"),
        reload: Live,
        help: "How long a kept-alive client connection may wait for its next request before \
               it is closed (connections accepted after a reload get the new value)",
    },
    grace_period: std::time::Duration {
        key: "grace-period",
        flag: One("DUR"),
        parse: parse_duration,
        default: Fixed("10s"),
        reload: Live,
        help: "On shutdown, how long in-flight requests may finish",
    },
    max_upstream_conns: usize {
        key: "max-upstream-conns",
        flag: One("N"),
        parse: parse_count,
        file: file::count,
        default: Fixed("8"),
        reload: Live,
        help: "Most connections open to the upstream at once; fewer when php-fpm has fewer \
               workers (learned)",
    },
    max_fails: u32 {
        key: "max-fails",
        flag: One("N"),
        parse: parse_max_fails,
        file: file::max_fails,
        default: Fixed("1"),
        reload: Live,
        help: "With several upstreams: failures (connect refused or timed out, a broken \
               exchange) within fail-timeout that take an upstream out of service for \
               fail-timeout; 0 = never",
    },
    fail_timeout: std::time::Duration {
        key: "fail-timeout",
        flag: One("DUR"),
        parse: timeout,
        default: Fixed("10s"),
        reload: Live,
        help: "The window max-fails counts in, and how long an upstream then stays out",
    },
    health_interval: std::time::Duration {
        key: "health-interval",
        flag: One("DUR"),
        parse: timeout,
        default: Fixed("5s"),
        reload: Live,
        help: "With fpm-ping-path: how often each upstream's ping page is asked; one that \
               fails is out of service until it answers again",
    },
    resolve_interval: std::time::Duration {
        key: "resolve-interval",
        flag: One("DUR"),
        parse: timeout,
        default: Fixed("5s"),
        reload: Live,
        help: "How often a tcp upstream's host name is looked up again: addresses that \
               appear join, those gone leave after their requests finish",
    },
    max_connections: usize {
        key: "max-connections",
        flag: One("N"),
        parse: parse_count,
        file: file::count,
        default: Fixed("4096"),
        reload: Live,
        help: "Most client connections served at once",
    },
    log_level: String {
        key: "log-level",
        flag: One("LEVEL"),
        parse: check_log_level,
        default: Fixed("info"),
        reload: Restart,
        help: "Log level (error, warn, info, debug, trace) or a filter such as \
               info,fcgi_gateway=debug",
    },
    params: Vec<(String, String)> {
        key: "params",
        flag: FileOnly(""),
        table: file::params,
        default: Unset,
        reload: Live,
        help: "Table of extra FastCGI params (NAME = \"value\"), sent with every PHP request \
               in file order",
    },
    fpm_status_path: String {
        key: "fpm-status-path",
        flag: One("PATH"),
        parse: check_status_path,
        default: Unset,
        reload: Live,
        help: "php-fpm's pm.status_path (e.g. /status): read at start and every 30s to size \
               the upstream pool to php-fpm's `max children` (the embedded php-fpm's is used \
               by itself)",
    },
    max_idle_conns: usize {
        key: "max-idle-conns",
        flag: One("N"),
        parse: parse_count_or_zero,
        file: file::count_or_zero,
        default: Derived("the pool size"),
        reload: Live,
        help: "Most idle upstream connections kept open; 0 = a fresh connection per request",
    },
    queue_length: usize {
        key: "queue-length",
        flag: One("N"),
        parse: parse_count_or_zero,
        file: file::count_or_zero,
        default: Fixed("1024"),
        reload: Live,
        help: "Requests that may wait for a free upstream connection; more get 503",
    },
    acquire_timeout: std::time::Duration {
        key: "acquire-timeout",
        flag: One("DUR"),
        parse: timeout,
        default: Derived("the read timeout"),
        reload: Live,
        help: "How long a request may wait for a free upstream connection before 503",
    },
    idle_timeout: std::time::Duration {
        key: "idle-timeout",
        flag: One("DUR"),
        parse: timeout,
        default: Fixed("30s"),
        reload: Live,
        help: "Idle upstream connections are closed after this, freeing php-fpm workers",
    },
    php_only_front_controller: bool {
        key: "php-only-front-controller",
        flag: Switch(""),
        default: Fixed("off"),
        reload: Live,
        help: "Run no PHP but the front controller: any other .php is 404 (needs \
               --front-controller)",
    },
    never_serve_ext: Vec<String> {
        key: "never-serve-ext",
        flag: Many("EXT"),
        parse: check_ext,
        default: Fixed("php phtml phar inc phps bak orig swp"),
        reload: Live,
        help: "Extension never sent as a static file (404 instead); repeat for several (the \
               list replaces the default one). .php and names ending in ~ are always refused",
    },
    follow_symlinks_outside_root: bool {
        key: "follow-symlinks-outside-root",
        flag: Switch(""),
        default: Fixed("off"),
        reload: Live,
        help: "Serve and run files reached through symlinks that lead out of the root",
    },
    script_stat_cache: std::time::Duration {
        key: "script-stat-cache",
        flag: One("DUR"),
        parse: parse_duration,
        default: Fixed("1s"),
        reload: Live,
        help: "How long a PHP script found on disk (a regular file, no symlink below the \
               root) is taken as still there without another stat, per thread; a missing \
               one is looked up on every request. 0s stats on every request",
    },
    cache_control: Vec<(String, String)> {
        key: "cache-control",
        flag: Many("EXT=VALUE"),
        parse: parse_cache_control_flag,
        table: file::cache_control,
        default: Unset,
        reload: Live,
        help: "Cache-Control for static files with this extension, e.g. css=max-age=3600; \
               repeat for several (in the file, a table: css = \"max-age=3600\")",
    },
    max_uri_length: usize {
        key: "max-uri-length",
        flag: One("BYTES"),
        parse: parse_uri_limit,
        file: file::uri_limit,
        default: Fixed("8k"),
        reload: Live,
        help: "Longest request target (path and query) accepted; longer gets 414",
    },
    max_header_size: usize {
        key: "max-header-size",
        flag: One("BYTES"),
        parse: parse_head_limit,
        file: file::head_limit,
        default: Fixed("32k"),
        reload: Live,
        help: "Largest request header block accepted (request line excluded); larger gets 431",
    },
    max_headers: usize {
        key: "max-headers",
        flag: One("N"),
        parse: parse_count,
        file: file::count,
        default: Fixed("100"),
        reload: Live,
        help: "Most request header lines accepted; more get 431",
    },
    trusted_proxies: Vec<TrustedProxy> {
        key: "trusted-proxy",
        flag: Many("CIDR"),
        parse: str::parse::<TrustedProxy>,
        default: Unset,
        reload: Live,
        help: "A reverse proxy whose X-Forwarded-For/-Proto (see --real-ip-header) are \
               believed: a network such as 10.0.0.0/8, an IP, or unix (clients of unix-socket \
               listeners); repeat for several",
    },
    real_ip_header: RealIpHeader {
        key: "real-ip-header",
        flag: One("HEADER"),
        parse: str::parse::<RealIpHeader>,
        default: Fixed("x-forwarded-for"),
        reload: Live,
        help: "Where trusted proxies put the client: x-forwarded-for (with X-Forwarded-Proto) \
               or forwarded (RFC 7239 for= and proto=)",
    },
    internal_locations: Vec<String> {
        key: "internal-location",
        flag: Many("PREFIX"),
        parse: check_internal_location,
        default: Unset,
        reload: Live,
        help: "URL path prefix (e.g. /protected) that clients get 404 for; its files are \
               served only when a script answers X-Accel-Redirect; repeat for several",
    },
    sendfile_dir: PathBuf {
        key: "sendfile-dir",
        flag: Path("DIR"),
        default: Unset,
        reload: Live,
        help: "Directory whose files a script may send with X-Sendfile; without it \
               X-Sendfile is ignored",
    },
    compress: bool {
        key: "compress",
        flag: Switch(""),
        default: Fixed("off"),
        reload: Live,
        help: "Compress PHP responses of text, JSON, JavaScript, XML and SVG types with brotli \
               or gzip when the client accepts it; never event streams or X-Accel-Buffering: no",
    },
    php_fpm: PathBuf {
        key: "php-fpm",
        flag: Path("BIN"),
        default: Derived("php-fpm, php-fpm8.x or php-fpm7.x on PATH, then /usr/sbin/php-fpm*"),
        reload: Restart,
        help: "php-fpm binary for the embedded php-fpm (no --upstream)",
    },
    fpm_children: usize {
        key: "fpm-children",
        flag: One("N"),
        parse: parse_count,
        file: file::count,
        default: Derived("the CPU count, at least 2"),
        reload: Restart,
        help: "Workers of the embedded php-fpm (pm = static)",
    },
    admin_listen: ListenAddr {
        key: "admin-listen",
        flag: One("ADDR"),
        parse: str::parse::<ListenAddr>,
        default: Unset,
        reload: Restart,
        help: "Address for /healthz, /readyz and /metrics (127.0.0.1:9100 or unix:/path); \
               never served on --listen",
    },
    fpm_ping_path: String {
        key: "fpm-ping-path",
        flag: One("PATH"),
        parse: check_status_path,
        default: Unset,
        reload: Live,
        help: "php-fpm's ping.path (e.g. /ping): /readyz asks it instead of only connecting, \
               and every health-interval each upstream is asked it (one that fails is out \
               of service until it answers)",
    },
    server_timing: bool {
        key: "server-timing",
        flag: Switch(""),
        default: Fixed("off"),
        reload: Live,
        help: "Send a Server-Timing header on PHP responses: pool wait, connect, php-fpm's \
               time to first byte and the gateway's total, in milliseconds",
    },
    access_log_format: AccessLogFormat {
        key: "access-log-format",
        flag: One("FORMAT"),
        parse: str::parse::<AccessLogFormat>,
        default: Fixed("combined"),
        reload: Live,
        help: "Access log lines: combined (Apache/nginx, then request and upstream seconds) \
               or json (one object per line)",
    },
    tls_cert: PathBuf {
        key: "tls-cert",
        flag: Path("FILE"),
        default: Unset,
        reload: Live,
        help: "PEM certificate chain for TLS (needs --tls-key); TCP listeners then serve \
               HTTPS with h2 and http/1.1; re-read on SIGHUP",
    },
    tls_key: PathBuf {
        key: "tls-key",
        flag: Path("FILE"),
        default: Unset,
        reload: Live,
        help: "PEM private key (PKCS#8, RSA or EC) of --tls-cert; re-read on SIGHUP",
    },
    error_page: Vec<crate::sites::ErrorPage> {
        key: "error-page",
        flag: Many("CODES=PAGE"),
        parse: crate::sites::ErrorPage::parse_flag,
        table: super::site_file::error_pages,
        default: Unset,
        reload: Live,
        help: "Page for these statuses, like nginx's error_page: 404=/index.php (the status \
               stays), 404==/index.php (the page's own status), 500 502=/50x.html, or an \
               http(s) URL (302 to it); repeat for several (in the file, a table: \
               \"500 502\" = \"/50x.html\")",
    },
    intercept_errors: bool {
        key: "intercept-errors",
        flag: Switch(""),
        default: Fixed("off"),
        reload: Live,
        help: "Error pages also replace PHP's own error answers (nginx's \
               fastcgi_intercept_errors); off: only the gateway's own",
    },
    add_header: Vec<crate::sites::HeaderRule> {
        key: "add-header",
        flag: Many("NAME: VALUE"),
        parse: crate::sites::HeaderRule::parse_line,
        table: super::site_file::add_headers,
        default: Unset,
        reload: Live,
        help: "Response header added to 2xx/3xx answers, like nginx's add_header; repeat for \
               several (in the file, also tables with name, value, prefix (a path prefix whose \
               headers replace the site's) and always (on every status))",
    },
    redirect: Vec<crate::sites::Redirect> {
        key: "redirect",
        flag: FileOnly(""),
        table: super::site_file::redirects,
        default: Unset,
        reload: Live,
        help: "[[redirect]] tables, like nginx's return 3xx: to (a URL with $scheme, $host, \
               $server_name, $request_uri, $uri, $args), status (301), and path (exact) or \
               prefix; the first that matches answers",
    },
    deny: Vec<crate::sites::DenyRule> {
        key: "deny",
        flag: Many("REGEX"),
        parse: crate::sites::DenyRule::new,
        default: Unset,
        reload: Live,
        help: "Paths matching this regular expression get 403, like nginx's location ~ REGEX \
               { deny all; }; repeat for several",
    },
    redirect_to_https: bool {
        key: "redirect-to-https",
        flag: Switch(""),
        default: Fixed("off"),
        reload: Live,
        help: "Plain-HTTP requests get 301 to the same URL over https (a site with a \
               certificate)",
    },
    site: Vec<super::site_file::SiteLayer> {
        key: "site",
        flag: FileOnly(""),
        table: super::site_file::sites,
        default: Unset,
        reload: Live,
        help: "[[site]] tables: several sites, chosen by Host (server-names: exact, \
               *.example.com, .example.com; default = true for the rest), each with its own \
               root, upstream, index, front controller, params, limits, certificate (by SNI), \
               error pages, headers, redirects and deny rules; unset keys are the top \
               level's (docs/sites.md)",
    },
    workers: usize {
        key: "workers",
        flag: One("N"),
        parse: parse_count,
        file: file::count,
        default: Derived("the CPU count"),
        reload: Restart,
        help: "Threads serving connections (like nginx's worker_processes)",
    },
    idle_poll: std::time::Duration {
        key: "idle-poll",
        flag: One("DUR|off"),
        parse: parse_idle_poll,
        file: file::idle_poll,
        default: Fixed("50us"),
        reload: Restart,
        help: "After work, a serving thread keeps polling its sockets this long before it \
               sleeps, yielding its CPU at each empty poll and pausing when another task \
               wants one (it was switched out, or more tasks are runnable than there are \
               CPUs): a reply that comes back within it is taken without waking a \
               halted CPU (on a VM that wake costs more than a small request). While it \
               is the only serving thread awake it polls at SCHED_IDLE (as root or with \
               CAP_SYS_NICE), so that php-fpm and the clients woken on its CPU run at \
               once. While paused, a thread may nap 40us before it waits, to take what arrived \
               meanwhile in one go, as long as that saves it sleeps. At most 10ms; off: \
               sleep at once, never nap",
    },
    upstream_pipelining: Option<std::time::Duration> {
        key: "upstream-pipelining",
        flag: One("on|off|DURATION"),
        parse: parse_pipelining,
        file: file::pipelining,
        default: Fixed("on"),
        reload: Live,
        help: "When every upstream connection is busy, write a bodiless request onto one \
               whose request still runs, so php-fpm need not sleep between the two. A request \
               slower than DURATION (on: 10ms) pauses it for 2s: the request behind a slow \
               one waits for it",
    },
}

impl clap::Args for ServeArgs {
    fn augment_args(cmd: Command) -> Command {
        let config = Arg::new(CONFIG_FLAG)
            .long(CONFIG_FLAG)
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .action(ArgAction::Set)
            .help("TOML config file; flags given on the command line override its values");
        SETTINGS
            .iter()
            .filter_map(Setting::flag)
            .fold(cmd.arg(config), Command::arg)
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl Setting {
    /// The `serve` flag that gives this setting, if the command line can.
    fn flag(&self) -> Option<Arg> {
        let help = match self.default {
            DefaultValue::Fixed(text) | DefaultValue::Derived(text)
                if self.flag != FlagKind::Switch =>
            {
                format!("{} [default: {text}]", self.help)
            }
            _ => self.help.to_owned(),
        };
        let arg = Arg::new(self.key).long(self.key).help(help);
        Some(match self.flag {
            FlagKind::One => arg.value_name(self.value_name).action(ArgAction::Set),
            FlagKind::Many => arg.value_name(self.value_name).action(ArgAction::Append),
            FlagKind::Path => arg
                .value_name(self.value_name)
                .value_parser(clap::value_parser!(PathBuf))
                .action(ArgAction::Set),
            FlagKind::Switch => arg.action(ArgAction::SetTrue),
            FlagKind::FileOnly => return None,
        })
    }

    /// The docs table's first column: flag and key.
    fn names(&self) -> String {
        match self.flag {
            FlagKind::FileOnly => format!("`[{}]` (file only)", self.key),
            FlagKind::Switch => format!("`--{0}` / `{0}`", self.key),
            _ => format!("`--{0} {1}` / `{0}`", self.key, self.value_name),
        }
    }
}

/// The settings table of docs/configuration.md (a test keeps the file
/// equal to it).
pub fn markdown_table() -> String {
    let mut out =
        String::from("| flag / config key | default | on reload | meaning |\n|---|---|---|---|\n");
    for s in SETTINGS {
        let default = match s.default {
            DefaultValue::Unset => "—".to_owned(),
            DefaultValue::Fixed(text) => format!("`{text}`"),
            DefaultValue::Derived(text) => text.to_owned(),
        };
        let reload = match s.reload {
            Reload::Live => "applied",
            Reload::Restart => "needs a restart",
        };
        let help = s.help.replace('|', "\\|");
        out.push_str(&format!(
            "| {} | {} | {reload} | {help} |\n",
            // A `|` in a value name (`on|off|DURATION`) would end the cell.
            s.names().replace('|', "\\|"),
            default.replace('|', "\\|")
        ));
    }
    out
}

/// Every key the file may hold, in `SETTINGS` order.
pub fn keys() -> impl Iterator<Item = &'static str> {
    SETTINGS.iter().map(|s| s.key)
}
