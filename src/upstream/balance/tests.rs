use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex as StdMutex;

use super::*;
use crate::upstream::UpstreamError;

fn pool_template() -> PoolSettings {
    PoolSettings {
        addr: UpstreamAddr::Unix("/nowhere".into()),
        max_conns: 4,
        max_idle: 4,
        queue_length: 16,
        connect_timeout: Duration::from_secs(1),
        acquire_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(10),
        pipelining: None,
        workers: 1,
    }
}

fn upstreams(specs: &[&str]) -> Upstreams {
    Upstreams::new(settings(specs))
}

fn settings(specs: &[&str]) -> BalanceSettings {
    BalanceSettings {
        upstreams: specs.iter().map(|s| s.parse().unwrap()).collect(),
        pool: pool_template(),
        health: HealthPolicy::default(),
        resolve_interval: Duration::from_secs(5),
    }
}

/// Picks `n` times, each request finished before the next (as at c=1).
fn share_of(set: &Upstreams, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let (member, _in_flight) = set.pick(&[]).unwrap();
        *counts.entry(member.addr().to_string()).or_insert(0) += 1;
    }
    counts
}

fn connect_error() -> UpstreamError {
    UpstreamError::Connect {
        addr: "x".into(),
        source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
    }
}

#[tokio::test]
async fn one_after_another_goes_by_weight_interleaved() {
    let set = upstreams(&["unix:/a", "unix:/b weight=2", "unix:/c weight=3"]);
    let counts = share_of(&set, 600);
    assert_eq!(counts["unix:/a"], 100);
    assert_eq!(counts["unix:/b"], 200);
    assert_eq!(counts["unix:/c"], 300);
    // Smooth: the heaviest never gets more than its share in a row.
    let order: Vec<String> = (0..6)
        .map(|_| set.pick(&[]).unwrap().0.addr().to_string())
        .collect();
    assert!(
        !order.windows(3).any(|w| w[0] == w[1] && w[1] == w[2]),
        "{order:?}"
    );
}

#[tokio::test]
async fn the_least_loaded_per_weight_gets_the_next_request() {
    let set = upstreams(&["unix:/a", "unix:/b weight=2"]);
    // Requests held open: b carries two for each of a's.
    let held: Vec<_> = (0..6).map(|_| set.pick(&[]).unwrap()).collect();
    let members = set.members();
    assert_eq!((members[0].outstanding(), members[1].outstanding()), (2, 4));
    drop(held);
    assert_eq!(members[0].outstanding() + members[1].outstanding(), 0);

    // Equal weights: a slow request held on one sends the next ones to the
    // other, whatever the round robin's turn.
    let set = upstreams(&["unix:/a", "unix:/b"]);
    let (slow, _held) = set.pick(&[]).unwrap();
    for _ in 0..5 {
        let (next, _done) = set.pick(&[]).unwrap();
        assert!(!Arc::ptr_eq(&next, &slow));
    }
}

#[tokio::test]
async fn an_upstream_out_of_service_gets_nothing_until_fail_timeout() {
    let mut s = settings(&["unix:/a", "unix:/b"]);
    s.health = HealthPolicy {
        max_fails: 2,
        fail_timeout: Duration::from_secs(60),
    };
    let set = Upstreams::new(s);
    let a = set.members()[0].clone();
    judge(&a, set.health_policy(), Err(&connect_error()));
    assert!(a.is_up(), "one failure of two");
    judge(
        &a,
        set.health_policy(),
        Err(&UpstreamError::HeadTimeout {
            after: Duration::from_secs(1),
        }),
    );
    assert!(a.is_up(), "a slow script says nothing about the host");
    judge(&a, set.health_policy(), Err(&connect_error()));
    assert!(!a.is_up());
    let counts = share_of(&set, 10);
    assert_eq!(counts.get("unix:/a"), None);
    assert_eq!(counts["unix:/b"], 10);
}

#[tokio::test]
async fn a_backup_serves_only_while_every_other_is_out() {
    let set = upstreams(&["unix:/a", "unix:/b", "unix:/spare backup"]);
    assert_eq!(share_of(&set, 20).get("unix:/spare"), None);
    let members = set.members();
    let policy = set.health_policy();
    judge(&members[0], policy, Err(&connect_error()));
    assert_eq!(
        share_of(&set, 20).get("unix:/spare"),
        None,
        "b still serves"
    );
    judge(&members[1], policy, Err(&connect_error()));
    assert_eq!(share_of(&set, 20)["unix:/spare"], 20);
    // Back: a probe passed.
    members[1].probed(true, "test");
    assert_eq!(share_of(&set, 20).get("unix:/spare"), None);
}

