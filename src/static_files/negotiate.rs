//! Request headers that choose what to send: `Accept-Encoding` (which
//! precompressed sibling), the conditional headers (304) and `If-Range`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use headers::{ETag, Header, HeaderMapExt, IfModifiedSince, IfNoneMatch, IfRange, LastModified};
use http::{header, HeaderMap, HeaderValue};

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
///
/// Read here by hand: `headers` 0.4 has no `AcceptEncoding` in its API (its
/// draft sits among the crate's disabled sources, not compiled), and none of
/// its types exposes q-values. `compress` weighs encodings with this too.
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

/// Validators of the file being sent. The conditionals are read and
/// evaluated with the `headers` crate's typed headers (RFC 9110 §13).
#[derive(Debug, Clone)]
pub(super) struct Validators {
    /// Strong: `"<size hex>-<mtime nanos hex>[.br|.gz]"`. Kept as the value
    /// sent; typed as `headers::ETag` only when a conditional asks, which
    /// spares the common request a parse and a copy.
    etag: HeaderValue,
    /// The modification time cut to whole seconds, as HTTP dates carry it;
    /// none when it cannot be written as one (before 1970, after 9999).
    modified: Option<SystemTime>,
    /// `modified` as the Last-Modified header value.
    last_modified: Option<HeaderValue>,
}

/// The validators of the files this thread served last: writing a date
/// and a hex ETag costs more than the rest of a small file's answer, and
/// hot files are asked for again and again. Per thread, so no lock and no
/// shared cache line; a slot per hash of the file's identity.
mod recent {
    use std::cell::RefCell;

    use super::Validators;

    const SLOTS: usize = 64;

