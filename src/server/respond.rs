//! The one place where failures become HTTP statuses, so every error path
//! answers the same way: a short plain-text body and the right code.

use http::{header, HeaderValue, Response, StatusCode};

use super::limits::Exceeded;
use crate::body::GatewayBody;
use crate::cgi::response::HeadError;
use crate::static_files::StaticError;
use crate::upstream::{FailureKind, SpoolError, UpstreamError};

/// Status for an upstream failure, by its kind: unreachable or bad output
/// → 502, timeouts → 504, saturation or FastCGI OVERLOADED → 503.
pub fn upstream_status(err: &UpstreamError) -> StatusCode {
    match err.kind() {
        FailureKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        FailureKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        FailureKind::ClientBody => StatusCode::BAD_REQUEST,
        FailureKind::Local => StatusCode::INTERNAL_SERVER_ERROR,
        // Nobody reads it; a status is still needed for the access log.
        FailureKind::Upstream | FailureKind::ClientGone => StatusCode::BAD_GATEWAY,
    }
}

pub fn upstream_error(err: &UpstreamError) -> Response<GatewayBody> {
    let text = match (err.kind(), err) {
        (FailureKind::Timeout, UpstreamError::ConnectTimeout { .. }) => {
            "Gateway Timeout: connect-timeout (php-fpm did not accept the connection in time)\n"
        }
        (FailureKind::Timeout, UpstreamError::HeadTimeout { .. }) => {
            "Gateway Timeout: read-timeout (no response head from php-fpm in time)\n"
        }
        (FailureKind::Timeout, _) => "Gateway Timeout: read-timeout (php-fpm stopped sending)\n",
        (FailureKind::Overloaded, UpstreamError::Refused(_)) => {
            "Service Unavailable: php-fpm is overloaded\n"
        }
        (FailureKind::Overloaded, _) => "Service Unavailable: all upstream connections are busy\n",
        (FailureKind::ClientBody, _) => "Bad Request: the request body could not be read\n",
        (FailureKind::Local, _) => "Internal Server Error\n",
        (FailureKind::Upstream | FailureKind::ClientGone, _) => {
            "Bad Gateway: php-fpm is unreachable or sent an invalid response\n"
        }
    };
    plain(upstream_status(err), text)
}

pub fn head_error(_err: &HeadError) -> Response<GatewayBody> {
    plain(
        StatusCode::BAD_GATEWAY,
        "Bad Gateway: the application sent an invalid CGI response head\n",
    )
}

pub fn spool_error(err: &SpoolError) -> Response<GatewayBody> {
    match err {
        SpoolError::TooLarge { .. } => too_large(),
        SpoolError::Client(_) => plain(
            StatusCode::BAD_REQUEST,
            "Bad Request: the request body could not be read\n",
        ),
        SpoolError::Io(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n"),
    }
}

pub fn too_large() -> Response<GatewayBody> {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Payload Too Large: the request body exceeds max-body-size\n",
    )
}

/// A request head over one of the limits; the connection stays usable.
pub(crate) fn head_too_large(exceeded: Exceeded) -> Response<GatewayBody> {
    match exceeded {
        Exceeded::UriLength => plain(
            StatusCode::URI_TOO_LONG,
            "URI Too Long: the request target exceeds max-uri-length\n",
        ),
        Exceeded::HeaderSize => plain(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request Header Fields Too Large: the headers exceed max-header-size\n",
        ),
        Exceeded::HeaderCount => plain(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request Header Fields Too Large: more header lines than max-headers\n",
        ),
    }
}

pub fn not_found() -> Response<GatewayBody> {
    plain(StatusCode::NOT_FOUND, "Not Found\n")
}

/// 301 to `location` (a path and query `route` built and encoded); a value
/// that cannot be a header is refused rather than sent broken.
pub fn redirect(location: &str) -> Response<GatewayBody> {
    redirect_with(StatusCode::MOVED_PERMANENTLY, location)
}

