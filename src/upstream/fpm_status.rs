//! php-fpm's status page (`pm.status_path`, `?json`), requested over FastCGI
//! like any script: the real capacity (`max children`) and saturation signs
//! (`listen queue`, `max children reached`). php-fpm does not publish
//! FCGI_MAX_CONNS through GET_VALUES, so this is where the pool learns its size.

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use super::{forward, FcgiRequest, Output, Pool, RequestBody, UpstreamError};
use crate::cgi::response::{HeadParser, DEFAULT_HEAD_LIMIT};
use crate::fastcgi::{self, RecordType, Role};
use crate::upstream::conn::REQUEST_ID;

/// The fields of php-fpm's JSON status that the gateway uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FpmStatus {
    /// 0 when php-fpm does not tell (dynamic or ondemand pools).
    pub max_children: u64,
    pub active_processes: u64,
    pub idle_processes: u64,
    pub listen_queue: u64,
    pub max_children_reached: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("status page answered {0}")]
    Status(u16),
    #[error("status page is not php-fpm's JSON: {0}")]
    Format(String),
}

/// Requests `path?json` through `pool` and parses the answer.
pub async fn fetch(pool: &Pool, path: &str) -> Result<FpmStatus, StatusError> {
    let uri = format!("{path}?json");
    let params: [(&[u8], &[u8]); 8] = [
        (b"SCRIPT_FILENAME", path.as_bytes()),
        (b"SCRIPT_NAME", path.as_bytes()),
        (b"QUERY_STRING", b"json"),
        (b"REQUEST_METHOD", b"GET"),
        (b"REQUEST_URI", uri.as_bytes()),
        (b"GATEWAY_INTERFACE", b"CGI/1.1"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"SERVER_SOFTWARE", b"fcgi-gateway"),
    ];
    let mut head = BytesMut::with_capacity(512);
    fastcgi::encode_begin_request(&mut head, REQUEST_ID, Role::Responder, true);
    fastcgi::encode_params(&mut head, REQUEST_ID, &params);
    fastcgi::encode_stream_end(&mut head, RecordType::Stdin, REQUEST_ID);
    let (tx, mut rx) = mpsc::channel(8);
    tokio::spawn(forward(
        pool.clone(),
        FcgiRequest {
            head: head.freeze(),
            body: RequestBody::Empty,
        },
        tx,
    ));
    let mut stdout = BytesMut::new();
    while let Some(out) = rx.recv().await {
        match out {
            Output::Stdout(data) => {
                // The status page is small; refuse anything absurd.
                if stdout.len() + data.len() > 1024 * 1024 {
                    return Err(StatusError::Format("answer larger than 1 MiB".into()));
                }
                stdout.extend_from_slice(&data);
            }
            Output::Stderr(_) => {}
            Output::Failed(e) => return Err(e.into()),
        }
    }
    parse_response(stdout.freeze())
}

fn parse_response(stdout: Bytes) -> Result<FpmStatus, StatusError> {
    let mut parser = HeadParser::new(DEFAULT_HEAD_LIMIT);
    let (head, body) = match parser.push(stdout) {
        Ok(Some(done)) => done,
        Ok(None) => parser
            .finish()
            .map_err(|e| StatusError::Format(e.to_string()))?,
        Err(e) => return Err(StatusError::Format(e.to_string())),
    };
    if head.status.as_u16() != 200 {
        return Err(StatusError::Status(head.status.as_u16()));
    }
    parse_json(&body)
}

/// Parses php-fpm's `?json` status body.
pub fn parse_json(body: &[u8]) -> Result<FpmStatus, StatusError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| StatusError::Format(e.to_string()))?;
    let field = |name: &str| -> Result<u64, StatusError> {
        value
            .get(name)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| StatusError::Format(format!("no numeric `{name}`")))
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
        max_children_reached: field("max children reached")?,
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
        assert!(parse_json(b"<html>").is_err());
        assert!(parse_json(b"{}").is_err());
    }

    #[test]
    fn refuses_non_200() {
        let r = parse_response(Bytes::from_static(
            b"Status: 404 Not Found\r\n\r\nFile not found.",
        ));
        assert!(matches!(r, Err(StatusError::Status(404))));
    }
}
