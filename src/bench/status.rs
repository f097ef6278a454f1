//! php-fpm's status page (`pm.status_path`), read over FastCGI like any
//! script: `listen queue` (connections waiting for a worker right now) and
//! `max children reached` (how often the pool wanted more workers than
//! `pm.max_children`; a counter since php-fpm started). Its process counts
//! are not used: php-fpm miscounts them once connections are kept alive
//! (seen here: "max active processes" 19032 in a pool of 4).

use std::time::Duration;

use serde::Serialize;

use crate::fpm::page;
use crate::fpm::status::{self as fpm_status, MAX_STATUS_BYTES};
use crate::upstream::conn::ExchangeTimeouts;
use crate::upstream::UpstreamAddr;

/// The fields the bench reports.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct FpmStatus {
    pub listen_queue: u64,
    pub max_listen_queue: u64,
    /// The backlog size (`listen.backlog` capped by the kernel); 0 where
    /// php-fpm cannot read it (unix sockets on Linux).
    pub listen_queue_len: u64,
    pub max_children_reached: u64,
}

impl From<fpm_status::FpmStatus> for FpmStatus {
    fn from(s: fpm_status::FpmStatus) -> Self {
        FpmStatus {
            listen_queue: s.listen_queue,
            max_listen_queue: s.max_listen_queue,
            listen_queue_len: s.listen_queue_len,
            max_children_reached: s.max_children_reached,
        }
    }
}

/// Fetches and parses the status page of the pool behind `addr`, on a
/// connection of its own (the bench has no pool).
pub async fn fetch(
    addr: &UpstreamAddr,
    path: &str,
    connect_timeout: Duration,
    timeout: Duration,
) -> Result<FpmStatus, String> {
    let stdout = page::one_shot(
        addr,
        fpm_status::request(path, false),
        ExchangeTimeouts { read: timeout },
        connect_timeout,
        MAX_STATUS_BYTES,
    )
    .await?;
    parse_response(&stdout)
}

fn parse_response(stdout: &[u8]) -> Result<FpmStatus, String> {
    fpm_status::parse_response(bytes::Bytes::copy_from_slice(stdout))
        .map(FpmStatus::from)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &[u8] =
        b"Content-type: application/json\r\nExpires: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n\
        {\"pool\":\"www\",\"process manager\":\"static\",\"start time\":1,\"start since\":2,\
        \"accepted conn\":10,\"listen queue\":3,\"max listen queue\":7,\"listen queue len\":511,\
        \"idle processes\":1,\"active processes\":3,\"total processes\":4,\
        \"max active processes\":4,\"max children reached\":2,\"slow requests\":0}";

    #[test]
    fn parses_the_json_page() {
        let s = parse_response(PAGE).unwrap();
        assert_eq!(
            s,
            FpmStatus {
                listen_queue: 3,
                max_listen_queue: 7,
                listen_queue_len: 511,
                max_children_reached: 2,
            }
        );
    }

    #[test]
    fn explains_a_missing_status_page() {
        let e = parse_response(
            b"Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nFile not found.\n",
        )
        .unwrap_err();
        assert!(e.contains("404") && e.contains("pm.status_path"), "{e}");
        let e = parse_response(b"Content-type: text/plain\r\n\r\npool: www\n").unwrap_err();
        assert!(e.contains("JSON"), "{e}");
    }
}
