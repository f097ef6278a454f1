//! Request headers that choose what to send: `Accept-Encoding` (which
//! precompressed sibling), the conditional headers (304) and `If-Range`.

use std::time::{SystemTime, UNIX_EPOCH};

use http::{header, HeaderMap};

/// A precompressed sibling file: `app.js.br` next to `app.js`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Brotli,
    Gzip,
}

impl Encoding {
    /// In order of preference when the client weighs them equally (brotli is smaller).
    pub(crate) const ALL: [Encoding; 2] = [Encoding::Brotli, Encoding::Gzip];

    pub(crate) fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// Appended to the file name, and to the ETag so each variant has its own.
    pub(super) fn suffix(self) -> &'static str {
        match self {
            Encoding::Brotli => ".br",
            Encoding::Gzip => ".gz",
        }
    }
}

/// The client's weight (q, in thousandths) for `enc`: 0 when not acceptable.
///
/// An explicit entry wins over `*`; `x-gzip` counts as `gzip` (RFC 9110 §8.4.1.3).
pub(crate) fn accepted_weight(headers: &HeaderMap, enc: Encoding) -> u16 {
    let mut explicit = None;
    let mut wildcard = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q = parts
                .find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| parse_q(v.trim()))
                })
                .unwrap_or(Some(1000));
            // A malformed weight makes the entry unusable, not acceptable.
            let q = q.unwrap_or(0);
            let names_it = coding.eq_ignore_ascii_case(enc.token())
                || (enc == Encoding::Gzip && coding.eq_ignore_ascii_case("x-gzip"));
            if names_it {
                explicit = Some(explicit.map_or(q, |e: u16| e.max(q)));
            } else if coding == "*" {
                wildcard = Some(q);
            }
        }
    }
    explicit.or(wildcard).unwrap_or(0)
}

