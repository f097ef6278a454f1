//! Request-head limits with clear statuses: a request target over
//! `max-uri-length` → 414, a header block over `max-header-size` or more than
//! `max-headers` lines → 431.
//!
//! hyper parses HTTP/1 heads into a buffer of bounded size and answers 431
//! itself when a head does not fit (and for too many header lines), 414 for
//! a target over its own 65,534-byte ceiling. The buffer is sized so that a
//! target up to that ceiling plus an allowed header block fits, leaving the
//! precise decision to [`HeadLimits::check`], which HTTP/2 requests get too.

use http::{HeaderMap, Request, Uri};

use crate::config::MAX_URI_LENGTH_CEILING;

/// Room for the method, spaces and version around the request target.
const REQUEST_LINE_SLACK: usize = 64;
/// hyper refuses a smaller HTTP/1 buffer (it panics), so never go below it.
const HYPER_MIN_BUF: usize = 8192;
/// HTTP/2 counts 32 bytes of overhead per header field (RFC 7540 §6.5.2).
const H2_FIELD_OVERHEAD: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadLimits {
    pub max_uri_length: usize,
    pub max_header_size: usize,
    pub max_headers: usize,
}

/// Which limit a request broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exceeded {
    UriLength,
    HeaderSize,
    HeaderCount,
}

impl HeadLimits {
    /// hyper's HTTP/1 buffer: the longest target hyper parses plus the
    /// largest allowed header block, so a long target is told apart (414)
    /// from a large head (431). It is a cap; the buffer grows only as bytes come.
    pub fn http1_buffer(&self) -> usize {
        (MAX_URI_LENGTH_CEILING + REQUEST_LINE_SLACK + self.max_header_size + 2).max(HYPER_MIN_BUF)
    }

    /// hyper's HTTP/2 header list bound, loose enough for `check` to decide.
    pub fn http2_header_list(&self) -> u32 {
        let total =
            self.max_uri_length + self.max_header_size + H2_FIELD_OVERHEAD * (self.max_headers + 4);
        u32::try_from(total).unwrap_or(u32::MAX)
    }

    pub fn check<B>(&self, req: &Request<B>) -> Result<(), Exceeded> {
        if target_length(req.uri()) > self.max_uri_length {
            return Err(Exceeded::UriLength);
        }
        let headers = req.headers();
        if headers.len() > self.max_headers {
            return Err(Exceeded::HeaderCount);
        }
        if block_size(headers) > self.max_header_size {
            return Err(Exceeded::HeaderSize);
        }
        Ok(())
    }
}

/// Bytes of the request target as sent (origin form, or absolute form with
/// its scheme and authority).
fn target_length(uri: &Uri) -> usize {
    let pq = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + "://".len());
    scheme + authority + pq
}

/// Bytes the header lines take on the wire as `Name: value\r\n`.
fn block_size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_uri_length: 20,
        max_header_size: 30,
        max_headers: 2,
    };

    fn req(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn each_limit_has_its_own_verdict() {
        assert_eq!(LIMITS.check(&req("/a?b=c", &[("x", "1")])), Ok(()));
        // Exactly at the limit passes; one byte more does not.
        assert_eq!(
            LIMITS.check(&req(&format!("/{}", "a".repeat(19)), &[])),
            Ok(())
        );
        assert_eq!(
            LIMITS.check(&req(&format!("/{}", "a".repeat(20)), &[])),
            Err(Exceeded::UriLength)
        );
        assert_eq!(
            LIMITS.check(&req("http://example.com/abcdefgh", &[])),
            Err(Exceeded::UriLength)
        );
        assert_eq!(
            LIMITS.check(&req("/", &[("a", "1"), ("b", "2"), ("c", "3")])),
            Err(Exceeded::HeaderCount)
        );
        // "x-long: " + 22 bytes + CRLF = 32 > 30.
        assert_eq!(
            LIMITS.check(&req("/", &[("x-long", &"v".repeat(22))])),
            Err(Exceeded::HeaderSize)
        );
        assert_eq!(
            LIMITS.check(&req("/", &[("x-long", &"v".repeat(20))])),
            Ok(())
        );
    }

    #[test]
    fn hyper_buffers_leave_room_for_every_allowed_head() {
        assert!(LIMITS.http1_buffer() > MAX_URI_LENGTH_CEILING + 30);
        let big = HeadLimits {
            max_uri_length: 8192,
            max_header_size: 32768,
            max_headers: 100,
        };
        assert!(big.http1_buffer() >= 8192 + 32768 + 20);
        assert!(big.http2_header_list() as usize > 8192 + 32768);
    }
}
