//! The TOML config file. Keys are the flag names without the leading dashes,
//! plus a `[params]` table of extra FastCGI params and a `[cache-control]`
//! table (extension → Cache-Control value for static files).
//!
//! The file is parsed to a generic table and walked by hand (rather than
//! through a serde struct) so every error can name the file and the key, and
//! so `[params]` keeps its order (the `preserve_order` toml feature).

use std::path::Path;

use toml::{Table, Value};

use super::values::{
    check_cache_control, check_count, check_ext, check_front_controller, check_head_limit,
    check_index, check_internal_location, check_log_level, check_server_name, check_status_path,
    check_timeout, check_uri_limit, parse_duration, parse_size, ListenAddr,
};
use super::{ConfigError, Layer};
use crate::upstream::UpstreamAddr;

/// Every key the file may hold, in the order `--help` lists the flags.
pub(super) const KEYS: &[&str] = &[
    "listen",
    "upstream",
    "root",
    "index",
    "front-controller",
    "server-name",
    "max-body-size",
    "connect-timeout",
    "read-timeout",
    "header-timeout",
    "grace-period",
    "max-upstream-conns",
    "max-connections",
    "log-level",
    "params",
    "fpm-status-path",
    "max-idle-conns",
    "queue-length",
    "acquire-timeout",
    "idle-timeout",
    "php-only-front-controller",
    "never-serve-ext",
    "follow-symlinks-outside-root",
    "cache-control",
    "max-uri-length",
    "max-header-size",
    "max-headers",
    "trusted-proxy",
    "real-ip-header",
    "internal-location",
    "sendfile-dir",
    "compress",
    "php-fpm",
    "fpm-children",
    "admin-listen",
    "fpm-ping-path",
    "server-timing",
    "access-log-format",
    "tls-cert",
    "tls-key",
    "workers",
    "upstream-pipelining",
];

