//! Pure text work on request paths: percent-decoding, normalisation, name
//! tests (PHP, hidden, extensions) and re-encoding for a `Location`.
//! No file system access here.

use std::borrow::Cow;

/// The one dot-directory that is public (RFC 8615: ACME challenges, security.txt...).
pub(super) const WELL_KNOWN: &str = ".well-known";

/// Percent-decodes `raw`; borrows when there is nothing to decode (the common
/// case), so a plain path costs no allocation here.
pub fn percent_decode(raw: &str) -> Result<Cow<'_, str>, &'static str> {
    let bytes = raw.as_bytes();
    let Some(first) = bytes.iter().position(|&b| b == b'%') else {
        return Ok(Cow::Borrowed(raw));
    };
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..first]);
    let mut i = first;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err("malformed percent-encoding in path");
            };
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    // Strict UTF-8 validation also refuses overlong forms such as %c0%ae ('.'),
    // which would otherwise smuggle a dot segment past the normaliser.
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| "path is not valid UTF-8")
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Resolves `.`/`..`, collapses repeated slashes and refuses dangerous bytes.
///
/// The result starts with '/', has no empty, `.` or `..` segment, and keeps a
/// trailing '/' when the decoded path ended in a directory-ish way (`/`, `/.`,
/// `/..`) — the only state later steps need about the original form.
pub fn normalise(decoded: &str) -> Result<String, &'static str> {
    for b in decoded.bytes() {
        match b {
            // NUL truncates C strings in php-fpm; CR/LF in PATH_INFO is the
            // CVE-2019-11043 trigger and would also split CGI params.
            b'\0' | b'\r' | b'\n' => return Err("control character in path"),
            // Windows-style separators would mean something else to some filesystems.
            b'\\' => return Err("backslash in path"),
            _ => {}
        }
    }
    if !decoded.starts_with('/') {
        return Err("path does not start with '/'");
    }
    // Most paths have nothing to resolve: they are their own normal form.
    if !has_dot_or_empty_segment(decoded) {
        return Ok(decoded.to_owned());
    }
    resolve_segments(decoded)
}

/// Whether `path` (starting with '/') has an empty, `.` or `..` segment
/// before its last character: one `resolve_segments` would change. A
/// single trailing '/' is kept as it is.
fn has_dot_or_empty_segment(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        b == b'/'
            && matches!(
                bytes.get(i + 1..),
                Some(
                    [b'/', ..] | [b'.'] | [b'.', b'/', ..] | [b'.', b'.'] | [b'.', b'.', b'/', ..]
                )
            )
    })
}

/// `normalise` after its checks, segment by segment.
fn resolve_segments(decoded: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(decoded.len());
    let mut trailing_slash = false;
    // `%2f` was decoded already, so it separates segments here (as in nginx).
    for segment in decoded.split('/') {
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                if out.is_empty() {
                    return Err("path escapes the document root");
                }
                // `out` is "" or "/a/b…", so a '/' is always there; 0 as a fallback is harmless.
                let parent = out.rfind('/').unwrap_or(0);
                out.truncate(parent);
            }
            _ => {
                out.push('/');
                out.push_str(segment);
            }
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// Byte offset just past the first segment ending in `.php` (ASCII,
/// case-insensitive), if any. Only the first counts: a later `.php` segment is
/// PATH_INFO, never a fallback script.
pub(super) fn first_php_segment_end(path: &str) -> Option<usize> {
    let mut start = 1;
    while start < path.len() {
        let end = path[start..].find('/').map_or(path.len(), |i| start + i);
        if is_php_name(&path[start..end]) {
            return Some(end);
        }
        start = end + 1;
    }
    None
}

/// Compares bytes, not chars, so look-alikes such as fullwidth `.ｐｈｐ` never match.
pub(super) fn is_php_name(name: &str) -> bool {
    has_extension(name, "php")
}

/// Whether `name` ends in `.` + `ext`, compared as ASCII bytes (case-insensitive).
pub(super) fn has_extension(name: &str, ext: &str) -> bool {
    name.len()
        .checked_sub(ext.len() + 1)
        .and_then(|i| name.as_bytes().get(i..))
        .and_then(|tail| tail.split_first())
        .is_some_and(|(dot, rest)| *dot == b'.' && rest.eq_ignore_ascii_case(ext.as_bytes()))
}

/// A segment starting with '.' (`/.env`, `/.git/config`) anywhere in a
/// normalised path, except a leading `/.well-known/`.
pub(super) fn has_hidden_segment(path: &str) -> bool {
    // Most paths have no "/." at all.
    path.as_bytes().windows(2).any(|pair| pair == b"/.") && has_hidden_by_segments(path)
}

/// `has_hidden_segment`, segment by segment.
fn has_hidden_by_segments(path: &str) -> bool {
    path.split('/')
        .enumerate()
        .any(|(i, seg)| seg.starts_with('.') && !(i == 1 && seg == WELL_KNOWN))
}

/// A single, non-empty path segment that cannot move up or across directories.
pub(super) fn is_plain_segment(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| matches!(b, b'/' | b'\\' | b'\0'))
}