/// `status` (a 3xx) to `location`.
pub fn redirect_with(status: StatusCode, location: &str) -> Response<GatewayBody> {
    let Ok(value) = HeaderValue::from_str(location) else {
        return bad_request("the redirect target is not a valid header value");
    };
    let reason = status.canonical_reason().unwrap_or("Redirect");
    let mut resp = plain(status, &format!("{reason}\n"));
    resp.headers_mut().insert(header::LOCATION, value);
    resp
}

/// A path a `deny` rule refuses.
pub fn forbidden() -> Response<GatewayBody> {
    plain(StatusCode::FORBIDDEN, "Forbidden\n")
}

/// Static-file failures: wrong method → 405, gone → 404, EACCES → 403, else 500.
pub fn static_error(err: &StaticError) -> Response<GatewayBody> {
    match err {
        StaticError::MethodNotAllowed => {
            let mut resp = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method Not Allowed: a static file answers GET and HEAD only\n",
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            resp
        }
        StaticError::NotAFile { .. } => not_found(),
        StaticError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            plain(StatusCode::FORBIDDEN, "Forbidden\n")
        }
        StaticError::Io { .. } => {
            plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n")
        }
    }
}

pub fn bad_request(why: &str) -> Response<GatewayBody> {
    plain(StatusCode::BAD_REQUEST, &format!("Bad Request: {why}\n"))
}

/// A short plain-text answer; 503 also tells the client when to come back.
/// A request whose framing or Host is refused (`framing`): its status, the
/// reason, and the connection closed after it, since where the next request
/// would begin is not to be trusted.
pub fn refused(refusal: &super::framing::Refusal) -> Response<GatewayBody> {
    let reason = refusal.status.canonical_reason().unwrap_or("Refused");
    let mut resp = plain(refusal.status, &format!("{reason}: {}\n", refusal.reason));
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

pub fn plain(status: StatusCode, text: &str) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::full(text.to_owned().into()));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastcgi::ProtocolStatus;
    use std::time::Duration;

    #[test]
    fn statuses_follow_the_design() {
        let io = || std::io::Error::other("x");
        assert_eq!(
            upstream_status(&UpstreamError::Connect {
                addr: "a".into(),
                source: io()
            }),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            upstream_status(&UpstreamError::ConnectTimeout {
                addr: "a".into(),
                after: Duration::ZERO
            }),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            upstream_status(&UpstreamError::HeadTimeout {
                after: Duration::ZERO
            }),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            upstream_status(&UpstreamError::ReadTimeout {
                after: Duration::ZERO
            }),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            upstream_status(&UpstreamError::AcquireTimeout {
                after: Duration::ZERO
            }),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            upstream_status(&UpstreamError::Refused(ProtocolStatus::Overloaded)),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            upstream_status(&UpstreamError::Refused(ProtocolStatus::CantMpxConn)),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            upstream_status(&UpstreamError::Refused(ProtocolStatus::UnknownRole)),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            upstream_status(&UpstreamError::Closed),
            StatusCode::BAD_GATEWAY
        );
        let resp = static_error(&StaticError::MethodNotAllowed);
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            resp.headers().get(header::ALLOW).map(|v| v.as_bytes()),
            Some(&b"GET, HEAD"[..])
        );
        let denied = StaticError::Io {
            path: "x".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert_eq!(static_error(&denied).status(), StatusCode::FORBIDDEN);
        assert_eq!(
            static_error(&StaticError::NotAFile { path: "x".into() }).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            static_error(&StaticError::Io {
                path: "x".into(),
                source: io()
            })
            .status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let resp = redirect("/docs/?a=1");
        assert_eq!(resp.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            resp.headers().get(header::LOCATION).map(|v| v.as_bytes()),
            Some(&b"/docs/?a=1"[..])
        );
        assert_eq!(redirect("/a\nb").status(), StatusCode::BAD_REQUEST);
        let resp = upstream_error(&UpstreamError::AcquireTimeout {
            after: Duration::ZERO,
        });
        assert_eq!(
            resp.headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
    }
}
