//! Readiness: can the upstream take a request? Without a ping path, a
//! FastCGI connect (closed at once, so no worker is held); with php-fpm's
//! `ping.path`, a request to it on a fresh connection that must answer 200.
//! Never through the pool: a probe must not queue behind real requests.

use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::mpsc;

use crate::cgi::response::{HeadParser, DEFAULT_HEAD_LIMIT};
use crate::fastcgi::{self, RecordType, Role};
use crate::upstream::conn::{self, ExchangeTimeouts, Output, REQUEST_ID};
use crate::upstream::{RequestBody, UpstreamAddr};

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
    let mut conn = conn::dial(upstream, timeout)
        .await
        .map_err(|e| format!("upstream unreachable: {e}"))?;
    let params: [(&[u8], &[u8]); 8] = [
        (b"SCRIPT_FILENAME", path.as_bytes()),
        (b"SCRIPT_NAME", path.as_bytes()),
        (b"QUERY_STRING", b""),
        (b"REQUEST_METHOD", b"GET"),
        (b"REQUEST_URI", path.as_bytes()),
        (b"GATEWAY_INTERFACE", b"CGI/1.1"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"SERVER_SOFTWARE", b"fcgi-gateway"),
    ];
    let mut head = BytesMut::with_capacity(256);
    fastcgi::encode_begin_request(&mut head, REQUEST_ID, Role::Responder, false);
    fastcgi::encode_params(&mut head, REQUEST_ID, &params);
    fastcgi::encode_stream_end(&mut head, RecordType::Stdin, REQUEST_ID);
    let (tx, mut rx) = mpsc::channel(8);
    let exchange = async move {
        let result = conn::exchange(
            &mut conn,
            head.freeze(),
            &mut RequestBody::Empty,
            &tx,
            ExchangeTimeouts { read: timeout },
        )
        .await;
        drop(tx);
        result.map(drop).map_err(|f| f.error.to_string())
    };
    let collect = async {
        let mut parser = HeadParser::new(DEFAULT_HEAD_LIMIT);
        let mut status = None;
        while let Some(out) = rx.recv().await {
            match out {
                Output::Stdout(data) if status.is_none() => {
                    if let Ok(Some((head, _))) = parser.push(data) {
                        status = Some(head.status);
                    }
                }
                Output::Failed(e) => return Err(e.to_string()),
                _ => {}
            }
        }
        Ok(status)
    };
    let (exchanged, status) = tokio::join!(exchange, collect);
    exchanged?;
    match status? {
        Some(s) if s.is_success() => Ok(()),
        Some(s) => Err(format!("php-fpm ping {path} answered {}", s.as_u16())),
        None => Err(format!("php-fpm ping {path} sent no response head")),
    }
}