#[tokio::test]
async fn with_all_out_one_is_still_tried_and_each_once() {
    let set = upstreams(&["unix:/a", "unix:/b"]);
    let members = set.members();
    for m in members.iter() {
        judge(m, set.health_policy(), Err(&connect_error()));
    }
    let (first, _f) = set.pick(&[]).expect("tried anyway");
    let (second, _s) = set
        .pick(std::slice::from_ref(&first))
        .expect("the other one");
    assert!(!Arc::ptr_eq(&first, &second));
    assert!(set.pick(&[first, second]).is_none(), "each at most once");
}

#[tokio::test]
async fn a_single_upstream_is_always_picked_without_bookkeeping() {
    let set = upstreams(&["unix:/only"]);
    let only = set.members()[0].clone();
    judge(&only, set.health_policy(), Err(&connect_error()));
    let (picked, _in_flight) = set.pick(&[]).unwrap();
    assert!(Arc::ptr_eq(&picked, &only));
    assert_eq!(only.outstanding(), 0);
    assert!(set.pick(&[only]).is_none());
}

#[tokio::test]
async fn a_request_that_never_reached_php_fpm_goes_to_another_upstream() {
    // Neither socket exists: each attempt fails to connect, so both are
    // tried, once each, and the answer is the last connect error.
    let set = upstreams(&["unix:/nonexistent/a.sock", "unix:/nonexistent/b.sock"]);
    let request = crate::upstream::FcgiRequest {
        head: bytes::Bytes::from_static(b"x"),
        body: crate::upstream::RequestBody::Empty,
        route: 0,
    };
    let mut response = crate::upstream::start(set.clone(), request, false);
    match response.recv().await {
        Some(crate::upstream::Output::Failed(UpstreamError::Connect { .. })) => {}
        other => panic!("expected a connect failure, got {other:?}"),
    }
    let members = set.members();
    assert_eq!(
        members.iter().map(|m| m.picked()).collect::<Vec<_>>(),
        vec![1, 1]
    );
    assert!(members.iter().all(|m| !m.is_up()), "both marked out");
    assert_eq!(set.failovers(), 1);
}

/// A resolver whose answers the test sets.
#[derive(Debug, Default)]
struct FakeResolver {
    answers: StdMutex<Vec<IpAddr>>,
}

impl Resolve for FakeResolver {
    fn lookup(&self, host: &str, _port: u16) -> Lookup {
        assert_eq!(host, "php-fpm.test");
        let ips = self.answers.lock().unwrap().clone();
        Box::pin(async move { Ok(ips) })
    }
}

#[tokio::test]
async fn a_name_is_one_upstream_per_address_and_follows_its_changes() {
    let resolver = Arc::new(FakeResolver::default());
    let set = Upstreams::with_resolver(
        settings(&["tcp:php-fpm.test:9000 weight=2", "unix:/local"]),
        resolver.clone(),
    );
    let addrs = |set: &Upstreams| -> Vec<String> {
        set.members()
            .iter()
            .map(|m| format!("{} w{}", m.addr(), m.weight()))
            .collect()
    };
    assert_eq!(addrs(&set), ["tcp:php-fpm.test:9000 w2", "unix:/local w1"]);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    *resolver.answers.lock().unwrap() = vec![ip("10.0.0.2"), ip("10.0.0.1"), ip("10.0.0.2")];
    set.resolve_names().await;
    assert_eq!(
        addrs(&set),
        [
            "tcp:10.0.0.1:9000 w2",
            "tcp:10.0.0.2:9000 w2",
            "unix:/local w1"
        ]
    );
    let kept = set.members()[1].clone();
    *resolver.answers.lock().unwrap() = vec![ip("10.0.0.2"), ip("10.0.0.3")];
    set.resolve_names().await;
    assert_eq!(
        addrs(&set),
        [
            "tcp:10.0.0.2:9000 w2",
            "tcp:10.0.0.3:9000 w2",
            "unix:/local w1"
        ]
    );
    assert!(
        Arc::ptr_eq(&kept, &set.members()[0]),
        "a staying address keeps its pool"
    );
    // No answer: the known addresses stay.
    resolver.answers.lock().unwrap().clear();
    set.resolve_names().await;
    assert_eq!(set.members().len(), 3);
}
