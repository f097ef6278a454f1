//! Readiness: can the upstream take a request? Without a ping path, a
//! FastCGI connect (closed at once, so no worker is held); with php-fpm's
//! `ping.path`, a request to it on a fresh connection that must answer 200.
//! Never through the pool: a probe must not queue behind real requests.

use std::time::Duration;

use crate::cgi::response::{HeadParser, DEFAULT_HEAD_LIMIT};
use crate::upstream::conn::{self, ExchangeTimeouts};
use crate::upstream::{fpm_status, UpstreamAddr};

/// php-fpm's ping page is a word ("pong"); anything bigger is not it.
const PING_MAX_BYTES: usize = 64 * 1024;

/// `Ok` when ready, else a one-line reason.
pub(crate) async fn check(
    upstream: &UpstreamAddr,
    ping_path: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    let Some(path) = ping_path else {
        return conn::dial(upstream, timeout)
            .await
            .map(drop)
            .map_err(|e| format!("upstream unreachable: {e}"));
    };
    // One deadline for connect and answer: a saturated php-fpm is not ready.
    match tokio::time::timeout(timeout, ping(upstream, path, timeout)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "php-fpm ping {path} not answered within {timeout:?}"
        )),
    }
}

async fn ping(upstream: &UpstreamAddr, path: &str, timeout: Duration) -> Result<(), String> {
    let stdout = fpm_status::one_shot(
        upstream,
        fpm_status::management_request(path, "", false),
        ExchangeTimeouts { read: timeout },
        timeout,
        PING_MAX_BYTES,
    )
    .await
    .map_err(|e| format!("upstream unreachable or failing: {e}"))?;
    let mut parser = HeadParser::new(DEFAULT_HEAD_LIMIT);
    let status = match parser.push(stdout) {
        Ok(Some((head, _))) => Some(head.status),
        _ => None,
    };
    match status {
        Some(s) if s.is_success() => Ok(()),
        Some(s) => Err(format!("php-fpm ping {path} answered {}", s.as_u16())),
        None => Err(format!("php-fpm ping {path} sent no response head")),
    }
}
