//! The admin listener (`--admin-listen`): /healthz, /readyz against a real
//! php-fpm (up, then stopped), Prometheus /metrics after real requests, and
//! that none of it is reachable through the public listener.

use crate::support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::gateway::{self, Gateway};
use support::php_fpm::{fixtures_dir, PhpFpm, PhpFpmOptions};
use support::wait;

async fn gateway_with_admin(upstream: &str, extra: &[&str]) -> (Gateway, SocketAddr) {
    let mut args = vec!["--admin-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let gw = Gateway::serve(upstream, &fixtures_dir().display().to_string(), &args).await;
    let admin = gw.admin.expect("admin listener bound");
    (gw, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_readyz_follow_php_fpm() {
    let mut fpm = PhpFpm::start();
    let upstreams = support::upstreams_of(&fpm);
    let mut gateways = Vec::new();
    for upstream in &upstreams {
        let (gw, admin) = gateway_with_admin(upstream, &["--connect-timeout", "1s"]).await;
        let health = gateway::get(admin, "/healthz").await;
        assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
        let ready = gateway::get(admin, "/readyz").await;
        assert_eq!(ready.status, 200, "{upstream}: {}", ready.text());
        let unknown = gateway::get(admin, "/hello.php").await;
        assert_eq!(unknown.status, 404);
        gateways.push((upstream, gw, admin));
    }
    fpm.stop();
    for (upstream, gw, admin) in gateways {
        let ready = gateway::get(admin, "/readyz").await;
        assert_eq!(ready.status, 503, "{upstream}: {}", ready.text());
        assert!(ready.text().contains("unreachable"), "{}", ready.text());
        // The gateway itself is still up.
        assert_eq!(gateway::get(admin, "/healthz").await.status, 200);
        gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_asks_php_fpm_ping_path_when_given() {
    let mut fpm = PhpFpm::start_with(PhpFpmOptions {
        extra_pool_lines: vec!["ping.path = /ping".into()],
        ..Default::default()
    });
    for upstream in support::upstreams_of(&fpm) {
        let (gw, admin) = gateway_with_admin(&upstream, &["--fpm-ping-path", "/ping"]).await;
        let ready = gateway::get(admin, "/readyz").await;
        assert_eq!(ready.status, 200, "{upstream}: {}", ready.text());
        gw.shutdown().await;
        // php-fpm accepts the connection but has no such ping path: a bare
        // connect would say ready, the ping does not.
        let (gw, admin) = gateway_with_admin(&upstream, &["--fpm-ping-path", "/nope"]).await;
        let ready = gateway::get(admin, "/readyz").await;
        assert_eq!(ready.status, 503, "{upstream}: {}", ready.text());
        assert!(
            ready.text().contains("/nope answered 404"),
            "{}",
            ready.text()
        );
        gw.shutdown().await;
    }
    let upstream = support::upstreams_of(&fpm).remove(0);
    let (gw, admin) = gateway_with_admin(&upstream, &["--fpm-ping-path", "/ping"]).await;
    fpm.stop();
    let ready = gateway::get(admin, "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(ready.text().contains("unreachable"), "{}", ready.text());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_show_the_pool() {
    let fpm = support::shared_fpm();
    for upstream in support::upstreams_of(fpm) {
        let (gw, admin) = gateway_with_admin(&upstream, &[]).await;
        // The public listener does not serve the admin paths: /metrics is
        // just a path there, and names no file.
        let public = gateway::get(gw.addr, "/metrics").await;
        assert_eq!(public.status, 404);
        assert!(
            !public.text().contains("fcgi_gateway_"),
            "{}",
            public.text()
        );
        assert_eq!(gateway::get(gw.addr, "/healthz").await.status, 404);
        for _ in 0..3 {
            assert_eq!(gateway::get(gw.addr, "/hello.php").await.status, 200);
        }
        let socket = upstream.split(':').next().unwrap_or_default().to_owned();
        let text = wait::scrape_until(admin, Duration::from_secs(15), |t| {
            t.contains("fcgi_gateway_requests_total{class=\"2xx\"} 3\n")
                && t.contains("fcgi_gateway_requests_total{class=\"4xx\"} 2\n")
        })
        .await;
        assert!(
            text.contains("fcgi_gateway_requests_total{class=\"5xx\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE fcgi_gateway_request_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("fcgi_gateway_request_duration_seconds_count 5\n"),
            "{text}"
        );
        assert!(
            text.contains("fcgi_gateway_request_duration_seconds_bucket{le=\"+Inf\"} 5\n"),
            "{text}"
        );
        let labels = format!("{{upstream=\"{upstream}\",socket=\"{socket}\"}}");
        for line in [
            format!("fcgi_gateway_upstream_pool_size{labels} 8\n"),
            format!("fcgi_gateway_upstream_pool_busy{labels} 0\n"),
            format!("fcgi_gateway_upstream_pool_waiting{labels} 0\n"),
            format!("fcgi_gateway_upstream_connects_total{labels} "),
            format!("fcgi_gateway_upstream_saturated_total{labels} 0\n"),
            format!("fcgi_gateway_upstream_retries_total{labels} 0\n"),
        ] {
            assert!(text.contains(&line), "no `{line}` in:\n{text}");
        }
        // Kept alive: the three scripts shared connections, still open and idle.
        let snap = gw.pool.snapshot();
        assert!(
            text.contains(&format!(
                "fcgi_gateway_upstream_pool_idle{labels} {}\n",
                snap.idle
            )),
            "{snap:?}\n{text}"
        );
        assert!(snap.idle >= 1, "{snap:?}");
        // Without a status page, no php-fpm series.
        assert!(!text.contains("fcgi_gateway_fpm_"), "{text}");
        gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_php_fpm_status_page() {
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        children: 2,
        status_path: Some("/status".into()),
        ..Default::default()
    });
    let upstream = format!("unix:{}", fpm.unix_socket.display());
    let (gw, admin) = gateway_with_admin(&upstream, &["--fpm-status-path", "/status"]).await;
    let labels = format!("{{upstream=\"{upstream}\",socket=\"unix\"}}");
    // A size smaller than configured is confirmed by a second reading 2 s later.
    let sized = format!("fcgi_gateway_upstream_pool_size{labels} 2\n");
    let text = wait::scrape_until(admin, Duration::from_secs(15), |t| {
        t.contains("fcgi_gateway_fpm_listen_queue{") && t.contains(&sized)
    })
    .await;
    for line in [
        format!("fcgi_gateway_fpm_listen_queue{labels} 0\n"),
        format!("fcgi_gateway_fpm_max_children_reached_total{labels} "),
        // Sized from the status page, and the gauge says so.
        format!("fcgi_gateway_upstream_pool_size{labels} 2\n"),
    ] {
        assert!(text.contains(&line), "no `{line}` in:\n{text}");
    }
    gw.shutdown().await;
}

#[test]
fn bad_admin_listen_exits_2_naming_the_flag() {
    let root = fixtures_dir().display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_fcgi-gateway"))
        .args([
            "serve",
            "--upstream",
            "unix:/tmp/none.sock",
            "--root",
            &root,
            "--admin-listen",
            "nonsense",
        ])
        .output()
        .expect("run fcgi-gateway");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--admin-listen"), "{stderr}");
    assert!(stderr.contains("nonsense"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

fn http_over_unix(path: &std::path::Path, request: &str) -> String {
    let mut s = UnixStream::connect(path).expect("connect to the admin socket");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn binary_serves_admin_on_a_unix_socket_and_removes_it_on_exit() {
    let fpm = support::shared_fpm();
    let dir = tempfile::tempdir().expect("temp dir");
    let public = dir.path().join("gw.sock");
    let admin = dir.path().join("admin.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fcgi-gateway"))
        .args([
            "serve",
            "--listen",
            &format!("unix:{}", public.display()),
            "--admin-listen",
            &format!("unix:{}", admin.display()),
            "--upstream",
            &format!("tcp:{}", fpm.tcp_addr),
            "--root",
            &fixtures_dir().display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gateway");
    wait::socket_listens_blocking(&admin, Duration::from_secs(10));
    let get = |path: &str| {
        http_over_unix(
            &admin,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
    };
    let health = get("/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
    assert!(get("/readyz").starts_with("HTTP/1.1 200"));
    assert!(get("/metrics").contains("fcgi_gateway_upstream_pool_size{"));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = child.wait().expect("wait for the gateway");
    assert_eq!(status.code(), Some(0));
    assert!(!admin.exists(), "the admin socket file is removed on exit");
    assert!(!public.exists());
}
