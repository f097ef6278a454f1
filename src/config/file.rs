//! The TOML config file. Keys are the settings' keys (the flag names
//! without the leading dashes, see `settings`), plus a `[params]` table of
//! extra FastCGI params and a `[cache-control]` table (extension →
//! Cache-Control value for static files).
//!
//! The file is parsed to a generic table and walked by hand (rather than
//! through a serde struct) so every error can name the file and the key, and
//! so `[params]` keeps its order (the `preserve_order` toml feature).

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::settings::Layer;
use super::values::{
    check_cache_control, check_count, check_ext, check_head_limit, check_uri_limit,
    parse_idle_poll, parse_pipelining, parse_size, ListenAddr,
};
use super::ConfigError;
use crate::upstream::{UpstreamAddr, UpstreamSpec};

/// Where a file's values are read: errors name `path`, relative paths in it
/// are relative to `base_dir`.
pub(super) struct FileCtx<'a> {
    pub(super) path: &'a Path,
    pub(super) base_dir: &'a Path,
    /// What errors put before a key: `site[1].` inside a `[[site]]` table.
    pub(super) scope: String,
}

impl FileCtx<'_> {
    pub(super) fn bad(&self, key: &str, message: String) -> ConfigError {
        ConfigError::FileValue {
            path: self.path.to_owned(),
            key: format!("{}{key}", self.scope),
            message,
        }
    }
}

pub(super) fn read(path: &Path) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })?;
    parse(path, &text)
}

