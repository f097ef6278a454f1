//! What can go wrong between a request and php-fpm, and what each failure
//! means: whether it may be retried, how loudly it is logged, and which
//! kind of answer it gets (`server::respond` turns the kind into a status).

use std::time::Duration;

use crate::fastcgi::{DecodeError, ProtocolStatus};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong between us and the upstream, each carrying
/// what failed and which named timeout fired.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to upstream {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connect-timeout: upstream {addr} did not accept within {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
    #[error("acquire-timeout: no upstream connection free within {after:?}")]
    AcquireTimeout { after: Duration },
    #[error("queue-length: {length} requests already wait for an upstream connection")]
    QueueFull { length: usize },
    #[error("writing the request to the upstream failed: {0}")]
    Write(#[source] std::io::Error),
    #[error("reading the response from the upstream failed: {0}")]
    Read(#[source] std::io::Error),
    #[error("the upstream closed the connection before the end of the response")]
    Closed,
    #[error("malformed FastCGI from upstream: {0}")]
    Protocol(#[from] DecodeError),
    #[error("the upstream refused the request: {0:?}")]
    Refused(ProtocolStatus),
    #[error("read-timeout: no response head from upstream within {after:?}")]
    HeadTimeout { after: Duration },
    #[error("read-timeout: upstream sent nothing for {after:?} mid-response")]
    ReadTimeout { after: Duration },
    #[error("no upstream is configured")]
    NoUpstream,
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Failures on the request's own side: the client, its body, or our spool
/// of that body. Not php-fpm's doing.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the client went away")]
    Gone,
    #[error("reading the request body from the client failed: {0}")]
    Body(#[source] BoxError),
    #[error("reading the spooled request body failed: {0}")]
    Spool(#[source] std::io::Error),
}

/// What a failure means for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// php-fpm unreachable, or the exchange broke or was malformed (502).
    Upstream,
    /// php-fpm did not accept or answer in time (504).
    Timeout,
    /// Every connection busy and the wait over, or php-fpm said OVERLOADED (503).
    Overloaded,
    /// The client's request body could not be read (400).
    ClientBody,
    /// The client left: there is nobody to answer.
    ClientGone,
    /// Our own spool of the body failed (500).
    Local,
}

impl UpstreamError {
    pub fn kind(&self) -> FailureKind {
        match self {
            UpstreamError::ConnectTimeout { .. }
            | UpstreamError::HeadTimeout { .. }
            | UpstreamError::ReadTimeout { .. } => FailureKind::Timeout,
            UpstreamError::AcquireTimeout { .. }
            | UpstreamError::QueueFull { .. }
            | UpstreamError::Refused(ProtocolStatus::Overloaded) => FailureKind::Overloaded,
            UpstreamError::Connect { .. }
            | UpstreamError::NoUpstream
            | UpstreamError::Write(_)
            | UpstreamError::Read(_)
            | UpstreamError::Closed
            | UpstreamError::Protocol(_)
            | UpstreamError::Refused(_) => FailureKind::Upstream,
            UpstreamError::Client(ClientError::Gone) => FailureKind::ClientGone,
            UpstreamError::Client(ClientError::Body(_)) => FailureKind::ClientBody,
            UpstreamError::Client(ClientError::Spool(_)) => FailureKind::Local,
        }
    }

    /// Worth sending again on a fresh connection, when it happened on a
    /// reused one before any response byte: php-fpm closed a kept-alive
    /// connection (a worker recycled by pm.max_requests, a restart), so the
    /// request never ran. The caller also checks the body can be sent again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            UpstreamError::Write(_) | UpstreamError::Read(_) | UpstreamError::Closed
        )
    }

    /// Says the upstream host is failing (passive health): it could not be
    /// reached, or it broke an exchange. A slow script's timeout, saturation
    /// and the client's own failures say nothing about the host.
    pub fn counts_against_host(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect { .. }
                | UpstreamError::ConnectTimeout { .. }
                | UpstreamError::Write(_)
                | UpstreamError::Read(_)
                | UpstreamError::Closed
                | UpstreamError::Protocol(_)
        )
    }

    /// The request never reached a php-fpm worker: the connect failed, the
    /// queue was full, or php-fpm answered OVERLOADED without running it.
    /// Another upstream may take it.
    pub fn before_sending(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect { .. }
                | UpstreamError::ConnectTimeout { .. }
                | UpstreamError::QueueFull { .. }
                | UpstreamError::Refused(ProtocolStatus::Overloaded)
        )
    }

    /// How loudly to log it: saturation and the client's own failures are
    /// expected under load and from bad clients (warnings); the rest means
    /// php-fpm or the gateway failed (errors).
    pub fn severity(&self) -> tracing::Level {
        match self.kind() {
            FailureKind::Overloaded | FailureKind::ClientBody | FailureKind::ClientGone => {
                tracing::Level::WARN
            }
            FailureKind::Upstream | FailureKind::Timeout | FailureKind::Local => {
                tracing::Level::ERROR
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_knows_its_kind_retry_and_severity() {
        let io = || std::io::Error::other("x");
        let closed = UpstreamError::Closed;
        assert_eq!(closed.kind(), FailureKind::Upstream);
        assert!(closed.is_retryable());
        assert_eq!(closed.severity(), tracing::Level::ERROR);
        let refused = UpstreamError::Connect {
            addr: "unix:/x".into(),
            source: io(),
        };
        assert!(
            !refused.is_retryable(),
            "never sent: the pool dials again by itself"
        );
        let full = UpstreamError::QueueFull { length: 3 };
        assert_eq!(
            (full.kind(), full.severity()),
            (FailureKind::Overloaded, tracing::Level::WARN)
        );
        let body = UpstreamError::from(ClientError::Body(Box::new(io())));
        assert_eq!(
            (body.kind(), body.severity()),
            (FailureKind::ClientBody, tracing::Level::WARN)
        );
        assert!(!body.is_retryable());
        let spool = UpstreamError::from(ClientError::Spool(io()));
        assert_eq!(
            (spool.kind(), spool.severity()),
            (FailureKind::Local, tracing::Level::ERROR)
        );
        let late = UpstreamError::ReadTimeout {
            after: Duration::from_secs(1),
        };
        assert_eq!(late.kind(), FailureKind::Timeout);
        assert_eq!(
            UpstreamError::Refused(ProtocolStatus::Overloaded).kind(),
            FailureKind::Overloaded
        );
    }
}
