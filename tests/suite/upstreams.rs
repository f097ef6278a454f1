//! Several upstreams against real php-fpm instances (unix and tcp): spread
//! by weight, one killed under load and back, backups, active health and
//! /readyz, a name whose addresses change, and least-outstanding moving
//! load off a slower host behind a real (namespaced, delayed) link.

use crate::support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fcgi_gateway::upstream::balance::{Lookup, Resolve};
use support::delay::DelayRelay;
use support::gateway::{self, Gateway};
use support::netns::Link;
use support::php_fpm::{fixtures_dir, free_port, PhpFpm, PhpFpmOptions};
use support::wait;

const WAIT: Duration = Duration::from_secs(10);

/// A php-fpm whose scripts know it as `name` (`whoami.php` says it).
fn named_fpm(name: &str, opts: PhpFpmOptions) -> PhpFpm {
    let mut opts = opts;
    opts.extra_pool_lines
        .push(format!("env[FPM_NAME] = {name}"));
    opts.extra_pool_lines.push("ping.path = /ping".to_owned());
    PhpFpm::start_with(opts)
}

fn unix(fpm: &PhpFpm) -> String {
    format!("unix:{}", fpm.unix_socket.display())
}

fn tcp(fpm: &PhpFpm) -> String {
    format!("tcp:{}", fpm.tcp_addr)
}

async fn gateway(upstreams: &[String], extra: &[&str]) -> Gateway {
    Gateway::start(&args(upstreams, extra)).await
}

fn args<'a>(upstreams: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = Vec::new();
    for upstream in upstreams {
        args.extend(["--upstream", upstream.as_str()]);
    }
    args.extend(["--root", fixtures_root()]);
    args.extend_from_slice(extra);
    args
}

fn fixtures_root() -> &'static str {
    static ROOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| fixtures_dir().display().to_string())
}

/// What `total` requests from `concurrency` clients got: who answered each
/// 200, and the statuses of the rest. `done` counts answers as they come.
#[derive(Debug, Default)]
struct Tally {
    served_by: HashMap<String, usize>,
    failed: Vec<u16>,
}

