//! Tests of the test harness itself (tests/support): a real php-fpm with the
//! PHP fixtures, and the scripted fake FastCGI server. The gateway is not
//! involved; requests are made with the `fastcgi-client` crate, or with the
//! tiny hand-rolled record code at the bottom of this file where exact bytes
//! or missing END_REQUEST records matter.

use crate::support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fastcgi_client::response::Content;
use fastcgi_client::{Client, ClientError, Params, Request, Response, StreamExt};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use support::wait;
use support::{big_body, fixtures_dir, split_cgi_response, FakeFcgi, PhpFpm, PhpFpmOptions};
use support::{Script, Step};

/// Upper bound for any single request in these tests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long php-fpm or the fake server may take to show what a test waits for.
const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
enum Target {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl Target {
    fn of_fpm(fpm: &PhpFpm) -> [Target; 2] {
        [
            Target::Unix(fpm.unix_socket.clone()),
            Target::Tcp(fpm.tcp_addr),
        ]
    }

    fn of_fake(fake: &FakeFcgi) -> [Target; 2] {
        [
            Target::Unix(fake.unix_socket.clone()),
            Target::Tcp(fake.tcp_addr),
        ]
    }

    /// One request on a fresh connection (keep-alive client, so the server
    /// sees FCGI_KEEP_CONN).
    async fn execute(&self, params: Params<'_>, body: &[u8]) -> Result<Response, ClientError> {
        match self {
            Target::Unix(path) => {
                let stream = UnixStream::connect(path)
                    .await
                    .unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
                execute_on(stream, params, body).await
            }
            Target::Tcp(addr) => {
                let stream = TcpStream::connect(addr)
                    .await
                    .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
                execute_on(stream, params, body).await
            }
        }
    }

    async fn raw_stream(&self) -> Box<dyn RawStream> {
        match self {
            Target::Unix(path) => Box::new(
                UnixStream::connect(path)
                    .await
                    .unwrap_or_else(|e| panic!("connect to {}: {e}", path.display())),
            ),
            Target::Tcp(addr) => Box::new(
                TcpStream::connect(addr)
                    .await
                    .unwrap_or_else(|e| panic!("connect to {addr}: {e}")),
            ),
        }
    }
}

trait RawStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> RawStream for T {}

async fn execute_on<S>(stream: S, params: Params<'_>, body: &[u8]) -> Result<Response, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut client = Client::new_keep_alive_tokio(stream);
    tokio::time::timeout(
        REQUEST_TIMEOUT,
        client.execute(Request::new_tokio(params, body)),
    )
    .await
    .expect("FastCGI request timed out")
}

/// CGI params for `fixtures/php/<script>?<query>`.
fn php_params(script: &str, query: &str) -> Params<'static> {
    let filename = fixtures_dir().join(script);
    let uri = if query.is_empty() {
        format!("/{script}")
    } else {
        format!("/{script}?{query}")
    };
    Params::default()
        .request_method("GET")
        .document_root(fixtures_dir().to_string_lossy().into_owned())
        .script_filename(filename.to_string_lossy().into_owned())
        .script_name(format!("/{script}"))
        .document_uri(format!("/{script}"))
        .request_uri(uri)
        .query_string(query.to_string())
        .remote_addr("127.0.0.1")
        .remote_port(40000)
        .server_addr("127.0.0.1")
        .server_port(80)
        .server_name("localhost")
}

/// Run a request that must succeed; return (headers, body, stderr).
async fn php_ok(
    target: &Target,
    params: Params<'_>,
    body: &[u8],
) -> (Vec<(String, String)>, Vec<u8>, String) {
    let response = target
        .execute(params, body)
        .await
        .unwrap_or_else(|e| panic!("FastCGI request to {target:?} failed: {e}"));
    let stdout = response
        .stdout
        .unwrap_or_else(|| panic!("no FCGI_STDOUT from {target:?}"));
    let stderr = String::from_utf8_lossy(&response.stderr.unwrap_or_default()).into_owned();
    let (headers, body) = split_cgi_response(&stdout);
    (headers, body, stderr)
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("response is not JSON ({e}):\n{}", text(body)))
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

// ---------------------------------------------------------------- php-fpm --

