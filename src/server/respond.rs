//! The one place where failures become HTTP statuses, so every error path
//! answers the same way: a short plain-text body and the right code.

use http::{header, HeaderValue, Response, StatusCode};

use super::body::GatewayBody;
use crate::cgi::response::HeadError;
use crate::fastcgi::ProtocolStatus;
use crate::upstream::{SpoolError, UpstreamError};

/// Status for an upstream failure: unreachable or bad output → 502,
/// timeouts → 504, saturation or FastCGI OVERLOADED → 503.
pub fn upstream_status(err: &UpstreamError) -> StatusCode {
    match err {
        UpstreamError::ConnectTimeout { .. }
        | UpstreamError::HeadTimeout { .. }
        | UpstreamError::ReadTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        UpstreamError::AcquireTimeout { .. }
        | UpstreamError::QueueFull { .. }
        | UpstreamError::Refused(ProtocolStatus::Overloaded) => StatusCode::SERVICE_UNAVAILABLE,
        UpstreamError::ClientBody(_) => StatusCode::BAD_REQUEST,
        UpstreamError::Spool(_) => StatusCode::INTERNAL_SERVER_ERROR,
        UpstreamError::Connect { .. }
        | UpstreamError::Write(_)
        | UpstreamError::Read(_)
        | UpstreamError::Closed
        | UpstreamError::Protocol(_)
        | UpstreamError::Refused(_)
        | UpstreamError::ClientGone => StatusCode::BAD_GATEWAY,
    }
}

pub fn upstream_error(err: &UpstreamError) -> Response<GatewayBody> {
    let status = upstream_status(err);
    let text = match err {
        UpstreamError::ConnectTimeout { .. } => {
            "Gateway Timeout: connect-timeout (php-fpm did not accept the connection in time)\n"
        }
        UpstreamError::HeadTimeout { .. } => {
            "Gateway Timeout: read-timeout (no response head from php-fpm in time)\n"
        }
        UpstreamError::ReadTimeout { .. } => {
            "Gateway Timeout: read-timeout (php-fpm stopped sending)\n"
        }
        UpstreamError::AcquireTimeout { .. } | UpstreamError::QueueFull { .. } => {
            "Service Unavailable: all upstream connections are busy\n"
        }
        UpstreamError::Refused(ProtocolStatus::Overloaded) => {
            "Service Unavailable: php-fpm is overloaded\n"
        }
        UpstreamError::ClientBody(_) => "Bad Request: the request body could not be read\n",
        UpstreamError::Spool(_) => "Internal Server Error\n",
        _ => "Bad Gateway: php-fpm is unreachable or sent an invalid response\n",
    };
    plain(status, text)
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

pub fn not_found() -> Response<GatewayBody> {
    plain(StatusCode::NOT_FOUND, "Not Found\n")
}

pub fn bad_request(why: &str) -> Response<GatewayBody> {
    plain(StatusCode::BAD_REQUEST, &format!("Bad Request: {why}\n"))
}

/// A short plain-text answer; 503 also tells the client when to come back.
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
