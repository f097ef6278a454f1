//! `--trusted-proxy` through HTTP against a real php-fpm over both `unix:`
//! and `tcp:`: what `fixtures/php/env.php` sees as REMOTE_ADDR, REMOTE_PORT,
//! REQUEST_SCHEME and HTTPS when forwarding headers come from a trusted
//! proxy, and that they change nothing when they come from anyone else.

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use fcgi_gateway::cli::{Cli, Command};
use fcgi_gateway::config;
use fcgi_gateway::server::{Listener, Server};
use serde_json::Value;
use support::gateway::{self, Gateway};
use support::php_fpm::fixtures_dir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn args<'a>(upstream: &'a str, root: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--upstream", upstream, "--root", root];
    args.extend_from_slice(extra);
    args
}

async fn start(upstream: &str, extra: &[&str]) -> Gateway {
    let root = fixtures_dir().display().to_string();
    Gateway::start(&args(upstream, &root, extra)).await
}

/// `$_SERVER` of env.php for a GET with `headers`.
async fn env(gw: &Gateway, headers: &[(&str, &str)]) -> Value {
    let r = gateway::request(gw.addr, "GET", "/env.php", headers, Bytes::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn s<'a>(env: &'a Value, key: &str) -> Option<&'a str> {
    env.get(key).and_then(Value::as_str)
}

const SPOOF: [(&str, &str); 3] = [
    ("X-Forwarded-For", "203.0.113.9"),
    ("X-Forwarded-Proto", "https"),
    ("Forwarded", "for=198.51.100.1;proto=https"),
];

#[tokio::test]
async fn untrusted_peers_forwarding_headers_change_nothing() {
    for upstream in support::shared_upstreams() {
        for extra in [&[][..], &["--trusted-proxy", "10.0.0.0/8"][..]] {
            let gw = start(&upstream, extra).await;
            let e = env(&gw, &SPOOF).await;
            assert_eq!(
                s(&e, "REMOTE_ADDR"),
                Some("127.0.0.1"),
                "{upstream} {extra:?}"
            );
            let port = s(&e, "REMOTE_PORT").unwrap_or("");
            assert!(port.parse::<u16>().is_ok_and(|p| p > 0), "{port:?}");
            assert_eq!(s(&e, "REQUEST_SCHEME"), Some("http"));
            assert_eq!(e.get("HTTPS"), None);
            // Still there for the application to look at.
            assert_eq!(s(&e, "HTTP_X_FORWARDED_FOR"), Some("203.0.113.9"));
            gw.shutdown().await;
        }
    }
}