#[tokio::test]
async fn php_fpm_serves_hello_over_unix_and_tcp() {
    let fpm = PhpFpm::start();
    assert!(
        process_exists(fpm.pid),
        "master {} not running\n{}",
        fpm.pid,
        fpm.log()
    );
    for target in Target::of_fpm(&fpm) {
        let (headers, body, stderr) = php_ok(&target, php_params("hello.php", ""), b"").await;
        assert_eq!(text(&body), "Hello, world!", "via {target:?}");
        assert_eq!(
            header(&headers, "Content-Type"),
            Some("text/plain;charset=UTF-8")
        );
        assert_eq!(stderr, "", "unexpected stderr via {target:?}");
    }
    // Non-PHP files are refused (security.limit_extensions = .php).
    let (_, body, _) = php_ok(
        &Target::Unix(fpm.unix_socket.clone()),
        php_params("data.txt", ""),
        b"",
    )
    .await;
    assert!(
        text(&body).contains("Access denied"),
        "data.txt: {}",
        text(&body)
    );
}

#[tokio::test]
async fn php_fpm_env_php_returns_server_json() {
    let fpm = PhpFpm::start();
    for target in Target::of_fpm(&fpm) {
        let params = php_params("env.php", "a=1&b=two")
            .custom("HTTP_X_PROBE", "probe-value")
            .custom("HTTPS", "on");
        let (headers, body, _) = php_ok(&target, params, b"").await;
        assert_eq!(header(&headers, "Content-Type"), Some("application/json"));
        let server = json(&body);
        assert_eq!(server["SCRIPT_NAME"], "/env.php", "{server:#}");
        assert_eq!(server["QUERY_STRING"], "a=1&b=two");
        assert_eq!(server["HTTP_X_PROBE"], "probe-value");
        assert_eq!(server["HTTPS"], "on");
        assert_eq!(server["REQUEST_METHOD"], "GET");
        assert_eq!(
            server["SCRIPT_FILENAME"],
            fixtures_dir().join("env.php").to_string_lossy().as_ref()
        );
    }
}

#[tokio::test]
async fn php_fpm_error_log_arrives_as_fastcgi_stderr() {
    let fpm = PhpFpm::start();
    for target in Target::of_fpm(&fpm) {
        let (_, body, stderr) = php_ok(&target, php_params("stderr.php", ""), b"").await;
        assert_eq!(text(&body), "ok");
        assert!(
            stderr.contains("fixture stderr line"),
            "error_log() did not arrive as FCGI_STDERR via {target:?}; stderr = {stderr:?}\n\
             php-fpm log:\n{}",
            fpm.log()
        );
    }
    // fcgi.logging = 1 also puts it in php-fpm's own log. The master writes
    // that log after relaying the worker's pipe, so under load it can lag.
    wait::holds_within(WAIT, || fpm.log().contains("fixture stderr line")).await;
    assert!(
        fpm.log().contains("fixture stderr line"),
        "php-fpm log:\n{}",
        fpm.log()
    );
}

#[tokio::test]
async fn php_fpm_restart_keeps_socket_and_port() {
    let mut fpm = PhpFpm::start();
    let (socket, addr, first_pid) = (fpm.unix_socket.clone(), fpm.tcp_addr, fpm.pid);
    for target in Target::of_fpm(&fpm) {
        php_ok(&target, php_params("hello.php", ""), b"").await;
    }

    fpm.restart();
    assert_eq!(fpm.unix_socket, socket);
    assert_eq!(fpm.tcp_addr, addr);
    assert_ne!(fpm.pid, first_pid, "restart must start a new master");
    assert!(
        !process_exists(first_pid),
        "old master {first_pid} still exists"
    );
    for target in Target::of_fpm(&fpm) {
        let (_, body, _) = php_ok(&target, php_params("hello.php", ""), b"").await;
        assert_eq!(text(&body), "Hello, world!", "after restart via {target:?}");
    }
    assert_eq!(
        fpm.log().matches("ready to handle connections").count(),
        2,
        "the log keeps both runs:\n{}",
        fpm.log()
    );
}