pub(super) fn read(path: &Path) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<Layer, ConfigError> {
    let table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| syntax_error(path, text, &e))?;
    // A relative root means "next to this file", wherever it is run from.
    let base_dir = path.parent().unwrap_or(Path::new(""));
    let mut layer = Layer::default();
    for (key, value) in &table {
        let bad = |message: String| ConfigError::FileValue {
            path: path.to_owned(),
            key: key.clone(),
            message,
        };
        let timeout = || duration(value).and_then(check_timeout).map_err(bad);
        match key.as_str() {
            "listen" => layer.listen = Some(listen(value).map_err(bad)?),
            "upstream" => {
                let addr = string(value)
                    .and_then(|s| s.parse::<UpstreamAddr>().map_err(|e| e.to_string()));
                layer.upstream = Some(addr.map_err(bad)?);
            }
            "root" => {
                let root = string(value)
                    .and_then(|s| match s {
                        "" => Err("must not be empty".to_owned()),
                        s => Ok(base_dir.join(s)),
                    })
                    .map_err(bad)?;
                layer.root = Some(root);
            }
            "index" => {
                let names = string_list(value)
                    .and_then(|names| names.into_iter().map(check_index).collect());
                layer.index = Some(names.map_err(bad)?);
            }
            "front-controller" => {
                let path = string(value).and_then(check_front_controller);
                layer.front_controller = Some(path.map_err(bad)?);
            }
            "server-name" => {
                let name = string(value).and_then(check_server_name);
                layer.server_name = Some(name.map_err(bad)?);
            }
            "max-body-size" => layer.max_body_size = Some(size(value).map_err(bad)?),
            "connect-timeout" => layer.connect_timeout = Some(timeout()?),
            "read-timeout" => layer.read_timeout = Some(timeout()?),
            "header-timeout" => layer.header_timeout = Some(timeout()?),
            "grace-period" => layer.grace_period = Some(duration(value).map_err(bad)?),
            "max-upstream-conns" => layer.max_upstream_conns = Some(count(value).map_err(bad)?),
            "max-connections" => layer.max_connections = Some(count(value).map_err(bad)?),
            "log-level" => {
                let level = string(value).and_then(check_log_level);
                layer.log_level = Some(level.map_err(bad)?);
            }
            "params" => layer.params = Some(params(path, value)?),
            "fpm-status-path" => {
                let path = string(value).and_then(check_status_path);
                layer.fpm_status_path = Some(path.map_err(bad)?);
            }
            "max-idle-conns" => layer.max_idle_conns = Some(count_or_zero(value).map_err(bad)?),
            "queue-length" => layer.queue_length = Some(count_or_zero(value).map_err(bad)?),
            "acquire-timeout" => layer.acquire_timeout = Some(timeout()?),
            "idle-timeout" => layer.idle_timeout = Some(timeout()?),
            "php-only-front-controller" => {
                layer.php_only_front_controller = Some(boolean(value).map_err(bad)?);
            }
            "never-serve-ext" => {
                let exts =
                    string_list(value).and_then(|exts| exts.into_iter().map(check_ext).collect());
                layer.never_serve_ext = Some(exts.map_err(bad)?);
            }
            "follow-symlinks-outside-root" => {
                layer.follow_symlinks_outside_root = Some(boolean(value).map_err(bad)?);
            }
            "cache-control" => layer.cache_control = Some(cache_control(path, value)?),
            "max-uri-length" => {
                let n = size(value).and_then(check_uri_limit);
                layer.max_uri_length = Some(n.map_err(bad)?);
            }
            "max-header-size" => {
                let n = size(value).and_then(check_head_limit);
                layer.max_header_size = Some(n.map_err(bad)?);
            }
            "max-headers" => layer.max_headers = Some(count(value).map_err(bad)?),
            "trusted-proxy" => {
                let proxies =
                    string_list(value).and_then(|list| list.into_iter().map(str::parse).collect());
                layer.trusted_proxies = Some(proxies.map_err(bad)?);
            }
            "internal-location" => {
                let prefixes = string_list(value)
                    .and_then(|list| list.into_iter().map(check_internal_location).collect());
                layer.internal_locations = Some(prefixes.map_err(bad)?);
            }
            "sendfile-dir" => {
                let dir = string(value)
                    .and_then(|s| match s {
                        "" => Err("must not be empty".to_owned()),
                        s => Ok(base_dir.join(s)),
                    })
                    .map_err(bad)?;
                layer.sendfile_dir = Some(dir);
            }
            "compress" => layer.compress = Some(boolean(value).map_err(bad)?),
            "php-fpm" => {
                let bin = string(value)
                    .and_then(|s| match s {
                        "" => Err("must not be empty".to_owned()),
                        s => Ok(base_dir.join(s)),
                    })
                    .map_err(bad)?;
                layer.php_fpm = Some(bin);
            }
            "fpm-children" => layer.fpm_children = Some(count(value).map_err(bad)?),
            "admin-listen" => {
                let addr = string(value).and_then(str::parse);
                layer.admin_listen = Some(addr.map_err(bad)?);
            }
            "fpm-ping-path" => {
                let path = string(value).and_then(check_status_path);
                layer.fpm_ping_path = Some(path.map_err(bad)?);
            }
            "tls-cert" => layer.tls_cert = Some(file_path(base_dir, value).map_err(bad)?),
            "tls-key" => layer.tls_key = Some(file_path(base_dir, value).map_err(bad)?),
            "workers" => layer.workers = Some(count(value).map_err(bad)?),
            "upstream-pipelining" => {
                layer.upstream_pipelining = Some(pipelining(value).map_err(bad)?);
            }
            "real-ip-header" => {
                let header = string(value).and_then(str::parse);
                layer.real_ip_header = Some(header.map_err(bad)?);
            }
            "server-timing" => layer.server_timing = Some(boolean(value).map_err(bad)?),
            "access-log-format" => {
                let format = string(value).and_then(str::parse);
                layer.access_log_format = Some(format.map_err(bad)?);
            }
            _ => {
                return Err(ConfigError::UnknownKey {
                    path: path.to_owned(),
                    key: key.clone(),
                })
            }
        }
    }
    Ok(layer)
}