#[tokio::test]
async fn trusted_peer_right_most_untrusted_forwarded_for_is_remote_addr() {
    for upstream in support::shared_upstreams() {
        let trust = [
            "--trusted-proxy",
            "127.0.0.1",
            "--trusted-proxy",
            "10.0.0.0/8",
        ];
        let gw = start(&upstream, &trust).await;
        // The left-most entry is whatever the client claimed; the proxies'
        // own entries are skipped from the right.
        let e = env(
            &gw,
            &[("X-Forwarded-For", "6.6.6.6, 203.0.113.9, 10.1.2.3")],
        )
        .await;
        assert_eq!(s(&e, "REMOTE_ADDR"), Some("203.0.113.9"), "{upstream}");
        // The peer's port belongs to the proxy's connection: not passed on.
        assert_eq!(s(&e, "REMOTE_PORT"), Some(""));
        assert_eq!(e.get("HTTPS"), None);
        // Several lines form one list; a port in the entry is the client's.
        let e = env(
            &gw,
            &[
                ("X-Forwarded-For", "6.6.6.6"),
                ("X-Forwarded-For", "[2001:db8::7]:4711"),
            ],
        )
        .await;
        assert_eq!(s(&e, "REMOTE_ADDR"), Some("2001:db8::7"), "{upstream}");
        assert_eq!(s(&e, "REMOTE_PORT"), Some("4711"));
        // An unreadable entry: the walk stops; the peer stays.
        let e = env(&gw, &[("X-Forwarded-For", "203.0.113.9, unknown")]).await;
        assert_eq!(s(&e, "REMOTE_ADDR"), Some("127.0.0.1"), "{upstream}");
        // `Forwarded` is not the configured header here.
        let e = env(&gw, &[("Forwarded", "for=198.51.100.1")]).await;
        assert_eq!(s(&e, "REMOTE_ADDR"), Some("127.0.0.1"), "{upstream}");
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn trusted_x_forwarded_proto_https_sets_https_on() {
    for upstream in support::shared_upstreams() {
        let gw = start(&upstream, &["--trusted-proxy", "127.0.0.0/8"]).await;
        let e = env(
            &gw,
            &[
                ("X-Forwarded-For", "203.0.113.9"),
                ("X-Forwarded-Proto", "https"),
            ],
        )
        .await;
        assert_eq!(s(&e, "HTTPS"), Some("on"), "{upstream}");
        assert_eq!(s(&e, "REQUEST_SCHEME"), Some("https"));
        // The scheme alone, without an address, is believed as well.
        let e = env(&gw, &[("X-Forwarded-Proto", "https")]).await;
        assert_eq!(s(&e, "HTTPS"), Some("on"), "{upstream}");
        assert_eq!(s(&e, "REMOTE_ADDR"), Some("127.0.0.1"));
        let e = env(&gw, &[("X-Forwarded-Proto", "http")]).await;
        assert_eq!(e.get("HTTPS"), None, "{upstream}");
        assert_eq!(s(&e, "REQUEST_SCHEME"), Some("http"));
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn trusted_forwarded_header_gives_for_and_proto() {
    for upstream in support::shared_upstreams() {
        let extra = [
            "--trusted-proxy",
            "127.0.0.1",
            "--real-ip-header",
            "forwarded",
        ];
        let gw = start(&upstream, &extra).await;
        let e = env(
            &gw,
            &[
                (
                    "Forwarded",
                    r#"for=6.6.6.6;proto=http, for="[2001:db8:cafe::17]:4711";proto=https"#,
                ),
                ("X-Forwarded-For", "203.0.113.9"),
            ],
        )
        .await;
        assert_eq!(
            s(&e, "REMOTE_ADDR"),
            Some("2001:db8:cafe::17"),
            "{upstream}"
        );
        assert_eq!(s(&e, "REMOTE_PORT"), Some("4711"));
        assert_eq!(s(&e, "HTTPS"), Some("on"));
        assert_eq!(s(&e, "REQUEST_SCHEME"), Some("https"));
        gw.shutdown().await;
    }
}

/// Runs the gateway on a unix-socket listener and sends one HTTP/1.0 GET
/// of env.php with `headers`; returns what PHP saw.
async fn env_over_unix_listener(extra: &[&str], upstream: &str, headers: &str) -> Value {
    let root = fixtures_dir().display().to_string();
    let mut argv = vec!["fcgi-gateway", "serve"];
    argv.extend(args(upstream, &root, extra));
    let Command::Serve(serve) = Cli::try_parse_from(&argv).unwrap().command else {
        panic!("not serve")
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = Server::new(config::load(&serve).unwrap());
    let task = tokio::spawn(server.run(
        vec![Listener::Unix {
            listener,
            path: path.clone(),
        }],
        async {
            let _ = stop_rx.await;
        },
    ));
    let mut stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    let req = format!("GET /env.php HTTP/1.0\r\nHost: localhost\r\n{headers}\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut resp))
        .await
        .expect("response in time")
        .unwrap();
    let _ = stop_tx.send(());
    let _ = task.await;
    let text = String::from_utf8_lossy(&resp);
    let (_, body) = text.split_once("\r\n\r\n").expect("a response head");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn unix_listener_clients_are_trusted_only_with_trusted_proxy_unix() {
    let headers = "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n";
    for upstream in support::shared_upstreams() {
        let e = env_over_unix_listener(&["--trusted-proxy", "unix"], &upstream, headers).await;
        assert_eq!(s(&e, "REMOTE_ADDR"), Some("203.0.113.9"), "{upstream}");
        assert_eq!(s(&e, "HTTPS"), Some("on"));
        let e = env_over_unix_listener(&["--trusted-proxy", "0.0.0.0/0"], &upstream, headers).await;
        assert_eq!(s(&e, "REMOTE_ADDR"), Some("unix:"), "{upstream}");
        assert_eq!(e.get("HTTPS"), None);
    }
}