#[tokio::test]
async fn php_fpm_stop_is_idempotent_and_leaves_no_processes() {
    let mut fpm = PhpFpm::start();
    let master = fpm.pid;
    let workers = fpm.worker_pids();
    // pm = static, children = 4, two pools.
    assert_eq!(workers.len(), 8, "workers of {master}: {workers:?}");
    fpm.stop();
    assert!(!process_exists(master), "master {master} survived stop()");
    for worker in workers {
        assert!(!process_exists(worker), "worker {worker} survived stop()");
    }
    assert!(fpm.worker_pids().is_empty());
    fpm.stop(); // no-op
    assert!(
        UnixStream::connect(&fpm.unix_socket).await.is_err(),
        "unix socket still accepts after stop()"
    );
    drop(fpm); // no-op as well
}

#[tokio::test]
async fn php_fpm_flush_reaches_client_immediately() {
    let fpm = PhpFpm::start();
    for target in Target::of_fpm(&fpm) {
        let stream: Box<dyn RawStream> = target.raw_stream().await;
        let mut client = Client::new_keep_alive_tokio(stream);
        let started = Instant::now();
        let mut response = client
            .execute_stream(Request::new_tokio(
                php_params("stream.php", "n=3&delay_ms=400"),
                &b""[..],
            ))
            .await
            .unwrap_or_else(|e| panic!("stream.php via {target:?}: {e}"));
        let mut stdout = Vec::new();
        let mut arrivals = Vec::new();
        while let Some(content) = tokio::time::timeout(REQUEST_TIMEOUT, response.next())
            .await
            .expect("stream.php timed out")
        {
            if let Content::Stdout(bytes) = content.expect("stream.php response") {
                stdout.extend_from_slice(&bytes);
                for line in ["line 1\n", "line 2\n", "line 3\n"] {
                    let seen = text(&stdout).contains(line);
                    if seen && !arrivals.iter().any(|(l, _)| *l == line) {
                        arrivals.push((line, started.elapsed()));
                    }
                }
            }
        }
        let (_, body) = split_cgi_response(&stdout);
        assert_eq!(text(&body), "line 1\nline 2\nline 3\n");
        let first = arrivals[0].1;
        let last = arrivals[2].1;
        assert!(
            last - first >= Duration::from_millis(600),
            "flush() did not reach the client at once via {target:?}: arrivals {arrivals:?}"
        );
    }
}

#[tokio::test]
async fn php_fpm_streams_request_and_response_bodies() {
    let fpm = PhpFpm::start();
    let upload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let expected_sha = format!("{:x}", Sha256::digest(&upload));
    for target in Target::of_fpm(&fpm) {
        let params = php_params("echo_post.php", "")
            .request_method("POST")
            .content_type("application/octet-stream")
            .content_length(upload.len());
        let (_, body, stderr) = php_ok(&target, params, &upload).await;
        let reply = json(&body);
        assert_eq!(reply["length"], upload.len(), "{reply} stderr={stderr}");
        assert_eq!(reply["sha256"], expected_sha.as_str());
        assert_eq!(reply["content_type"], "application/octet-stream");
        assert_eq!(reply["content_length_param"], upload.len().to_string());

        let (headers, body, _) = php_ok(&target, php_params("big.php", "size=1000003"), b"").await;
        assert_eq!(
            header(&headers, "Content-Type"),
            Some("application/octet-stream")
        );
        assert_eq!(header(&headers, "Content-Length"), None);
        assert_eq!(body.len(), 1_000_003);
        assert!(
            body == big_body(1_000_003),
            "big.php body differs from big_body()"
        );
    }
    let (_, body, _) = php_ok(&Target::Tcp(fpm.tcp_addr), php_params("big.php", ""), b"").await;
    assert!(body == big_body(support::BIG_DEFAULT_SIZE));
}