/// `0`, `0.5`, `1`, `1.000` → thousandths; anything else is `None`.
fn parse_q(v: &str) -> Option<u16> {
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = match whole {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    (thousandths <= 1000).then_some(thousandths)
}

/// Validators of the file being sent.
#[derive(Debug, Clone)]
pub(super) struct Validators {
    /// Strong, quoted: `"<size hex>-<mtime hex>[.br|.gz]"`.
    pub etag: String,
    pub modified: Option<SystemTime>,
}

impl Validators {
    pub(super) fn new(len: u64, modified: Option<SystemTime>, enc: Option<Encoding>) -> Self {
        let nanos = modified
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let suffix = enc.map_or("", Encoding::suffix);
        Validators {
            etag: format!("\"{len:x}-{nanos:x}{suffix}\""),
            modified,
        }
    }

    /// RFC 9110 §13.2.2 for GET/HEAD: If-None-Match decides when present,
    /// else If-Modified-Since (at the one-second resolution of HTTP dates).
    pub(super) fn not_modified(&self, headers: &HeaderMap) -> bool {
        let mut saw_inm = false;
        for value in headers.get_all(header::IF_NONE_MATCH) {
            saw_inm = true;
            let Ok(value) = value.to_str() else { continue };
            // Weak comparison: W/ prefixes do not matter here.
            let ours = self.etag.as_str();
            if value
                .split(',')
                .map(|tag| tag.trim())
                .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == ours)
            {
                return true;
            }
        }
        if saw_inm {
            return false;
        }
        let since = headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        match (since, self.modified_secs()) {
            (Some(since), Some(modified)) => modified <= since,
            _ => false,
        }
    }

    /// `If-Range`: the range applies only if the client's copy is this one
    /// (strong ETag match, or exactly this Last-Modified date).
    pub(super) fn range_applies(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::IF_RANGE) else {
            return true;
        };
        let Ok(value) = value.to_str() else {
            return false;
        };
        let value = value.trim();
        if value.starts_with('"') {
            return value == self.etag;
        }
        match (httpdate::parse_http_date(value).ok(), self.modified_secs()) {
            (Some(date), Some(modified)) => date == modified,
            _ => false,
        }
    }

    /// The modification time cut to whole seconds, as HTTP dates carry it.
    fn modified_secs(&self) -> Option<SystemTime> {
        let secs = self.modified?.duration_since(UNIX_EPOCH).ok()?.as_secs();
        Some(UNIX_EPOCH + std::time::Duration::from_secs(secs))
    }

    pub(super) fn last_modified(&self) -> Option<String> {
        self.modified_secs().map(httpdate::fmt_http_date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::Duration;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn weights(ae: &str) -> (u16, u16) {
        let h = headers(&[(header::ACCEPT_ENCODING, ae)]);
        (
            accepted_weight(&h, Encoding::Brotli),
            accepted_weight(&h, Encoding::Gzip),
        )
    }

    #[test]
    fn accept_encoding() {
        assert_eq!(weights("gzip, deflate, br"), (1000, 1000));
        assert_eq!(weights("gzip"), (0, 1000));
        assert_eq!(weights("br;q=0, gzip;q=0.5"), (0, 500));
        assert_eq!(weights("BR;Q=0.8"), (800, 0));
        assert_eq!(weights("*"), (1000, 1000));
        assert_eq!(weights("*;q=0.1, br;q=0"), (0, 100));
        assert_eq!(weights("x-gzip"), (0, 1000));
        assert_eq!(weights("identity"), (0, 0));
        assert_eq!(weights("br;q=2, gzip;q=abc"), (0, 0));
        assert_eq!(weights(""), (0, 0));
        assert_eq!(accepted_weight(&HeaderMap::new(), Encoding::Gzip), 0);
    }

    #[test]
    fn q_values() {
        assert_eq!(parse_q("0"), Some(0));
        assert_eq!(parse_q("0.001"), Some(1));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(parse_q("0.0001"), None);
        assert_eq!(parse_q(""), None);
    }

    fn validators() -> Validators {
        let mtime = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        Validators::new(100, Some(mtime), None)
    }

    #[test]
    fn etags_differ_per_variant_and_change_with_the_file() {
        let mtime = UNIX_EPOCH + Duration::from_secs(5);
        let plain = Validators::new(10, Some(mtime), None).etag;
        let br = Validators::new(10, Some(mtime), Some(Encoding::Brotli)).etag;
        let bigger = Validators::new(11, Some(mtime), None).etag;
        let later = Validators::new(10, Some(mtime + Duration::from_nanos(1)), None).etag;
        assert!(plain.starts_with('"') && plain.ends_with('"'));
        assert_ne!(plain, br);
        assert_ne!(plain, bigger);
        assert_ne!(plain, later);
    }

    #[test]
    fn conditionals() {
        let v = validators();
        let lm = v.last_modified().unwrap();
        assert_eq!(lm, "Tue, 14 Nov 2023 22:13:20 GMT");
        let nm = |pairs: &[(header::HeaderName, &str)]| v.not_modified(&headers(pairs));
        assert!(nm(&[(header::IF_NONE_MATCH, &v.etag)]));
        assert!(nm(&[(
            header::IF_NONE_MATCH,
            &format!("\"x\", W/{}", v.etag)
        )]));
        assert!(nm(&[(header::IF_NONE_MATCH, "*")]));
        assert!(!nm(&[(header::IF_NONE_MATCH, "\"other\"")]));
        assert!(nm(&[(header::IF_MODIFIED_SINCE, &lm)]));
        assert!(nm(&[(
            header::IF_MODIFIED_SINCE,
            "Wed, 15 Nov 2023 00:00:00 GMT"
        )]));
        assert!(!nm(&[(
            header::IF_MODIFIED_SINCE,
            "Mon, 13 Nov 2023 00:00:00 GMT"
        )]));
        assert!(!nm(&[(header::IF_MODIFIED_SINCE, "yesterday")]));
        // If-None-Match decides alone when present.
        assert!(!nm(&[
            (header::IF_NONE_MATCH, "\"other\""),
            (header::IF_MODIFIED_SINCE, &lm)
        ]));
        assert!(!nm(&[]));
    }

    #[test]
    fn if_range() {
        let v = validators();
        let lm = v.last_modified().unwrap();
        let applies = |value: &str| v.range_applies(&headers(&[(header::IF_RANGE, value)]));
        assert!(v.range_applies(&HeaderMap::new()));
        assert!(applies(&v.etag));
        assert!(!applies(&format!("W/{}", v.etag)));
        assert!(!applies("\"stale\""));
        assert!(applies(&lm));
        assert!(!applies("Mon, 13 Nov 2023 00:00:00 GMT"));
        assert!(!applies("garbage"));
    }
}
