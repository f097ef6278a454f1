//! Parsers for the value syntaxes shared by flags and the config file.
//!
//! Each returns a one-line reason on failure; the caller adds which flag or
//! key it came from, so the same text serves both.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Where the gateway accepts HTTP connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// `HOST:PORT`: TLS when a certificate is configured, else plain HTTP.
    /// The config resolves it to `Https` when `tls-cert` is set, so after
    /// loading it always means plain HTTP (and h2c).
    Tcp(SocketAddr),
    /// `http://HOST:PORT`: plain HTTP (and h2c), even with a certificate.
    Http(SocketAddr),
    /// `https://HOST:PORT`: TLS (h2 or http/1.1 by ALPN); needs `tls-cert`.
    Https(SocketAddr),
    Unix(PathBuf),
}

impl ListenAddr {
    /// Whether connections to it are TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, ListenAddr::Https(_))
    }
}

impl FromStr for ListenAddr {
    type Err = String;

    /// `127.0.0.1:8080`, `[::1]:8080`, `http://HOST:PORT`, `https://HOST:PORT`,
    /// `unix:/path`; `tcp:` is accepted as a prefix too, so the upstream
    /// spelling works here as well.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(format!("`{s}`: the unix socket path is empty"));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        let bad = || {
            format!(
                "`{s}`: expected ip:port (e.g. 127.0.0.1:8080, [::1]:8080), \
                 http://ip:port, https://ip:port or unix:/path/to.sock"
            )
        };
        // A pasted URL may end in "/"; any other path means nothing here.
        let url = |rest: &str| {
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            rest.parse::<SocketAddr>().map_err(|_| bad())
        };
        if let Some(rest) = s.strip_prefix("https://") {
            return url(rest).map(ListenAddr::Https);
        }
        if let Some(rest) = s.strip_prefix("http://") {
            return url(rest).map(ListenAddr::Http);
        }
        let tcp = s.strip_prefix("tcp:").unwrap_or(s);
        tcp.parse::<SocketAddr>()
            .map(ListenAddr::Tcp)
            .map_err(|_| bad())
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // SocketAddr already brackets IPv6 hosts.
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Http(addr) => write!(f, "http://{addr}"),
            ListenAddr::Https(addr) => write!(f, "https://{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

const DURATION_HINT: &str = "(use e.g. 3s, 500ms, 2m)";

/// Parses `500ms`, `3s`, `2m`, `1h`, with an optional decimal part (`1.5s`,
/// `0.2ms`); `us` (or `µs`) for microseconds, e.g. `200us`.
///
/// A number without a unit is rejected: a bare `30` is ambiguous between
/// seconds and milliseconds, and guessing wrong is a silent misconfiguration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration {DURATION_HINT}");
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    // Digits are required on both sides of a dot, so `.5s` and `1.s` fail.
    let frac_ok = !number.contains('.') || (!frac.is_empty() && !frac.contains('.'));
    if whole.is_empty() || !frac_ok {
        return Err(bad());
    }
    let unit_nanos: u128 = match unit.trim_start() {
        "" => return Err(format!("{s:?}: missing unit {DURATION_HINT}")),
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(bad()),
    };
    let too_large = || format!("{s:?} is too large");
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    // Digits past nanosecond precision cannot change the result.
    let frac = &frac[..frac.len().min(9)];
    let frac_nanos = match frac {
        "" => 0,
        digits => {
            let value: u128 = digits.parse().map_err(|_| bad())?;
            value * unit_nanos / 10u128.pow(digits.len() as u32)
        }
    };
    let nanos = whole
        .checked_mul(unit_nanos)
        .and_then(|n| n.checked_add(frac_nanos))
        .ok_or_else(too_large)?;
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| too_large())
}

/// Parses a byte count: `1048576`, or with a binary suffix `512k`, `16M`,
/// `1G` (case-insensitive; `KiB`/`MiB`/`GiB` also accepted).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a size (use e.g. 1048576, 512k, 16M, 1G)");
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    if number.is_empty() {
        return Err(bad());
    }
    let multiplier: u64 = match suffix.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    let too_large = || format!("{s:?} is too large");
    // Only digits remain, so a parse failure can only be overflow.
    let n: u64 = number.parse().map_err(|_| too_large())?;
    n.checked_mul(multiplier).ok_or_else(too_large)
}

