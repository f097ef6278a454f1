//! Sites and settings → the gateway's TOML (docs/sites.md form): the
//! single-site form for one server, `[[site]]` tables for several.

use std::fmt::Write as _;

use super::map::Mapped;
use super::site::Site;

/// The TOML text for `mapped`; `files` name the files read, for comments.
pub fn emit(mapped: &Mapped, files: &[String]) -> String {
    let mut out = String::new();
    out.push_str("# Written by `fcgi-gateway import-nginx`; see docs/nginx-import.md.\n");
    let _ = writeln!(out, "listen = {}", array(&listen_addresses(&mapped.sites)));
    for (key, setting) in &mapped.settings {
        let value = match *key {
            "workers" | "max-fails" => setting.value.clone(),
            _ => string(&setting.value),
        };
        let _ = writeln!(out, "{key} = {value}");
    }
    let origin = |site: &Site| {
        let file = files.get(site.origin.0).map_or("?", String::as_str);
        // A control character in a file name would end the comment early.
        let file: String = file
            .chars()
            .flat_map(|c| match c.is_control() {
                true => c.escape_default().collect::<Vec<_>>(),
                false => vec![c],
            })
            .collect();
        format!("# server at {file}:{}\n", site.origin.1)
    };
    match mapped.sites.as_slice() {
        [] => site_keys(&mut out, &mapped.http, ""),
        [only] => {
            out.push_str(&origin(only));
            site_keys(&mut out, only, "");
        }
        sites => {
            let shared = shared_upstream(sites);
            if let Some(upstream) = &shared {
                let _ = writeln!(out, "upstream = {}", upstream_value(upstream));
            }
            for site in sites {
                out.push('\n');
                out.push_str(&origin(site));
                out.push_str("[[site]]\n");
                let mut own = site.clone();
                if shared.is_some() {
                    own.upstream = None;
                }
                site_keys(&mut out, &own, "site.");
            }
        }
    }
    out
}

/// Every site's listeners, deduplicated; with any TLS one, each TCP
/// address says its scheme (a bare one would serve TLS, configuration.md).
fn listen_addresses(sites: &[Site]) -> Vec<String> {
    let mut seen: Vec<(String, bool)> = Vec::new();
    for site in sites {
        for listen in &site.listens {
            let ssl = listen.ssl || site.ssl_on;
            if !seen.iter().any(|(a, s)| *a == listen.address && *s == ssl) {
                seen.push((listen.address.clone(), ssl));
            }
        }
    }
    if seen.is_empty() {
        // nginx's default.
        seen.push(("0.0.0.0:80".into(), false));
    }
    // `[::]:P` already takes IPv4 too (dual-stack socket): binding
    // `0.0.0.0:P` beside it would fail.
    let v6_ports: Vec<String> = seen
        .iter()
        .filter_map(|(a, _)| a.strip_prefix("[::]:").map(str::to_string))
        .collect();
    seen.retain(|(a, _)| {
        a.strip_prefix("0.0.0.0:")
            .is_none_or(|p| !v6_ports.iter().any(|v| v == p))
    });
    let any_tls = seen.iter().any(|(_, ssl)| *ssl);
    seen.into_iter()
        .map(
            |(address, ssl)| match (any_tls, address.starts_with("unix:")) {
                (false, _) | (_, true) => address,
                (true, false) if ssl => format!("https://{address}"),
                (true, false) => format!("http://{address}"),
            },
        )
        .collect()
}

fn shared_upstream(sites: &[Site]) -> Option<Vec<String>> {
    let mut upstreams = sites.iter().filter_map(|s| s.upstream.as_ref());
    let first = upstreams.next()?;
    upstreams.all(|u| u == first).then(|| first.clone())
}

fn upstream_value(list: &[String]) -> String {
    match list {
        [one] => string(one),
        _ => array(list),
    }
}

