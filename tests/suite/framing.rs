//! HTTP/1.1 framing as RFC 9112 asks, and connections that say nothing,
//! over raw sockets against the gateway and a real php-fpm: ambiguous or
//! undecodable Transfer-Encoding, Transfer-Encoding with Content-Length,
//! a missing or doubled Host are refused with the connection closed and
//! nothing sent to PHP; an absolute-form target names the host PHP sees;
//! silent connections and idle kept-alive ones are closed on time; and
//! thousands of held connections neither grow memory without bound nor
//! keep new clients out.

use crate::support;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::gateway::{self, Gateway};
use support::php_fpm::fixtures_dir;

async fn start(extra: &[&str]) -> Gateway {
    let upstream = support::shared_upstreams().remove(0);
    let root = fixtures_dir().display().to_string();
    Gateway::serve(&upstream, &root, extra).await
}

/// The status of a raw response and whether the server closed the
/// connection after it (read to EOF within the timeout).
async fn exchange(gw: &Gateway, request: &[u8]) -> (u16, bool, String) {
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .is_ok();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, closed, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_refused_closed_and_never_reaches_php() {
    let gw = start(&[]).await;
    let body = "5\r\nhello\r\n0\r\n\r\n";
    let post = |fields: &str| {
        format!("POST /echo_post.php HTTP/1.1\r\nHost: x\r\n{fields}\r\n{body}").into_bytes()
    };
    let cases: [(&str, Vec<u8>, u16); 9] = [
        (
            "gzip, chunked",
            post("Transfer-Encoding: gzip, chunked\r\n"),
            501,
        ),
        (
            "chunked twice",
            post("Transfer-Encoding: chunked, chunked\r\n"),
            400,
        ),
        (
            "two lines",
            post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
            400,
        ),
        (
            "final not chunked",
            post("Transfer-Encoding: chunked, gzip\r\n"),
            400,
        ),
        (
            "with Content-Length",
            post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
            400,
        ),
        (
            "Content-Length after",
            post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"),
            400,
        ),
        ("no Host", b"GET /hello.php HTTP/1.1\r\n\r\n".to_vec(), 400),
        (
            "two Hosts",
            b"GET /hello.php HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
            400,
        ),
        ("unknown coding", post("Transfer-Encoding: foo\r\n"), 400),
    ];
    for (name, request, expected) in cases {
        let before = gw.pool.snapshot().acquired;
        let (status, closed, text) = exchange(&gw, &request).await;
        assert_eq!(status, expected, "{name}: {text}");
        assert!(closed, "{name}: the connection stayed open");
        assert_eq!(gw.reached_pool(before), 0, "{name}: reached php-fpm");
    }
    // What is well framed still goes through.
    let (status, _, text) = exchange(
        &gw,
        &post("Transfer-Encoding: chunked\r\nConnection: close\r\n"),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"length\":5"), "{text}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_target_names_the_host_php_sees() {
    let gw = start(&[]).await;
    let request = b"GET http://good.example/env.php HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n";
    let (status, _, text) = exchange(&gw, request).await;
    assert_eq!(status, 200, "{text}");
    let json = &text[text.find('{').unwrap_or(0)..];
    let env: serde_json::Value =
        serde_json::from_str(json.trim_end_matches(|c| c != '}')).unwrap_or_default();
    assert_eq!(env["HTTP_HOST"], "good.example", "{text}");
    assert_eq!(env["SERVER_NAME"], "good.example", "{text}");
    gw.shutdown().await;
}

/// Seconds until the server closes `stream` (None: still open at `limit`).
async fn closed_after(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let began = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(began.elapsed()), stream.read(&mut buf))
            .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(began.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_are_closed_on_time() {
    let gw = start(&["--header-timeout", "1s", "--keepalive-timeout", "3s"]).await;
    // A connection that never sends a byte goes after the header timeout.
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    let took = closed_after(&mut silent, Duration::from_secs(10)).await;
    assert!(
        took.is_some_and(|t| t >= Duration::from_millis(900)),
        "{took:?}"
    );

    // Between requests the keep-alive timeout counts, not the header one.
    let mut kept = TcpStream::connect(gw.addr).await.unwrap();
    kept.write_all(b"GET /hello.php HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let took = closed_after(&mut kept, Duration::from_secs(10)).await;
    assert!(
        took.is_some_and(|t| t >= Duration::from_millis(2500)),
        "closed after {took:?}: the keep-alive timeout is 3s"
    );

    // A head begun but never finished goes after the header timeout.
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"GET /hello.php HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let took = closed_after(&mut slow, Duration::from_secs(10)).await;
    assert!(
        took.is_some_and(|t| t < Duration::from_millis(2500)),
        "{took:?}"
    );
    gw.shutdown().await;
}

/// Raises this process's open-file limit to at least `want` (both ends of
/// every test connection live here).
fn allow_files(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the one struct we pass,
    // which lives on this stack frame for the whole call.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_held_connections_cost_bounded_memory_and_keep_no_one_out() {
    const HELD: usize = 5000;
    allow_files(4 * HELD as u64);
    let gw = start(&["--max-connections", "6000", "--header-timeout", "30s"]).await;
    assert_eq!(gateway::get(gw.addr, "/hello.php").await.status, 200);
    let before = rss_kib();
    let mut held = Vec::with_capacity(HELD);
    for _ in 0..HELD {
        held.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    // Every one accepted and waiting for its head: still served meanwhile.
    let reply = tokio::time::timeout(Duration::from_secs(10), gateway::get(gw.addr, "/hello.php"))
        .await
        .expect("a new client is served while 5000 connections are held");
    assert_eq!(reply.status, 200);
    let grown = rss_kib().saturating_sub(before);
    // Both ends live in this process; a connection costs a few KiB each side.
    assert!(
        grown < 200 * 1024,
        "RSS grew {grown} KiB for {HELD} connections"
    );
    drop(held);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_a_client_gets_a_clean_close() {
    let gw = start(&["--max-connections", "20", "--header-timeout", "1s"]).await;
    let mut held = Vec::new();
    for _ in 0..60 {
        held.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    // Silent ones go after the header timeout; those past the limit are
    // closed after waiting as long: every one ends with a clean close.
    for (i, stream) in held.iter_mut().enumerate() {
        let took = closed_after(stream, Duration::from_secs(30)).await;
        assert!(took.is_some(), "connection {i} never closed");
    }
    assert_eq!(gateway::get(gw.addr, "/hello.php").await.status, 200);
    gw.shutdown().await;
}
