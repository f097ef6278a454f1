//! php-fpm's status page (`pm.status_path`, `?json`), requested over FastCGI
//! like any script: the real capacity (`max children`) and saturation signs
//! (`listen queue`, `max children reached`). php-fpm does not publish
//! FCGI_MAX_CONNS through GET_VALUES, so this is where the pool learns its size.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use super::conn::{self, ExchangeTimeouts};
use super::{
    forward, FcgiRequest, Measure, Output, Pool, RequestBody, UpstreamAddr, UpstreamError,
};
use crate::cgi::response::{HeadParser, DEFAULT_HEAD_LIMIT};
use crate::upstream::request::{self, Stdin};

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
    management_request(path, "json", keep_conn)
}

/// A GET of one of php-fpm's own pages (status, ping), which php-fpm answers
/// by SCRIPT_NAME without running PHP: BEGIN_REQUEST, PARAMS, empty STDIN.
pub fn management_request(path: &str, query: &str, keep_conn: bool) -> Bytes {
    let uri = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    let params: [(&[u8], &[u8]); 8] = [
        (b"SCRIPT_FILENAME", path.as_bytes()),
        (b"SCRIPT_NAME", path.as_bytes()),
        (b"QUERY_STRING", query.as_bytes()),
        (b"REQUEST_METHOD", b"GET"),
        (b"REQUEST_URI", uri.as_bytes()),
        (b"GATEWAY_INTERFACE", b"CGI/1.1"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"SERVER_SOFTWARE", b"fcgi-gateway"),
    ];
    request::encode(&params, keep_conn, Stdin::Complete(&[]))
}

/// Sends `head` on a connection of its own (not through a pool: probes must
/// not queue behind real requests, and the bench has no pool) and returns
/// the whole STDOUT, refusing more than `max_bytes`.
pub async fn one_shot(
    addr: &UpstreamAddr,
    head: Bytes,
    timeouts: ExchangeTimeouts,
    connect_timeout: Duration,
    max_bytes: usize,
) -> Result<Bytes, String> {
    let mut conn = conn::dial(addr, connect_timeout)
        .await
        .map_err(|e| e.to_string())?;
    let (tx, mut rx) = mpsc::channel(16);
    // Collect concurrently: an answer bigger than the channel must not stall the exchange.
    let collect = async {
        let mut stdout = BytesMut::new();
        while let Some(out) = rx.recv().await {
            if let Output::Stdout(data) = out {
                if stdout.len() + data.len() > max_bytes {
                    return Err(format!("answer larger than {max_bytes} bytes"));
                }
                stdout.extend_from_slice(&data);
            }
        }
        Ok(stdout.freeze())
    };
    let exchange = async {
        let r = conn::exchange(&mut conn, head, &mut RequestBody::Empty, &tx, timeouts).await;
        // Ends the collector.
        drop(tx);
        r
    };
    let (outcome, stdout) = tokio::join!(exchange, collect);
    outcome.map_err(|f| f.error.to_string())?;
    stdout
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
        tx,
        Measure::Nothing,
    ));
    let mut stdout = BytesMut::new();
    while let Some(out) = rx.recv().await {
        match out {
            Output::Stdout(data) => {
                if stdout.len() + data.len() > MAX_STATUS_BYTES {
                    return Err(too_large());
                }
                stdout.extend_from_slice(&data);
            }
            Output::Stderr(_) | Output::Timing(_) => {}
            Output::Failed(e) => return Err(e.into()),
        }
    }
    parse_response(stdout.freeze())
}

/// The status page is small; anything bigger is not it.
pub const MAX_STATUS_BYTES: usize = 256 * 1024;

pub fn too_large() -> StatusError {
    StatusError::Format(format!("answer larger than {MAX_STATUS_BYTES} bytes"))
}

/// Splits the CGI head off php-fpm's answer and reads the JSON body.
pub fn parse_response(stdout: Bytes) -> Result<FpmStatus, StatusError> {
    let mut parser = HeadParser::new(DEFAULT_HEAD_LIMIT);
    let (head, body) = match parser.push(stdout) {
        Ok(Some(done)) => done,
        Ok(None) => parser
            .finish()
            .map_err(|e| StatusError::Format(format!("bad CGI head: {e}")))?,
        Err(e) => return Err(StatusError::Format(format!("bad CGI head: {e}"))),
    };
    if head.status.as_u16() != 200 {
        return Err(StatusError::Status {
            status: head.status.as_u16(),
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
