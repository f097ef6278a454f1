//! Readiness: can the upstream take a request? Without a ping path, a
//! FastCGI connect (closed at once, so no worker is held); with php-fpm's
//! `ping.path`, a request to it on a fresh connection that must answer 200.
//! Never through the pool: a probe must not queue behind real requests.
//! With several upstreams, ready while at least one is.

use std::time::Duration;

use crate::fpm::ping::ping;
use crate::upstream::conn;
use crate::upstream::{UpstreamAddr, Upstreams};

/// `Ok` when at least one upstream is ready (all are asked at once), else
/// each one's reason, `; `-separated.
pub(crate) async fn check_any(
    upstreams: &Upstreams,
    ping_path: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    let members = upstreams.members();
    if let [only] = members.as_slice() {
        return check(only.addr(), ping_path, timeout).await;
    }
    let mut checks = tokio::task::JoinSet::new();
    for member in members.iter() {
        let addr = member.addr().clone();
        let path = ping_path.map(str::to_owned);
        checks.spawn(async move {
            let result = check(&addr, path.as_deref(), timeout).await;
            (addr, result)
        });
    }
    let mut reasons = Vec::new();
    while let Some(done) = checks.join_next().await {
        match done {
            Ok((_, Ok(()))) => return Ok(()),
            Ok((addr, Err(reason))) => reasons.push(format!("{addr}: {reason}")),
            Err(e) => reasons.push(format!("a check did not finish: {e}")),
        }
    }
    reasons.sort();
    Err(format!("no upstream is ready: {}", reasons.join("; ")))
}

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
