//! Faults php-fpm cannot produce on demand, through HTTP against the scripted
//! fake FastCGI server, over both `unix:` and `tcp:`.

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use support::fake_fcgi::{FakeFcgi, Script, Step};
use support::gateway::{self, Gateway};
use support::wait;

const HEAD: &[u8] = b"Content-Type: text/plain\r\n\r\n";

fn upstreams(fake: &FakeFcgi) -> Vec<String> {
    vec![
        format!("unix:{}", fake.unix_socket.display()),
        format!("tcp:{}", fake.tcp_addr),
    ]
}

async fn gateway_for(upstream: &str, extra: &[&str]) -> Gateway {
    Gateway::serve(
        upstream,
        &support::php_fpm::fixtures_dir().display().to_string(),
        extra,
    )
    .await
}

fn end() -> Step {
    Step::End {
        app_status: 0,
        protocol_status: 0,
    }
}

#[tokio::test]
async fn head_split_across_records_and_bytes() {
    let mut steps: Vec<Step> = b"Status: 201 Created\r\nX-Split: yes\r\n\r\n"
        .iter()
        .map(|b| Step::Stdout(vec![*b]))
        .collect();
    steps.push(Step::Stdout(b"bo".to_vec()));
    steps.push(Step::Stdout(b"dy".to_vec()));
    steps.push(end());
    let fake = FakeFcgi::start(vec![Script { steps }]).await;
    for upstream in upstreams(&fake) {
        let gw = gateway_for(&upstream, &[]).await;
        let r = gateway::get(gw.addr, "/hello.php").await;
        assert_eq!(r.status, 201, "{upstream}");
        assert_eq!(r.header("x-split").as_deref(), Some("yes"));
        assert_eq!(r.text(), "body");
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn malformed_upstream_output_is_502() {
    let cases: Vec<(&str, Vec<Step>)> = vec![
        (
            "STDOUT with a foreign request id",
            vec![Step::Raw(vec![
                1, 6, 0, 7, 0, 4, 4, 0, b'a', b'b', b'c', b'd', 0, 0, 0, 0,
            ])],
        ),
        (
            "END_REQUEST with a foreign request id",
            vec![Step::EndWithId(7)],
        ),
        (
            "bad version byte",
            vec![Step::Raw(vec![
                9, 6, 0, 1, 0, 4, 0, 0, b'a', b'b', b'c', b'd',
            ])],
        ),
        ("close before END_REQUEST, before head", vec![Step::Close]),
        (
            "CANT_MPX_CONN",
            vec![Step::End {
                app_status: 0,
                protocol_status: 1,
            }],
        ),
        (
            "UNKNOWN_ROLE",
            vec![Step::End {
                app_status: 0,
                protocol_status: 3,
            }],
        ),
        (
            "malformed CGI head",
            vec![
                Step::Stdout(b"this is not a header line\r\n\r\nbody".to_vec()),
                end(),
            ],
        ),
        (
            "CGI head over 64 KiB",
            vec![Step::Stdout(vec![b'X'; 70 * 1024]), end()],
        ),
        ("no head at all", vec![end()]),
    ];
    for (what, steps) in cases {
        eprintln!("case: {what}");
        let fake = FakeFcgi::start(vec![Script { steps }]).await;
        for upstream in upstreams(&fake) {
            let gw = gateway_for(&upstream, &[]).await;
            let r = gateway::get(gw.addr, "/hello.php").await;
            assert_eq!(r.status, 502, "{what} via {upstream}: {}", r.text());
            gw.shutdown().await;
        }
    }
}

#[tokio::test]
async fn overloaded_is_503_with_retry_after() {
    let fake = FakeFcgi::start(vec![Script {
        steps: vec![Step::End {
            app_status: 0,
            protocol_status: 2,
        }],
    }])
    .await;
    for upstream in upstreams(&fake) {
        let gw = gateway_for(&upstream, &[]).await;
        let r = gateway::get(gw.addr, "/hello.php").await;
        assert_eq!(r.status, 503, "{upstream}");
        assert_eq!(r.header("retry-after").as_deref(), Some("1"));
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn close_mid_body_aborts_the_response() {
    for use_tcp in [false, true] {
        let broken = Script {
            steps: vec![
                Step::Stdout(HEAD.to_vec()),
                Step::Stdout(b"partial".to_vec()),
                Step::Close,
            ],
        };
        let fake = FakeFcgi::start(vec![broken, Script::ok("fine")]).await;
        let upstream = upstreams(&fake)[usize::from(use_tcp)].clone();
        let gw = gateway_for(&upstream, &[]).await;
        let out = gateway::raw(
            gw.addr,
            b"GET /hello.php HTTP/1.1\r\nHost: x\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        let out = String::from_utf8_lossy(&out);
        // Either nothing or a chunked body that never got its last chunk:
        // the client can tell the response is incomplete.
        assert!(out.is_empty() || out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(!out.contains("\r\n0\r\n\r\n"), "{out}");
        // The broken connection is not reused: the next request gets a new one and works.
        let r = gateway::get(gw.addr, "/hello.php").await;
        assert_eq!(r.text(), "fine", "{upstream}");
        assert_eq!(fake.connections_seen(), 2);
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn connections_are_kept_alive_and_reused() {
    let fake = FakeFcgi::start(vec![Script::ok("pong")]).await;
    for (i, upstream) in upstreams(&fake).into_iter().enumerate() {
        let gw = gateway_for(&upstream, &[]).await;
        for _ in 0..5 {
            let r = gateway::get(gw.addr, "/hello.php").await;
            assert_eq!(r.text(), "pong");
        }
        assert_eq!(
            fake.connections_seen(),
            i + 1,
            "{upstream}: one connection for 5 requests"
        );
        gw.shutdown().await;
    }
    assert_eq!(fake.requests_seen(), 10);
}

#[tokio::test]
async fn unfinished_response_connection_is_not_reused() {
    // The first response is long and slow; the client leaves mid-way.
    let mut steps = vec![Step::Stdout(HEAD.to_vec())];
    for _ in 0..50 {
        steps.push(Step::Stdout(vec![b'z'; 1000]));
        steps.push(Step::Sleep(Duration::from_millis(20)));
    }
    steps.push(end());
    let fake = FakeFcgi::start(vec![Script { steps }, Script::ok("fresh")]).await;
    let upstream = format!("unix:{}", fake.unix_socket.display());
    let gw = gateway_for(&upstream, &[]).await;
    {
        let resp = gateway::send(gw.addr, "GET", "/hello.php", &[], Bytes::new()).await;
        assert_eq!(resp.status(), 200);
        // Dropped here: the client goes away mid-response.
    }
    // Then the next request finds its connection idled (wrongly) or gone.
    wait::until(
        "the gateway to be done with the abandoned response",
        Duration::from_secs(10),
        || gw.pool.snapshot().busy == 0,
    )
    .await;
    let r = gateway::get(gw.addr, "/hello.php").await;
    assert_eq!(r.text(), "fresh");
    assert_eq!(
        fake.connections_seen(),
        2,
        "the abandoned connection was closed, not reused"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn params_and_body_reach_the_upstream() {
    let fake = FakeFcgi::start(vec![Script::ok("ok")]).await;
    let upstream = format!("tcp:{}", fake.tcp_addr);
    let gw = gateway_for(&upstream, &[]).await;
    let r = gateway::request(
        gw.addr,
        "PUT",
        "/hello.php?x=%41",
        &[("content-type", "text/plain"), ("X-Obs", "caf\u{e9}")],
        Bytes::from_static(b"the body"),
    )
    .await;
    assert_eq!(r.status, 200);
    let params = fake.last_params();
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k.as_bytes())
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("REQUEST_METHOD").as_deref(), Some(&b"PUT"[..]));
    assert_eq!(get("QUERY_STRING").as_deref(), Some(&b"x=%41"[..]));
    assert_eq!(get("CONTENT_LENGTH").as_deref(), Some(&b"8"[..]));
    assert_eq!(get("CONTENT_TYPE").as_deref(), Some(&b"text/plain"[..]));
    assert_eq!(fake.last_stdin(), b"the body");
    gw.shutdown().await;
}

#[tokio::test]
async fn slow_request_head_is_cut_off_by_header_timeout() {
    let fake = FakeFcgi::start(vec![Script::ok("ok")]).await;
    let upstream = format!("unix:{}", fake.unix_socket.display());
    let gw = gateway_for(&upstream, &["--header-timeout", "300ms"]).await;
    let started = std::time::Instant::now();
    // The head never ends; the gateway must close the connection, not wait forever.
    let out = gateway::raw(
        gw.addr,
        b"GET /hello.php HTTP/1.1\r\nHost: x\r\n",
        Duration::from_secs(5),
    )
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "connection held for {took:?}"
    );
    let out = String::from_utf8_lossy(&out);
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 408"), "{out}");
    assert_eq!(fake.requests_seen(), 0);
    // A prompt client is unaffected.
    assert_eq!(gateway::get(gw.addr, "/hello.php").await.text(), "ok");
    gw.shutdown().await;
}

#[tokio::test]
async fn connect_timeout_is_504() {
    // A TCP listener that never accepts, with its backlog full: further
    // connects hang in SYN_SENT until the gateway's connect-timeout.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let upstream = format!("tcp:{addr}");
    let gw = gateway_for(&upstream, &["--connect-timeout", "300ms"]).await;
    let r = gateway::get(gw.addr, "/hello.php").await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.text().contains("connect-timeout"), "{}", r.text());
    gw.shutdown().await;
    drop(socket);
}

#[tokio::test]
async fn upstream_silent_mid_response_is_cut_at_read_timeout() {
    let fake = FakeFcgi::start(vec![
        Script {
            steps: vec![
                Step::Stdout(HEAD.to_vec()),
                Step::Stdout(b"started ".to_vec()),
                Step::Sleep(Duration::from_secs(3)),
                Step::Stdout(b"too late".to_vec()),
                end(),
            ],
        },
        Script::ok("next"),
    ])
    .await;
    let upstream = format!("unix:{}", fake.unix_socket.display());
    let gw = gateway_for(&upstream, &["--read-timeout", "300ms"]).await;
    let started = std::time::Instant::now();
    let out = gateway::raw(
        gw.addr,
        b"GET /hello.php HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    let out = String::from_utf8_lossy(&out);
    // The head was already sent: the response is aborted, not completed.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "waited {:?}",
        started.elapsed()
    );
    assert!(!out.contains("too late"), "{out}");
    assert!(!out.contains("\r\n0\r\n\r\n"), "{out}");
    assert_eq!(gateway::get(gw.addr, "/hello.php").await.text(), "next");
    gw.shutdown().await;
}