#[tokio::test]
async fn php_fpm_header_fixtures() {
    let fpm = PhpFpm::start();
    let target = Target::Unix(fpm.unix_socket.clone());
    let (h, body, _) = php_ok(&target, php_params("headers.php", "case=status"), b"").await;
    assert_eq!(header(&h, "Status"), Some("404 Not Found"));
    assert_eq!(text(&body), "nope");
    let (h, _, _) = php_ok(&target, php_params("headers.php", "case=teapot"), b"").await;
    // php-fpm's own reason table lacks 418: PHP 8.2 sends a bare "Status: 418".
    let status = header(&h, "Status").unwrap_or_else(|| panic!("no Status header: {h:?}"));
    assert!(status.starts_with("418"), "{status:?}");
    let (h, _, _) = php_ok(&target, php_params("headers.php", "case=location"), b"").await;
    assert_eq!(header(&h, "Location"), Some("/elsewhere"));
    assert_eq!(header(&h, "Status"), Some("302 Found"));
    let (h, _, _) = php_ok(&target, php_params("headers.php", "case=cookies"), b"").await;
    let cookies: Vec<_> = h
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Set-Cookie"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    let (h, _, _) = php_ok(&target, php_params("headers.php", "case=custom"), b"").await;
    assert_eq!(header(&h, "X-Custom"), Some("yes"));

    let params = php_params("pathinfo.php", "x=1")
        .custom("PATH_INFO", "/some/path")
        .request_uri("/pathinfo.php/some/path?x=1");
    let (_, body, _) = php_ok(&target, params, b"").await;
    let info = json(&body);
    assert_eq!(info["PATH_INFO"], "/some/path", "{info}");
    assert_eq!(info["SCRIPT_NAME"], "/pathinfo.php");
    assert_eq!(info["REQUEST_URI"], "/pathinfo.php/some/path?x=1");

    let (_, body, _) = php_ok(&target, php_params("sub/index.php", ""), b"").await;
    assert_eq!(text(&body), "sub index");
    let (_, body, _) = php_ok(&target, php_params("index.php", "q=1"), b"").await;
    assert_eq!(json(&body)["front"], true);
    let (_, body, _) = php_ok(&target, php_params("slow.php", "ms=50"), b"").await;
    assert_eq!(text(&body), "slept 50");
}

#[tokio::test]
async fn php_fpm_worker_crash_closes_without_end_request() {
    let fpm = PhpFpm::start();
    for target in Target::of_fpm(&fpm) {
        // Normal exit mid-script: the response is complete.
        let records = raw_exchange(&target, &php_params("exit_mid.php", ""), b"").await;
        assert!(stdout_of(&records).ends_with("first half\n"), "{records:?}");
        assert_eq!(
            records.last().map(|r| r.0),
            Some(END_REQUEST),
            "{records:?}"
        );

        // The worker SIGKILLs itself: output so far, then EOF, no END_REQUEST.
        let records = raw_exchange(&target, &php_params("exit_mid.php", "crash=1"), b"").await;
        assert!(stdout_of(&records).ends_with("first half\n"), "{records:?}");
        assert!(
            records.iter().all(|r| r.0 != END_REQUEST),
            "a killed worker cannot send END_REQUEST: {records:?}"
        );
    }
    // The master notices and replaces the worker; give it a moment to log.
    wait::until("the SIGKILL to show in the log", WAIT, || {
        fpm.log().contains("SIGKILL")
    })
    .await;
    for target in Target::of_fpm(&fpm) {
        php_ok(&target, php_params("hello.php", ""), b"").await;
    }
}

#[tokio::test]
async fn php_fpm_request_terminate_timeout() {
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        children: 1,
        request_terminate_timeout: Some(1),
        ..PhpFpmOptions::default()
    });
    let started = Instant::now();
    let records = raw_exchange(
        &Target::Tcp(fpm.tcp_addr),
        &php_params("slow.php", "ms=5000"),
        b"",
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(4500),
        "request_terminate_timeout = 1s did not end slow.php?ms=5000 early ({:?})",
        started.elapsed()
    );
    assert!(records.iter().all(|r| r.0 != END_REQUEST), "{records:?}");
    wait::until("php-fpm to log the timeout", WAIT, || {
        fpm.log().contains("execution timed out")
    })
    .await;
}