/// `Location` for a directory asked for without its trailing slash: the
/// normalised path re-encoded, a '/', and the query as the client sent it.
///
/// The normalised path never starts with `//`, so the value cannot be read
/// as a protocol-relative URL pointing at another host.
pub fn slash_location(path: &str, query: Option<&str>) -> String {
    let mut out = String::with_capacity(path.len() + 2 + query.map_or(0, str::len));
    for &b in path.as_bytes() {
        // RFC 3986 pchar plus '/': unreserved, sub-delims, ':' and '@'.
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
            );
        if keep {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out.push('/');
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_taken_as_normal_are_what_resolving_them_gives() {
        // Every path of up to 4 segments drawn from these, with and without
        // a trailing '/': the shortcut must never skip a change.
        let parts = ["", ".", "..", "a", ".b", "..c", "...", "d."];
        let mut paths = vec![String::from("/")];
        for depth in 1..=4u32 {
            for n in 0..parts.len().pow(depth) {
                let mut path = String::new();
                let mut k = n;
                for _ in 0..depth {
                    path.push('/');
                    path.push_str(parts[k % parts.len()]);
                    k /= parts.len();
                }
                paths.push(path.clone());
                path.push('/');
                paths.push(path);
            }
        }
        for path in &paths {
            assert_eq!(normalise(path), resolve_segments(path), "{path}");
            assert_eq!(
                has_hidden_segment(path),
                has_hidden_by_segments(path),
                "{path}"
            );
        }
    }

    #[test]
    fn normalise_shapes() {
        let cases = [
            ("/", "/"),
            ("//", "/"),
            ("/.", "/"),
            ("/a/..", "/"),
            ("/a//b///c", "/a/b/c"),
            ("/a/b/", "/a/b/"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/c/..", "/a/b/"),
            ("/a/./b/../c", "/a/c"),
            ("/a/.../b", "/a/.../b"),
            ("/a/..b/", "/a/..b/"),
        ];
        for (input, want) in cases {
            assert_eq!(normalise(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn php_segment_split_points() {
        assert_eq!(first_php_segment_end("/a.php"), Some(6));
        assert_eq!(first_php_segment_end("/a.php/b.php"), Some(6));
        assert_eq!(first_php_segment_end("/dir/x.Php/"), Some(10));
        assert_eq!(first_php_segment_end("/a.phpx/b"), None);
        assert_eq!(first_php_segment_end("/php/"), None);
        assert_eq!(first_php_segment_end("/"), None);
    }

    #[test]
    fn unicode_folding_never_makes_php() {
        assert!(is_php_name("x.PHP"));
        assert!(!is_php_name("fw.\u{ff50}\u{ff48}\u{ff50}"));
        assert!(!is_php_name(".\u{ff30}HP"));
        // 'K' (Kelvin sign) folds to 'k' under Unicode rules, never under ASCII.
        assert!(!has_extension("x.\u{212a}", "k"));
        assert!(!is_php_name("php"));
        assert!(!is_php_name("xphp"));
    }

    #[test]
    fn extensions() {
        assert!(has_extension("a.inc", "inc"));
        assert!(has_extension("a.INC", "inc"));
        assert!(has_extension(".inc", "inc"));
        assert!(!has_extension("a.inc.txt", "inc"));
        assert!(!has_extension("ainc", "inc"));
        assert!(!has_extension("", "inc"));
    }

    #[test]
    fn hidden_segments() {
        for hidden in [
            "/.env",
            "/.git/config",
            "/a/.htaccess",
            "/.well-known/.x",
            "/x/.well-known/a",
        ] {
            assert!(has_hidden_segment(hidden), "{hidden}");
        }
        for visible in [
            "/",
            "/a/b.c",
            "/.well-known/x.txt",
            "/.well-known/",
            "/a.b/c",
        ] {
            assert!(!has_hidden_segment(visible), "{visible}");
        }
    }

    #[test]
    fn locations_are_encoded_and_keep_the_query() {
        assert_eq!(slash_location("/docs", None), "/docs/");
        assert_eq!(slash_location("/docs", Some("")), "/docs/");
        assert_eq!(
            slash_location("/docs", Some("a=1&b=%2F")),
            "/docs/?a=1&b=%2F"
        );
        assert_eq!(slash_location("/a b/é?#%", None), "/a%20b/%C3%A9%3F%23%25/");
    }
}
