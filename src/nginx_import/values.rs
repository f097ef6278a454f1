//! nginx argument values → the gateway's: listen addresses, sizes, times,
//! variables, regexes and the location patterns the importer recognises.
//! Pure string work.

use std::net::IpAddr;

/// One `listen` directive, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// `0.0.0.0:80`, `[::]:443` or `unix:/path`.
    pub address: String,
    pub ssl: bool,
    pub default_server: bool,
}

/// Reads `listen`'s arguments; Err says why it cannot be mapped.
pub fn parse_listen(args: &[String]) -> Result<Listen, String> {
    let Some(first) = args.first() else {
        return Err("listen needs an address".into());
    };
    let address = listen_address(first)?;
    let mut listen = Listen {
        address,
        ssl: false,
        default_server: false,
    };
    for flag in &args[1..] {
        let name = flag.split('=').next().unwrap_or(flag);
        match name {
            "ssl" => listen.ssl = true,
            "default_server" | "default" => listen.default_server = true,
            // h2 is negotiated on TLS listeners by itself; the rest are
            // socket tunings with no visible behaviour.
            "http2" | "reuseport" | "ipv6only" | "backlog" | "deferred" | "bind" | "rcvbuf"
            | "sndbuf" | "so_keepalive" | "fastopen" | "accept_filter" | "setfib" => {}
            "quic" => return Err("HTTP/3 (quic) is not served by the gateway".into()),
            "proxy_protocol" => {
                return Err("the gateway does not read the PROXY protocol".into());
            }
            _ => return Err(format!("unknown listen parameter {flag}")),
        }
    }
    Ok(listen)
}

fn listen_address(text: &str) -> Result<String, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        return Ok(format!("unix:{path}"));
    }
    let (host, port) = split_host_port(text);
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| format!("bad port in {text}"))?,
        None => 80,
    };
    let host = match host {
        None | Some("*") => "0.0.0.0".to_string(),
        Some(h) if h.starts_with('[') => h.to_string(),
        Some(h) => match h.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => {
                return Err(format!(
                    "{h} is a host name; the gateway listens on IP addresses"
                ))
            }
        },
    };
    Ok(format!("{host}:{port}"))
}

/// `80` → (None, 80); `1.2.3.4` → (host, None); `[::]:80`; `*:80`.
fn split_host_port(text: &str) -> (Option<&str>, Option<&str>) {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return (None, Some(text));
    }
    if text.starts_with('[') {
        return match text.find("]:") {
            Some(end) => (Some(&text[..=end]), Some(&text[end + 2..])),
            None => (Some(text), None),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) => (Some(host), Some(port)),
        None => (Some(text), None),
    }
}

/// An upstream server's address as the gateway writes it.
pub fn upstream_address(text: &str) -> Result<String, String> {
    if text.contains('$') {
        return Err("an address made of variables".into());
    }
    if let Some(path) = text.strip_prefix("unix:") {
        return Ok(format!("unix:{path}"));
    }
    let (host, port) = split_host_port(text);
    match (host, port) {
        (Some(host), Some(port)) if port.parse::<u16>().is_ok() => Ok(format!("tcp:{host}:{port}")),
        // nginx's default port for a bare host.
        (Some(host), None) => Ok(format!("tcp:{host}:80")),
        _ => Err(format!("cannot read address {text}")),
    }
}

/// nginx size (`64m`, `1k`, `1024`) → the gateway's (`64M`). `0` (no limit) has none.
pub fn size(text: &str) -> Result<String, String> {
    let (digits, unit) = text.split_at(
        text.trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .len(),
    );
    let value: u64 = digits.parse().map_err(|_| format!("bad size {text}"))?;
    if value == 0 {
        return Err("0 (no limit) has no equivalent: the gateway always has one".into());
    }
    match unit.to_ascii_lowercase().as_str() {
        "" => Ok(value.to_string()),
        "k" => Ok(format!("{value}k")),
        "m" => Ok(format!("{value}M")),
        "g" => Ok(format!("{value}G")),
        _ => Err(format!("bad size {text}")),
    }
}

/// nginx time (`300`, `30s`, `1m30s`, `500ms`, `2d`) in milliseconds.
pub fn time_ms(text: &str) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return None;
        }
        let value: u64 = rest[..digits_end].parse().ok()?;
        rest = &rest[digits_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let per_unit: u64 = match &rest[..unit_end] {
            "ms" => 1,
            // A bare number is seconds.
            "" | "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "M" => 2_592_000_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total = total.checked_add(value.checked_mul(per_unit)?)?;
    }
    Some(total)
}

/// A duration in the gateway's form: whole seconds when it is, else ms.
pub fn duration(text: &str) -> Result<String, String> {
    match time_ms(text) {
        Some(0) | None => Err(format!("cannot read time {text}")),
        Some(ms) if ms % 1000 == 0 => Ok(format!("{}s", ms / 1000)),
        Some(ms) => Ok(format!("{ms}ms")),
    }
}

/// `expires` → a Cache-Control value (None for `off`).
pub fn expires_cache_control(args: &[String]) -> Result<Option<String>, String> {
    let Some(value) = args.last() else {
        return Err("expires needs a time".into());
    };
    if args.len() != 1 {
        return Err("\"modified\" expiry has no equivalent".into());
    }
    match value.as_str() {
        "off" => Ok(None),
        // nginx's `max`: ten years.
        "max" => Ok(Some("max-age=315360000".into())),
        "epoch" => Ok(Some("no-cache".into())),
        v if v.starts_with('-') => Ok(Some("no-cache".into())),
        v if v.starts_with('@') => Err("a time of day has no equivalent".into()),
        v => match time_ms(v) {
            Some(ms) => Ok(Some(format!("max-age={}", ms / 1000))),
            None => Err(format!("cannot read time {v}")),
        },
    }
}

