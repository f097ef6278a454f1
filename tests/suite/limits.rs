//! Request limits and their statuses, sent as raw HTTP/1.1 through the
//! gateway to a real php-fpm over both `unix:` and `tcp:`: a long request
//! target → 414, a large header block or too many header lines → 431, a
//! large body → 413; requests just within each limit reach PHP.

use crate::support;

use std::time::Duration;

use support::gateway::{self, Gateway};
use support::php_fpm::fixtures_dir;

async fn start(upstream: &str, extra: &[&str]) -> Gateway {
    let root = fixtures_dir().display().to_string();
    let mut args = vec!["--upstream", upstream, "--root", root.as_str()];
    args.extend_from_slice(extra);
    Gateway::start(&args).await
}

/// Sends `GET target` with `headers` (plus Host and Connection: close) and
/// returns the status code and the whole response text.
async fn send_raw(gw: &Gateway, target: &str, headers: &[(String, String)]) -> (u16, String) {
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    let resp = gateway::raw(gw.addr, req.as_bytes(), Duration::from_secs(10)).await;
    status_of(&resp)
}

fn status_of(resp: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(resp).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {:?}", &text[..text.len().min(200)]));
    (status, text)
}

fn header(name: &str, len: usize) -> (String, String) {
    (name.to_owned(), "v".repeat(len))
}

#[tokio::test]
async fn request_target_over_max_uri_length_is_414() {
    for upstream in support::shared_upstreams() {
        let gw = start(&upstream, &[]).await;
        // Default 8 KiB: a query just inside reaches PHP, one byte more is 414.
        let within = format!("/env.php?q={}", "a".repeat(8192 - 11));
        assert_eq!(within.len(), 8192);
        let (status, text) = send_raw(&gw, &within, &[]).await;
        assert_eq!(status, 200, "{upstream}: {text}");
        assert!(text.contains(&"a".repeat(8000)), "{upstream}");
        let (status, text) = send_raw(&gw, &format!("{within}a"), &[]).await;
        assert_eq!(status, 414, "{upstream}: {text}");
        assert!(text.contains("max-uri-length"), "{text}");
        // Past the HTTP parser's own ceiling (65,534 bytes): still 414.
        let (status, _) = send_raw(&gw, &format!("/{}", "a".repeat(70_000)), &[]).await;
        assert_eq!(status, 414, "{upstream}");
        gw.shutdown().await;

        let gw = start(&upstream, &["--max-uri-length", "100"]).await;
        let (status, _) = send_raw(&gw, &format!("/env.php?q={}", "a".repeat(89)), &[]).await;
        assert_eq!(status, 200, "{upstream}");
        let (status, _) = send_raw(&gw, &format!("/env.php?q={}", "a".repeat(90)), &[]).await;
        assert_eq!(status, 414, "{upstream}");
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn header_block_over_max_header_size_is_431() {
    for upstream in support::shared_upstreams() {
        let gw = start(&upstream, &[]).await;
        // Default 32 KiB: a 30 KiB header reaches PHP whole.
        let (status, text) = send_raw(&gw, "/env.php", &[header("X-Big", 30 * 1024)]).await;
        assert_eq!(status, 200, "{upstream}: {}", &text[..200]);
        assert!(text.contains(&"v".repeat(30 * 1024)), "{upstream}");
        // 33 KiB of headers: over the limit, within what the parser buffers.
        let (status, text) = send_raw(&gw, "/env.php", &[header("X-Big", 33 * 1024)]).await;
        assert_eq!(status, 431, "{upstream}: {text}");
        assert!(text.contains("max-header-size"), "{text}");
        // Far past the parser's buffer: 431 as well, from the parser.
        let (status, _) = send_raw(&gw, "/env.php", &[header("X-Big", 300 * 1024)]).await;
        assert_eq!(status, 431, "{upstream}");
        gw.shutdown().await;

        let gw = start(&upstream, &["--max-header-size", "1k"]).await;
        let (status, _) = send_raw(&gw, "/env.php", &[header("X-Big", 900)]).await;
        assert_eq!(status, 200, "{upstream}");
        let (status, _) = send_raw(&gw, "/env.php", &[header("X-Big", 1100)]).await;
        assert_eq!(status, 431, "{upstream}");
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn more_header_lines_than_max_headers_is_431() {
    let numbered = |n: usize| -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("X-H{i}"), "1".to_owned()))
            .collect()
    };
    for upstream in support::shared_upstreams() {
        // Host and Connection count too: 2 + 98 = the default 100.
        let gw = start(&upstream, &[]).await;
        let (status, _) = send_raw(&gw, "/env.php", &numbered(98)).await;
        assert_eq!(status, 200, "{upstream}");
        let (status, _) = send_raw(&gw, "/env.php", &numbered(99)).await;
        assert_eq!(status, 431, "{upstream}");
        gw.shutdown().await;

        let gw = start(&upstream, &["--max-headers", "5"]).await;
        let (status, text) = send_raw(&gw, "/env.php", &numbered(3)).await;
        assert_eq!(status, 200, "{upstream}: {text}");
        let (status, _) = send_raw(&gw, "/env.php", &numbered(4)).await;
        assert_eq!(status, 431, "{upstream}");
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn body_over_max_body_size_is_413() {
    for upstream in support::shared_upstreams() {
        let gw = start(&upstream, &["--max-body-size", "1k"]).await;
        let post = |len: usize| {
            let mut req = format!(
                "POST /echo_post.php HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
                 Content-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n"
            )
            .into_bytes();
            req.extend(std::iter::repeat_n(b'x', len));
            req
        };
        let (status, _) =
            status_of(&gateway::raw(gw.addr, &post(1024), Duration::from_secs(10)).await);
        assert_eq!(status, 200, "{upstream}");
        let (status, text) =
            status_of(&gateway::raw(gw.addr, &post(1025), Duration::from_secs(10)).await);
        assert_eq!(status, 413, "{upstream}: {text}");
        gw.shutdown().await;
    }
}

/// With several listeners and `--max-connections 1`, a connection to any of
/// them is served: the permit is taken per accepted connection. Taken before
/// `accept`, every idle listener held one and the second listener's client
/// waited forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_counts_connections_not_listeners() {
    use clap::Parser;
    use fcgi_gateway::cli::{Cli, Command};
    use fcgi_gateway::config;
    use fcgi_gateway::server::{Listener, Server};

    let root = fixtures_dir().display().to_string();
    let upstream = support::shared_upstreams().remove(0);
    let argv = [
        "fcgi-gateway",
        "serve",
        "--upstream",
        &upstream,
        "--root",
        &root,
        "--max-connections",
        "1",
    ];
    let Command::Serve(args) = Cli::try_parse_from(argv).unwrap().command else {
        panic!("not serve")
    };
    // Whichever listener would have held the only permit, one of the two
    // orders asks the other one first.
    for order in [[0, 1], [1, 0]] {
        let config = config::load(&args).unwrap();
        let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let second = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addrs = [first.local_addr().unwrap(), second.local_addr().unwrap()];
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(Server::new(config).run(
            vec![Listener::Tcp(first), Listener::Tcp(second)],
            async {
                let _ = stopped.await;
            },
        ));
        for i in order {
            let addr = addrs[i];
            let reply =
                tokio::time::timeout(Duration::from_secs(5), gateway::get(addr, "/data.txt"))
                    .await
                    .unwrap_or_else(|_| panic!("{addr}: no answer with max-connections 1"));
            assert_eq!(reply.status, 200, "{addr}");
        }
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
