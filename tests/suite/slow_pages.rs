//! Slow pages in a burst on a small php-fpm pool, at the gateway's default
//! pool flags, over unix and tcp: every request answered (no 504 for a
//! request parked in php-fpm's backlog behind our idle connections, no 503
//! for waiting on a connection), and the pool learns php-fpm's size from
//! the kernel's count of its listen backlog. How long the bursts take
//! against the ideal is measured by `bench/slow.py`, not here.

use crate::support;

use fcgi_gateway::upstream::PoolSnapshot;
use support::gateway::{self, Gateway};
use support::php_fpm::{fixtures_dir, PhpFpm, PhpFpmOptions};

const SLOW: &str = "/slow.php?ms=300";

async fn gateway_for(upstream: &str, extra: &[&str]) -> Gateway {
    Gateway::serve(upstream, &fixtures_dir().display().to_string(), extra).await
}

fn two_static_workers() -> PhpFpm {
    PhpFpm::start_with(PhpFpmOptions {
        children: 2,
        ..Default::default()
    })
}

fn not_ok(statuses: &[u16]) -> Vec<u16> {
    statuses.iter().copied().filter(|s| *s != 200).collect()
}

/// The pool learned php-fpm's 2 workers: it keeps no more connections
/// than that, and its size is 2 (a probe for one more that came as the
/// burst ended, with no request left to try it, is withdrawn). Without
/// the kernel's count of the backlog, the size may stand one above.
///
/// The pool settles as the last connection of the burst goes idle, which
/// can come a moment after the client has read the last response (the
/// gateway's threads, not the test's, do it): the pool gets up to
/// `SETTLE` to get there, and the last look is what is judged.
async fn assert_learned_two(gw: &Gateway, upstream: &str, snap: PoolSnapshot) {
    let most = if snap.sees_backlog { 2 } else { 3 };
    let learned = |snap: &PoolSnapshot| snap.open <= 2 && snap.size <= most;
    let deadline = tokio::time::Instant::now() + SETTLE;
    let mut snap = snap;
    while !learned(&snap) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        snap = gw.pool.snapshot();
    }
    assert!(
        snap.open <= 2,
        "{upstream}: more open than php-fpm's 2: {snap:?}"
    );
    assert!(
        snap.size <= most,
        "{upstream}: php-fpm's size not learned: {snap:?}"
    );
}

/// How long the pool may take to settle after a burst's last response.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// `clients` requests for the slow page at once through `gw`; panics
/// naming `upstream` and the pool when any is not a 200. The pool after.
async fn burst_all_ok(gw: &Gateway, upstream: &str, clients: usize) -> PoolSnapshot {
    let statuses = gateway::load(gw.addr, SLOW, clients, clients).await;
    let snap = gw.pool.snapshot();
    assert_eq!(statuses.len(), clients);
    assert!(
        not_ok(&statuses).is_empty(),
        "{upstream}: {:?}; pool {snap:?}",
        not_ok(&statuses)
    );
    snap
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_slow_requests_on_two_workers_all_answer_within_the_read_timeout() {
    let fpm = two_static_workers();
    for upstream in support::upstreams_of(&fpm) {
        // The last of 12 × 300 ms on 2 workers is due at 1.8 s: a request
        // left in php-fpm's backlog behind our kept-alive connections got
        // 504 at 3 s.
        let gw = gateway_for(&upstream, &["--read-timeout", "3s"]).await;
        let snap = burst_all_ok(&gw, &upstream, 12).await;
        assert!(snap.sees_backlog, "{upstream}: php-fpm is local: {snap:?}");
        assert_learned_two(&gw, &upstream, snap).await;
        gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_slow_requests_on_two_workers_never_get_a_503() {
    let fpm = two_static_workers();
    for upstream in support::upstreams_of(&fpm) {
        // 6 s of work: past the old 5 s acquire timeout for requests queued
        // for a connection, which now defaults to the read timeout.
        let gw = gateway_for(&upstream, &[]).await;
        let snap = burst_all_ok(&gw, &upstream, 40).await;
        assert_eq!(snap.saturated, 0, "{upstream}: {snap:?}");
        assert_learned_two(&gw, &upstream, snap).await;
        gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_slow_requests_on_a_pool_sized_to_the_workers_never_get_a_503() {
    let fpm = two_static_workers();
    for upstream in support::upstreams_of(&fpm) {
        let gw = gateway_for(&upstream, &["--max-upstream-conns", "2"]).await;
        let snap = burst_all_ok(&gw, &upstream, 40).await;
        assert_eq!(snap.saturated, 0, "{upstream}: {snap:?}");
        gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_slow_requests_on_debians_default_pool_all_answer() {
    // Debian's www.conf: dynamic, 5 children at most, 2 at start, 1-3 spare.
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        children: 5,
        pm: "dynamic",
        extra_pool_lines: vec![
            "pm.start_servers = 2".into(),
            "pm.min_spare_servers = 1".into(),
            "pm.max_spare_servers = 3".into(),
        ],
        ..Default::default()
    });
    for upstream in support::upstreams_of(&fpm) {
        let gw = gateway_for(&upstream, &[]).await;
        // Warm, as a site is: php-fpm has grown once already.
        burst_all_ok(&gw, &upstream, 10).await;
        let snap = burst_all_ok(&gw, &upstream, 40).await;
        assert_eq!(snap.saturated, 0, "{upstream}: {snap:?}");
        assert!(
            snap.size <= 5,
            "{upstream}: more than php-fpm's 5: {snap:?}"
        );
        gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_slow_requests_on_an_ondemand_pool_all_answer() {
    // pm = ondemand forks a worker per waiting connection up to its
    // maximum and lets idle ones go: the backlog is brief, then real.
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        children: 2,
        pm: "ondemand",
        ..Default::default()
    });
    for upstream in support::upstreams_of(&fpm) {
        let gw = gateway_for(&upstream, &["--read-timeout", "3s"]).await;
        let snap = burst_all_ok(&gw, &upstream, 12).await;
        assert_learned_two(&gw, &upstream, snap).await;
        gw.shutdown().await;
    }
}
