//! The upstream pool against real php-fpm (and the fake server for faults):
//! worker recycling, restarts, pinned workers, saturation, idle reaping,
//! retries, sizing from php-fpm's status page.

use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::fake_fcgi::{FakeFcgi, Script, Step};
use support::gateway::{self, Gateway};
use support::php_fpm::{fixtures_dir, PhpFpm, PhpFpmOptions};
use support::wait;

/// How long the gateway may take to reach the state a test waits for.
const WAIT: Duration = Duration::from_secs(10);

fn upstreams(fpm: &PhpFpm) -> Vec<String> {
    support::upstreams_of(fpm)
}

async fn gateway_for(upstream: &str, extra: &[&str]) -> Gateway {
    Gateway::serve(upstream, &fixtures_dir().display().to_string(), extra).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_recycling_never_fails_a_request() {
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        children: 4,
        max_requests: 3,
        ..Default::default()
    });
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(&upstream, &[]).await;
        let statuses = gateway::load(gw.addr, "/hello.php", 5000, 16).await;
        let failed = statuses.iter().filter(|s| **s != 200).count();
        let snap = gw.pool.snapshot();
        assert_eq!(
            failed, 0,
            "{upstream}: {failed} of 5000 failed; pool {snap:?}"
        );
        assert_eq!(statuses.len(), 5000);
        // php-fpm closed connections as workers recycled; the pool saw it.
        assert!(
            snap.stale_dropped + snap.retries > 0,
            "{upstream}: recycled connections were never detected: {snap:?}"
        );
        // 8 pool connections against 4 workers: the pool learned to shrink
        // instead of parking requests in php-fpm's backlog.
        assert!(
            snap.size < 8,
            "{upstream}: pool did not learn php-fpm's capacity: {snap:?}"
        );
        eprintln!("{upstream}: {snap:?}");
        gw.shutdown().await;
    }
}

