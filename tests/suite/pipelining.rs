//! Upstream pipelining: requests written onto a busy connection behind the
//! running one, against real php-fpm (answers, worker recycling, the pause
//! after a slow request) and the fake server (the request ahead abandoned
//! or its connection dying).

use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::fake_fcgi::{FakeFcgi, Script, Step};
use support::gateway::{self, Gateway};
use support::php_fpm::{fixtures_dir, PhpFpm, PhpFpmOptions};
use support::wait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the gateway or the fake may take to reach the state a test
/// waits for.
const WAIT: Duration = Duration::from_secs(10);

async fn gateway_for(upstream: &str, extra: &[&str]) -> Gateway {
    Gateway::serve(upstream, &fixtures_dir().display().to_string(), extra).await
}

/// A gateway in front of `fpm`'s unix-socket pool with `conns` upstream
/// connections, pipelining paused by any request slower than `threshold`.
async fn pipelining_gateway(fpm: &PhpFpm, conns: &str, threshold: &str) -> Gateway {
    let extra = [
        "--max-upstream-conns",
        conns,
        "--upstream-pipelining",
        threshold,
    ];
    gateway_for(&format!("unix:{}", fpm.unix_socket.display()), &extra).await
}

/// `total` GETs of `path?n=<i>` from `concurrency` clients; for each, whether
/// it was a 200 whose body names its own query string (`env.php` echoes it).
async fn load_checked(
    addr: std::net::SocketAddr,
    total: usize,
    concurrency: usize,
) -> Vec<Result<(), String>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return results;
                }
                let query = format!("n={i}");
                let reply = gateway::get(addr, &format!("/env.php?{query}")).await;
                let ok = reply.status == 200 && reply.json()["QUERY_STRING"] == query;
                results.push(if ok {
                    Ok(())
                } else {
                    Err(format!("{query}: {} {}", reply.status, reply.text()))
                });
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_sent_ahead_each_get_their_own_answer() {
    let fpm = PhpFpm::start();
    for upstream in support::upstreams_of(&fpm) {
        // A high pause threshold: this test is about the answers, and a
        // noisy machine must not switch pipelining off under it.
        let gw = gateway_for(
            &upstream,
            &["--max-upstream-conns", "2", "--upstream-pipelining", "5s"],
        )
        .await;
        let results = load_checked(gw.addr, 600, 16).await;
        let snap = gw.pool.snapshot();
        let wrong: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(wrong.is_empty(), "{upstream}: {wrong:?}; pool {snap:?}");
        assert_eq!(results.len(), 600);
        assert!(
            snap.sent_ahead > 0,
            "{upstream}: 16 clients on 2 connections, yet nothing was sent ahead: {snap:?}"
        );
        // Full connections are refilled several requests at a time.
        assert!(
            snap.send_ahead_writes > 0 && snap.send_ahead_writes < snap.sent_ahead,
            "{upstream}: one write per request sent ahead: {snap:?}"
        );
        gw.shutdown().await;

        let gw = gateway_for(
            &upstream,
            &["--max-upstream-conns", "2", "--upstream-pipelining", "off"],
        )
        .await;
        let results = load_checked(gw.addr, 200, 16).await;
        let snap = gw.pool.snapshot();
        assert!(results.iter().all(Result::is_ok), "{upstream}: {snap:?}");
        assert_eq!(
            snap.sent_ahead, 0,
            "{upstream}: pipelining is off: {snap:?}"
        );
        gw.shutdown().await;
    }
}

/// php-fpm workers exit after 3 requests; a request sent ahead onto a
/// recycled worker's connection was never read, and is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_recycling_with_requests_sent_ahead_fails_none() {
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        children: 4,
        max_requests: 3,
        ..Default::default()
    });
    for upstream in support::upstreams_of(&fpm) {
        let gw = gateway_for(
            &upstream,
            &["--max-upstream-conns", "4", "--upstream-pipelining", "5s"],
        )
        .await;
        let statuses = gateway::load(gw.addr, "/hello.php", 2000, 16).await;
        let snap = gw.pool.snapshot();
        let failed = statuses.iter().filter(|s| **s != 200).count();
        assert_eq!(failed, 0, "{upstream}: {failed} of 2000 failed; {snap:?}");
        assert_eq!(statuses.len(), 2000);
        assert!(snap.sent_ahead > 0, "{upstream}: {snap:?}");
        assert!(snap.retries > 0, "{upstream}: {snap:?}");
        gw.shutdown().await;
    }
}

