//! php-fpm's status page (`pm.status_path`, `?json`), requested over FastCGI
//! like any script: the real capacity (`max children`) and saturation signs
//! (`listen queue`, `max children reached`). php-fpm does not publish
//! FCGI_MAX_CONNS through GET_VALUES, so this is where the pool learns its size.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::page;
use crate::upstream::{forward, FcgiRequest, Measure, Pool, RequestBody, UpstreamError};

/// The fields of php-fpm's JSON status that the gateway uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FpmStatus {
    /// 0 when php-fpm does not tell (dynamic or ondemand pools).
    pub max_children: u64,
    pub active_processes: u64,
    pub idle_processes: u64,
    pub listen_queue: u64,
    pub max_listen_queue: u64,
    /// The backlog size (`listen.backlog` capped by the kernel); 0 where
    /// php-fpm cannot read it (unix sockets on Linux).
    pub listen_queue_len: u64,
    pub max_children_reached: u64,
    /// Requests that ran past `request_slowlog_timeout` (0 without it).
    pub slow_requests: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("php-fpm answered {status} (is pm.status_path set to this path?): {body}")]
    Status { status: u16, body: String },
    #[error("not php-fpm's JSON status: {0}")]
    Format(String),
}

/// How often the status page is read again to follow php-fpm's size.
const STATUS_REFRESH: Duration = Duration::from_secs(30);
/// How soon to ask again after a failure or an unconfirmed smaller size.
const STATUS_RETRY: Duration = Duration::from_secs(2);

/// Reads the status page through `pool` for as long as the task runs:
/// `observe` sees every reading (metrics); with `follow`, the pool takes
/// php-fpm's worker count as its size. Abort the task to stop (a config
/// reload that replaces the pool does).
pub fn spawn_follower(
    pool: Pool,
    path: String,
    follow: bool,
    observe: impl Fn(&FpmStatus) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let upstream = pool.settings().addr.clone();
    tokio::spawn(async move {
        let mut unconfirmed: Option<usize> = None;
        loop {
            let mut next = STATUS_REFRESH;
            match fetch(&pool, &path).await {
                Ok(status) => {
                    tracing::debug!(%upstream, ?status, "php-fpm status");
                    observe(&status);
                    if status.listen_queue > 0 {
                        tracing::warn!(%upstream, listen_queue = status.listen_queue, max_children_reached = status.max_children_reached, "php-fpm has connections waiting in its listen queue");
                    }
                    let children = status.max_children as usize;
                    // php-fpm counts the workers alive right now: just after a
                    // (re)start some are still forking, so a smaller size is
                    // only taken once a second reading confirms it.
                    let confirmed = children >= pool.size() || unconfirmed == Some(children);
                    if follow && children > 0 && confirmed {
                        unconfirmed = None;
                        pool.set_known_size(
                            children,
                            &format!("php-fpm status page {path} reports {children} children"),
                        );
                    } else if follow && children > 0 {
                        unconfirmed = Some(children);
                        next = STATUS_RETRY;
                    } else if follow {
                        tracing::info!(%upstream, size = pool.size(), "php-fpm's status page does not state its max children (dynamic pool?); keeping max-upstream-conns");
                    }
                }
                Err(e) => {
                    // php-fpm still starting or restarting: ask again soon.
                    tracing::warn!(%upstream, path = %path, error = %e, size = pool.size(), "cannot read php-fpm's status page; keeping the current pool size");
                    next = STATUS_RETRY;
                }
            }
            tokio::time::sleep(next).await;
        }
    })
}

/// The encoded FastCGI request for php-fpm's status page (`?json`).
/// `keep_conn` is false for a connection dialed just for it.
pub fn request(path: &str, keep_conn: bool) -> Bytes {
    page::request(path, "json", keep_conn)
}

/// Requests `path?json` through `pool` and parses the answer.
pub async fn fetch(pool: &Pool, path: &str) -> Result<FpmStatus, StatusError> {
    let head = request(path, true);
    let (tx, mut rx) = mpsc::channel(8);
    tokio::spawn(forward(
        pool.clone(),
        FcgiRequest {
            head,
            body: RequestBody::Empty,
            route: 0,
        },
        tx.into(),
        Measure::Nothing,
    ));
    let stdout = page::collect(&mut rx, MAX_STATUS_BYTES)
        .await
        .map_err(|e| match e {
            page::CollectError::Upstream(e) => StatusError::Upstream(e),
            too_large => StatusError::Format(too_large.to_string()),
        })?;
    parse_response(stdout)
}

