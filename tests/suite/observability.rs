//! Observability against a real php-fpm over unix: and tcp:: the
//! `Server-Timing` header (`--server-timing`), and the upstream timing
//! histograms, saturation and php-fpm status counters on /metrics.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use support::gateway::{self, Gateway};
use support::php_fpm::{fixtures_dir, PhpFpm, PhpFpmOptions};
use support::wait::{self, sample};

fn root() -> String {
    fixtures_dir().display().to_string()
}

/// `Server-Timing` parsed as (metric name, duration in ms), checking the
/// W3C syntax we promise: `name;dur=N.NNN` joined by `, `.
fn timing_parts(value: &str) -> Vec<(String, f64)> {
    value
        .split(", ")
        .map(|part| {
            let (name, dur) = part
                .split_once(";dur=")
                .unwrap_or_else(|| panic!("not name;dur=N in {value:?}"));
            let decimals = dur.split_once('.').map(|(_, d)| d.len());
            assert_eq!(decimals, Some(3), "3 decimals in {value:?}");
            let ms: f64 = dur.parse().unwrap_or_else(|_| panic!("{value:?}"));
            assert!(ms >= 0.0, "{value:?}");
            (name.to_owned(), ms)
        })
        .collect()
}

fn part(parts: &[(String, f64)], name: &str) -> Option<f64> {
    parts.iter().find(|(n, _)| n == name).map(|(_, ms)| *ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_timing_names_each_part_over_unix_and_tcp() {
    for upstream in support::shared_upstreams() {
        let gw = Gateway::serve(&upstream, &root(), &["--server-timing"]).await;
        // A fresh gateway has no connection yet: the first request dials.
        let first = gateway::get(gw.addr, "/slow.php?ms=20").await;
        assert_eq!(first.status, 200, "{upstream}");
        let value = first.header("server-timing").expect("Server-Timing");
        let parts = timing_parts(&value);
        let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["queue", "connect", "fpm", "total"], "{value}");
        let [queue, connect, fpm, total] = ["queue", "connect", "fpm", "total"]
            .map(|n| part(&parts, n).unwrap_or_else(|| panic!("no {n}: {value}")));
        // The script sleeps 20 ms before its first byte.
        assert!(fpm >= 20.0, "{upstream}: {value}");
        // The parts follow one another inside the total (each rounded).
        assert!(
            total + 0.002 >= queue + connect + fpm,
            "{upstream}: {value}"
        );

        // The next request finds that connection idle in the pool.
        let again = gateway::get(gw.addr, "/hello.php").await;
        let value = again.header("server-timing").expect("Server-Timing");
        let parts = timing_parts(&value);
        let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["queue", "fpm", "total"], "reused: {value}");
        let (fpm, total) = (part(&parts, "fpm"), part(&parts, "total"));
        assert!(total >= fpm, "{value}");
        assert_eq!(gw.pool.snapshot().connects, 1, "{upstream}");

        // Only PHP responses carry it: not static files, not refusals.
        let file = gateway::get(gw.addr, "/data.txt").await;
        assert_eq!(file.status, 200);
        assert_eq!(file.header("server-timing"), None);
        assert_eq!(
            gateway::get(gw.addr, "/nope.php")
                .await
                .header("server-timing"),
            None
        );
        gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_timing_without_the_flag() {
    for upstream in support::shared_upstreams() {
        let gw = Gateway::serve(&upstream, &root(), &[]).await;
        for _ in 0..2 {
            let r = gateway::get(gw.addr, "/hello.php").await;
            assert_eq!(r.status, 200);
            assert_eq!(r.header("server-timing"), None, "{upstream}");
        }
        gw.shutdown().await;
    }
}

async fn admin_gateway(upstream: &str, extra: &[&str]) -> (Gateway, SocketAddr) {
    let mut args = vec!["--admin-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let gw = Gateway::serve(upstream, &root(), &args).await;
    let admin = gw.admin.expect("admin listener");
    (gw, admin)
}

fn labels_of(upstream: &str) -> String {
    let socket = upstream.split(':').next().unwrap_or_default();
    format!("{{upstream=\"{upstream}\",socket=\"{socket}\"}}")
}

const LOAD: u64 = 50;
const CLIENTS: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timing_histograms_count_every_request_and_dial() {
    for upstream in support::shared_upstreams() {
        let (gw, admin) = admin_gateway(&upstream, &[]).await;
        // Several clients at once, so the pool dials more than once.
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            let addr = gw.addr;
            clients.push(tokio::spawn(async move {
                for _ in 0..LOAD / CLIENTS {
                    assert_eq!(gateway::get(addr, "/hello.php").await.status, 200);
                }
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        // php-fpm's own 404 goes through the upstream; a missing script
        // is refused by routing and never does.
        for _ in 0..3 {
            let r = gateway::get(gw.addr, "/headers.php?case=status").await;
            assert_eq!(r.status, 404);
        }
        for _ in 0..2 {
            assert_eq!(gateway::get(gw.addr, "/nope.php").await.status, 404);
        }
        let text = wait::scrape_until(admin, Duration::from_secs(15), |t| {
            t.contains("fcgi_gateway_requests_total{class=\"2xx\"} 50\n")
                && t.contains("fcgi_gateway_requests_total{class=\"4xx\"} 5\n")
        })
        .await;
        let labels = labels_of(&upstream);
        let count = |name: &str| sample(&text, &format!("fcgi_gateway_{name}_count{labels}"));
        let through_upstream = LOAD + 3;
        assert_eq!(
            count("upstream_first_byte_duration_seconds"),
            through_upstream,
            "{upstream}\n{text}"
        );
        assert_eq!(
            count("upstream_duration_seconds"),
            through_upstream,
            "{upstream}\n{text}"
        );
        // Every successful dial, and nothing else, is timed.
        let dials = sample(
            &text,
            &format!("fcgi_gateway_upstream_connects_total{labels}"),
        );
        let failed = sample(
            &text,
            &format!("fcgi_gateway_upstream_connect_failures_total{labels}"),
        );
        assert_eq!(failed, 0, "{text}");
        assert!(dials >= 1, "{text}");
        assert_eq!(
            count("upstream_connect_duration_seconds"),
            dials,
            "{upstream}\n{text}"
        );
        assert_eq!(gw.pool.snapshot().connects, dials);
        // The +Inf bucket holds every observation.
        let inf = labels.replace('}', ",le=\"+Inf\"}");
        assert_eq!(
            sample(
                &text,
                &format!("fcgi_gateway_upstream_duration_seconds_bucket{inf}")
            ),
            through_upstream
        );
        assert!(
            text.contains("# TYPE fcgi_gateway_upstream_connect_duration_seconds histogram"),
            "{text}"
        );
        assert_eq!(
            sample(&text, "fcgi_gateway_requests_total{class=\"5xx\"}"),
            0
        );
        assert_eq!(
            sample(&text, "fcgi_gateway_request_duration_seconds_count"),
            LOAD + 5
        );
        gw.shutdown().await;
    }
}

/// A full queue answers 503, counted as saturation and as a 5xx; the
/// refused request still counts in the upstream time, never in first byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturation_503s_are_counted() {
    let upstream = support::shared_upstreams().remove(0);
    let (gw, admin) = admin_gateway(
        &upstream,
        &["--max-upstream-conns", "1", "--queue-length", "0"],
    )
    .await;
    let addr = gw.addr;
    let slow = tokio::spawn(async move { gateway::get(addr, "/slow.php?ms=800").await });
    wait::until(
        "the slow request to take the connection",
        Duration::from_secs(10),
        || gw.pool.snapshot().busy > 0,
    )
    .await;
    let refused = gateway::get(gw.addr, "/hello.php").await;
    assert_eq!(refused.status, 503);
    assert_eq!(slow.await.unwrap().status, 200);
    let text = wait::scrape_until(admin, Duration::from_secs(15), |t| {
        t.contains("fcgi_gateway_requests_total{class=\"2xx\"} 1\n")
            && t.contains("fcgi_gateway_requests_total{class=\"5xx\"} 1\n")
    })
    .await;
    let labels = labels_of(&upstream);
    let get = |series: &str| sample(&text, &format!("fcgi_gateway_{series}{labels}"));
    assert_eq!(get("upstream_saturated_total"), 1, "{text}");
    assert_eq!(get("upstream_retries_total"), 0, "{text}");
    assert_eq!(get("upstream_duration_seconds_count"), 2, "{text}");
    assert_eq!(
        get("upstream_first_byte_duration_seconds_count"),
        1,
        "{text}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_fpm_status_counters_on_metrics() {
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        status_path: Some("/status".into()),
        ..Default::default()
    });
    for upstream in support::upstreams_of(&fpm) {
        let (gw, admin) = admin_gateway(&upstream, &["--fpm-status-path", "/status"]).await;
        let labels = labels_of(&upstream);
        let slow = format!("fcgi_gateway_fpm_slow_requests_total{labels}");
        let text = wait::scrape_until(admin, Duration::from_secs(15), |t| t.contains(&slow)).await;
        // No script ran past a slowlog timeout (none is set).
        assert_eq!(sample(&text, &slow), 0, "{text}");
        for series in ["fpm_listen_queue", "fpm_max_children_reached_total"] {
            sample(&text, &format!("fcgi_gateway_{series}{labels}"));
        }
        // Status page reads go through the pool but are not client
        // requests: no first-byte or total observations.
        assert_eq!(
            sample(
                &text,
                &format!("fcgi_gateway_upstream_duration_seconds_count{labels}")
            ),
            0,
            "{text}"
        );
        gw.shutdown().await;
    }
}

/// The binary prints access lines bare: with `--access-log-format json`
/// each one is a whole JSON object, ready for a log shipper.
#[test]
fn binary_prints_json_access_lines_bare() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};

    let fpm = support::shared_fpm();
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("gw.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fcgi-gateway"))
        .args(["serve", "--listen", &format!("unix:{}", sock.display())])
        .args(["--upstream", &format!("unix:{}", fpm.unix_socket.display())])
        .args(["--root", &root(), "--access-log-format", "json"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gateway");
    wait::socket_listens_blocking(&sock, Duration::from_secs(10));
    let mut s = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
    s.write_all(b"GET /hello.php HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("read");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    child.wait().expect("wait for the gateway");
    let mut log = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut log)
        .expect("read stderr");
    let access: Vec<&str> = log.lines().filter(|l| l.contains("/hello.php")).collect();
    assert_eq!(access.len(), 1, "{log}");
    let line: serde_json::Value = serde_json::from_str(access[0])
        .unwrap_or_else(|e| panic!("not a bare JSON line ({e}): {}", access[0]));
    assert_eq!(line["remote"], "unix:");
    assert_eq!(line["uri"], "/hello.php");
    assert_eq!(line["status"], 200);
}

/// Access lines written by two serving threads at once arrive whole, one
/// per request: each thread writes through its own duplicate of stderr,
/// without a lock between them, holding its lines while it has work and
/// writing them before it waits. An idle gateway's last line comes without
/// a stop; the lines held at a stop are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lines_from_two_threads_arrive_whole() {
    use support::binary::Binary;

    let fpm = support::shared_fpm();
    let upstream = format!("unix:{}", fpm.unix_socket.display());
    let mut gw = Binary::start_as_given(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--root",
        &root(),
        "--workers",
        "2",
    ]);
    let addr = gw.listen_addr("http");
    const REQUESTS: usize = 400;
    let statuses = gateway::load(addr, "/hello.php", REQUESTS, 16).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(gateway::get(addr, "/hello.php?last").await.status, 200);
    // Idle now: its line is written without a stop (wait_for panics after 20 s).
    gw.wait_for("/hello.php?last");
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit(), Some(0));
    let log = gw.whole_log();
    let access: Vec<&String> = log.iter().filter(|l| l.contains("/hello.php")).collect();
    assert_eq!(
        access.len(),
        REQUESTS + 1,
        "one line per request:\n{}",
        log.join("\n")
    );
    for line in access {
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        assert!(line.contains("\"GET /hello.php"), "{line}");
        assert!(line.contains(" HTTP/1.1\" 200 "), "{line}");
        assert_eq!(
            line.matches("127.0.0.1 - - [").count(),
            1,
            "two lines run together: {line}"
        );
    }
}