/// A request slower than the threshold pauses pipelining for 2 s, so no
/// more requests queue up behind slow ones; then it resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_pauses_pipelining() {
    let fpm = PhpFpm::start();
    let gw = pipelining_gateway(&fpm, "2", "100ms").await;
    let sent_ahead = || gw.pool.snapshot().sent_ahead;
    assert!(gateway::load(gw.addr, "/hello.php", 300, 8)
        .await
        .iter()
        .all(|s| *s == 200));
    assert!(sent_ahead() > 0, "{:?}", gw.pool.snapshot());

    assert_eq!(
        gateway::get(gw.addr, "/slow.php?ms=300").await.text(),
        "slept 300"
    );
    let before = sent_ahead();
    assert!(gateway::load(gw.addr, "/hello.php", 200, 8)
        .await
        .iter()
        .all(|s| *s == 200));
    assert_eq!(sent_ahead(), before, "paused after the slow request");

    // Resumes once the pause is over (a few tries: a noisy machine may make
    // a hello.php take over 100 ms and pause it again).
    let mut resumed = false;
    for _ in 0..4 {
        // Time must pass: the pause is the gateway's own 2 s timer.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let before = sent_ahead();
        assert!(gateway::load(gw.addr, "/hello.php", 200, 8)
            .await
            .iter()
            .all(|s| *s == 200));
        if sent_ahead() > before {
            resumed = true;
            break;
        }
    }
    assert!(
        resumed,
        "pipelining never resumed: {:?}",
        gw.pool.snapshot()
    );
    gw.shutdown().await;
}

fn header_then(body: &str) -> Step {
    Step::Stdout(format!("Content-Type: text/plain\r\n\r\n{body}").into_bytes())
}

fn end() -> Step {
    Step::End {
        app_status: 0,
        protocol_status: 0,
    }
}

/// One upstream connection, one serving thread, pipelining paused only by
/// a 10 s request. Pipelining is per serving thread: on one, all clients'
/// requests share its queue whichever connection they came on.
async fn one_connection_gateway(upstream: &str) -> Gateway {
    gateway_for(
        upstream,
        &[
            "--max-upstream-conns",
            "1",
            "--upstream-pipelining",
            "10s",
            "--workers",
            "1",
        ],
    )
    .await
}

/// One connection: `hold` keeps it busy while `ahead` and then two more
/// requests queue up, so those are written onto it behind `ahead`.
/// `ahead`'s client reads its first bytes and leaves. Returns the gateway,
/// the fake and the replies of the two behind.
async fn ahead_and_behind(
    upstream_of: fn(&FakeFcgi) -> String,
    ahead: Script,
) -> (Gateway, FakeFcgi, Vec<gateway::Reply>) {
    let hold = Script::new(vec![
        Step::Sleep(Duration::from_millis(300)),
        header_then("held"),
        end(),
    ]);
    let fake = FakeFcgi::start(vec![Script::ok("warm"), hold, ahead, Script::ok("behind")]).await;
    let gw = one_connection_gateway(&upstream_of(&fake)).await;
    let addr = gw.addr;
    assert_eq!(gateway::get(addr, "/hello.php").await.text(), "warm");
    let held = tokio::spawn(async move { gateway::get(addr, "/hello.php").await.text() });
    wait::until("the held request to reach the fake", WAIT, || {
        fake.requests_seen() == 2
    })
    .await;
    let acquired = gw.pool.snapshot().acquired;
    let ahead_client = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /hello.php HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !seen.windows(2).any(|w| w == b"a1") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        // Leaves with the response half read.
        seen
    });
    let mut behind = Vec::new();
    for before in 1..=2 {
        // In turn: the requests before it have reached the pool first.
        let what = format!("{before} requests to reach the pool");
        wait::until(&what, WAIT, || gw.reached_pool(acquired) >= before).await;
        behind.push(tokio::spawn(async move {
            gateway::get(addr, "/hello.php").await
        }));
    }
    assert_eq!(held.await.expect("held"), "held");
    let seen = ahead_client.await.expect("ahead client");
    assert!(
        seen.windows(2).any(|w| w == b"a1"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    let mut replies = Vec::new();
    for task in behind {
        let reply = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("a request behind was answered in time")
            .expect("behind");
        replies.push(reply);
    }
    (gw, fake, replies)
}

fn unix_of(fake: &FakeFcgi) -> String {
    format!("unix:{}", fake.unix_socket.display())
}

fn tcp_of(fake: &FakeFcgi) -> String {
    format!("tcp:{}", fake.tcp_addr)
}

/// The client of the request ahead leaves mid-response: its response is
/// read away, and the request behind gets its own on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_behind_an_abandoned_one_is_answered() {
    for upstream_of in [unix_of as fn(&FakeFcgi) -> String, tcp_of] {
        let ahead = Script::new(vec![
            header_then("a1"),
            Step::Sleep(Duration::from_millis(200)),
            Step::Stdout(b"a2".to_vec()),
            Step::Sleep(Duration::from_millis(200)),
            Step::Stdout(b"a3".to_vec()),
            end(),
        ]);
        let (gw, fake, replies) = ahead_and_behind(upstream_of, ahead).await;
        let snap = gw.pool.snapshot();
        for reply in replies {
            assert_eq!(reply.status, 200, "{snap:?}");
            assert_eq!(reply.text(), "behind", "{snap:?}");
        }
        // Each was written behind the one before.
        assert_eq!(snap.sent_ahead, 2, "{snap:?}");
        assert_eq!(fake.connections_seen(), 1, "served on the same connection");
        assert_eq!(fake.requests_seen(), 5);
        gw.shutdown().await;
    }
}

