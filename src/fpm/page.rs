//! php-fpm's own pages (`pm.status_path`, `ping.path`): GETs that php-fpm
//! answers by SCRIPT_NAME without running PHP, read whole and split into
//! the CGI status and the body. One way to ask and to read for the status
//! follower, the readiness probe and the bench.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use tokio::sync::mpsc;

use crate::cgi::response::{HeadParser, DEFAULT_HEAD_LIMIT};
use crate::upstream::conn::{self, ExchangeTimeouts};
use crate::upstream::request::{self, Stdin};
use crate::upstream::{Output, OutputSink, RequestBody, UpstreamAddr, UpstreamError};

/// A GET of `path` (with `query`): BEGIN_REQUEST, PARAMS, empty STDIN.
/// `keep_conn` is false for a connection dialled just for it.
pub fn request(path: &str, query: &str, keep_conn: bool) -> Bytes {
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

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
}

/// The whole STDOUT of an exchange reported on `rx`, at most `max_bytes`.
pub async fn collect(
    rx: &mut mpsc::Receiver<Output>,
    max_bytes: usize,
) -> Result<Bytes, CollectError> {
    let mut stdout = BytesMut::new();
    while let Some(out) = rx.recv().await {
        match out {
            Output::Stdout(data) => {
                if stdout.len() + data.len() > max_bytes {
                    return Err(CollectError::TooLarge(max_bytes));
                }
                stdout.extend_from_slice(&data);
            }
            Output::Stderr(_) | Output::Timing(_) => {}
            Output::Failed(e) => return Err(e.into()),
        }
    }
    Ok(stdout.freeze())
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
    let tx = OutputSink::from(tx);
    // Collect concurrently: an answer bigger than the channel must not stall the exchange.
    let collecting = collect(&mut rx, max_bytes);
    let exchange = async {
        let r = conn::exchange(&mut conn, &head, &mut RequestBody::Empty, &tx, timeouts).await;
        // Ends the collector.
        drop(tx);
        r
    };
    let (outcome, stdout) = tokio::join!(exchange, collecting);
    // The exchange's own error says more than the collector's copy of it.
    outcome.map_err(|f| f.error.to_string())?;
    stdout.map_err(|e| e.to_string())
}

/// The CGI status and the body of a page's whole STDOUT (a page that sets
/// no Status is 200, as CGI says).
pub fn parse(stdout: Bytes) -> Result<(StatusCode, Bytes), String> {
    let mut parser = HeadParser::new(DEFAULT_HEAD_LIMIT);
    let (head, body) = match parser.push(stdout) {
        Ok(Some(done)) => done,
        Ok(None) => parser.finish().map_err(|e| format!("bad CGI head: {e}"))?,
        Err(e) => return Err(format!("bad CGI head: {e}")),
    };
    Ok((head.status, body))
}
