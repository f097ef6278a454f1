//! The pool's policy against an in-memory php-fpm (`FakeFpm`): workers that
//! accept connections from a listen backlog and keep them until we close
//! them, as php-fpm does, with scripts that sleep on tokio's paused clock.
//! So pinned workers, slow pages, a pool that grows and shrinks, and the
//! backlog signal present or absent are tested exactly and quickly.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::super::capacity::PROBE_EVERY_MAX;
use super::super::pipeline::MAX_BEHIND;
use super::{Pool, PoolSettings};
use crate::fastcgi::{self, ProtocolStatus, RecordType, RequestDecoder, RequestEvent, Role};
use crate::upstream::conn::Stream;
use crate::upstream::connect::{Connect, Dialing};
use crate::upstream::request::REQUEST_ID;
use crate::upstream::Output;
use crate::upstream::{route_key, FcgiRequest, RequestBody, UpstreamAddr};

/// php-fpm in memory: a listen backlog and workers that take from it.
#[derive(Debug, Default)]
struct FakeFpm {
    backlog: Mutex<VecDeque<DuplexStream>>,
    arrived: Notify,
    /// Workers waiting in "accept" for a connection.
    idle_workers: AtomicUsize,
    /// Requests answered.
    served: AtomicUsize,
    /// Requests that were already waiting on their connection when the
    /// worker finished the one before (sent ahead) while another worker
    /// sat idle: what pipelining must never cause.
    behind_while_a_worker_was_free: AtomicUsize,
    /// Requests that were sent ahead at all (waiting when the one before ended).
    found_waiting_behind: AtomicUsize,
    /// The most whole requests seen waiting behind the one a worker began.
    most_behind: AtomicUsize,
}

impl FakeFpm {
    fn start(workers: usize) -> Arc<FakeFpm> {
        let fpm = Arc::new(FakeFpm::default());
        fpm.add_workers(workers);
        fpm
    }

    /// More workers, as a dynamic pool forks them or a reload with more children.
    fn add_workers(self: &Arc<Self>, n: usize) {
        for _ in 0..n {
            let fpm = self.clone();
            tokio::spawn(async move {
                loop {
                    let conn = fpm.accept().await;
                    fpm.serve(conn).await;
                }
            });
        }
    }

    async fn accept(&self) -> DuplexStream {
        self.idle_workers.fetch_add(1, Ordering::SeqCst);
        let conn = loop {
            let next = self.backlog.lock().unwrap().pop_front();
            if let Some(conn) = next {
                break conn;
            }
            self.arrived.notified().await;
        };
        self.idle_workers.fetch_sub(1, Ordering::SeqCst);
        conn
    }

