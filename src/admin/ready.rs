//! Readiness: can the upstream take a request? Without a ping path, a
//! FastCGI connect (closed at once, so no worker is held); with php-fpm's
//! `ping.path`, a request to it on a fresh connection that must answer 200.
//! Never through the pool: a probe must not queue behind real requests.

use std::time::Duration;

use crate::fpm::ping::ping;
use crate::upstream::conn;
use crate::upstream::UpstreamAddr;

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