/// The connection dies before the request ahead ends: php-fpm never read
/// the request behind, so it is sent again on a new connection, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_behind_a_dead_connection_is_sent_again() {
    for upstream_of in [unix_of as fn(&FakeFcgi) -> String, tcp_of] {
        let ahead = Script::new(vec![
            header_then("a1"),
            Step::Sleep(Duration::from_millis(100)),
            Step::Close,
        ]);
        let (gw, fake, replies) = ahead_and_behind(upstream_of, ahead).await;
        let snap = gw.pool.snapshot();
        for reply in replies {
            assert_eq!(reply.status, 200, "{snap:?}");
            assert_eq!(reply.text(), "behind", "{snap:?}");
        }
        // Both were on the connection when it died.
        assert_eq!(snap.sent_ahead, 2, "{snap:?}");
        assert_eq!(fake.connections_seen(), 2, "{snap:?}");
        // warm, held, ahead and the two behind: the copy on the dead
        // connection was never read, so nothing ran twice.
        assert_eq!(fake.requests_seen(), 5, "{snap:?}");
        gw.shutdown().await;
    }
}

/// php-fpm never sets TCP_NODELAY: while its last answer is not ACKed, its
/// Nagle holds the next one until the gateway's delayed ACK, 20-40 ms
/// later. An answer with a request sent ahead behind it, and no request
/// written after it to carry the ACK, is ACKed at once all the same.
/// Each round: `held` runs while three more queue; when it ends, the first
/// takes the connection and the other two are sent ahead behind it, so
/// the answers of the first two have a request behind them and none
/// written after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_with_requests_behind_them_are_acked_at_once() {
    const WARM: usize = 40;
    const ROUNDS: usize = 6;
    let answer =
        |body: &str| Step::Answer(format!("Content-Type: text/plain\r\n\r\n{body}").into_bytes());
    let held = Script::new(vec![
        Step::AwaitAcked,
        Step::Sleep(Duration::from_millis(200)),
        answer("held"),
    ]);
    let behind = Script::new(vec![Step::AwaitAcked, answer("behind")]);
    let mut scripts = vec![Script::new(vec![answer("warm")]); WARM];
    for _ in 0..ROUNDS {
        scripts.extend([held.clone(), behind.clone(), behind.clone(), behind.clone()]);
    }
    let fake = FakeFcgi::start_with_nagle(scripts).await;
    let gw = one_connection_gateway(&tcp_of(&fake)).await;
    let addr = gw.addr;
    // Past the kernel's quick ACKs of a new connection, and into its
    // interactive mode (our writes follow php-fpm's at once), where it
    // delays an ACK no write of ours carries.
    for _ in 0..WARM {
        assert_eq!(gateway::get(addr, "/hello.php").await.text(), "warm");
    }
    for round in 0..ROUNDS {
        let seen = fake.requests_seen();
        let acquired = gw.pool.snapshot().acquired;
        let mut replies = vec![tokio::spawn(async move {
            gateway::get(addr, "/hello.php").await.text()
        })];
        wait::until("the held request to reach the fake", WAIT, || {
            fake.requests_seen() == seen + 1
        })
        .await;
        for before in 1..=3 {
            let what = format!("{before} requests to reach the pool");
            wait::until(&what, WAIT, || gw.reached_pool(acquired) >= before).await;
            replies.push(tokio::spawn(async move {
                gateway::get(addr, "/hello.php").await.text()
            }));
        }
        let mut texts = Vec::new();
        for reply in replies {
            texts.push(reply.await.expect("client"));
        }
        assert_eq!(
            texts,
            ["held", "behind", "behind", "behind"],
            "round {round}"
        );
    }
    let snap = gw.pool.snapshot();
    assert_eq!(snap.sent_ahead, 2 * ROUNDS as u64, "{snap:?}");
    assert_eq!(fake.connections_seen(), 1, "{snap:?}");
    // Each script's wait is for the answer before it: in a round, the
    // second and third behind wait for an ACK no request carries.
    let waits = fake.ack_waits();
    assert_eq!(waits.len(), 4 * ROUNDS, "{waits:?}");
    // A delayed ACK comes after 20 ms at the soonest; a quick one may be
    // late on a busy machine now and then, not most of the time.
    let late = waits.iter().filter(|w| **w >= Duration::from_millis(15));
    assert!(late.count() <= 2, "ACK waits: {waits:?}");
    gw.shutdown().await;
}