    /// Serves one kept-alive connection until the client closes it. A
    /// script sleeps for its `SLEEP_MS` param.
    async fn serve(&self, mut conn: DuplexStream) {
        let mut buf = BytesMut::new();
        let mut decoder = RequestDecoder::new();
        let mut sleep = Duration::ZERO;
        loop {
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(RequestEvent::Params(params))) => {
                        sleep = params
                            .iter()
                            .find(|(k, _)| &k[..] == b"SLEEP_MS")
                            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
                            .map_or(Duration::ZERO, Duration::from_millis);
                    }
                    Ok(Some(RequestEvent::StdinEnd)) => {
                        tokio::time::sleep(sleep).await;
                        // Take in what arrived while it ran, then count
                        // what waits behind it.
                        while let Ok(Ok(1..)) =
                            tokio::time::timeout(Duration::ZERO, conn.read_buf(&mut buf)).await
                        {
                        }
                        self.most_behind
                            .fetch_max(whole_requests(&buf), Ordering::SeqCst);
                        let mut out = BytesMut::new();
                        fastcgi::encode_stream(
                            &mut out,
                            RecordType::Stdout,
                            REQUEST_ID,
                            b"Content-Type: text/plain\r\n\r\nok",
                        );
                        fastcgi::encode_stream_end(&mut out, RecordType::Stdout, REQUEST_ID);
                        fastcgi::encode_end_request(
                            &mut out,
                            REQUEST_ID,
                            0,
                            ProtocolStatus::RequestComplete,
                        );
                        if conn.write_all(&out).await.is_err() {
                            return;
                        }
                        self.served.fetch_add(1, Ordering::SeqCst);
                        if !buf.is_empty() {
                            self.found_waiting_behind.fetch_add(1, Ordering::SeqCst);
                            if self.idle_workers.load(Ordering::SeqCst) > 0 {
                                self.behind_while_a_worker_was_free
                                    .fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
            match conn.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

/// Whole requests (through their STDIN end) at the start of `buf`.
fn whole_requests(buf: &BytesMut) -> usize {
    let mut rest = buf.clone();
    let mut decoder = RequestDecoder::new();
    let mut whole = 0;
    while let Ok(Some(event)) = decoder.decode(&mut rest) {
        whole += usize::from(matches!(event, RequestEvent::StdinEnd));
    }
    whole
}

/// Dials the fake: the connection waits in its backlog until a worker
/// takes it. `shows_backlog` says whether the kernel's count is visible
/// (a local php-fpm) or not (remote tcp: the timing fallback).
#[derive(Debug)]
struct FakeConnector {
    fpm: Arc<FakeFpm>,
    shows_backlog: bool,
}

impl Connect for FakeConnector {
    fn connect(&self) -> Dialing<'_> {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        self.fpm.backlog.lock().unwrap().push_back(theirs);
        self.fpm.arrived.notify_one();
        Box::pin(async move { Ok(Stream::Memory(ours)) })
    }

    fn backlog(&self) -> Option<usize> {
        self.shows_backlog
            .then(|| self.fpm.backlog.lock().unwrap().len())
    }

    fn sees_backlog(&self) -> bool {
        self.shows_backlog
    }
}

fn settings(max_conns: usize, read_timeout: Duration) -> PoolSettings {
    PoolSettings {
        addr: UpstreamAddr::Unix("/fake/php-fpm.sock".into()),
        max_conns,
        max_idle: max_conns,
        queue_length: 1024,
        connect_timeout: Duration::from_secs(5),
        // As the config makes it by default: no shorter than the read timeout.
        acquire_timeout: read_timeout,
        idle_timeout: Duration::from_secs(30),
        read_timeout,
        pipelining: Some(Duration::from_millis(10)),
        workers: 1,
    }
}

fn pool_on(fpm: &Arc<FakeFpm>, shows_backlog: bool, settings: PoolSettings) -> Pool {
    let connector = Arc::new(FakeConnector {
        fpm: fpm.clone(),
        shows_backlog,
    });
    Pool::with_connector(settings, connector)
}

/// One request for a script that sleeps `sleep_ms`; Ok when it was answered.
async fn request(pool: Pool, sleep_ms: u64) -> Result<(), String> {
    let mut head = BytesMut::new();
    fastcgi::encode_request(
        &mut head,
        &fastcgi::Request {
            request_id: REQUEST_ID,
            role: Role::Responder,
            keep_conn: true,
            params: vec![
                (
                    Bytes::from_static(b"SCRIPT_NAME"),
                    Bytes::from_static(b"/x.php"),
                ),
                (
                    Bytes::from_static(b"SLEEP_MS"),
                    Bytes::from(sleep_ms.to_string()),
                ),
            ],
            stdin: Bytes::new(),
        },
    );
    let request = FcgiRequest {
        head: head.freeze(),
        body: RequestBody::Empty,
        route: route_key(&format!("/sleep/{sleep_ms}")),
    };
    let mut response = crate::upstream::start_on_pool(pool, request);
    let mut answered = false;
    while let Some(out) = response.recv().await {
        match out {
            Output::Stdout(_) => answered = true,
            Output::Failed(e) => return Err(e.to_string()),
            Output::Stderr(_) | Output::Timing(_) => {}
        }
    }
    if answered {
        Ok(())
    } else {
        Err("no response".into())
    }
}

/// `clients` requests at once; how long until the last answer, and the failures.
async fn burst(pool: &Pool, clients: usize, sleep_ms: u64) -> (Duration, Vec<String>) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(request(pool.clone(), sleep_ms)))
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        if let Err(e) = task.await.unwrap() {
            failures.push(e);
        }
    }
    (started.elapsed(), failures)
}

/// Asserts `took` is what php-fpm's `workers` allow for `clients` pages of
/// `sleep_ms` (`ideal`), within 50 ms.
fn assert_ideal(pool: &Pool, took: Duration, clients: usize, sleep_ms: u64, workers: usize) {
    let best = ideal(clients, sleep_ms, workers);
    assert!(
        took <= best + Duration::from_millis(50),
        "{clients} clients took {took:?}; php-fpm allows {best:?}; {:?}",
        pool.snapshot()
    );
}

/// What php-fpm's workers allow at best: every worker busy until the end.
fn ideal(clients: usize, sleep_ms: u64, workers: usize) -> Duration {
    Duration::from_millis(sleep_ms * clients as u64 / workers as u64)
}

#[tokio::test(start_paused = true)]
async fn slow_pages_on_pinned_workers_take_the_ideal_time_without_a_504() {
    // The cases: 2 workers, a pool of 8, 300 ms pages; 12 clients
    // with read-timeout 3 s (the last is due at 1.8 s), 40 with the default.
    for (clients, read_timeout) in [(12, 3), (40, 60)] {
        let fpm = FakeFpm::start(2);
        let pool = pool_on(&fpm, true, settings(8, Duration::from_secs(read_timeout)));
        let (took, failures) = burst(&pool, clients, 300).await;
        assert!(failures.is_empty(), "{clients} clients: {failures:?}");
        assert_ideal(&pool, took, clients, 300, 2);
        // And it learned php-fpm's size from the backlog, within the burst.
        assert_eq!(pool.size(), 2, "{:?}", pool.snapshot());
    }
}

#[tokio::test(start_paused = true)]
async fn a_pool_sized_to_the_workers_serves_a_burst_without_a_503() {
    // `--max-upstream-conns 2`: 40 requests queue for 6 s, longer than the
    // old 5 s acquire timeout; the default now follows the read timeout.
    let fpm = FakeFpm::start(2);
    let pool = pool_on(&fpm, true, settings(2, Duration::from_secs(60)));
    let (took, failures) = burst(&pool, 40, 300).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert!(
        took <= ideal(40, 300, 2) + Duration::from_millis(50),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn without_the_backlog_signal_slow_pages_are_still_all_served() {
    // Remote tcp: no kernel count, so the timing fallback decides.
    let fpm = FakeFpm::start(2);
    let pool = pool_on(&fpm, false, settings(8, Duration::from_secs(60)));
    let (took, failures) = burst(&pool, 40, 300).await;
    assert!(failures.is_empty(), "{failures:?}");
    let best = ideal(40, 300, 2);
    assert!(
        took <= best * 3 / 2,
        "took {took:?}, ideal {best:?}: {:?}",
        pool.snapshot()
    );
    assert_eq!(pool.snapshot().backlog_reads, 0, "no signal, no reads");
}

/// Clients that each send requests one after another until `until`.
async fn sustained(pool: &Pool, clients: usize, sleep_ms: u64, until: Instant) -> Vec<String> {
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut failures = Vec::new();
                while Instant::now() < until {
                    if let Err(e) = request(pool.clone(), sleep_ms).await {
                        failures.push(e);
                    }
                }
                failures
            })
        })
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        failures.extend(task.await.unwrap());
    }
    failures
}

