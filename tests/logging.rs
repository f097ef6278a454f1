//! What the gateway logs: php-fpm STDERR (logged with its script, never sent
//! to the client) and one access-log line per request. Its own test binary,
//! because tracing's per-callsite interest cache makes thread-local
//! subscribers unreliable when other tests run in parallel threads.

mod support;

use std::time::Duration;

use support::fake_fcgi::{FakeFcgi, Script, Step};
use support::gateway::{self, Gateway};
use support::wait;

const HEAD: &[u8] = b"Content-Type: text/plain\r\n\r\n";

fn end() -> Step {
    Step::End {
        app_status: 0,
        protocol_status: 0,
    }
}

/// What [`capture_logs`] captured so far.
type Logs = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

/// Captures log output of the current thread (use a current-thread runtime).
fn capture_logs() -> (tracing::subscriber::DefaultGuard, Logs) {
    #[derive(Clone)]
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Sink(buf.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    (tracing::subscriber::set_default(subscriber), buf)
}

/// Waits until `needle` was logged `n` times. An access line is written
/// when the server drops the response body, which may be just after the
/// client has read it.
async fn until_logged(logs: &Logs, needle: &str, n: usize) {
    let what = format!("{n} log lines with {needle:?}");
    wait::until(&what, Duration::from_secs(10), || {
        String::from_utf8_lossy(&logs.lock().unwrap())
            .matches(needle)
            .count()
            >= n
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn stdout_and_stderr_interleaved_stderr_only_logged() {
    let (_guard, logs) = capture_logs();
    let fake = FakeFcgi::start(vec![Script {
        steps: vec![
            Step::Stderr(b"warning before head\n".to_vec()),
            Step::Stdout(HEAD.to_vec()),
            Step::Stdout(b"one ".to_vec()),
            Step::Stderr(b"PHP Notice: in the middle\n".to_vec()),
            Step::Stdout(b"two".to_vec()),
            end(),
        ],
    }])
    .await;
    for upstream in [
        format!("unix:{}", fake.unix_socket.display()),
        format!("tcp:{}", fake.tcp_addr),
    ] {
        let root = support::php_fpm::fixtures_dir().display().to_string();
        let gw = Gateway::start(&["--upstream", &upstream, "--root", &root]).await;
        let r = gateway::get(gw.addr, "/hello.php").await;
        assert_eq!(r.status, 200, "{upstream}");
        assert_eq!(r.text(), "one two");
        gw.shutdown().await;
    }
    until_logged(&logs, "\"GET /hello.php HTTP/1.1\" 200", 2).await;
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(logs.contains("warning before head"), "{logs}");
    assert!(logs.contains("PHP Notice: in the middle"), "{logs}");
    assert!(
        logs.contains("/hello.php"),
        "stderr is logged with the script: {logs}"
    );
    // One access-log line per request.
    assert_eq!(
        logs.matches("\"GET /hello.php HTTP/1.1\" 200").count(),
        2,
        "{logs}"
    );
}

/// Static files, HEAD, redirects and refusals are answered without php-fpm
/// but still get their access-log line, with the bytes actually sent.
#[tokio::test(flavor = "current_thread")]
async fn static_answers_are_access_logged() {
    let (_guard, logs) = capture_logs();
    let site = support::site::Site::new();
    let css_len = site.bytes("css/app.css").len();
    let big: Vec<u8> = vec![b'x'; 300 * 1024];
    std::fs::write(site.root.join("big.txt"), &big).unwrap();
    // Nothing listens here: none of these requests may need the upstream.
    let dead = format!("unix:{}", site.root.join("no.sock").display());
    let gw = Gateway::start(&["--upstream", &dead, "--root", &site.root_arg()]).await;
    assert_eq!(gateway::get(gw.addr, "/css/app.css").await.status, 200);
    assert_eq!(
        gateway::get(gw.addr, "/big.txt").await.body.len(),
        big.len()
    );
    let r = gateway::request(gw.addr, "HEAD", "/css/app.css", &[], bytes::Bytes::new()).await;
    assert_eq!(r.status, 200);
    assert_eq!(gateway::get(gw.addr, "/docs").await.status, 301);
    assert_eq!(gateway::get(gw.addr, "/.env").await.status, 404);
    gw.shutdown().await;
    for request in [
        "\"GET /css/app.css HTTP/1.1\" 200",
        "\"GET /big.txt HTTP/1.1\" 200",
        "\"HEAD /css/app.css HTTP/1.1\" 200",
        "\"GET /docs HTTP/1.1\" 301",
        "\"GET /.env HTTP/1.1\" 404",
    ] {
        until_logged(&logs, request, 1).await;
    }
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let line = |needle: &str| {
        logs.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no access line with {needle:?}: {logs}"))
            .to_owned()
    };
    let css = line("\"GET /css/app.css HTTP/1.1\" 200");
    assert!(css.contains(&format!(" 200 {css_len} ")), "{css}");
    let big_line = line("\"GET /big.txt HTTP/1.1\" 200");
    assert!(
        big_line.contains(&format!(" 200 {} ", big.len())),
        "{big_line}"
    );
    assert!(line("\"HEAD /css/app.css HTTP/1.1\" 200").contains(" 200 0 "));
    line("\"GET /docs HTTP/1.1\" 301");
    line("\"GET /.env HTTP/1.1\" 404");
    assert!(!logs.contains("aborted"), "{logs}");
}

#[tokio::test(flavor = "current_thread")]
async fn non_loopback_tcp_upstream_warns_about_allowed_clients() {
    let (_guard, logs) = capture_logs();
    let root = support::php_fpm::fixtures_dir().display().to_string();
    // Nothing is sent to these addresses: no request is made.
    let remote = Gateway::start(&["--upstream", "tcp:192.0.2.10:9000", "--root", &root]).await;
    let local = Gateway::start(&["--upstream", "tcp:127.0.0.1:9000", "--root", &root]).await;
    // Each logs its pool's size right after the loopback check: both have
    // made it once both lines are there.
    until_logged(&logs, "upstream pool size from max-upstream-conns", 2).await;
    remote.shutdown().await;
    local.shutdown().await;
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert_eq!(logs.matches("listen.allowed_clients").count(), 1, "{logs}");
    assert!(logs.contains("192.0.2.10"), "{logs}");
}

/// php-fpm's "Primary script unknown" (a container mounting the app at
/// another path) gets a log line naming the SCRIPT_FILENAME we sent.
#[tokio::test(flavor = "current_thread")]
async fn primary_script_unknown_names_the_script_filename() {
    let (_guard, logs) = capture_logs();
    let fake = FakeFcgi::start(vec![Script {
        steps: vec![
            Step::Stderr(b"Primary script unknown".to_vec()),
            Step::Stdout(b"Status: 404 Not Found\r\nContent-type: text/html\r\n\r\n".to_vec()),
            Step::Stdout(b"File not found.\n".to_vec()),
            end(),
        ],
    }])
    .await;
    let root = support::php_fpm::fixtures_dir();
    let upstream = format!("unix:{}", fake.unix_socket.display());
    let gw = Gateway::start(&[
        "--upstream",
        &upstream,
        "--root",
        &root.display().to_string(),
    ])
    .await;
    let r = gateway::get(gw.addr, "/hello.php").await;
    assert_eq!(r.status, 404);
    gw.shutdown().await;
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let sent = root.canonicalize().unwrap().join("hello.php");
    let line = logs
        .lines()
        .find(|l| l.contains("must exist where php-fpm runs"))
        .unwrap_or_else(|| panic!("no hint about the path: {logs}"));
    assert!(
        line.contains(&format!("SCRIPT_FILENAME={}", sent.display())),
        "{line}"
    );
    assert!(line.contains("container"), "{line}");
}

/// PHP's error lines on STDERR are logged with their level, file and line
/// as fields; other lines stay as they are.
#[tokio::test(flavor = "current_thread")]
async fn php_error_lines_become_structured_fields() {
    let (_guard, logs) = capture_logs();
    let fake = FakeFcgi::start(vec![Script {
        steps: vec![
            Step::Stderr(
                b"PHP message: PHP Warning:  Undefined variable $x in /srv/app/a.php on line 3\n"
                    .to_vec(),
            ),
            Step::Stderr(b"plain line\n".to_vec()),
            Step::Stdout(HEAD.to_vec()),
            end(),
        ],
    }])
    .await;
    let root = support::php_fpm::fixtures_dir().display().to_string();
    let upstream = format!("unix:{}", fake.unix_socket.display());
    let gw = Gateway::serve(&upstream, &root, &[]).await;
    assert_eq!(gateway::get(gw.addr, "/hello.php").await.status, 200);
    gw.shutdown().await;
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let line = logs
        .lines()
        .find(|l| l.contains("Undefined variable"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(
        line.contains("php Warning: Undefined variable $x"),
        "{line}"
    );
    assert!(line.contains("php_level=\"Warning\""), "{line}");
    assert!(line.contains("php_file=\"/srv/app/a.php\""), "{line}");
    assert!(line.contains("php_line=3"), "{line}");
    assert!(logs.contains("php stderr: plain line"), "{logs}");
}

/// A request whose headers try to end their quoted field and forge the
/// rest of the line: quotes, a backslash, a tab and non-ASCII bytes.
const HOSTILE_UA: &str = "evil\" 200 1 \"-\" \"forged\tπ\\";
const HOSTILE_REFERER: &str = "http://r/\"x";

async fn hostile_request(addr: std::net::SocketAddr, path: &str) {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: {HOSTILE_UA}\r\n\
         Referer: {HOSTILE_REFERER}\r\nConnection: close\r\n\r\n"
    );
    let out = gateway::raw(addr, request.as_bytes(), Duration::from_secs(10)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// The access lines in `logs`, without the subscriber's prefix.
fn access_lines(logs: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(logs)
        .lines()
        .filter_map(|l| l.split_once(" access: ").map(|(_, line)| line.to_owned()))
        .collect()
}

/// A hostile PHP request, then a static file, through a gateway logging in
/// `format` to the shared php-fpm's upstream number `upstream`; returns the
/// docroot and the access lines (exactly one per request).
async fn hostile_then_static(format: &str, upstream: usize) -> (String, Vec<String>) {
    let (_guard, logs) = capture_logs();
    let upstream = support::shared_upstreams().remove(upstream);
    let root = support::php_fpm::fixtures_dir().display().to_string();
    let gw = Gateway::serve(&upstream, &root, &["--access-log-format", format]).await;
    hostile_request(gw.addr, "/hello.php?q=%22a").await;
    assert_eq!(gateway::get(gw.addr, "/data.txt").await.status, 200);
    gw.shutdown().await;
    until_logged(&logs, " access: ", 2).await;
    let lines = access_lines(&logs.lock().unwrap());
    assert_eq!(lines.len(), 2, "one line per request: {lines:#?}");
    (root, lines)
}

#[tokio::test(flavor = "current_thread")]
async fn combined_access_line_field_by_field() {
    let (root, lines) = hostile_then_static("combined", 0).await;

    let line = &lines[0];
    // Every quote the client sent is escaped: the line splits on `"` into
    // exactly the combined format's pieces.
    let pieces: Vec<&str> = line.split('"').collect();
    assert_eq!(pieces.len(), 7, "{line}");
    let (head, request, status_bytes) = (pieces[0], pieces[1], pieces[2]);
    let (referer, gap, user_agent, times) = (pieces[3], pieces[4], pieces[5], pieces[6]);
    let (remote, time) = head
        .strip_suffix("] ")
        .and_then(|h| h.split_once(" - - ["))
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(remote, "127.0.0.1");
    // 25/Nov/2026:12:53:56 +0000
    let shape: String = time
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape.len(), 26, "{time}");
    assert!(shape.starts_with("99/"), "{time}");
    assert!(shape.ends_with("/9999:99:99:99 +9999"), "{time}");
    assert!(time.ends_with(" +0000"), "UTC: {time}");
    assert_eq!(request, "GET /hello.php?q=%22a HTTP/1.1");
    assert_eq!(status_bytes, " 200 13 ");
    assert_eq!(referer, r"http://r/\x22x");
    assert_eq!(gap, " ");
    assert_eq!(
        user_agent,
        r"evil\x22 200 1 \x22-\x22 \x22forged\x09\xCF\x80\x5C"
    );
    let times: Vec<f64> = times
        .split_whitespace()
        .map(|t| t.parse().unwrap_or_else(|_| panic!("{line}")))
        .collect();
    assert_eq!(times.len(), 2, "request and upstream seconds: {line}");
    assert!(times[0] >= times[1] && times[1] >= 0.0, "{line}");

    // A static file: no referer or agent sent, no upstream time.
    let file = &lines[1];
    assert!(
        file.ends_with(&format!(
            "\"GET /data.txt HTTP/1.1\" 200 {} \"-\" \"-\" {} -",
            std::fs::read(format!("{root}/data.txt")).unwrap().len(),
            file.rsplit(' ').nth(1).unwrap()
        )),
        "{file}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn json_access_line_field_by_field() {
    let (_, lines) = hostile_then_static("json", 1).await;
    let parse = |line: &str| -> serde_json::Value {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"))
    };

    let php = parse(&lines[0]);
    let time = php["time"].as_str().unwrap();
    // 2026-11-25T12:53:56.123Z
    assert_eq!(time.len(), 24, "{time}");
    assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
    assert_eq!(php["remote"], "127.0.0.1");
    assert_eq!(php["method"], "GET");
    assert_eq!(php["uri"], "/hello.php?q=%22a");
    assert_eq!(php["protocol"], "HTTP/1.1");
    assert_eq!(php["status"], 200);
    assert_eq!(php["bytes"], 13);
    assert_eq!(php["referer"], HOSTILE_REFERER);
    assert_eq!(php["user_agent"], HOSTILE_UA);
    assert_eq!(php["aborted"], false);
    let total = php["duration_ms"].as_f64().unwrap();
    let upstream_ms = php["upstream_ms"].as_f64().unwrap();
    assert!(total >= upstream_ms && upstream_ms >= 0.0, "{php}");
    let fields: Vec<&str> = php
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = [
        "time",
        "remote",
        "method",
        "uri",
        "protocol",
        "status",
        "bytes",
        "duration_ms",
        "upstream_ms",
        "referer",
        "user_agent",
        "aborted",
    ];
    let mut fields = fields;
    fields.sort_unstable();
    expected.sort_unstable();
    assert_eq!(fields, expected);

    let file = parse(&lines[1]);
    assert_eq!(file["uri"], "/data.txt");
    assert_eq!(file["upstream_ms"], serde_json::Value::Null);
    assert_eq!(file["referer"], serde_json::Value::Null);
    assert_eq!(file["user_agent"], serde_json::Value::Null);
}

/// A deploy that switches the root's symlink is logged once, naming both
/// directories.
#[tokio::test(flavor = "current_thread")]
async fn a_switched_root_is_logged_once() {
    let (_guard, logs) = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    for n in ["1", "2"] {
        std::fs::create_dir_all(base.join(n)).unwrap();
        std::fs::write(base.join(n).join("v.txt"), n).unwrap();
    }
    std::os::unix::fs::symlink(base.join("1"), base.join("current")).unwrap();
    let dead = format!("unix:{}", base.join("no.sock").display());
    let root = base.join("current").display().to_string();
    let gw = Gateway::start(&["--upstream", &dead, "--root", &root]).await;
    assert_eq!(gateway::get(gw.addr, "/v.txt").await.text(), "1");
    std::os::unix::fs::symlink(base.join("2"), base.join("next")).unwrap();
    std::fs::rename(base.join("next"), base.join("current")).unwrap();
    let started = std::time::Instant::now();
    while gateway::get(gw.addr, "/v.txt").await.text() != "2" {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still release 1"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // polling the switch
    }
    for _ in 0..5 {
        assert_eq!(gateway::get(gw.addr, "/v.txt").await.text(), "2");
    }
    gw.shutdown().await;
    let needle = "the document root resolves to a new directory";
    until_logged(&logs, needle, 1).await;
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(lines.len(), 1, "{logs}");
    assert!(
        lines[0].contains(&base.join("2").display().to_string()),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(&base.join("1").display().to_string()),
        "{}",
        lines[0]
    );
}