#[tokio::test]
async fn php_fpm_options_reach_both_pools() {
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        children: 2,
        pm: "dynamic",
        max_requests: 2,
        status_path: Some("/status".into()),
        extra_pool_lines: vec!["env[FIXTURE_MARK] = from-pool-config".into()],
        request_terminate_timeout: None,
        ..Default::default()
    });
    for (target, pool) in Target::of_fpm(&fpm).into_iter().zip(["unix", "tcp"]) {
        let status = Params::default()
            .request_method("GET")
            .script_name("/status")
            .script_filename("/status")
            .query_string("");
        let (_, body, _) = php_ok(&target, status, b"").await;
        let body = text(&body);
        assert!(
            body.contains(&format!("pool:                 {pool}")),
            "{body}"
        );
        assert!(body.contains("process manager:      dynamic"), "{body}");
        assert!(body.contains("max children reached"), "{body}");

        let ping = Params::default()
            .request_method("GET")
            .script_name("/ping")
            .script_filename("/ping")
            .query_string("");
        let (_, body, _) = php_ok(&target, ping, b"").await;
        assert_eq!(text(&body), "pong");

        let (_, body, _) = php_ok(&target, php_params("env.php", ""), b"").await;
        assert_eq!(json(&body)["FIXTURE_MARK"], "from-pool-config");
    }
    // pm.max_requests = 2: a worker is recycled after two requests.
    let target = Target::Unix(fpm.unix_socket.clone());
    for _ in 0..4 {
        php_ok(&target, php_params("hello.php", ""), b"").await;
    }
    wait::until(
        "a worker to be recycled after pm.max_requests",
        WAIT,
        || fpm.log().contains("exited with code 0"),
    )
    .await;
}

#[tokio::test]
async fn php_fpm_instances_run_side_by_side() {
    let a = PhpFpm::start();
    let b = PhpFpm::start();
    assert_ne!(a.tcp_addr, b.tcp_addr);
    assert_ne!(a.unix_socket, b.unix_socket);
    for fpm in [&a, &b] {
        for target in Target::of_fpm(fpm) {
            php_ok(&target, php_params("hello.php", ""), b"").await;
        }
    }
}

#[test]
#[should_panic(expected = "unknown entry 'bogus_directive'")]
fn php_fpm_start_failure_panics_with_its_log() {
    // php-fpm rejects the config; the panic message must carry its log.
    PhpFpm::start_with(PhpFpmOptions {
        extra_pool_lines: vec!["bogus_directive = 1".into()],
        ..PhpFpmOptions::default()
    });
}

#[tokio::test]
async fn demo_app_renders_and_escapes() {
    let fpm = PhpFpm::start();
    let target = Target::Unix(fpm.unix_socket.clone());
    let demo = |script: &str| {
        Params::default()
            .request_method("GET")
            .document_root(support::demo_dir().to_string_lossy().into_owned())
            .script_filename(
                support::demo_dir()
                    .join(script)
                    .to_string_lossy()
                    .into_owned(),
            )
            .script_name(format!("/{script}"))
            .request_uri(format!("/{script}"))
            .query_string("")
    };
    let (_, body, stderr) = php_ok(&target, demo("index.php"), b"").await;
    let page = text(&body);
    assert!(page.contains("Hello from PHP"), "{page}\n{stderr}");
    assert!(page.contains("/info.php/some/path?x=1") && page.contains("/stream.php"));

    let form = b"name=%3Cb%3EAda%3C%2Fb%3E";
    let params = demo("index.php")
        .request_method("POST")
        .content_type("application/x-www-form-urlencoded")
        .content_length(form.len());
    let (_, body, stderr) = php_ok(&target, params, form).await;
    let page = text(&body);
    assert!(page.contains("&lt;b&gt;Ada&lt;/b&gt;"), "{page}\n{stderr}");
    assert!(!page.contains("<b>Ada"), "posted name must be escaped");

    let params = demo("info.php")
        .custom("PATH_INFO", "/some/<path>")
        .query_string("x=1");
    let (_, body, _) = php_ok(&target, params, b"").await;
    let page = text(&body);
    assert!(
        page.contains("/some/&lt;path&gt;") && page.contains("x=1"),
        "{page}"
    );

    let started = Instant::now();
    let (_, body, _) = php_ok(&target, demo("stream.php"), b"").await;
    assert_eq!(text(&body).lines().count(), 5, "{}", text(&body));
    assert!(started.elapsed() >= Duration::from_millis(900));
}

// ------------------------------------------------------------- fake FastCGI --