fn syntax_error(path: &Path, text: &str, error: &toml::de::Error) -> ConfigError {
    // The parser's message may span lines; the error must stay on one.
    let message = error
        .message()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    ConfigError::Syntax {
        path: path.to_owned(),
        position: error.span().map(|span| line_column(text, span.start)),
        message,
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    // Back off to a char boundary so slicing cannot panic on odd offsets.
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn found(expected: &str, value: &Value) -> String {
    format!("expected {expected}, found {}", value.type_str())
}

fn string(value: &Value) -> Result<&str, String> {
    value.as_str().ok_or_else(|| found("a string", value))
}

/// A single string or an array of strings.
fn string_list(value: &Value) -> Result<Vec<&str>, String> {
    match value {
        Value::String(s) => Ok(vec![s]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str()
                    .ok_or_else(|| format!("item {}: {}", i + 1, found("a string", item)))
            })
            .collect(),
        _ => Err(found("a string or an array of strings", value)),
    }
}

fn listen(value: &Value) -> Result<Vec<ListenAddr>, String> {
    let addrs = string_list(value)?
        .into_iter()
        .map(str::parse)
        .collect::<Result<Vec<ListenAddr>, String>>()?;
    if addrs.is_empty() {
        return Err("must list at least one address".to_owned());
    }
    Ok(addrs)
}

/// A non-empty path, relative to the config file's directory.
fn file_path(base_dir: &Path, value: &Value) -> Result<std::path::PathBuf, String> {
    match string(value)? {
        "" => Err("must not be empty".to_owned()),
        s => Ok(base_dir.join(s)),
    }
}

fn duration(value: &Value) -> Result<std::time::Duration, String> {
    string(value).and_then(parse_duration)
}

/// `true`, `false`, or like the flag: "on", "off" or a duration.
fn pipelining(value: &Value) -> Result<Option<std::time::Duration>, String> {
    match value {
        // A boolean means what the flag's on/off do.
        Value::Boolean(on) => super::values::parse_pipelining(if *on { "on" } else { "off" }),
        Value::String(s) => super::values::parse_pipelining(s),
        _ => Err(found("true, false or a duration", value)),
    }
}

fn count_or_zero(value: &Value) -> Result<usize, String> {
    match value {
        Value::Integer(n) => usize::try_from(*n).map_err(|_| "must not be negative".to_owned()),
        _ => Err(found("an integer", value)),
    }
}

fn count(value: &Value) -> Result<usize, String> {
    match value {
        Value::Integer(n) => {
            usize::try_from(*n).map_or_else(|_| Err("must be at least 1".to_owned()), check_count)
        }
        _ => Err(found("an integer", value)),
    }
}

/// Bytes as an integer, or a string with a suffix such as `"16M"`.
fn size(value: &Value) -> Result<u64, String> {
    match value {
        Value::Integer(n) => u64::try_from(*n).map_err(|_| "must not be negative".to_owned()),
        Value::String(s) => parse_size(s),
        _ => Err(found("an integer or a string such as \"16M\"", value)),
    }
}

fn boolean(value: &Value) -> Result<bool, String> {
    value.as_bool().ok_or_else(|| found("true or false", value))
}

/// `[cache-control]`: extension → Cache-Control value, e.g. `css = "max-age=3600"`.
fn cache_control(path: &Path, value: &Value) -> Result<Vec<(String, String)>, ConfigError> {
    let bad = |key: String, message: String| ConfigError::FileValue {
        path: path.to_owned(),
        key,
        message,
    };
    let Value::Table(table) = value else {
        return Err(bad("cache-control".to_owned(), found("a table", value)));
    };
    table
        .iter()
        .map(|(ext, value)| {
            let key = || format!("cache-control.{ext}");
            let ext = check_ext(ext).map_err(|m| bad(key(), m))?;
            let value = string(value)
                .and_then(check_cache_control)
                .map_err(|m| bad(key(), m))?;
            Ok((ext, value))
        })
        .collect()
}

fn params(path: &Path, value: &Value) -> Result<Vec<(String, String)>, ConfigError> {
    let bad = |key: String, message: String| ConfigError::FileValue {
        path: path.to_owned(),
        key,
        message,
    };
    let Value::Table(table) = value else {
        return Err(bad("params".to_owned(), found("a table", value)));
    };
    table
        .iter()
        .map(|(name, value)| {
            if name.is_empty() {
                return Err(bad(
                    "params".to_owned(),
                    "param names must not be empty".to_owned(),
                ));
            }
            match value.as_str() {
                Some(v) => Ok((name.clone(), v.to_owned())),
                None => Err(bad(format!("params.{name}"), found("a string", value))),
            }
        })
        .collect()
}