    type Key = (u64, u128, &'static str);

    thread_local! {
        static RECENT: RefCell<Vec<Option<(Key, Validators)>>> =
            RefCell::new(vec![None; SLOTS]);
    }

    fn slot((len, nanos, suffix): Key) -> usize {
        let mixed = (nanos as u64 ^ (nanos >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ len.rotate_left(17)
            ^ suffix.len() as u64;
        (mixed >> 58) as usize % SLOTS
    }

    pub(super) fn get(key: Key) -> Option<Validators> {
        RECENT.with(|recent| match &recent.borrow()[slot(key)] {
            Some((k, v)) if *k == key => Some(v.clone()),
            _ => None,
        })
    }

    pub(super) fn put(key: Key, validators: &Validators) {
        RECENT.with(|recent| {
            recent.borrow_mut()[slot(key)] = Some((key, validators.clone()));
        });
    }
}

impl Validators {
    pub(super) fn new(len: u64, modified: Option<SystemTime>, enc: Option<Encoding>) -> Self {
        let since_epoch = modified.and_then(|m| m.duration_since(UNIX_EPOCH).ok());
        let nanos = since_epoch.map_or(0, |d| d.as_nanos());
        let suffix = enc.map_or("", Encoding::suffix);
        // httpdate panics on times it cannot write; such a file goes without
        // Last-Modified (its ETag still validates it).
        let modified = since_epoch
            .map(|d| d.as_secs())
            .filter(|&secs| secs < LAST_HTTP_DATE)
            .map(|secs| UNIX_EPOCH + Duration::from_secs(secs));
        let key = (len, nanos, suffix);
        if let Some(known) = recent::get(key) {
            return known;
        }
        let etag = format!("\"{len:x}-{nanos:x}{suffix}\"");
        let etag = HeaderValue::from_maybe_shared(bytes::Bytes::from(etag))
            .expect("hex digits, '-' and '.' between quotes are a valid header value");
        let last_modified = modified.map(|m| {
            let mut h = HeaderMap::new();
            h.typed_insert(LastModified::from(m));
            h.remove(header::LAST_MODIFIED)
        });
        let validators = Validators {
            etag,
            last_modified: last_modified.flatten(),
            modified,
        };
        recent::put(key, &validators);
        validators
    }

    /// ETag and Last-Modified on a response; last, as it gives the ETag away.
    pub(super) fn insert_into(self, h: &mut HeaderMap) {
        h.insert(header::ETAG, self.etag);
        if let Some(value) = self.last_modified {
            h.insert(header::LAST_MODIFIED, value);
        }
    }

    fn typed_etag(&self) -> Option<ETag> {
        ETag::decode(&mut std::iter::once(&self.etag)).ok()
    }

    /// RFC 9110 §13.2.2 for GET/HEAD: If-None-Match decides when present
    /// (weak comparison), else If-Modified-Since (one-second resolution).
    pub(super) fn not_modified(&self, headers: &HeaderMap) -> bool {
        // Present, it decides even when no tag in it is usable: §13.1.3
        // ignores If-Modified-Since whenever the request contains it.
        match headers.typed_try_get::<IfNoneMatch>() {
            Ok(Some(inm)) => {
                return self
                    .typed_etag()
                    .is_some_and(|etag| !inm.precondition_passes(&etag))
            }
            Err(_) => return false,
            Ok(None) => {}
        }
        // More than one value, or not a date: ignored (§13.1.3).
        match (headers.typed_get::<IfModifiedSince>(), self.modified) {
            // As `IfModifiedSince::is_modified`, without its two conversions
            // of the time to calendar fields.
            (Some(since), Some(modified)) => modified <= SystemTime::from(since),
            _ => false,
        }
    }

    /// `If-Range` (§13.1.5): the range applies only if the client's copy is
    /// this one: a strong ETag match, or exactly this Last-Modified date.
    pub(super) fn range_applies(&self, headers: &HeaderMap) -> bool {
        let if_range = match headers.typed_try_get::<IfRange>() {
            Ok(None) => return true,
            Ok(Some(if_range)) => if_range,
            // Neither an entity-tag nor a date: it matches nothing.
            Err(_) => return false,
        };
        // `IfRange::is_modified` takes any date at or after Last-Modified as
        // unchanged; §13.1.5 asks for an exact match, so dates are compared
        // here and only the entity-tag (strong comparison) is left to it.
        let etag = self.typed_etag();
        !if_range.is_modified(etag.as_ref(), None)
            || self
                .modified
                .is_some_and(|modified| if_range == IfRange::date(modified))
    }
}

/// 10000-01-01T00:00:00Z in Unix seconds: httpdate writes years up to 9999.
const LAST_HTTP_DATE: u64 = 253_402_300_800;

#[cfg(test)]
mod tests {
    use super::*;

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

    /// ETag and Last-Modified as written on a response.
    fn written(v: &Validators) -> (String, Option<String>) {
        let mut h = HeaderMap::new();
        v.clone().insert_into(&mut h);
        let text = |name| {
            h.get(name)
                .map(|v: &HeaderValue| v.to_str().unwrap().to_owned())
        };
        (text(header::ETAG).unwrap(), text(header::LAST_MODIFIED))
    }

    #[test]
    fn etags_differ_per_variant_and_change_with_the_file() {
        let mtime = UNIX_EPOCH + Duration::from_secs(5);
        let etag = |len, mtime, enc| written(&Validators::new(len, Some(mtime), enc)).0;
        let plain = etag(10, mtime, None);
        assert_eq!(plain, "\"a-12a05f200\"");
        let br = etag(10, mtime, Some(Encoding::Brotli));
        assert_eq!(br, "\"a-12a05f200.br\"");
        assert_ne!(plain, etag(10, mtime, Some(Encoding::Gzip)));
        assert_ne!(plain, etag(11, mtime, None));
        assert_ne!(plain, etag(10, mtime + Duration::from_nanos(1), None));
    }

    #[test]
    fn conditionals() {
        let v = validators();
        let (etag, lm) = written(&v);
        let lm = lm.unwrap();
        assert_eq!(lm, "Tue, 14 Nov 2023 22:13:20 GMT");
        let nm = |pairs: &[(header::HeaderName, &str)]| v.not_modified(&headers(pairs));
        assert!(nm(&[(header::IF_NONE_MATCH, &etag)]));
        assert!(nm(&[(header::IF_NONE_MATCH, &format!("\"x\", W/{etag}"))]));
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

    /// Edge cases, some of which the hand-written parsing answered
    /// otherwise; each follows RFC 9110 now.
    #[test]
    fn conditionals_edge_cases() {
        let v = validators();
        let (etag, lm) = written(&v);
        let lm = lm.unwrap();
        let nm = |pairs: &[(header::HeaderName, &str)]| v.not_modified(&headers(pairs));
        // Our tag in a second If-None-Match line counts like one in a list.
        assert!(nm(&[
            (header::IF_NONE_MATCH, "\"a\""),
            (header::IF_NONE_MATCH, &etag)
        ]));
        // `*` is the whole field value or nothing (§13.1.2: "*" / #entity-tag):
        // a `*` among tags is not a wildcard. It matched before.
        assert!(!nm(&[(header::IF_NONE_MATCH, "\"a\", *")]));
        assert!(!nm(&[
            (header::IF_NONE_MATCH, "*"),
            (header::IF_NONE_MATCH, "\"a\"")
        ]));
        // An empty or unusable If-None-Match still overrides If-Modified-Since.
        for unusable in ["", "not-a-tag"] {
            assert!(!nm(&[
                (header::IF_NONE_MATCH, unusable),
                (header::IF_MODIFIED_SINCE, &lm)
            ]));
        }
        // A lowercase w/ is not a weak tag (§8.8.3: "W/" is case-sensitive).
        assert!(!nm(&[(header::IF_NONE_MATCH, &format!("w/{etag}"))]));
        // If-Modified-Since with more than one member is ignored (§13.1.3);
        // before, the first line decided.
        assert!(!nm(&[
            (header::IF_MODIFIED_SINCE, &lm),
            (header::IF_MODIFIED_SINCE, &lm)
        ]));
        // The obsolete date formats are accepted (§5.6.7).
        assert!(nm(&[(
            header::IF_MODIFIED_SINCE,
            "Tuesday, 14-Nov-23 22:13:20 GMT"
        )]));
        assert!(nm(&[(
            header::IF_MODIFIED_SINCE,
            "Tue Nov 14 22:13:20 2023"
        )]));
    }

    #[test]
    fn if_range() {
        let v = validators();
        let (etag, lm) = written(&v);
        let lm = lm.unwrap();
        let applies = |value: &str| v.range_applies(&headers(&[(header::IF_RANGE, value)]));
        assert!(v.range_applies(&HeaderMap::new()));
        assert!(applies(&etag));
        assert!(!applies(&format!("W/{etag}")));
        assert!(!applies("\"stale\""));
        assert!(applies(&lm));
        assert!(!applies("Mon, 13 Nov 2023 00:00:00 GMT"));
        // Exactly Last-Modified, not any later date (§13.1.5), though
        // `IfRange::is_modified` would take it.
        assert!(!applies("Wed, 15 Nov 2023 00:00:00 GMT"));
        assert!(!applies("garbage"));
        assert!(!applies(""));
    }

    /// Times httpdate cannot write give no Last-Modified rather than a panic
    /// (httpdate's `From<SystemTime>` panics before 1970 and after 9999).
    #[test]
    fn unwritable_modification_times() {
        for mtime in [
            UNIX_EPOCH - Duration::from_secs(1),
            UNIX_EPOCH + Duration::from_secs(LAST_HTTP_DATE),
        ] {
            let v = Validators::new(1, Some(mtime), None);
            let (etag, lm) = written(&v);
            assert_eq!(lm, None, "{mtime:?}");
            assert!(v.not_modified(&headers(&[(header::IF_NONE_MATCH, &etag)])));
            let since = "Tue, 14 Nov 2023 22:13:20 GMT";
            assert!(!v.not_modified(&headers(&[(header::IF_MODIFIED_SINCE, since)])));
            assert!(!v.range_applies(&headers(&[(header::IF_RANGE, since)])));
        }
        let last = UNIX_EPOCH + Duration::from_secs(LAST_HTTP_DATE - 1);
        let (_, lm) = written(&Validators::new(1, Some(last), None));
        assert_eq!(lm.as_deref(), Some("Fri, 31 Dec 9999 23:59:59 GMT"));
        let (_, lm) = written(&Validators::new(1, None, None));
        assert_eq!(lm, None);
    }
}