/// A count that must be at least 1 (connection limits).
/// How slow a request may be before upstream pipelining pauses, by default.
pub const PIPELINING_SLOW_DEFAULT: Duration = Duration::from_millis(10);

/// `upstream-pipelining`: `off` (None), `on` (the default threshold) or the
/// threshold itself, a duration.
pub(crate) fn parse_pipelining(s: &str) -> Result<Option<Duration>, String> {
    match s.trim() {
        "on" => Ok(Some(PIPELINING_SLOW_DEFAULT)),
        "off" => Ok(None),
        other => parse_duration(other)
            .and_then(check_timeout)
            .map(Some)
            .map_err(|_| format!("{other:?} is not on, off or a duration {DURATION_HINT}")),
    }
}

/// The longest `idle-poll`: a thread burns up to this much CPU after each
/// burst of work.
const IDLE_POLL_MAX: Duration = Duration::from_millis(10);

pub(crate) fn parse_idle_poll(s: &str) -> Result<Duration, String> {
    match s.trim() {
        "off" => Ok(Duration::ZERO),
        other => {
            let d = parse_duration(other)
                .map_err(|_| format!("{other:?} is not off or a duration {DURATION_HINT}"))?;
            if d > IDLE_POLL_MAX {
                return Err(format!(
                    "{other:?} is longer than {IDLE_POLL_MAX:?}: a thread would burn its CPU \
                     that long after each burst of work"
                ));
            }
            Ok(d)
        }
    }
}

pub(crate) fn parse_count(s: &str) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))?;
    check_count(n)
}

pub(crate) fn parse_count_or_zero(s: &str) -> Result<usize, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))
}

/// hyper's HTTP/1 parser refuses longer request targets itself (414).
pub(crate) const MAX_URI_LENGTH_CEILING: usize = 65_534;

/// `--max-uri-length`: a size from 1 byte up to what hyper can parse.
pub(crate) fn parse_uri_limit(s: &str) -> Result<usize, String> {
    check_uri_limit(parse_size(s)?)
}

pub(crate) fn check_uri_limit(n: u64) -> Result<usize, String> {
    match usize::try_from(n) {
        Ok(n) if (1..=MAX_URI_LENGTH_CEILING).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be between 1 and {MAX_URI_LENGTH_CEILING} bytes (the HTTP parser's own limit)"
        )),
    }
}

/// Header blocks are buffered whole, so the size is capped to keep a
/// misconfiguration from letting each connection hold megabytes.
pub(crate) const MAX_HEADER_SIZE_CEILING: usize = 1 << 20;

/// `--max-header-size`: a size from 1 byte to 1 MiB.
pub(crate) fn parse_head_limit(s: &str) -> Result<usize, String> {
    check_head_limit(parse_size(s)?)
}

pub(crate) fn check_head_limit(n: u64) -> Result<usize, String> {
    match usize::try_from(n) {
        Ok(n) if (1..=MAX_HEADER_SIZE_CEILING).contains(&n) => Ok(n),
        _ => Err("must be between 1 byte and 1M".to_owned()),
    }
}

/// `--internal-location`: a URI path prefix such as `/protected`, stored
/// without its trailing slash; it must name a directory below the root.
pub(crate) fn check_internal_location(path: &str) -> Result<String, String> {
    let bad = |why: &str| format!("`{path}`: {why}");
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad(
            "must be a URL path starting with `/` (e.g. /protected)",
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err(bad("`/` would hide the whole site"));
    }
    for segment in rest.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(bad("must be a plain path (no empty, `.` or `..` segments)"));
        }
        if segment.contains(['\\', '\0', '\r', '\n', '?', '#', '%']) {
            return Err(bad(
                "must be a decoded path without `\\`, `?`, `#`, `%` or control characters",
            ));
        }
    }
    Ok(format!("/{rest}"))
}

/// The status page is requested as a script path, like php-fpm's own
/// `pm.status_path`.
pub(crate) fn check_status_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') || path.contains(['?', '#', '\0']) {
        return Err(format!(
            "`{path}` must be a URL path starting with `/` (e.g. /status)"
        ));
    }
    Ok(path.to_owned())
}

pub(crate) fn check_count(n: usize) -> Result<usize, String> {
    if n == 0 {
        return Err("must be at least 1".to_owned());
    }
    Ok(n)
}