/// One site's keys, then its tables, each table named under `prefix`.
fn site_keys(out: &mut String, site: &Site, prefix: &str) {
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "{key} = {value}");
    };
    if prefix.is_empty() {
        // The single-site form serves every Host, as nginx does with one
        // server; its first name stays PHP's SERVER_NAME ($server_name).
        let exact = site.names.iter().find(|n| !n.starts_with(['*', '.']));
        if let Some(name) = exact {
            line("server-name", string(name));
        }
    } else {
        if !site.names.is_empty() {
            line("server-names", array(&site.names));
        }
        if site.default {
            line("default", "true".into());
        }
    }
    if let Some(root) = &site.root {
        line("root", string(root));
    }
    // nginx's default index is index.html alone; the gateway's also has index.php.
    let index = site
        .index
        .clone()
        .unwrap_or_else(|| vec!["index.html".into()]);
    if site.root.is_some() {
        line("index", array(&index));
    }
    if let Some(fc) = &site.front_controller {
        line("front-controller", string(fc));
    }
    if site.php_only_front_controller {
        line("php-only-front-controller", "true".into());
    }
    if let Some(upstream) = &site.upstream {
        line("upstream", upstream_value(upstream));
    }
    if let Some(size) = &site.max_body_size {
        line("max-body-size", string(size));
    }
    if site.intercept_errors == Some(true) {
        line("intercept-errors", "true".into());
    }
    if site.compress == Some(true) {
        line("compress", "true".into());
    }
    if let (Some(cert), Some(key)) = (&site.tls_cert, &site.tls_key) {
        line("tls-cert", string(cert));
        line("tls-key", string(key));
    }
    if site.redirect_to_https {
        line("redirect-to-https", "true".into());
    }
    if !site.internal_locations.is_empty() {
        line("internal-location", array(&site.internal_locations));
    }
    if !site.deny.is_empty() {
        line("deny", array(&site.deny));
    }
    let plain_headers = site.headers.iter().all(|h| !h.always && h.prefix.is_none());
    if !site.headers.is_empty() && plain_headers {
        let list: Vec<String> = site
            .headers
            .iter()
            .map(|h| format!("{}: {}", h.name, h.value))
            .collect();
        line("add-header", array(&list));
    }
    let table = |out: &mut String, name: &str, pairs: &[(String, String)]| {
        if !pairs.is_empty() {
            let _ = writeln!(out, "\n[{prefix}{name}]");
            for (key, value) in pairs {
                let _ = writeln!(out, "{} = {}", key_name(key), string(value));
            }
        }
    };
    table(out, "params", &site.params);
    table(out, "error-page", &site.error_pages);
    table(out, "cache-control", &site.cache_control);
    if !plain_headers {
        for h in &site.headers {
            let _ = writeln!(out, "\n[[{prefix}add-header]]");
            let _ = writeln!(
                out,
                "name = {}\nvalue = {}",
                string(&h.name),
                string(&h.value)
            );
            if let Some(p) = &h.prefix {
                let _ = writeln!(out, "prefix = {}", string(p));
            }
            if h.always {
                let _ = writeln!(out, "always = true");
            }
        }
    }
    for r in &site.redirects {
        let _ = writeln!(out, "\n[[{prefix}redirect]]");
        if let Some(p) = &r.path {
            let _ = writeln!(out, "path = {}", string(p));
        }
        if let Some(p) = &r.prefix {
            let _ = writeln!(out, "prefix = {}", string(p));
        }
        let _ = writeln!(out, "to = {}\nstatus = {}", string(&r.to), r.status);
    }
}

/// A bare key when TOML allows one, else quoted; statuses stay quoted
/// (`"404"`), as docs/sites.md writes them.
fn key_name(key: &str) -> String {
    let bare = !key.is_empty()
        && !key.bytes().all(|b| b.is_ascii_digit() || b == b' ')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_string()
    } else {
        string(key)
    }
}

fn array(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| string(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// A TOML string: literal ('…') when that needs no escapes and the text has
/// backslashes (regexes read better so), else a basic string with escapes.
pub fn string(text: &str) -> String {
    let literal_ok = !text.contains('\'') && !text.chars().any(char::is_control);
    if literal_ok && text.contains('\\') {
        return format!("'{text}'");
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