pub(super) fn parse(path: &Path, text: &str) -> Result<Layer, ConfigError> {
    let table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| syntax_error(path, text, &e))?;
    let ctx = FileCtx {
        path,
        // A relative root means "next to this file", wherever it is run from.
        base_dir: path.parent().unwrap_or(Path::new("")),
        scope: String::new(),
    };
    let mut layer = Layer::default();
    for (key, value) in &table {
        if !layer.set_from_file(&ctx, key, value)? {
            return Err(ConfigError::UnknownKey {
                path: path.to_owned(),
                key: key.clone(),
            });
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

pub(super) fn found(expected: &str, value: &Value) -> String {
    format!("expected {expected}, found {}", value.type_str())
}

pub(super) fn string(value: &Value) -> Result<&str, String> {
    value.as_str().ok_or_else(|| found("a string", value))
}

/// A single string or an array of strings.
pub(super) fn string_list(value: &Value) -> Result<Vec<&str>, String> {
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

/// `listen`: one address or several, at least one.
pub(super) fn listen_list(value: &Value) -> Result<Vec<ListenAddr>, String> {
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
pub(super) fn path(base_dir: &Path, value: &Value) -> Result<PathBuf, String> {
    match string(value)? {
        "" => Err("must not be empty".to_owned()),
        s => Ok(base_dir.join(s)),
    }
}

/// `true`, `false`, or like the flag: "on", "off" or a duration.
pub(super) fn pipelining(value: &Value) -> Result<Option<std::time::Duration>, String> {
    match value {
        // A boolean means what the flag's on/off do.
        Value::Boolean(on) => parse_pipelining(if *on { "on" } else { "off" }),
        Value::String(s) => parse_pipelining(s),
        _ => Err(found("true, false or a duration", value)),
    }
}

pub(super) fn idle_poll(value: &Value) -> Result<std::time::Duration, String> {
    match value {
        Value::Boolean(false) => parse_idle_poll("off"),
        Value::String(s) => parse_idle_poll(s),
        _ => Err(found("false or a duration", value)),
    }
}

pub(super) fn count_or_zero(value: &Value) -> Result<usize, String> {
    match value {
        Value::Integer(n) => usize::try_from(*n).map_err(|_| "must not be negative".to_owned()),
        _ => Err(found("an integer", value)),
    }
}

pub(super) fn count(value: &Value) -> Result<usize, String> {
    match value {
        Value::Integer(n) => {
            usize::try_from(*n).map_or_else(|_| Err("must be at least 1".to_owned()), check_count)
        }
        _ => Err(found("an integer", value)),
    }
}

/// `max-fails`: a whole number, 0 allowed.
pub(super) fn max_fails(value: &Value) -> Result<u32, String> {
    match value {
        Value::Integer(n) => u32::try_from(*n).map_err(|_| format!("must be 0 or more, not {n}")),
        _ => Err(found("an integer", value)),
    }
}

/// `upstream`: a string (`"tcp:h:9000 weight=2"`), an array of them, or
/// `[[upstream]]` tables with `address`, `weight`, `max-conns`, `backup`.
pub(super) fn upstreams(
    ctx: &FileCtx<'_>,
    value: &Value,
) -> Result<Vec<UpstreamSpec>, ConfigError> {
    let one = |key: String, item: &Value| -> Result<UpstreamSpec, ConfigError> {
        match item {
            Value::String(text) => text.parse().map_err(|m| ctx.bad(&key, m)),
            Value::Table(table) => upstream_table(ctx, &key, table),
            _ => Err(ctx.bad(&key, found("a string or a table", item))),
        }
    };
    match value {
        Value::Array(items) if items.is_empty() => {
            Err(ctx.bad("upstream", "must list at least one upstream".to_owned()))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| one(format!("upstream[{i}]"), item))
            .collect(),
        _ => one("upstream".to_owned(), value).map(|spec| vec![spec]),
    }
}

fn upstream_table(
    ctx: &FileCtx<'_>,
    key: &str,
    table: &Table,
) -> Result<UpstreamSpec, ConfigError> {
    let bad = |entry: &str, message: String| ctx.bad(&format!("{key}.{entry}"), message);
    let address = match table.get("address") {
        Some(v) => string(v)
            .and_then(|s| s.parse::<UpstreamAddr>().map_err(|e| e.to_string()))
            .map_err(|m| bad("address", m))?,
        None => return Err(ctx.bad(key, "needs an `address`".to_owned())),
    };
    let mut spec = UpstreamSpec::new(address);
    for (entry, v) in table {
        match entry.as_str() {
            "address" => {}
            "weight" => {
                let n = v
                    .as_integer()
                    .ok_or_else(|| bad(entry, found("an integer", v)))?;
                spec.weight = UpstreamSpec::check_weight(n).map_err(|m| bad(entry, m))?;
            }
            "max-conns" => {
                let n = v
                    .as_integer()
                    .ok_or_else(|| bad(entry, found("an integer", v)))?;
                spec.max_conns = Some(UpstreamSpec::check_max_conns(n).map_err(|m| bad(entry, m))?);
            }
            "backup" => spec.backup = boolean(v).map_err(|m| bad(entry, m))?,
            _ => {
                return Err(bad(
                    entry,
                    "unknown key (an upstream has address, weight, max-conns, backup)".to_owned(),
                ))
            }
        }
    }
    Ok(spec)
}

/// Bytes as an integer, or a string with a suffix such as `"16M"`.
pub(super) fn size(value: &Value) -> Result<u64, String> {
    match value {
        Value::Integer(n) => u64::try_from(*n).map_err(|_| "must not be negative".to_owned()),
        Value::String(s) => parse_size(s),
        _ => Err(found("an integer or a string such as \"16M\"", value)),
    }
}

pub(super) fn boolean(value: &Value) -> Result<bool, String> {
    value.as_bool().ok_or_else(|| found("true or false", value))
}

/// `max-uri-length`: a size the HTTP parser can take.
pub(super) fn uri_limit(value: &Value) -> Result<usize, String> {
    size(value).and_then(check_uri_limit)
}

/// `max-header-size`: a size up to the ceiling.
pub(super) fn head_limit(value: &Value) -> Result<usize, String> {
    size(value).and_then(check_head_limit)
}

/// `[cache-control]`: extension → Cache-Control value, e.g. `css = "max-age=3600"`.
pub(super) fn cache_control(
    ctx: &FileCtx<'_>,
    value: &Value,
) -> Result<Vec<(String, String)>, ConfigError> {
    let bad = |key: String, message: String| ctx.bad(&key, message);
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

/// `[params]`: extra FastCGI params, in file order.
pub(super) fn params(
    ctx: &FileCtx<'_>,
    value: &Value,
) -> Result<Vec<(String, String)>, ConfigError> {
    let bad = |key: String, message: String| ctx.bad(&key, message);
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