#[tokio::test]
async fn fake_fcgi_serves_script_ok_over_unix_and_tcp() {
    let fake = FakeFcgi::start(vec![Script::ok("hello from fake")]).await;
    for (i, target) in Target::of_fake(&fake).into_iter().enumerate() {
        let params = php_params("anything.php", "k=v").custom("HTTP_X_LONG", "x".repeat(300));
        let response = target
            .execute(params, b"body bytes")
            .await
            .unwrap_or_else(|e| panic!("fake via {target:?}: {e}"));
        assert_eq!(
            text(&response.stdout.expect("stdout")),
            "Content-Type: text/plain\r\n\r\nhello from fake"
        );
        assert!(response.stderr.is_none());
        assert_eq!(fake.requests_seen(), i + 1);
        assert_eq!(fake.connections_seen(), i + 1);
        assert_eq!(
            fake.last_param("SCRIPT_NAME").as_deref(),
            Some("/anything.php")
        );
        assert_eq!(fake.last_param("QUERY_STRING").as_deref(), Some("k=v"));
        // A value over 127 bytes uses the 4-byte length form.
        assert_eq!(fake.last_param("HTTP_X_LONG"), Some("x".repeat(300)));
        let params = fake.last_params();
        assert!(
            params
                .iter()
                .any(|(n, v)| n == b"REQUEST_METHOD" && v == b"GET"),
            "{params:?}"
        );
        assert_eq!(fake.last_stdin(), b"body bytes");
        assert!(fake.last_keep_conn());
    }
}

#[tokio::test]
async fn fake_fcgi_keep_conn_and_script_order() {
    let big = vec![b'z'; 150_000];
    let mut third = b"Content-Type: text/plain\r\n\r\n".to_vec();
    third.extend_from_slice(&big);
    let fake = FakeFcgi::start(vec![
        Script::ok("one"),
        Script::new(vec![
            Step::Stderr(b"warned".to_vec()),
            Step::Stdout(b"Status: 503 Busy\r\n\r\ntwo".to_vec()),
            Step::End {
                app_status: 0,
                protocol_status: 0,
            },
        ]),
        Script::new(vec![
            Step::Stdout(third.clone()),
            Step::End {
                app_status: 0,
                protocol_status: 0,
            },
        ]),
    ])
    .await;
    let stream = TcpStream::connect(fake.tcp_addr)
        .await
        .expect("connect to fake");
    let mut client = Client::new_keep_alive_tokio(stream);
    let mut bodies = Vec::new();
    for i in 0..4 {
        let body = format!("request {i}");
        let response = client
            .execute(Request::new_tokio(php_params("x.php", ""), body.as_bytes()))
            .await
            .unwrap_or_else(|e| panic!("request {i} on a kept connection: {e}"));
        assert_eq!(fake.last_stdin(), body.as_bytes());
        bodies.push(response);
    }
    assert_eq!(
        fake.connections_seen(),
        1,
        "FCGI_KEEP_CONN must keep the connection"
    );
    assert_eq!(fake.requests_seen(), 4);
    assert!(text(bodies[0].stdout.as_ref().unwrap()).ends_with("one"));
    assert_eq!(text(bodies[1].stderr.as_ref().unwrap()), "warned");
    assert!(text(bodies[1].stdout.as_ref().unwrap()).ends_with("two"));
    // Scripts are used up: the last one repeats. 150 000 bytes span 3 records.
    assert!(bodies[2].stdout.as_ref() == Some(&third));
    assert!(bodies[3].stdout.as_ref() == Some(&third));
}

