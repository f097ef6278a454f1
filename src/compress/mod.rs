//! Optional compression of PHP responses (`--compress`): which responses
//! qualify and the header changes; `encoder` compresses the body as it
//! streams. Static files are not compressed here (they use precompressed
//! siblings).

mod encoder;

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body::Body as _;

use crate::body::GatewayBody;
use crate::static_files::{accepted_weight, Encoding};
use encoder::CompressedBody;

/// A body this short gains nothing from compression (headers cost more).
const MIN_LENGTH: u64 = 256;

/// Types worth compressing: text (but not event streams, which must never be
/// held back), JSON, JavaScript, XML and SVG.
fn compressible(content_type: &HeaderValue) -> bool {
    let Ok(text) = content_type.to_str() else {
        return false;
    };
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "text/event-stream" {
        return false;
    }
    essence.starts_with("text/")
        || matches!(
            essence.as_str(),
            "application/json" | "application/javascript" | "application/xml" | "image/svg+xml"
        )
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
}

/// Compresses `resp` (a PHP response) when it qualifies: a compressible
/// type, no Content-Encoding yet, not `X-Accel-Buffering: no` (`unbuffered`),
/// not partial or bodiless, and an encoding the client accepts (brotli
/// preferred on a tie). Qualifying responses carry `Vary: Accept-Encoding`
/// whether compressed or not.
pub(crate) fn apply(
    resp: Response<GatewayBody>,
    req_headers: &HeaderMap,
    unbuffered: bool,
) -> Response<GatewayBody> {
    let status = resp.status();
    let headers = resp.headers();
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status == StatusCode::PARTIAL_CONTENT;
    let short = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .is_some_and(|len| len < MIN_LENGTH);
    if unbuffered
        || bodiless
        || short
        || headers.contains_key(header::CONTENT_ENCODING)
        || headers.contains_key(header::CONTENT_RANGE)
        || !headers.get(header::CONTENT_TYPE).is_some_and(compressible)
    {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    add_vary(&mut parts.headers);
    let Some(encoding) = choose(req_headers) else {
        return Response::from_parts(parts, body);
    };
    let h = &mut parts.headers;
    h.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(encoding.token()),
    );
    h.remove(header::CONTENT_LENGTH);
    h.remove(header::ACCEPT_RANGES);
    weaken_etag(h);
    // A HEAD answer has no body to compress but must say what a GET would.
    let body = if body.is_end_stream() {
        body
    } else {
        GatewayBody::boxed(CompressedBody::new(body, encoding))
    };
    Response::from_parts(parts, body)
}

/// The encoding the client weighs highest; brotli on a tie.
fn choose(req_headers: &HeaderMap) -> Option<Encoding> {
    let mut best: Option<(u16, Encoding)> = None;
    for enc in Encoding::ALL {
        let weight = accepted_weight(req_headers, enc);
        if weight > 0 && best.is_none_or(|(w, _)| weight > w) {
            best = Some((weight, enc));
        }
    }
    best.map(|(_, enc)| enc)
}

fn add_vary(headers: &mut HeaderMap) {
    let covered = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.eq_ignore_ascii_case("accept-encoding"))
        })
    });
    if !covered {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// The compressed bytes are not the ones a strong ETag vouched for.
fn weaken_etag(headers: &mut HeaderMap) {
    let Some(etag) = headers.get(header::ETAG) else {
        return;
    };
    if etag.as_bytes().starts_with(b"\"") {
        let mut weak = b"W/".to_vec();
        weak.extend_from_slice(etag.as_bytes());
        if let Ok(value) = HeaderValue::from_bytes(&weak) {
            headers.insert(header::ETAG, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn resp(pairs: &[(&'static str, &'static str)]) -> Response<GatewayBody> {
        let mut r = Response::new(GatewayBody::full(Bytes::from(vec![b'a'; 1000])));
        for (n, v) in pairs {
            r.headers_mut().append(*n, HeaderValue::from_static(v));
        }
        r
    }

    fn accept(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
        h
    }

    fn encoding(r: &Response<GatewayBody>) -> Option<&str> {
        r.headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
    }

    #[test]
    fn types_that_compress() {
        for t in [
            "text/html; charset=UTF-8",
            "TEXT/CSS",
            "application/json",
            "application/javascript",
            "image/svg+xml",
            "application/ld+json",
            "application/rss+xml",
        ] {
            assert!(compressible(&HeaderValue::from_static(t)), "{t}");
        }
        for t in ["text/event-stream", "image/png", "application/zip", ""] {
            assert!(!compressible(&HeaderValue::from_static(t)), "{t}");
        }
    }

    #[test]
    fn qualifying_responses() {
        let html = [("content-type", "text/html"), ("content-length", "1000")];
        let r = apply(resp(&html), &accept("gzip, br"), false);
        assert_eq!(encoding(&r), Some("br"));
        assert!(r.headers().get(header::CONTENT_LENGTH).is_none());
        assert_eq!(r.headers()[header::VARY], "Accept-Encoding");
        let r = apply(resp(&html), &accept("gzip;q=1, br;q=0.5"), false);
        assert_eq!(encoding(&r), Some("gzip"));
        // Not accepted: untouched but marked as varying.
        let r = apply(resp(&html), &accept("identity"), false);
        assert_eq!(encoding(&r), None);
        assert_eq!(r.headers()[header::CONTENT_LENGTH], "1000");
        assert_eq!(r.headers()[header::VARY], "Accept-Encoding");
        // Already varying on it: no second mention.
        let r = apply(
            resp(&[
                ("content-type", "text/html"),
                ("vary", "Cookie, accept-encoding"),
            ]),
            &accept("gzip"),
            false,
        );
        assert_eq!(r.headers().get_all(header::VARY).iter().count(), 1);
        let r = apply(
            resp(&[("content-type", "text/html"), ("etag", "\"v1\"")]),
            &accept("gzip"),
            false,
        );
        assert_eq!(r.headers()[header::ETAG], "W/\"v1\"");
    }

    #[test]
    fn responses_left_alone() {
        let gz = accept("gzip, br");
        let cases: [(&[(&'static str, &'static str)], bool); 5] = [
            (&[("content-type", "text/event-stream")], false),
            (&[("content-type", "text/plain")], true),
            (&[("content-type", "image/png")], false),
            (
                &[("content-type", "text/html"), ("content-encoding", "gzip")],
                false,
            ),
            (
                &[("content-type", "text/html"), ("content-length", "20")],
                false,
            ),
        ];
        for (pairs, unbuffered) in cases {
            let r = apply(resp(pairs), &gz, unbuffered);
            let enc = r.headers().get_all(header::CONTENT_ENCODING).iter().count();
            assert!(
                enc == usize::from(pairs.iter().any(|(n, _)| *n == "content-encoding")),
                "{pairs:?}"
            );
            assert!(r.headers().get(header::VARY).is_none(), "{pairs:?}");
        }
        let mut partial = resp(&[("content-type", "text/html")]);
        *partial.status_mut() = StatusCode::PARTIAL_CONTENT;
        assert_eq!(encoding(&apply(partial, &gz, false)), None);
    }
}
