//! The config file's site-level tables: `[error-page]`, `add-header` and
//! `[[redirect]]` entries, and `[[site]]` tables (each a layer of its own,
//! over the top level's values).

use toml::{Table, Value};

use super::file::{boolean, found, string, FileCtx};
use super::settings::Layer;
use super::ConfigError;
use crate::sites::{ErrorPage, HeaderRule, PathMatch, Redirect, ServerName};

/// The keys a `[[site]]` table may set besides `server-names` and `default`;
/// the rest are the gateway's (listeners, timeouts, pool, processes).
pub const SITE_KEYS: &[&str] = &[
    "root",
    "upstream",
    "index",
    "front-controller",
    "php-only-front-controller",
    "never-serve-ext",
    "follow-symlinks-outside-root",
    "max-body-size",
    "params",
    "cache-control",
    "server-name",
    "internal-location",
    "sendfile-dir",
    "compress",
    "tls-cert",
    "tls-key",
    "error-page",
    "intercept-errors",
    "add-header",
    "redirect",
    "deny",
    "redirect-to-https",
];

/// A `[[site]]` table as read: its names and its own values.
#[derive(Debug, Clone)]
pub struct SiteLayer {
    pub server_names: Vec<ServerName>,
    pub default: bool,
    pub(super) layer: Layer,
}

/// `[error-page]`: `"404" = "/index.php"`, `"500 502 503 504" = "/50x.html"`.
pub(super) fn error_pages(ctx: &FileCtx<'_>, value: &Value) -> Result<Vec<ErrorPage>, ConfigError> {
    let Value::Table(table) = value else {
        return Err(ctx.bad("error-page", found("a table", value)));
    };
    table
        .iter()
        .map(|(codes, target)| {
            let key = format!("error-page.\"{codes}\"");
            string(target)
                .and_then(|t| ErrorPage::parse(codes, t))
                .map_err(|m| ctx.bad(&key, m))
        })
        .collect()
}

/// `add-header`: `"Name: value"`, a list of them, or tables with `name`,
/// `value`, `prefix`, `always` (mixed in one list too).
pub(super) fn add_headers(
    ctx: &FileCtx<'_>,
    value: &Value,
) -> Result<Vec<HeaderRule>, ConfigError> {
    let one = |key: String, item: &Value| -> Result<HeaderRule, ConfigError> {
        match item {
            Value::String(line) => HeaderRule::parse_line(line).map_err(|m| ctx.bad(&key, m)),
            Value::Table(table) => header_table(ctx, &key, table),
            _ => Err(ctx.bad(&key, found("a string or a table", item))),
        }
    };
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| one(format!("add-header[{i}]"), item))
            .collect(),
        _ => one("add-header".to_owned(), value).map(|rule| vec![rule]),
    }
}

fn header_table(ctx: &FileCtx<'_>, key: &str, table: &Table) -> Result<HeaderRule, ConfigError> {
    let bad = |entry: &str, message: String| ctx.bad(&format!("{key}.{entry}"), message);
    let text = |entry: &str| -> Result<Option<&str>, ConfigError> {
        table
            .get(entry)
            .map(|v| string(v).map_err(|m| bad(entry, m)))
            .transpose()
    };
    known_entries(table, &["name", "value", "prefix", "always"], &bad)?;
    let name = text("name")?.ok_or_else(|| ctx.bad(key, "needs a `name`".to_owned()))?;
    let value = text("value")?.ok_or_else(|| ctx.bad(key, "needs a `value`".to_owned()))?;
    let always = match table.get("always") {
        Some(v) => boolean(v).map_err(|m| bad("always", m))?,
        None => false,
    };
    HeaderRule::new(name, value, text("prefix")?, always).map_err(|m| ctx.bad(key, m))
}

/// `[[redirect]]` tables: `to`, `status` (301), and `path` or `prefix`.
pub(super) fn redirects(ctx: &FileCtx<'_>, value: &Value) -> Result<Vec<Redirect>, ConfigError> {
    let tables: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    tables
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let key = format!("redirect[{i}]");
            let Value::Table(table) = item else {
                return Err(ctx.bad(&key, found("a table", item)));
            };
            redirect_table(ctx, &key, table)
        })
        .collect()
}

fn redirect_table(ctx: &FileCtx<'_>, key: &str, table: &Table) -> Result<Redirect, ConfigError> {
    let bad = |entry: &str, message: String| ctx.bad(&format!("{key}.{entry}"), message);
    known_entries(table, &["to", "status", "path", "prefix"], &bad)?;
    let text = |entry: &str| -> Result<Option<String>, ConfigError> {
        table
            .get(entry)
            .map(|v| string(v).map(str::to_owned).map_err(|m| bad(entry, m)))
            .transpose()
    };
    let to = text("to")?.ok_or_else(|| ctx.bad(key, "needs `to`".to_owned()))?;
    let status = match table.get("status") {
        Some(v) => v
            .as_integer()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| bad("status", found("a status such as 301", v)))?,
        None => 301,
    };
    let when = match (text("path")?, text("prefix")?) {
        (Some(_), Some(_)) => {
            return Err(ctx.bad(key, "give `path` or `prefix`, not both".to_owned()))
        }
        (Some(path), None) => PathMatch::Exact(path),
        (None, Some(prefix)) => PathMatch::Prefix(prefix),
        (None, None) => PathMatch::All,
    };
    if let PathMatch::Exact(p) | PathMatch::Prefix(p) = &when {
        if !p.starts_with('/') {
            return Err(ctx.bad(key, format!("`{p}` must start with /")));
        }
    }
    Redirect::new(when, &to, status).map_err(|m| ctx.bad(key, m))
}

fn known_entries(
    table: &Table,
    known: &[&str],
    bad: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    match table.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(bad(
            unknown,
            format!("unknown key (expected one of: {})", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// `[[site]]` tables.
pub(super) fn sites(ctx: &FileCtx<'_>, value: &Value) -> Result<Vec<SiteLayer>, ConfigError> {
    let Value::Array(items) = value else {
        return Err(ctx.bad("site", found("[[site]] tables", value)));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let scope = format!("site[{i}].");
            let Value::Table(table) = item else {
                return Err(ctx.bad(&format!("site[{i}]"), found("a table", item)));
            };
            let inner = FileCtx {
                path: ctx.path,
                base_dir: ctx.base_dir,
                scope: format!("{}{scope}", ctx.scope),
            };
            site_table(&inner, table)
        })
        .collect()
}

fn site_table(ctx: &FileCtx<'_>, table: &Table) -> Result<SiteLayer, ConfigError> {
    let mut site = SiteLayer {
        server_names: Vec::new(),
        default: false,
        layer: Layer::default(),
    };
    for (key, value) in table {
        match key.as_str() {
            "server-names" => {
                site.server_names = super::file::string_list(value)
                    .and_then(|names| names.into_iter().map(str::parse).collect())
                    .map_err(|m| ctx.bad(key, m))?;
            }
            "default" => site.default = boolean(value).map_err(|m| ctx.bad(key, m))?,
            _ if SITE_KEYS.contains(&key.as_str()) => {
                site.layer.set_from_file(ctx, key, value)?;
            }
            _ => {
                return Err(ctx.bad(
                    key,
                    format!(
                        "not a per-site setting (a site has server-names, default, {})",
                        SITE_KEYS.join(", ")
                    ),
                ))
            }
        }
    }
    if site.server_names.is_empty() && !site.default {
        return Err(ctx.bad(
            "server-names",
            "a site needs server-names (or `default = true`)".to_owned(),
        ));
    }
    Ok(site)
}