#[tokio::test(start_paused = true)]
async fn the_pool_shrinks_to_php_fpm_and_grows_with_it() {
    let fpm = FakeFpm::start(2);
    let pool = pool_on(&fpm, true, settings(8, Duration::from_secs(60)));
    let t0 = Instant::now();
    let load = {
        let pool = pool.clone();
        tokio::spawn(async move { sustained(&pool, 16, 5, t0 + Duration::from_secs(3)).await })
    };
    // Within a few requests the pool is php-fpm's size.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(pool.size(), 2, "{:?}", pool.snapshot());
    // php-fpm grows (a dynamic pool forking, a reload with more children).
    tokio::time::sleep_until(t0 + Duration::from_secs(1)).await;
    fpm.add_workers(3);
    // Probes that php-fpm refuted came ever less often (200 ms doubling,
    // at most 2 s); the first that holds brings them back to 200 ms.
    tokio::time::sleep_until(t0 + Duration::from_millis(2600)).await;
    assert_eq!(pool.size(), 5, "{:?}", pool.snapshot());
    let failures = load.await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    // Probes that found php-fpm full cost a connect each, no more: far
    // fewer connects than requests.
    let snap = pool.snapshot();
    let served = fpm.served.load(Ordering::SeqCst) as u64;
    assert!(
        snap.connects * 20 < served,
        "{} connects for {served} requests: {snap:?}",
        snap.connects
    );
}