/// A pool configured larger than php-fpm (8 connections, 4 workers) settles
/// under sustained load instead of closing and re-dialing. When every fresh
/// connection's normal first-byte wait counted as "stuck in the backlog",
/// connections coming back were closed for it, each close made the next
/// request dial, and 87 % of requests under wrk -c32 opened a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_pool_settles_without_redialing() {
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        children: 4,
        ..Default::default()
    });
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(&upstream, &["--max-upstream-conns", "8"]).await;
        let total = 4000;
        let statuses = gateway::load(gw.addr, "/hello.php", total, 32).await;
        let snap = gw.pool.snapshot();
        assert!(
            statuses.iter().all(|s| *s == 200),
            "{upstream}: not all 200: pool {snap:?}"
        );
        assert!(
            snap.connects * 4 < total as u64,
            "{upstream}: {} dials for {total} requests: {snap:?}",
            snap.connects
        );
        eprintln!("{upstream}: {snap:?}");
        gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_fpm_restart_recovers_without_gateway_restart() {
    let mut fpm = PhpFpm::start();
    let ups = upstreams(&fpm);
    let gw_unix = gateway_for(&ups[0], &[]).await;
    let gw_tcp = gateway_for(&ups[1], &[]).await;
    for gw in [&gw_unix, &gw_tcp] {
        assert_eq!(gateway::get(gw.addr, "/hello.php").await.status, 200);
    }
    // Load runs across the restart.
    let addrs = [gw_unix.addr, gw_tcp.addr];
    let answered = Arc::new(AtomicUsize::new(0));
    let background = tokio::spawn({
        let answered = answered.clone();
        async move {
            let mut statuses = Vec::new();
            let end = Instant::now() + Duration::from_millis(1500);
            while Instant::now() < end {
                for addr in addrs {
                    statuses.push(gateway::get(addr, "/hello.php").await.status);
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
            statuses
        }
    });
    wait::until("the load to be answered by both gateways", WAIT, || {
        answered.load(Ordering::Relaxed) >= addrs.len()
    })
    .await;
    tokio::task::block_in_place(|| fpm.restart());
    let during = background.await.unwrap();
    assert!(
        during.iter().all(|s| *s == 200 || *s == 502),
        "only 502 while php-fpm is down: {during:?}"
    );
    // Back to full service by itself (connect back-off is at most 1 s).
    for gw in [&gw_unix, &gw_tcp] {
        wait::until_async(
            "recovery after restart",
            Duration::from_secs(5),
            async || gateway::get(gw.addr, "/hello.php").await.status == 200,
        )
        .await;
        let statuses = gateway::load(gw.addr, "/hello.php", 200, 8).await;
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    gw_unix.shutdown().await;
    gw_tcp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_workers_do_not_deadlock() {
    // More pool connections than php-fpm workers: a new connection waits in
    // php-fpm's backlog while our idle connections would pin the workers.
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        children: 2,
        ..Default::default()
    });
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(
            &upstream,
            &["--max-upstream-conns", "8", "--read-timeout", "5s"],
        )
        .await;
        let started = Instant::now();
        let statuses = gateway::load(gw.addr, "/slow.php?ms=300", 12, 12).await;
        let took = started.elapsed();
        assert_eq!(
            statuses,
            vec![200; 12],
            "{upstream}: {:?}",
            gw.pool.snapshot()
        );
        // 12 requests × 300 ms on 2 workers is 1.8 s of work; a pinned request
        // would wait for the 5 s read-timeout.
        assert!(took < Duration::from_secs(5), "{upstream}: took {took:?}");
        gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturation_gives_503_with_retry_after() {
    let fpm = PhpFpm::start();
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(
            &upstream,
            &["--max-upstream-conns", "2", "--acquire-timeout", "200ms"],
        )
        .await;
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let addr = gw.addr;
            tasks.push(tokio::spawn(async move {
                gateway::get(addr, "/slow.php?ms=500").await
            }));
        }
        let mut ok = 0;
        let mut unavailable = 0;
        for t in tasks {
            let r = tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("every request is answered, no hang")
                .unwrap();
            match r.status {
                200 => ok += 1,
                503 => {
                    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
                    unavailable += 1;
                }
                other => panic!("unexpected {other}"),
            }
        }
        assert!(ok >= 2, "{upstream}: {ok} ok");
        assert!(unavailable > 0, "{upstream}: no 503");
        assert_eq!(ok + unavailable, 20);
        assert!(gw.pool.snapshot().saturated >= unavailable as u64);
        gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_is_503_at_once() {
    let fpm = PhpFpm::start();
    let upstream = format!("unix:{}", fpm.unix_socket.display());
    let gw = gateway_for(
        &upstream,
        &["--max-upstream-conns", "1", "--queue-length", "0"],
    )
    .await;
    let addr = gw.addr;
    let slow = tokio::spawn(async move { gateway::get(addr, "/slow.php?ms=800").await });
    wait::until("the slow request to take the only connection", WAIT, || {
        gw.pool.snapshot().busy > 0
    })
    .await;
    let r = gateway::get(gw.addr, "/hello.php").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    assert_eq!(slow.await.unwrap().status, 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_reaped() {
    let fpm = PhpFpm::start();
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(&upstream, &["--idle-timeout", "300ms"]).await;
        assert_eq!(gateway::get(gw.addr, "/hello.php").await.status, 200);
        assert_eq!(gw.pool.snapshot().idle, 1, "{upstream}");
        // Reaped within the 900 ms this test always allowed (the reaper
        // looks every 150 ms); if not, the assertions below say what is left.
        wait::holds_within(Duration::from_millis(900), || {
            let snap = gw.pool.snapshot();
            snap.idle == 0 && snap.open == 0 && snap.idle_reaped >= 1
        })
        .await;
        let snap = gw.pool.snapshot();
        assert_eq!(snap.idle, 0, "{upstream}: {snap:?}");
        assert_eq!(snap.open, 0, "{upstream}: {snap:?}");
        assert!(snap.idle_reaped >= 1);
        gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reuse_with_max_idle_zero() {
    let fake = FakeFcgi::start(vec![Script::ok("x")]).await;
    let upstream = format!("unix:{}", fake.unix_socket.display());
    let gw = gateway_for(&upstream, &["--max-idle-conns", "0"]).await;
    for _ in 0..3 {
        assert_eq!(gateway::get(gw.addr, "/hello.php").await.text(), "x");
    }
    assert_eq!(fake.connections_seen(), 3);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_mid_stream_closes_the_upstream_connection() {
    let fpm = PhpFpm::start();
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(&upstream, &[]).await;
        {
            let resp = gateway::send(
                gw.addr,
                "GET",
                "/stream.php?n=20&delay_ms=100",
                &[],
                Bytes::new(),
            )
            .await;
            assert_eq!(resp.status(), 200);
        }
        // The gateway finds the client gone at its next write (the script
        // writes every 100 ms) and must free the slot at once: within the
        // 300 ms this test always allowed, long before the 2 s stream ends.
        wait::holds_within(Duration::from_millis(300), || gw.pool.snapshot().busy == 0).await;
        let snap = gw.pool.snapshot();
        assert_eq!(
            snap.idle, 0,
            "{upstream}: the abandoned connection must not be idled: {snap:?}"
        );
        assert_eq!(
            snap.busy, 0,
            "{upstream}: its slot is free at once: {snap:?}"
        );
        assert_eq!(gateway::get(gw.addr, "/hello.php").await.status, 200);
        gw.shutdown().await;
    }
}

fn end() -> Step {
    Step::End {
        app_status: 0,
        protocol_status: 0,
    }
}

#[tokio::test]
async fn reused_connection_closed_by_server_is_retried() {
    let ok = Script::ok("first");
    // The server reads the second request on the kept connection, then closes it.
    let close = Script {
        steps: vec![Step::Close],
    };
    let fake = FakeFcgi::start(vec![ok, close, Script::ok("retried")]).await;
    let upstream = format!("tcp:{}", fake.tcp_addr);
    let gw = gateway_for(&upstream, &[]).await;
    assert_eq!(gateway::get(gw.addr, "/hello.php").await.text(), "first");
    let r = gateway::get(gw.addr, "/hello.php").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "retried");
    assert_eq!(gw.pool.snapshot().retries, 1);
    assert_eq!(fake.connections_seen(), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn fresh_connection_closed_is_502_not_retried() {
    let fake = FakeFcgi::start(vec![
        Script {
            steps: vec![Step::Close],
        },
        Script::ok("never"),
    ])
    .await;
    let upstream = format!("unix:{}", fake.unix_socket.display());
    let gw = gateway_for(&upstream, &[]).await;
    let r = gateway::get(gw.addr, "/hello.php").await;
    assert_eq!(r.status, 502);
    assert_eq!(fake.requests_seen(), 1);
    assert_eq!(gw.pool.snapshot().retries, 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn close_after_end_request_is_harmless() {
    let ok_then_close = Script {
        steps: vec![
            Step::Stdout(b"Content-Type: text/plain\r\n\r\none".to_vec()),
            end(),
            Step::Close,
        ],
    };
    let fake = FakeFcgi::start(vec![ok_then_close, Script::ok("two")]).await;
    let upstream = format!("unix:{}", fake.unix_socket.display());
    let gw = gateway_for(&upstream, &[]).await;
    assert_eq!(gateway::get(gw.addr, "/hello.php").await.text(), "one");
    wait::until("the fake to close the first connection", WAIT, || {
        fake.connections_ended() == 1
    })
    .await;
    let r = gateway::get(gw.addr, "/hello.php").await;
    assert_eq!(r.text(), "two");
    let snap = gw.pool.snapshot();
    assert!(snap.stale_dropped + snap.retries >= 1, "{snap:?}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_size_follows_php_fpm_status_page() {
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        children: 3,
        status_path: Some("/status".into()),
        ..Default::default()
    });
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(&upstream, &["--fpm-status-path", "/status"]).await;
        // A smaller size than configured is confirmed by a second reading 2 s later.
        let sized =
            wait::holds_within(Duration::from_secs(15), || gw.pool.snapshot().size == 3).await;
        assert!(
            sized,
            "{upstream}: pool not sized from the status page: {:?}",
            gw.pool.snapshot()
        );
        assert_eq!(gateway::get(gw.addr, "/hello.php").await.status, 200);
        gw.shutdown().await;

        // An explicit --max-upstream-conns wins over the status page.
        let gw = gateway_for(
            &upstream,
            &["--fpm-status-path", "/status", "--max-upstream-conns", "5"],
        )
        .await;
        // Time must pass: the size must NOT follow the status page. A smaller
        // size would only be taken on the confirming reading 2 s after the
        // first, so the window must outlast that (with the size wrongly
        // followed, 5 s failed 2 of 2 runs here; 300 ms and 2.5 s never did).
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(gw.pool.snapshot().size, 5);
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn spooled_body_is_replayed_on_retry() {
    // Request 2 arrives on the kept connection with a chunked (spooled) body;
    // the server reads all of it, then closes without answering.
    let close = Script {
        steps: vec![Step::Close],
    };
    let fake = FakeFcgi::start(vec![Script::ok("first"), close, Script::ok("replayed")]).await;
    let upstream = format!("unix:{}", fake.unix_socket.display());
    let gw = gateway_for(&upstream, &[]).await;
    assert_eq!(gateway::get(gw.addr, "/hello.php").await.text(), "first");
    let out = gateway::raw(
        gw.addr,
        b"POST /hello.php HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("replayed"), "{out}");
    assert_eq!(fake.last_stdin(), b"hello world");
    assert_eq!(gw.pool.snapshot().retries, 1);
    gw.shutdown().await;
}
