//! php-fpm's ping page (`ping.path`): asked on a fresh connection, it must
//! answer with a 2xx status. Behind /readyz.

use std::time::Duration;

use super::page;
use crate::upstream::conn::ExchangeTimeouts;
use crate::upstream::UpstreamAddr;

/// php-fpm's ping page is a word ("pong"); anything bigger is not it.
const PING_MAX_BYTES: usize = 64 * 1024;

/// `Ok` when php-fpm at `upstream` answers `path` with success, else a
/// one-line reason. `timeout` bounds the connect and the answer each.
pub async fn ping(upstream: &UpstreamAddr, path: &str, timeout: Duration) -> Result<(), String> {
    let stdout = page::one_shot(
        upstream,
        page::request(path, "", false),
        ExchangeTimeouts { read: timeout },
        timeout,
        PING_MAX_BYTES,
    )
    .await
    .map_err(|e| format!("upstream unreachable or failing: {e}"))?;
    match page::parse(stdout) {
        Ok((status, _)) if status.is_success() => Ok(()),
        Ok((status, _)) => Err(format!("php-fpm ping {path} answered {}", status.as_u16())),
        Err(_) => Err(format!("php-fpm ping {path} sent no response head")),
    }
}