/// `workers` php-fpm workers, a pool of 8, 1 ms pages from 48 clients
/// (enough to fill two workers' pipelines, 16 behind each) for 2 s, all
/// answered and some sent ahead: php-fpm and the pool's counters.
async fn fast_pages_pipelined(workers: usize) -> (Arc<FakeFpm>, super::PoolSnapshot) {
    fast_pages_pipelined_for(workers, 1).await
}

/// As `fast_pages_pipelined`, with the pool made for `threads` serving
/// threads (the requests all come from this test's one).
async fn fast_pages_pipelined_for(
    workers: usize,
    threads: usize,
) -> (Arc<FakeFpm>, super::PoolSnapshot) {
    let fpm = FakeFpm::start(workers);
    let pool = pool_on(
        &fpm,
        true,
        PoolSettings {
            workers: threads,
            ..settings(8, Duration::from_secs(60))
        },
    );
    let t0 = Instant::now();
    let failures = sustained(&pool, 48, 1, t0 + Duration::from_secs(2)).await;
    assert!(failures.is_empty(), "{failures:?}");
    let snap = pool.snapshot();
    assert!(snap.sent_ahead > 0, "pipelining never ran: {snap:?}");
    (fpm, snap)
}

#[tokio::test(start_paused = true)]
async fn nothing_is_sent_ahead_while_a_worker_is_free() {
    // 6 workers: requests go behind running ones only once php-fpm is
    // known to be full.
    let (fpm, snap) = fast_pages_pipelined(6).await;
    assert_eq!(snap.size, 6, "{snap:?}");
    assert!(fpm.found_waiting_behind.load(Ordering::SeqCst) > 0);
    assert_eq!(
        fpm.behind_while_a_worker_was_free.load(Ordering::SeqCst),
        0,
        "{snap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn no_more_than_max_behind_wait_behind_the_running_request() {
    // 2 workers: every connection fills up with requests sent ahead, and
    // is refilled as responses end, yet php-fpm never finds more than
    // MAX_BEHIND waiting, whatever the number of serving threads.
    for threads in [1, 2, 4] {
        let (fpm, snap) = fast_pages_pipelined_for(2, threads).await;
        assert_eq!(
            fpm.most_behind.load(Ordering::SeqCst),
            MAX_BEHIND,
            "{threads} threads: {snap:?}"
        );
    }
    assert_eq!(MAX_BEHIND, 16);
}

#[tokio::test(start_paused = true)]
async fn requests_sent_ahead_go_out_several_to_a_write() {
    // 2 workers, 48 clients: connections stay full. A place freed while
    // more than REFILL_AT wait behind the running request is filled with
    // the next one's, in one write.
    let (_fpm, snap) = fast_pages_pipelined(2).await;
    assert!(snap.send_ahead_writes > 0, "{snap:?}");
    assert!(
        snap.send_ahead_writes * 3 < snap.sent_ahead * 2,
        "one write per request sent ahead: {snap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn php_fpm_growing_during_a_burst_is_used_before_it_ends() {
    // A dynamic pool forks workers while a burst waits: the queued requests
    // make no new acquire calls, so the connections coming back must probe.
    let fpm = FakeFpm::start(2);
    let pool = pool_on(&fpm, true, settings(8, Duration::from_secs(60)));
    let grow = {
        let fpm = fpm.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            fpm.add_workers(3);
        })
    };
    let (took, failures) = burst(&pool, 40, 300).await;
    grow.await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    // All 5 workers were used; a probe at the burst's tail that no request
    // tried was withdrawn as the burst ended.
    let snap = pool.snapshot();
    assert_eq!(snap.open, 5, "{snap:?}");
    assert_eq!(snap.size, 5, "{snap:?}");
    // 2 workers alone need 6 s; growing by one connection per probe
    // (200 ms) from 0.6 s on, the 5 finish the 12 s of work near 3 s.
    assert!(
        took <= Duration::from_millis(3300),
        "took {took:?}: {:?}",
        pool.snapshot()
    );
}