/// A connection with requests behind it is handed on, never released. A
/// request that cannot be sent ahead (a streamed body) must still get a
/// connection under a steady stream of ones that can: while it waits,
/// nothing is sent ahead, so a connection comes free for it. Without that
/// it waited out --acquire-timeout and got 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_upload_is_not_starved_by_pipelined_requests() {
    let fpm = PhpFpm::start();
    for upstream in support::upstreams_of(&fpm) {
        let gw = gateway_for(
            &upstream,
            &[
                "--max-upstream-conns",
                "1",
                "--upstream-pipelining",
                "10s",
                "--acquire-timeout",
                "2s",
            ],
        )
        .await;
        let addr = gw.addr;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut clients = Vec::new();
        // Enough clients that some always wait to be sent ahead.
        for _ in 0..32 {
            let stop = stop.clone();
            clients.push(tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    statuses.push(gateway::get(addr, "/hello.php").await.status);
                }
                statuses
            }));
        }
        wait::until("requests to be sent ahead", WAIT, || {
            gw.pool.snapshot().sent_ahead > 0
        })
        .await;
        let sent_ahead_before = gw.pool.snapshot().sent_ahead;
        // Larger than what is sent along with the request head: streamed.
        let body = bytes::Bytes::from(vec![b'x'; 256 * 1024]);
        let upload = gateway::request(addr, "POST", "/echo_post.php", &[], body).await;
        stop.store(true, Ordering::Relaxed);
        let mut statuses = Vec::new();
        for c in clients {
            statuses.extend(c.await.expect("client"));
        }
        let snap = gw.pool.snapshot();
        assert_eq!(upload.status, 200, "{upstream}: {} {snap:?}", upload.text());
        assert_eq!(upload.json()["length"], 256 * 1024);
        assert!(sent_ahead_before > 0, "{upstream}: {snap:?}");
        assert!(statuses.iter().all(|s| *s == 200), "{upstream}: {snap:?}");
        gw.shutdown().await;
    }
}

/// Requests bigger than 8 KiB are never sent ahead: several of them unread
/// in the socket could fill it, and our write would then wait for php-fpm
/// while php-fpm waits for us to read its response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_requests_are_not_sent_ahead() {
    let fpm = PhpFpm::start();
    let gw = pipelining_gateway(&fpm, "1", "10s").await;
    let addr = gw.addr;
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(tokio::spawn(async move {
            let mut lengths = Vec::new();
            for _ in 0..10 {
                // Sent along with the request head (inline), yet too big.
                let body = bytes::Bytes::from(vec![b'y'; 16 * 1024]);
                let reply = gateway::request(addr, "POST", "/echo_post.php", &[], body).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
                lengths.push(reply.json()["length"].as_u64());
            }
            lengths
        }));
    }
    for c in clients {
        let lengths = c.await.expect("client");
        assert!(lengths.iter().all(|l| *l == Some(16 * 1024)), "{lengths:?}");
    }
    let snap = gw.pool.snapshot();
    assert_eq!(snap.sent_ahead, 0, "{snap:?}");
    gw.shutdown().await;
}