/// Timeouts of zero would fail every request, so they are refused; the grace
/// period may be zero (stop without draining).
pub(crate) fn check_timeout(d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        return Err("must be greater than 0s".to_owned());
    }
    Ok(d)
}

/// Index names are looked up inside a directory, so a path would let the
/// index escape it or be ambiguous.
pub(crate) fn check_index(name: &str) -> Result<String, String> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(format!("`{name}` must be a plain file name (no `/`)"));
    }
    Ok(name.to_owned())
}

pub(crate) fn check_front_controller(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!(
            "`{path}` must be a URL path starting with `/` (e.g. /index.php)"
        ));
    }
    Ok(path.to_owned())
}

/// A file extension, given with or without its dot; stored lowercase without it.
/// A dot inside would never match (extensions are what follows the last dot).
pub(crate) fn check_ext(ext: &str) -> Result<String, String> {
    let bare = ext.strip_prefix('.').unwrap_or(ext);
    if bare.is_empty()
        || bare
            .bytes()
            .any(|b| matches!(b, b'.' | b'/' | b'\\' | b'\0') || b.is_ascii_whitespace())
    {
        return Err(format!(
            "`{ext}` must be a file extension such as `inc` or `.inc`"
        ));
    }
    Ok(bare.to_ascii_lowercase())
}

/// A Cache-Control value must be a valid, non-empty header value.
pub(crate) fn check_cache_control(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() || http::HeaderValue::from_str(value).is_err() {
        return Err(format!(
            "{value:?} is not a Cache-Control value (e.g. \"max-age=3600\")"
        ));
    }
    Ok(value.to_owned())
}

/// `--cache-control EXT=VALUE`, e.g. `css=max-age=3600` (the value may hold `=`).
pub(crate) fn parse_cache_control_flag(s: &str) -> Result<(String, String), String> {
    let Some((ext, value)) = s.split_once('=') else {
        return Err(format!("`{s}`: expected EXT=VALUE, e.g. css=max-age=3600"));
    };
    Ok((check_ext(ext)?, check_cache_control(value)?))
}

pub(crate) fn check_server_name(name: &str) -> Result<String, String> {
    if name.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(name.to_owned())
}