/// The nginx variables in `text` (`$name` and `${name}`), by name.
pub fn variables(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let name = match rest.strip_prefix('{') {
            Some(inner) => inner.split('}').next().unwrap_or(""),
            None => {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            }
        };
        out.push(name);
    }
    out
}

/// Variables a `[[redirect]]`'s `to` may hold (docs/sites.md).
const REDIRECT_VARIABLES: &[&str] = &[
    "scheme",
    "host",
    "server_name",
    "request_uri",
    "uri",
    "args",
    "query_string",
];

/// A redirect target the gateway can express, with `${x}` written `$x`;
/// Err names the variable it cannot.
pub fn redirect_target(text: &str) -> Result<String, String> {
    for name in variables(text) {
        if !REDIRECT_VARIABLES.contains(&name) {
            return Err(format!(
                "${name} is not one of the variables a redirect may use"
            ));
        }
    }
    let mut out = text.to_string();
    for name in REDIRECT_VARIABLES {
        out = out.replace(&format!("${{{name}}}"), &format!("${name}"));
    }
    Ok(out)
}

/// Why a PCRE pattern cannot be a Rust `regex`, if it cannot.
pub fn regex_unsupported(pattern: &str) -> Option<&'static str> {
    const LOOK_AROUND: &[&str] = &["(?=", "(?!", "(?<=", "(?<!"];
    if LOOK_AROUND.iter().any(|p| pattern.contains(p)) {
        return Some("look-around, which Rust's regex has not");
    }
    if pattern.contains("(?>") || pattern.contains("*+") || pattern.contains("++") {
        return Some("atomic groups or possessive quantifiers, which Rust's regex has not");
    }
    let bytes = pattern.as_bytes();
    let backref = bytes
        .windows(2)
        .enumerate()
        .any(|(i, w)| w[0] == b'\\' && w[1].is_ascii_digit() && !is_escaped(bytes, i));
    if backref || pattern.contains("(?P=") || pattern.contains("\\k<") {
        return Some("back-references, which Rust's regex has not");
    }
    None
}

/// Whether the byte at `i` is itself escaped by an odd run of backslashes.
fn is_escaped(bytes: &[u8], i: usize) -> bool {
    bytes[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

/// nginx's dotfile idiom (`/\.(?!well-known).*` and its spellings): the
/// gateway already answers 404 for dotfiles other than /.well-known.
pub fn is_dotfile_idiom(pattern: &str) -> bool {
    let rest = pattern.trim_start_matches('^');
    let rest = rest.strip_prefix(".*").unwrap_or(rest);
    let Some(rest) = rest.strip_prefix(r"/\.(?!well-known") else {
        return false;
    };
    matches!(
        rest,
        ")" | ").*" | r"\/)" | "/)" | r"\/).*" | "/).*" | ")(.*)"
    )
}

/// The extensions a static-file location names: `\.(css|js)$`,
/// `\.(?:css|js)$`, `.+\.(css)$`, `\.css$`; None for any other shape.
pub fn extension_pattern(pattern: &str) -> Option<Vec<String>> {
    let rest = pattern.trim_start_matches('^');
    let rest = rest
        .strip_prefix(".+")
        .or_else(|| rest.strip_prefix(".*"))
        .unwrap_or(rest);
    let inner = rest.strip_prefix(r"\.")?.strip_suffix('$')?;
    let inner = match inner
        .strip_prefix("(?:")
        .or_else(|| inner.strip_prefix('('))
    {
        Some(group) => group.strip_suffix(')')?,
        None => inner,
    };
    let exts: Vec<String> = inner.split('|').map(str::to_ascii_lowercase).collect();
    let plain = |e: &String| !e.is_empty() && e.bytes().all(|b| b.is_ascii_alphanumeric());
    exts.iter().all(plain).then_some(exts)
}

/// What a location regex that passes to PHP runs: every `.php` file
/// (`Any`), only one script (`Only("/index.php")`), or something else.
#[derive(Debug, PartialEq, Eq)]
pub enum PhpPattern {
    Any,
    Only(String),
}

pub fn php_pattern(pattern: &str) -> Option<PhpPattern> {
    const ANY: &[&str] = &[
        r"\.php$",
        r"\.php(/|$)",
        r"[^/]\.php(/|$)",
        r"\.php(/.*)?$",
        r"\.php(?:/|$)",
        r"^(.+\.php)(/.+)$",
        r"^(.+\.php)(/.*)$",
        r"^(.+\.php)(.*)$",
        r"^.+\.php(/|$)",
        r".+\.php(/|$)",
        r"\.php",
    ];
    if ANY.contains(&pattern) {
        return Some(PhpPattern::Any);
    }
    let name = pattern.strip_prefix("^/")?;
    let stem_end = name.find(r"\.php")?;
    let (stem, suffix) = name.split_at(stem_end);
    let plain_stem = !stem.is_empty()
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let suffix_ok = matches!(
        suffix,
        r"\.php$" | r"\.php(/|$)" | r"\.php(?:/|$)" | r"\.php(/.*)?$"
    );
    (plain_stem && suffix_ok).then(|| PhpPattern::Only(format!("/{stem}.php")))
}

/// The PATH_INFO split regexes that mean what the gateway does itself.
pub fn is_usual_split_path_info(pattern: &str) -> bool {
    matches!(
        pattern,
        r"^(.+\.php)(/.+)$" | r"^(.+?\.php)(/.*)$" | r"^(.+\.php)(/.*)$" | r"^(.+?\.php)(/.+)$"
    )
}

/// A literal path as a regex matching it (for prefix and exact locations).
pub fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
#[path = "values_tests.rs"]
mod tests;