async fn spread(
    addr: SocketAddr,
    path: &str,
    total: usize,
    concurrency: usize,
    done: Arc<AtomicUsize>,
) -> Tally {
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let (next, done, path) = (next.clone(), done.clone(), path.to_owned());
        clients.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let reply = gateway::get(addr, &path).await;
                if reply.status == 200 {
                    *tally.served_by.entry(reply.text()).or_insert(0) += 1;
                } else {
                    tally.failed.push(reply.status);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for client in clients {
        let tally = client.await.expect("client task");
        for (name, n) in tally.served_by {
            *all.served_by.entry(name).or_insert(0) += n;
        }
        all.failed.extend(tally.failed);
    }
    all
}

async fn tally(addr: SocketAddr, total: usize, concurrency: usize) -> Tally {
    spread(addr, "/whoami.php", total, concurrency, Arc::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_spread_by_weight() {
    // Workers for each one's share of 24 clients: none queues in php-fpm,
    // so each request takes as long wherever it goes.
    let opts = || PhpFpmOptions {
        children: 14,
        ..Default::default()
    };
    let a = named_fpm("a", opts());
    let b = named_fpm("b", opts());
    let c = named_fpm("c", opts());
    let upstreams = [
        format!("{} weight=1", unix(&a)),
        format!("{} weight=2", tcp(&b)),
        format!("{} weight=3", unix(&c)),
    ];
    let gw = gateway(
        &upstreams,
        &[
            "--admin-listen",
            "127.0.0.1:0",
            "--max-upstream-conns",
            "16",
        ],
    )
    .await;
    // One client: every pick is among equals, so the weighted round robin
    // alone decides, to within ±10 % (exactly, in fact). 24 clients: the
    // requests in flight per weight decide, so each answer's time must not
    // depend on where it went. Bare whoami.php is over in well under a
    // millisecond, where the gateway's and the host's per-request costs
    // (unix vs tcp, which php-fpm worker the scheduler runs first) rule the
    // throughput: a fresh CI machine saw `a` serve +50 %. A 20 ms sleep
    // makes the answer time the same everywhere, and the share by weight
    // holds to within a few percent.
    for (path, concurrency, tolerance) in [
        ("/whoami.php", 1, 0.10),
        ("/whoami.php?sleep_ms=20", 24, 0.20),
    ] {
        let got = spread(gw.addr, path, 3000, concurrency, Arc::default()).await;
        assert!(got.failed.is_empty(), "failures: {:?}", got.failed);
        for (name, weight) in [("a", 1), ("b", 2), ("c", 3)] {
            let expected = 3000.0 * f64::from(weight) / 6.0;
            let served = got.served_by.get(name).copied().unwrap_or(0) as f64;
            assert!(
                (served - expected).abs() <= expected * tolerance,
                "c={concurrency}: {name} (weight {weight}) served {served}, expected {expected} ± {tolerance}: {:?}",
                got.served_by
            );
        }
    }
    // Each upstream has its own series, each metric one descriptor.
    let metrics = gateway::get(gw.admin.expect("admin"), "/metrics")
        .await
        .text();
    for upstream in [unix(&a), tcp(&b), unix(&c)] {
        let line = format!("fcgi_gateway_upstream_up{{upstream=\"{upstream}\"");
        assert!(metrics.contains(&line), "no {line} in\n{metrics}");
    }
    assert_eq!(
        metrics
            .matches("# TYPE fcgi_gateway_upstream_pool_size ")
            .count(),
        1
    );
    gw.shutdown().await;
}

/// Kills (SIGTERM, php-fpm's fast stop) the upstream `victim` of three
/// under load, then starts it again.
async fn one_killed_under_load(victim: usize) {
    let mut fpms = [
        named_fpm("a", PhpFpmOptions::default()),
        named_fpm("b", PhpFpmOptions::default()),
        named_fpm("c", PhpFpmOptions::default()),
    ];
    let upstreams = [unix(&fpms[0]), tcp(&fpms[1]), unix(&fpms[2])];
    let gw = gateway(&upstreams, &["--fail-timeout", "1s"]).await;
    let done = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(spread(gw.addr, "/whoami.php", 2400, 8, done.clone()));
    wait::until("a quarter of the load is done", WAIT, || {
        done.load(Ordering::Relaxed) >= 600
    })
    .await;
    let children = PhpFpmOptions::default().children as usize;
    let mut killed = std::mem::replace(
        &mut fpms[victim],
        named_fpm("spare", PhpFpmOptions::default()),
    );
    let killed = tokio::task::spawn_blocking(move || {
        killed.stop();
        killed
    })
    .await
    .expect("stop php-fpm");
    let got = load.await.expect("load");
    // Only what the killed php-fpm was running may fail: at most one
    // request per worker, answered 502.
    assert!(
        got.failed.len() <= children && got.failed.iter().all(|s| *s == 502),
        "failed: {:?} (the killed instance had {children} workers)",
        got.failed
    );
    let served: usize = got.served_by.values().sum();
    assert_eq!(served + got.failed.len(), 2400);
    let victim_name = ["a", "b", "c"][victim];
    let member = gw.upstreams.members()[victim].clone();
    assert!(!member.is_up(), "{victim_name} is out after failing");

    // Back on the same socket and port: after fail-timeout it is tried
    // again, answers, and serves its share.
    let mut back = killed;
    let back = tokio::task::spawn_blocking(move || {
        back.restart();
        back
    })
    .await
    .expect("restart php-fpm");
    wait::until("fail-timeout passes", WAIT, || member.is_up()).await;
    let again = tally(gw.addr, 90, 1).await;
    assert!(
        again.failed.is_empty(),
        "after the restart: {:?}",
        again.failed
    );
    let share = again.served_by.get(victim_name).copied().unwrap_or(0);
    assert!(
        share >= 20,
        "{victim_name} rejoined with {share} of 90: {:?}",
        again.served_by
    );
    drop(back);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_upstream_killed_under_load_fails_only_its_running_requests_and_rejoins() {
    one_killed_under_load(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_upstream_killed_under_load_fails_only_its_running_requests_and_rejoins() {
    one_killed_under_load(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_serves_only_while_all_others_are_down() {
    let mut a = named_fpm("a", PhpFpmOptions::default());
    let mut b = named_fpm("b", PhpFpmOptions::default());
    let spare = named_fpm("spare", PhpFpmOptions::default());
    let upstreams = [unix(&a), tcp(&b), format!("{} backup", tcp(&spare))];
    let gw = gateway(&upstreams, &["--fail-timeout", "1s"]).await;
    let got = tally(gw.addr, 200, 4).await;
    assert!(got.failed.is_empty());
    assert_eq!(got.served_by.get("spare"), None, "{:?}", got.served_by);

    a.stop();
    let got = tally(gw.addr, 100, 4).await;
    assert!(got.failed.is_empty(), "{:?}", got.failed);
    assert_eq!(
        got.served_by.get("spare"),
        None,
        "b still serves: {:?}",
        got.served_by
    );

    b.stop();
    // Not one request fails: those that find a or b gone go on to the backup.
    let got = tally(gw.addr, 100, 4).await;
    assert!(got.failed.is_empty(), "{:?}", got.failed);
    assert_eq!(
        got.served_by.get("spare"),
        Some(&100),
        "{:?}",
        got.served_by
    );

    a.restart();
    let first = gw.upstreams.members()[0].clone();
    wait::until("a's fail-timeout passes", WAIT, || first.is_up()).await;
    let got = tally(gw.addr, 100, 1).await;
    assert!(got.failed.is_empty(), "{:?}", got.failed);
    // b is still out (it was not restarted): a serves everything.
    assert_eq!(got.served_by.get("a"), Some(&100), "{:?}", got.served_by);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_take_upstreams_out_and_readyz_follows_them() {
    let mut a = named_fpm("a", PhpFpmOptions::default());
    let mut b = named_fpm("b", PhpFpmOptions::default());
    let upstreams = [unix(&a), tcp(&b)];
    let gw = gateway(
        &upstreams,
        &[
            "--fpm-ping-path",
            "/ping",
            "--health-interval",
            "100ms",
            // Passive health stays out of the way: only probes decide.
            "--max-fails",
            "0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    let admin = gw.admin.expect("admin listener");
    let members = gw.upstreams.members();
    assert_eq!(gateway::get(admin, "/readyz").await.status, 200);

    // No request has to fail for b to be found down.
    b.stop();
    wait::until("b's probe fails", WAIT, || !members[1].is_up()).await;
    assert!(members[0].is_up());
    assert_eq!(
        gateway::get(admin, "/readyz").await.status,
        200,
        "a is ready"
    );
    let got = tally(gw.addr, 50, 2).await;
    assert!(got.failed.is_empty(), "{:?}", got.failed);
    assert_eq!(got.served_by.get("a"), Some(&50));

    a.stop();
    wait::until("a's probe fails", WAIT, || !members[0].is_up()).await;
    let not_ready = gateway::get(admin, "/readyz").await;
    assert_eq!(not_ready.status, 503);
    assert!(
        not_ready.text().contains("no upstream is ready"),
        "{}",
        not_ready.text()
    );

    b.restart();
    wait::until("b's probe passes again", WAIT, || members[1].is_up()).await;
    assert_eq!(gateway::get(admin, "/readyz").await.status, 200);
    let got = tally(gw.addr, 20, 1).await;
    assert_eq!(
        got.served_by.get("b"),
        Some(&20),
        "{:?} {:?}",
        got.served_by,
        got.failed
    );
    gw.shutdown().await;
}

/// Answers the lookups of one name with what the test sets.
#[derive(Debug, Default)]
struct Names {
    ips: Mutex<Vec<IpAddr>>,
}

impl Resolve for Names {
    fn lookup(&self, host: &str, _port: u16) -> Lookup {
        let ips = match host {
            "php-fpm.test" => self.ips.lock().map(|ips| ips.clone()).unwrap_or_default(),
            _ => Vec::new(),
        };
        Box::pin(async move { Ok(ips) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_whose_addresses_change_adds_and_drains_upstreams() {
    let port = free_port();
    let on = |ip: [u8; 4], name: &str| {
        named_fpm(
            name,
            PhpFpmOptions {
                tcp_ip: Ipv4Addr::from(ip),
                tcp_port: Some(port),
                ..Default::default()
            },
        )
    };
    let first = on([127, 0, 0, 2], "first");
    let second = on([127, 0, 0, 3], "second");
    let names = Arc::new(Names::default());
    *names.ips.lock().unwrap() = vec![IpAddr::from([127, 0, 0, 2])];
    let upstream = format!("tcp:php-fpm.test:{port}");
    let resolver = names.clone();
    let gw = Gateway::start_with(
        &args(&[upstream], &["--resolve-interval", "100ms"]),
        move |server| server.with_resolver(resolver),
    )
    .await;
    let addrs = |gw: &Gateway| -> Vec<String> {
        gw.upstreams
            .members()
            .iter()
            .map(|m| m.addr().to_string())
            .collect()
    };
    wait::until("the name is looked up", WAIT, || {
        addrs(&gw) == [format!("tcp:127.0.0.2:{port}")]
    })
    .await;
    let got = tally(gw.addr, 40, 2).await;
    assert_eq!(
        got.served_by.get("first"),
        Some(&40),
        "{:?} {:?}",
        got.served_by,
        got.failed
    );

    // A replica joins.
    names.ips.lock().unwrap().push(IpAddr::from([127, 0, 0, 3]));
    wait::until("the new address joins", WAIT, || addrs(&gw).len() == 2).await;
    let got = tally(gw.addr, 100, 2).await;
    assert!(got.failed.is_empty(), "{:?}", got.failed);
    assert!(
        got.served_by.get("second").copied().unwrap_or(0) >= 30,
        "{:?}",
        got.served_by
    );

    // It leaves while serving slow requests: they finish; new ones go to
    // the one left.
    let addr = gw.addr;
    let slow: Vec<_> = (0..4)
        .map(|_| tokio::spawn(async move { gateway::get(addr, "/whoami.php?sleep_ms=1500").await }))
        .collect();
    let leaving = gw.upstreams.members()[1].clone();
    wait::until("slow requests reach the leaving upstream", WAIT, || {
        leaving.outstanding() >= 1
    })
    .await;
    *names.ips.lock().unwrap() = vec![IpAddr::from([127, 0, 0, 2])];
    wait::until("the gone address leaves", WAIT, || {
        addrs(&gw) == [format!("tcp:127.0.0.2:{port}")]
    })
    .await;
    let got = tally(gw.addr, 20, 2).await;
    assert_eq!(
        got.served_by.get("first"),
        Some(&20),
        "{:?} {:?}",
        got.served_by,
        got.failed
    );
    let mut drained = 0;
    for request in slow {
        let reply = request.await.expect("slow request");
        assert_eq!(reply.status, 200, "{}", reply.text());
        drained += usize::from(reply.text() == "second");
    }
    assert!(drained >= 1, "no slow request ran on the leaving upstream");
    assert_eq!(leaving.outstanding(), 0);
    drop((first, second));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_outstanding_moves_load_to_the_faster_host() {
    // Two hosts in their own network namespaces; the slow one's link adds
    // 1 ms of round trip, as `bench --link-delay 1ms` means it: 0.5 ms each
    // way, by netem on both ends of its veth pair or, where the kernel has
    // no netem (this one), by a relay holding each chunk 0.5 ms each way.
    let delay = Duration::from_millis(1);
    let fast_link = Link::create("fast", 1, None);
    let slow_link = Link::create("slow", 2, Some(delay));
    let in_ns = |link: &Link, name: &str| {
        named_fpm(
            name,
            PhpFpmOptions {
                tcp_ip: link.inside,
                netns: Some(link.namespace.clone()),
                ..Default::default()
            },
        )
    };
    let fast = in_ns(&fast_link, "fast");
    let slow = in_ns(&slow_link, "slow");
    let relay = match slow_link.netem {
        true => None,
        false => Some(DelayRelay::start(slow.tcp_addr, delay / 2).await),
    };
    let slow_addr = relay.as_ref().map_or(slow.tcp_addr, |r| r.addr);
    let upstreams = [tcp(&fast), format!("tcp:{slow_addr}")];
    let gw = gateway(&upstreams, &[]).await;
    let got = tally(gw.addr, 1500, 8).await;
    assert!(got.failed.is_empty(), "{:?}", got.failed);
    let to_fast = got.served_by.get("fast").copied().unwrap_or(0);
    let to_slow = got.served_by.get("slow").copied().unwrap_or(0);
    eprintln!("least outstanding, equal weights: fast host {to_fast}, 1 ms away {to_slow}");
    // Equal weights: round robin would give each half.
    assert!(
        to_fast as f64 >= 0.65 * 1500.0,
        "fast {to_fast}, slow {to_slow}: least-outstanding should favour the host without the delay"
    );
    gw.shutdown().await;
    drop((relay, fast, slow, fast_link, slow_link));
}

/// A gateway that has shut down holds no connection: each one kept alive
/// pins a php-fpm worker, and with one worker the next gateway would wait
/// for it forever. (The upstreams and the metrics once held each other.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_gateway_leaves_no_connection_pinning_a_worker() {
    let fpm = named_fpm(
        "only",
        PhpFpmOptions {
            children: 1,
            ..Default::default()
        },
    );
    let upstreams = [unix(&fpm)];
    let extra = [
        "--read-timeout",
        "3s",
        "--admin-listen",
        "127.0.0.1:0",
        "--fpm-ping-path",
        "/ping",
    ];
    let first = gateway(&upstreams, &extra).await;
    assert_eq!(gateway::get(first.addr, "/whoami.php").await.status, 200);
    assert!(first.pool.snapshot().idle >= 1, "kept alive");
    first.shutdown().await;
    let second = gateway(&upstreams, &extra).await;
    let reply = gateway::get(second.addr, "/whoami.php").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    second.shutdown().await;
}