#[tokio::test]
async fn fake_fcgi_writes_exact_records() {
    let fake = FakeFcgi::start(vec![Script::new(vec![
        Step::Stdout(b"abc".to_vec()),
        Step::Stdout(Vec::new()),
        Step::Raw(b"\x01\x06garbage".to_vec()),
        Step::EndWithId(7),
        Step::End {
            app_status: 3,
            protocol_status: 2,
        },
    ])])
    .await;
    for target in Target::of_fake(&fake) {
        let mut stream = target.raw_stream().await;
        // No FCGI_KEEP_CONN: the fake closes after END_REQUEST.
        stream
            .write_all(&raw_request(1, false, &[("A", "b")], b"in"))
            .await
            .unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(REQUEST_TIMEOUT, stream.read_to_end(&mut got))
            .await
            .expect("fake did not close the connection after END_REQUEST")
            .expect("read from fake");
        let mut want = Vec::new();
        // STDOUT "abc": 3 bytes + 5 padding.
        want.extend_from_slice(&[1, 6, 0, 1, 0, 3, 5, 0]);
        want.extend_from_slice(b"abc\0\0\0\0\0");
        // Empty STDOUT.
        want.extend_from_slice(&[1, 6, 0, 1, 0, 0, 0, 0]);
        want.extend_from_slice(b"\x01\x06garbage");
        // END_REQUEST with id 7, then the real one (app 3, protocol status 2).
        want.extend_from_slice(&[1, 3, 0, 7, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[1, 3, 0, 1, 0, 8, 0, 0, 0, 0, 0, 3, 2, 0, 0, 0]);
        assert_eq!(got, want, "via {target:?}");
        assert_eq!(fake.last_params(), [(b"A".to_vec(), b"b".to_vec())]);
        assert_eq!(fake.last_stdin(), b"in");
        assert!(!fake.last_keep_conn());
    }
}

#[tokio::test]
async fn fake_fcgi_splits_and_pads_large_output() {
    let data: Vec<u8> = (0..150_000u32).map(|i| (i % 256) as u8).collect();
    let fake = FakeFcgi::start(vec![Script::new(vec![
        Step::Stderr(data.clone()),
        Step::End {
            app_status: 0,
            protocol_status: 0,
        },
    ])])
    .await;
    let records = raw_exchange(&Target::Unix(fake.unix_socket.clone()), &[("A", "b")], b"").await;
    let lengths: Vec<_> = records.iter().map(|r| (r.0, r.2.len())).collect();
    assert_eq!(
        lengths,
        [
            (STDERR, 65535),
            (STDERR, 65535),
            (STDERR, 18930),
            (END_REQUEST, 8)
        ]
    );
    let joined: Vec<u8> = records[..3].iter().flat_map(|r| r.2.clone()).collect();
    assert!(joined == data);
}

#[tokio::test]
async fn fake_fcgi_close_sleep_and_abort() {
    let fake = FakeFcgi::start(vec![
        Script::new(vec![
            Step::Stdout(b"partial".to_vec()),
            Step::Sleep(Duration::from_millis(300)),
            Step::Close,
        ]),
        Script::new(vec![
            Step::Sleep(Duration::from_secs(30)),
            Step::End {
                app_status: 0,
                protocol_status: 0,
            },
        ]),
    ])
    .await;
    let target = Target::Tcp(fake.tcp_addr);
    let started = Instant::now();
    let records = raw_exchange(&target, &[("A", "b")], b"").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(stdout_of(&records), "partial");
    assert!(records.iter().all(|r| r.0 != END_REQUEST), "{records:?}");
    // Step::Close: the fake counts the connection it closed.
    wait::until("the closed connection to be counted", WAIT, || {
        fake.connections_ended() == 1
    })
    .await;

    // A sleeping script still notices ABORT_REQUEST.
    let mut stream = target.raw_stream().await;
    stream
        .write_all(&raw_request(1, true, &[("A", "b")], b""))
        .await
        .unwrap();
    wait::until("the second request to arrive", WAIT, || {
        fake.requests_seen() == 2
    })
    .await;
    stream.write_all(&record(2, 1, b"")).await.unwrap(); // FCGI_ABORT_REQUEST
    wait::until("the abort to be counted", WAIT, || fake.aborts_seen() == 1).await;
    assert_eq!(fake.connections_seen(), 2);
}

#[tokio::test]
async fn fake_fcgi_answers_management_records() {
    let fake = FakeFcgi::start(vec![Script::ok("x")]).await;
    let mut stream = Target::Unix(fake.unix_socket.clone()).raw_stream().await;
    let mut query = Vec::new();
    for name in ["FCGI_MPXS_CONNS", "FCGI_MAX_CONNS"] {
        query.extend_from_slice(&[name.len() as u8, 0]);
        query.extend_from_slice(name.as_bytes());
    }
    stream.write_all(&record(9, 0, &query)).await.unwrap(); // GET_VALUES
    stream.write_all(&record(42, 0, b"")).await.unwrap(); // unknown type
    let mut buf = vec![0; 8];
    stream.read_exact(&mut buf[..8]).await.unwrap();
    assert_eq!(buf[1], 10, "GET_VALUES_RESULT expected: {buf:?}");
    let len = u16::from_be_bytes([buf[4], buf[5]]) as usize + buf[6] as usize;
    let mut content = vec![0; len];
    stream.read_exact(&mut content).await.unwrap();
    assert!(text(&content).contains("FCGI_MPXS_CONNS0"), "{content:?}");
    let mut unknown = [0u8; 16];
    stream.read_exact(&mut unknown).await.unwrap();
    assert_eq!(unknown, [1, 11, 0, 0, 0, 8, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(fake.requests_seen(), 0);
}

// ------------------------------------- hand-rolled FastCGI for raw exchanges --

const END_REQUEST: u8 = 3;
const STDOUT: u8 = 6;
const STDERR: u8 = 7;

fn record(kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
    let padding = (8 - content.len() % 8) % 8;
    let mut out = vec![1, kind];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(content.len() as u16).to_be_bytes());
    out.extend_from_slice(&[padding as u8, 0]);
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0, padding));
    out
}