/// The status page is small; anything bigger is not it.
pub const MAX_STATUS_BYTES: usize = 256 * 1024;

/// Splits the CGI head off php-fpm's answer and reads the JSON body.
pub fn parse_response(stdout: Bytes) -> Result<FpmStatus, StatusError> {
    let (status, body) = page::parse(stdout).map_err(StatusError::Format)?;
    if status.as_u16() != 200 {
        return Err(StatusError::Status {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body)
                .trim()
                .chars()
                .take(200)
                .collect(),
        });
    }
    parse_json(&body)
}

/// Parses php-fpm's `?json` status body.
pub fn parse_json(body: &[u8]) -> Result<FpmStatus, StatusError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        StatusError::Format(format!(
            "{e}: {:?}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        ))
    })?;
    let field = |name: &str| -> Result<u64, StatusError> {
        value
            .get(name)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| StatusError::Format(format!("the status page has no numeric {name:?}")))
    };
    // php-fpm 8.x publishes no `max children`; with `pm = static` the total
    // process count is exactly it. For dynamic/ondemand pools it is unknown.
    let is_static = value.get("process manager").and_then(|v| v.as_str()) == Some("static");
    let max_children = match field("max children") {
        Ok(n) => n,
        Err(_) if is_static => field("total processes")?,
        Err(_) => 0,
    };
    Ok(FpmStatus {
        max_children,
        active_processes: field("active processes")?,
        idle_processes: field("idle processes")?,
        listen_queue: field("listen queue")?,
        max_listen_queue: field("max listen queue")?,
        listen_queue_len: field("listen queue len")?,
        max_children_reached: field("max children reached")?,
        slow_requests: field("slow requests")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn parses_php_fpm_json() {
        let body = br#"{"pool":"www","process manager":"static","start time":1,"start since":2,
            "accepted conn":10,"listen queue":3,"max listen queue":4,"listen queue len":511,
            "idle processes":1,"active processes":3,"total processes":4,
            "max active processes":4,"max children reached":2,"slow requests":0}"#;
        let s = parse_json(body).unwrap();
        // php-fpm 8 has no "max children": with pm = static, total processes is it.
        assert_eq!(s.max_children, 4);
        let dynamic = String::from_utf8_lossy(body).replace("static", "dynamic");
        assert_eq!(parse_json(dynamic.as_bytes()).unwrap().max_children, 0);
        assert_eq!(s.listen_queue, 3);
        assert_eq!(s.max_children_reached, 2);
        assert_eq!(s.slow_requests, 0);
        let slow =
            String::from_utf8_lossy(body).replace("\"slow requests\":0", "\"slow requests\":5");
        assert_eq!(parse_json(slow.as_bytes()).unwrap().slow_requests, 5);
        assert!(parse_json(b"<html>").is_err());
        assert!(parse_json(b"{}").is_err());
    }

    #[test]
    fn request_asks_for_the_json_page() {
        use crate::fastcgi::{RequestDecoder, RequestEvent};
        let mut buf = BytesMut::from(&request("/status", false)[..]);
        let mut dec = RequestDecoder::new();
        let mut params = Vec::new();
        let (mut keep, mut ended) = (true, false);
        while let Ok(Some(ev)) = dec.decode(&mut buf) {
            match ev {
                RequestEvent::Begin { keep_conn, .. } => keep = keep_conn,
                RequestEvent::Params(p) => params = p,
                RequestEvent::StdinEnd => ended = true,
                _ => {}
            }
        }
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n == k.as_bytes())
                .map(|(_, v)| v.clone())
        };
        assert!(!keep && ended);
        assert_eq!(get("SCRIPT_NAME").as_deref(), Some(&b"/status"[..]));
        assert_eq!(get("SCRIPT_FILENAME").as_deref(), Some(&b"/status"[..]));
        assert_eq!(get("QUERY_STRING").as_deref(), Some(&b"json"[..]));
    }

    #[test]
    fn refuses_non_200() {
        let r = parse_response(Bytes::from_static(
            b"Status: 404 Not Found\r\n\r\nFile not found.",
        ));
        assert!(matches!(r, Err(StatusError::Status { status: 404, .. })));
    }
}