#[tokio::test(start_paused = true)]
async fn a_probe_no_request_tried_is_withdrawn_and_one_that_held_stays() {
    // 2 workers: the pool learns 2. A probe for a third comes as the burst
    // ends (the release that made it found two waiting, both then served
    // by connections coming back): no request tried it, so it says
    // nothing of php-fpm and the next connection going idle withdraws it.
    let fpm = FakeFpm::start(2);
    let pool = pool_on(&fpm, true, settings(8, Duration::from_secs(60)));
    let (_, failures) = burst(&pool, 12, 50).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(pool.size(), 2, "{:?}", pool.snapshot());
    tokio::time::sleep(PROBE_EVERY_MAX).await;
    assert!(pool.inner.probe_one_more(), "{:?}", pool.snapshot());
    assert_eq!(pool.size(), 3);
    request(pool.clone(), 1).await.unwrap();
    assert_eq!(pool.size(), 2, "untried probe kept: {:?}", pool.snapshot());

    // php-fpm has grown to 3: a probe that 3 requests at once try holds.
    fpm.add_workers(1);
    tokio::time::sleep(PROBE_EVERY_MAX).await;
    assert!(pool.inner.probe_one_more(), "{:?}", pool.snapshot());
    let (_, failures) = burst(&pool, 3, 50).await;
    assert!(failures.is_empty(), "{failures:?}");
    let snap = pool.snapshot();
    assert_eq!((snap.size, snap.open), (3, 3), "{snap:?}");
}

/// `clients` clients playing serving thread `worker` (`shard::TEST_WORKER`),
/// each sending requests one after another until `until`; the requests
/// each client got answered.
fn clients_on(
    pool: &Pool,
    worker: usize,
    clients: usize,
    sleep_ms: u64,
    until: Instant,
) -> Vec<tokio::task::JoinHandle<Result<usize, String>>> {
    (0..clients)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(super::shard::TEST_WORKER.scope(worker, async move {
                let mut answered = 0;
                while Instant::now() < until {
                    request(pool.clone(), sleep_ms).await?;
                    answered += 1;
                }
                Ok(answered)
            }))
        })
        .collect()
}

/// `clients` clients on serving thread `worker`, one request each.
fn one_request_each(
    pool: &Pool,
    worker: usize,
    clients: usize,
    sleep_ms: u64,
) -> Vec<tokio::task::JoinHandle<Result<usize, String>>> {
    clients_on(
        pool,
        worker,
        clients,
        sleep_ms,
        Instant::now() + Duration::from_millis(1),
    )
}

async fn answered(tasks: Vec<tokio::task::JoinHandle<Result<usize, String>>>) -> Vec<usize> {
    let mut counts = Vec::new();
    for task in tasks {
        counts.push(task.await.unwrap().expect("every request answered"));
    }
    counts
}

fn two_threads(max_conns: usize) -> PoolSettings {
    PoolSettings {
        workers: 2,
        ..settings(max_conns, Duration::from_secs(60))
    }
}