/// A level (`error`..`trace`) or a filter directive such as
/// `info,fcgi_gateway=debug`; the directive grammar is the logger's business,
/// so only emptiness is checked here.
pub(crate) fn check_log_level(level: &str) -> Result<String, String> {
    let level = level.trim();
    if level.is_empty() {
        return Err(
            "must not be empty (use error, warn, info, debug, trace or a filter directive)"
                .to_owned(),
        );
    }
    Ok(level.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.25m"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("200us"), Ok(Duration::from_micros(200)));
        assert_eq!(parse_duration("200µs"), Ok(Duration::from_micros(200)));
        assert_eq!(parse_duration("0.2ms"), Ok(Duration::from_micros(200)));
        assert_eq!(parse_duration("1.5us"), Ok(Duration::from_nanos(1500)));
        assert_eq!(parse_duration("0.0001ms"), Ok(Duration::from_nanos(100)));
        assert_eq!(parse_duration(" 10 s "), Ok(Duration::from_secs(10)));
        assert_eq!(
            parse_duration("1.0000000001s"),
            Ok(Duration::from_secs(1)),
            "sub-nanosecond digits are ignored"
        );
    }

    #[test]
    fn bad_durations() {
        assert_eq!(
            parse_duration("5x"),
            Err(r#""5x" is not a duration (use e.g. 3s, 500ms, 2m)"#.to_owned())
        );
        let missing = parse_duration("30").unwrap_err();
        assert!(missing.contains("missing unit"), "{missing}");
        for bad in [
            "", "s", "-1s", "1.s", ".5s", "1..5s", "1.2.3s", "3 sec", "3S", "1m30s", "abc", "2u",
            "2US", "5ns", "us",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        let huge = parse_duration("99999999999999999999999h").unwrap_err();
        assert!(huge.contains("too large"), "{huge}");
        let huge = parse_duration("9999999999999h").unwrap_err();
        assert!(huge.contains("too large"), "{huge}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("10k"), Ok(10 * 1024));
        assert_eq!(parse_size("10K"), Ok(10 * 1024));
        assert_eq!(parse_size("16M"), Ok(16 * 1024 * 1024));
        assert_eq!(parse_size("16m"), Ok(16 * 1024 * 1024));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("100b"), Ok(100));
    }

    #[test]
    fn bad_sizes() {
        for bad in ["", "k", "-1", "1.5M", "10x", "10 KB", "1T", "M16"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains("is not a size"), "{bad:?}: {err}");
        }
        let huge = parse_size("99999999999999999999").unwrap_err();
        assert!(huge.contains("too large"), "{huge}");
        let huge = parse_size("17179869184G").unwrap_err();
        assert!(huge.contains("too large"), "{huge}");
    }

    #[test]
    fn listen_addrs() {
        assert_eq!(
            "127.0.0.1:8080".parse(),
            Ok(ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 8080))))
        );
        assert_eq!(
            "[::1]:8080".parse(),
            Ok(ListenAddr::Tcp("[::1]:8080".parse().unwrap()))
        );
        assert_eq!(
            "tcp:0.0.0.0:0".parse(),
            Ok(ListenAddr::Tcp(SocketAddr::from(([0, 0, 0, 0], 0))))
        );
        assert_eq!(
            "unix:/run/gw.sock".parse(),
            Ok(ListenAddr::Unix("/run/gw.sock".into()))
        );
        assert_eq!(
            "http://127.0.0.1:8080".parse(),
            Ok(ListenAddr::Http(SocketAddr::from(([127, 0, 0, 1], 8080))))
        );
        assert_eq!(
            "https://[::1]:8443/".parse(),
            Ok(ListenAddr::Https("[::1]:8443".parse().unwrap()))
        );
        for s in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "unix:/run/gw.sock",
            "http://127.0.0.1:8080",
            "https://[::1]:8443",
        ] {
            let addr: ListenAddr = s.parse().unwrap();
            assert_eq!(addr.to_string(), s);
        }
    }

    #[test]
    fn bad_listen_addrs() {
        for bad in [
            "",
            "8080",
            "localhost:8080",
            "127.0.0.1",
            "::1:8080",
            "127.0.0.1:70000",
            "unix:",
            "http://localhost:8080",
            "https://127.0.0.1",
            "https://127.0.0.1:8443/x",
            "ftp://127.0.0.1:21",
            "127.0.0.1:8080/",
        ] {
            let err = bad.parse::<ListenAddr>().unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn checks() {
        assert_eq!(parse_count("8"), Ok(8));
        assert!(parse_count("0").is_err());
        assert!(parse_count("-1").is_err());
        assert!(parse_count("lots").is_err());
        assert!(check_timeout(Duration::ZERO).is_err());
        for bad in ["", ".", "..", "a/b.php", "/index.php"] {
            assert!(check_index(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(check_index("app.php"), Ok("app.php".to_owned()));
        assert!(check_front_controller("index.php").is_err());
        assert!(check_front_controller("/index.php").is_ok());
        assert!(check_server_name(" ").is_err());
        assert!(check_log_level(" ").is_err());
        assert_eq!(check_ext(".INC"), Ok("inc".to_owned()));
        assert_eq!(check_ext("phtml"), Ok("phtml".to_owned()));
        for bad in ["", ".", "tar.gz", "a/b", "a b", ".."] {
            assert!(check_ext(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            parse_cache_control_flag("CSS=public, max-age=60"),
            Ok(("css".to_owned(), "public, max-age=60".to_owned()))
        );
        assert_eq!(
            parse_cache_control_flag("js=a=b"),
            Ok(("js".to_owned(), "a=b".to_owned()))
        );
        for bad in ["css", "=max-age=1", "css=", "css=a\u{7f}b"] {
            assert!(parse_cache_control_flag(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(check_log_level(" debug "), Ok("debug".to_owned()));
        assert_eq!(
            check_internal_location("/protected/"),
            Ok("/protected".to_owned())
        );
        assert_eq!(check_internal_location("/a/b"), Ok("/a/b".to_owned()));
        for bad in [
            "",
            "/",
            "protected",
            "/a//b",
            "/a/../b",
            "/./a",
            "/a%2f",
            "/a?x",
        ] {
            assert!(check_internal_location(bad).is_err(), "{bad:?} accepted");
        }
    }
}