fn nv_length(out: &mut Vec<u8>, len: usize) {
    if len < 128 {
        out.push(len as u8);
    } else {
        out.extend_from_slice(&(len as u32 | 0x8000_0000).to_be_bytes());
    }
}

/// BEGIN_REQUEST (responder), PARAMS, empty PARAMS, STDIN, empty STDIN.
fn raw_request(id: u16, keep_conn: bool, params: &[(&str, &str)], stdin: &[u8]) -> Vec<u8> {
    let mut out = record(1, id, &[0, 1, keep_conn as u8, 0, 0, 0, 0, 0]);
    let mut pairs = Vec::new();
    for (name, value) in params {
        nv_length(&mut pairs, name.len());
        nv_length(&mut pairs, value.len());
        pairs.extend_from_slice(name.as_bytes());
        pairs.extend_from_slice(value.as_bytes());
    }
    for chunk in pairs.chunks(65535) {
        out.extend(record(4, id, chunk));
    }
    out.extend(record(4, id, b""));
    for chunk in stdin.chunks(65535) {
        out.extend(record(5, id, chunk));
    }
    out.extend(record(5, id, b""));
    out
}

/// Records as (type, request id, content).
type Records = Vec<(u8, u16, Vec<u8>)>;

/// Send one request without FCGI_KEEP_CONN and read records until the server
/// closes the connection.
async fn raw_exchange<P>(target: &Target, params: &P, stdin: &[u8]) -> Records
where
    P: ParamList + ?Sized,
{
    let mut stream = target.raw_stream().await;
    let pairs = params.pairs();
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    stream
        .write_all(&raw_request(1, false, &pairs, stdin))
        .await
        .unwrap_or_else(|e| panic!("write request to {target:?}: {e}"));
    let mut bytes = Vec::new();
    // Errors (e.g. a reset from a killed worker) end the stream like EOF.
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, stream.read_to_end(&mut bytes))
        .await
        .unwrap_or_else(|_| panic!("{target:?} did not close the connection"));
    parse_records(&bytes)
}

trait ParamList {
    fn pairs(&self) -> Vec<(String, String)>;
}

impl ParamList for Params<'_> {
    fn pairs(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }
}

impl ParamList for [(&str, &str)] {
    fn pairs(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }
}

impl<const N: usize> ParamList for [(&str, &str); N] {
    fn pairs(&self) -> Vec<(String, String)> {
        self[..].pairs()
    }
}

fn parse_records(mut bytes: &[u8]) -> Records {
    let mut records = Vec::new();
    while bytes.len() >= 8 {
        assert_eq!(bytes[0], 1, "bad record version in {bytes:?}");
        let len = u16::from_be_bytes([bytes[4], bytes[5]]) as usize;
        let total = 8 + len + bytes[6] as usize;
        assert!(bytes.len() >= total, "truncated record: {bytes:?}");
        records.push((
            bytes[1],
            u16::from_be_bytes([bytes[2], bytes[3]]),
            bytes[8..8 + len].to_vec(),
        ));
        bytes = &bytes[total..];
    }
    assert!(bytes.is_empty(), "trailing partial header: {bytes:?}");
    records
}

fn stdout_of(records: &Records) -> String {
    let bytes: Vec<u8> = records
        .iter()
        .filter(|r| r.0 == STDOUT)
        .flat_map(|r| r.2.clone())
        .collect();
    text(&bytes)
}