#[tokio::test(start_paused = true)]
async fn two_threads_share_php_fpm_and_neither_starves() {
    // 4 workers, 16 clients on each serving thread, fast pages.
    let fpm = FakeFpm::start(4);
    let pool = pool_on(&fpm, true, two_threads(8));
    let until = Instant::now() + Duration::from_secs(2);
    let first = clients_on(&pool, 0, 16, 1, until);
    let second = clients_on(&pool, 1, 16, 1, until);
    let (first, second) = (answered(first).await, answered(second).await);
    let snap = pool.snapshot();
    // Every client kept getting answers, on both threads alike.
    let least = first.iter().chain(&second).min().copied().unwrap_or(0);
    let most = first.iter().chain(&second).max().copied().unwrap_or(0);
    assert!(least * 3 >= most, "{first:?} {second:?} {snap:?}");
    let (a, b) = (first.iter().sum::<usize>(), second.iter().sum::<usize>());
    assert!(a * 3 >= b * 2 && b * 3 >= a * 2, "{a} vs {b}: {snap:?}");
    // The size learned holds for the whole pool, and each thread pipelines
    // on its own connections: few move between threads.
    assert_eq!(snap.size, 4, "{snap:?}");
    assert!(snap.sent_ahead * 2 > (a + b) as u64, "{snap:?}");
    assert!(snap.moved_threads * 50 < (a + b) as u64, "{snap:?}");
    // Each thread counts its own leases; the snapshot adds them up.
    assert_eq!(snap.acquired, (a + b) as u64, "{snap:?}");
    assert_eq!(snap.reused + snap.connects, snap.acquired, "{snap:?}");
}

#[tokio::test(start_paused = true)]
async fn one_busy_thread_uses_what_the_other_leaves() {
    // Slow pages on one thread only: all of php-fpm's 4 workers serve it.
    let fpm = FakeFpm::start(4);
    let pool = pool_on(&fpm, true, two_threads(8));
    let started = Instant::now();
    answered(one_request_each(&pool, 0, 8, 300)).await;
    assert_ideal(&pool, started.elapsed(), 8, 300, 4);
}

#[tokio::test(start_paused = true)]
async fn slow_pages_from_both_threads_take_the_ideal_time() {
    // 12 clients, 6 on each thread, 300 ms pages, 2 pinned php-fpm workers.
    let fpm = FakeFpm::start(2);
    let pool = pool_on(&fpm, true, two_threads(8));
    let started = Instant::now();
    let mut tasks = one_request_each(&pool, 0, 6, 300);
    tasks.extend(one_request_each(&pool, 1, 6, 300));
    answered(tasks).await;
    assert_ideal(&pool, started.elapsed(), 12, 300, 2);
    assert_eq!(pool.size(), 2, "{:?}", pool.snapshot());
}

#[tokio::test(start_paused = true)]
async fn a_thread_without_connections_gets_one_under_the_others_load() {
    // Thread 0 pipelines 16 clients over both of php-fpm's workers; a
    // request arriving on thread 1 must not wait behind that load.
    let fpm = FakeFpm::start(2);
    let pool = pool_on(&fpm, true, two_threads(8));
    let until = Instant::now() + Duration::from_secs(2);
    let load = clients_on(&pool, 0, 16, 1, until);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pool.snapshot().busy_per_thread, vec![2, 0]);
    let asked = Instant::now();
    assert_eq!(answered(one_request_each(&pool, 1, 1, 1)).await, vec![1]);
    let waited = asked.elapsed();
    // Behind thread 0's requests already on a connection (4 at 1 ms each
    // at most), not behind all of its load.
    assert!(
        waited <= Duration::from_millis(20),
        "waited {waited:?}: {:?}",
        pool.snapshot()
    );
    answered(load).await;
}

/// One connection serves one request after another, its read timer kept
/// from one exchange to the next and set again each time: a response that
/// comes after the earlier exchange's deadline but within its own still
/// arrives, and one later than its own still times out.
#[tokio::test(start_paused = true)]
async fn each_exchange_on_a_kept_connection_has_a_read_deadline_of_its_own() {
    let fpm = FakeFpm::start(1);
    let pool = pool_on(&fpm, true, settings(1, Duration::from_secs(10)));
    request(pool.clone(), 0).await.expect("answered at once");
    tokio::time::sleep(Duration::from_secs(8)).await;
    // Answered at 14 s: past the first exchange's deadline (10 s), within
    // its own (18 s).
    request(pool.clone(), 6_000)
        .await
        .expect("the second exchange's own deadline holds");
    let started = Instant::now();
    let late = request(pool.clone(), 11_000).await;
    assert!(
        late.as_ref()
            .is_err_and(|e| e.contains("no response head from upstream within 10s")),
        "{late:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    let seen = pool.snapshot();
    assert_eq!(
        (seen.connects, seen.reused),
        (1, 2),
        "all three on one connection"
    );
}