/// A request whose client left while it waited in the queue is never sent
/// ahead: php-fpm would run it for nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_given_up_while_queued_is_not_sent() {
    let hold = Script::new(vec![
        Step::Sleep(Duration::from_millis(400)),
        header_then("held"),
        end(),
    ]);
    let fake = FakeFcgi::start(vec![Script::ok("warm"), hold, Script::ok("next")]).await;
    let gw = gateway_for(
        &unix_of(&fake),
        &["--max-upstream-conns", "1", "--upstream-pipelining", "10s"],
    )
    .await;
    let addr = gw.addr;
    assert_eq!(gateway::get(addr, "/hello.php").await.text(), "warm");
    let held = tokio::spawn(async move { gateway::get(addr, "/hello.php").await.text() });
    wait::until("the held request to reach the fake", WAIT, || {
        fake.requests_seen() == 2
    })
    .await;
    let acquired = gw.pool.snapshot().acquired;
    {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /hello.php HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        wait::until("its request to reach the pool", WAIT, || {
            gw.reached_pool(acquired) >= 1
        })
        .await;
        // Leaves while its request waits for the only connection.
    }
    assert_eq!(held.await.expect("held"), "held");
    // The next request starts an exchange that would send the queued one ahead.
    assert_eq!(gateway::get(addr, "/hello.php").await.text(), "next");
    // Time must pass: a window for the given-up request to reach the fake
    // if it were (wrongly) sent.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let snap = gw.pool.snapshot();
    assert_eq!(snap.sent_ahead, 0, "{snap:?}");
    assert_eq!(fake.requests_seen(), 3, "{snap:?}");
    gw.shutdown().await;
}

/// Nothing is sent behind a request for a URL path that was slow lately:
/// the fast requests queued while it starts go to the other connection
/// instead of waiting behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_waits_behind_a_path_that_was_slow() {
    let fpm = PhpFpm::start();
    let gw = pipelining_gateway(&fpm, "2", "200ms").await;
    let addr = gw.addr;
    // /slow.php is slow once (and pauses pipelining for 2 s).
    assert_eq!(gateway::get(addr, "/slow.php?ms=300").await.status, 200);
    // Time must pass: the pause is the gateway's own 2 s timer.
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let acquired = gw.pool.snapshot().acquired;
    let started = std::time::Instant::now();
    // Two quick-enough requests take both connections...
    let mut holds = Vec::new();
    for _ in 0..2 {
        holds.push(tokio::spawn(async move {
            gateway::get(addr, "/slow.php?ms=100").await.status
        }));
    }
    wait::until("both to get a connection", WAIT, || {
        gw.pool.snapshot().acquired >= acquired + 2
    })
    .await;
    // ...so the slow one and then fast ones queue; the slow one starts first.
    let slow = tokio::spawn(async move {
        let status = gateway::get(addr, "/slow.php?ms=600").await.status;
        (status, started.elapsed())
    });
    wait::until("the slow request to reach the pool", WAIT, || {
        gw.reached_pool(acquired) >= 3
    })
    .await;
    let mut fast = Vec::new();
    for _ in 0..4 {
        fast.push(tokio::spawn(async move {
            let status = gateway::get(addr, "/hello.php").await.status;
            (status, started.elapsed())
        }));
    }
    for h in holds {
        assert_eq!(h.await.expect("hold"), 200);
    }
    let (status, slow_done) = slow.await.expect("slow");
    assert_eq!(status, 200);
    let snap = gw.pool.snapshot();
    for f in fast {
        let (status, done) = f.await.expect("fast");
        assert_eq!(status, 200);
        assert!(
            done < slow_done,
            "a fast request ({done:?}) waited behind the slow one ({slow_done:?}): {snap:?}"
        );
    }
    gw.shutdown().await;
}
