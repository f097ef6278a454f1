//! How an HTTP/1.x request says where its body ends and which host it is
//! for, checked as RFC 9112 asks before anything reaches PHP. hyper parses
//! the message; what it lets through but a careful server refuses (framing
//! two parsers could read two ways: the ground of request smuggling) is
//! refused here, and the connection closed after the answer.
//!
//! Pure: headers in, a verdict out.

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, StatusCode, Uri, Version};

/// Marks a request whose head had a Content-Length beside its
/// Transfer-Encoding: hyper reads such a body by its chunks and drops the
/// length, so only the head as read (`idle`) still shows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DroppedContentLength;

/// Why a request is refused: its status and a one-line reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: &'static str,
}

const fn bad(reason: &'static str) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        reason,
    }
}

/// Checks an HTTP/1.x request's framing and Host (RFC 9112 §3.2, §6.1,
/// §6.3). HTTP/2 frames its own messages and carries `:authority`.
/// `dropped_length`: the head had a Content-Length hyper dropped.
pub fn check(
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
    dropped_length: bool,
) -> Result<(), Refusal> {
    if version != Version::HTTP_10 && version != Version::HTTP_11 {
        return Ok(());
    }
    if dropped_length {
        return Err(bad("both Transfer-Encoding and Content-Length"));
    }
    check_transfer_encoding(headers)?;
    let hosts = headers.get_all(HOST).iter().count();
    if hosts > 1 {
        return Err(bad("more than one Host header"));
    }
    // An absolute-form target names its host itself (§3.2.2).
    if version == Version::HTTP_11 && hosts == 0 && uri.authority().is_none() {
        return Err(bad("an HTTP/1.1 request needs a Host header"));
    }
    Ok(())
}

fn check_transfer_encoding(headers: &HeaderMap) -> Result<(), Refusal> {
    let mut lines = headers.get_all(TRANSFER_ENCODING).iter();
    let Some(line) = lines.next() else {
        return Ok(());
    };
    if lines.next().is_some() {
        return Err(bad("Transfer-Encoding sent in more than one header line"));
    }
    if headers.contains_key(CONTENT_LENGTH) {
        return Err(bad("both Transfer-Encoding and Content-Length"));
    }
    let Ok(text) = line.to_str() else {
        return Err(bad("Transfer-Encoding is not text"));
    };
    let codings: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    let chunked = |c: &str| c.eq_ignore_ascii_case("chunked");
    if codings.iter().filter(|c| chunked(c)).count() > 1 {
        return Err(bad("chunked named more than once in Transfer-Encoding"));
    }
    // The body's length is only known when chunked comes last (§6.3).
    if !codings.last().is_some_and(|c| chunked(c)) {
        return Err(bad("Transfer-Encoding does not end in chunked"));
    }
    // Only chunked is decoded here; §6.1 asks for 501 for the rest.
    if codings.len() > 1 {
        return Err(Refusal {
            status: StatusCode::NOT_IMPLEMENTED,
            reason: "a transfer coding other than chunked",
        });
    }
    Ok(())
}

/// The host the request is for: an absolute-form target's authority wins
/// over the Host header (RFC 9112 §3.2.2), so PHP sees the host the client
/// asked for. Sets the Host header to it; true when it changed. An
/// origin-form target (most requests) costs one check.
pub fn take_target_host<B>(req: &mut http::Request<B>) -> bool {
    let Some(authority) = req.uri().authority() else {
        return false;
    };
    let Ok(value) = http::HeaderValue::from_str(authority.as_str()) else {
        return false;
    };
    let headers = req.headers_mut();
    if headers.get(HOST) == Some(&value) {
        return false;
    }
    headers.insert(HOST, value);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, value.parse().unwrap());
        }
        h
    }

    fn verdict(version: Version, target: &str, pairs: &[(&'static str, &str)]) -> Option<u16> {
        let uri: Uri = target.parse().unwrap();
        check(version, &uri, &headers(pairs), false)
            .err()
            .map(|r| r.status.as_u16())
    }

    #[test]
    fn transfer_encoding_must_be_one_line_ending_in_one_chunked() {
        let v = Version::HTTP_11;
        let host = ("host", "x");
        assert_eq!(
            verdict(v, "/", &[host, ("transfer-encoding", "chunked")]),
            None
        );
        assert_eq!(
            verdict(v, "/", &[host, ("transfer-encoding", "Chunked")]),
            None
        );
        for (te, status) in [
            ("gzip, chunked", 501),
            ("deflate,chunked", 501),
            ("chunked, chunked", 400),
            ("chunked, gzip", 400),
            ("gzip", 400),
            ("foo", 400),
            ("", 400),
        ] {
            let got = verdict(v, "/", &[host, ("transfer-encoding", te)]);
            assert_eq!(got, Some(status), "Transfer-Encoding: {te:?}");
        }
        let two_lines = [
            host,
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked"),
        ];
        assert_eq!(verdict(v, "/", &two_lines), Some(400));
        let with_length = [
            host,
            ("transfer-encoding", "chunked"),
            ("content-length", "5"),
        ];
        assert_eq!(verdict(v, "/", &with_length), Some(400));
        // As hyper hands it over: the length gone, the head marked.
        let uri: Uri = "/".parse().unwrap();
        let chunked = headers(&[host, ("transfer-encoding", "chunked")]);
        let refused = check(v, &uri, &chunked, true).unwrap_err();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn host_is_needed_once_in_http_1_1() {
        assert_eq!(verdict(Version::HTTP_11, "/", &[]), Some(400));
        assert_eq!(
            verdict(Version::HTTP_11, "/", &[("host", "a"), ("host", "b")]),
            Some(400)
        );
        assert_eq!(verdict(Version::HTTP_11, "/", &[("host", "a")]), None);
        // HTTP/1.0 predates Host; an absolute target names its own host.
        assert_eq!(verdict(Version::HTTP_10, "/", &[]), None);
        assert_eq!(verdict(Version::HTTP_11, "http://a.example/", &[]), None);
        // HTTP/2 carries :authority instead, and frames its own bodies.
        assert_eq!(
            verdict(Version::HTTP_2, "/", &[("transfer-encoding", "gzip")]),
            None
        );
    }

    #[test]
    fn an_absolute_target_names_the_host() {
        let request = |target: &str| {
            let mut req = http::Request::new(());
            *req.uri_mut() = target.parse().unwrap();
            *req.headers_mut() = headers(&[("host", "evil.example")]);
            req
        };
        let mut req = request("http://good.example:8080/x");
        assert!(take_target_host(&mut req));
        assert_eq!(req.headers().get(HOST).unwrap(), "good.example:8080");
        assert!(!take_target_host(&mut req), "already so");
        let mut origin = request("/x");
        assert!(!take_target_host(&mut origin));
        assert_eq!(origin.headers().get(HOST).unwrap(), "evil.example");
    }
}
