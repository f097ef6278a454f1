//! The release binary as users meet it: exit codes, one-line errors,
//! `check-config`, serving on a unix socket, graceful SIGTERM.

use crate::support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::php_fpm::{fixtures_dir, PhpFpm};
use support::wait;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fcgi-gateway"))
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = bin().args(args).output().expect("run fcgi-gateway");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let root = fixtures_dir().display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["serve", "--upstream", "http://x", "--root", &root],
            "http://x",
        ),
        (
            vec![
                "serve",
                "--upstream",
                "tcp:127.0.0.1:99999",
                "--root",
                &root,
            ],
            "99999",
        ),
        (
            vec![
                "serve",
                "--upstream",
                "unix:/tmp/x.sock",
                "--root",
                "/no/such/dir",
            ],
            "/no/such/dir",
        ),
        (
            vec![
                "serve",
                "--upstream",
                "unix:/tmp/x.sock",
                "--root",
                &root,
                "--read-timeout",
                "5x",
            ],
            "5x",
        ),
        (
            vec![
                "serve",
                "--upstream",
                "unix:/tmp/x.sock",
                "--root",
                &root,
                "--listen",
                "nonsense",
            ],
            "nonsense",
        ),
    ];
    for (args, culprit) in cases {
        let (code, _, err) = run(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains(culprit),
            "{args:?}: error does not name {culprit}: {err}"
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: not one line: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// A port already taken: exit 2, and the message names the address and
/// says the OS error once (it was printed twice, as message and as cause).
#[test]
fn a_taken_port_is_named_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let root = fixtures_dir().display().to_string();
    let (code, _, err) = run(&[
        "serve",
        "--listen",
        &addr,
        "--upstream",
        "unix:/tmp/x.sock",
        "--root",
        &root,
    ]);
    assert_eq!(code, 2, "{err}");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("fcgi-gateway: cannot listen on {addr}: ")),
        "{err}"
    );
    assert_eq!(last.matches("(os error").count(), 1, "{err}");
}

#[test]
fn check_config_names_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = fixtures_dir().display().to_string();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!("upstream = \"tcp:127.0.0.1:9000\"\nroot = \"{root}\"\nread-timeout = \"2m\"\n"),
    )
    .unwrap();
    let (code, out, err) = run(&["check-config", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!("upstream = \"tcp:127.0.0.1:9000\"\nroot = \"{root}\"\nlisen = \"127.0.0.1:1\"\n"),
    )
    .unwrap();
    let (code, _, err) = run(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("lisen"), "{err}");
    assert!(err.contains("bad.toml"), "{err}");

    let bad_value = dir.path().join("bad_value.toml");
    std::fs::write(
        &bad_value,
        format!(
            "upstream = \"tcp:127.0.0.1:9000\"\nroot = \"{root}\"\nconnect-timeout = \"soon\"\n"
        ),
    )
    .unwrap();
    let (code, _, err) = run(&["check-config", bad_value.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("connect-timeout") && err.contains("bad_value.toml"),
        "{err}"
    );
}

fn sigterm(child: &std::process::Child) {
    // SAFETY: kill(2) takes two integers and touches none of our memory; the PID
    // is our own child, not yet waited for, so it cannot name another process.
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
}

fn http_over_unix(path: &std::path::Path, request: &str) -> String {
    read_reply(send_over_unix(path, request))
}

/// Connects to the gateway's unix socket and writes `request`.
fn send_over_unix(path: &std::path::Path, request: &str) -> UnixStream {
    let mut s = UnixStream::connect(path).expect("connect to the gateway's unix socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    s
}

/// Reads the response until the gateway closes the connection.
fn read_reply(mut s: UnixStream) -> String {
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn serves_on_a_unix_socket_and_drains_on_sigterm() {
    let fpm = PhpFpm::start();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gw.sock");
    let mut child = bin()
        .args([
            "serve",
            "--listen",
            &format!("unix:{}", sock.display()),
            "--upstream",
            &format!("tcp:{}", fpm.tcp_addr),
            "--root",
            &fixtures_dir().display().to_string(),
            "--grace-period",
            "5s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gateway");
    wait::socket_listens_blocking(&sock, Duration::from_secs(10));
    let out = http_over_unix(
        &sock,
        "GET /env.php HTTP/1.1\r\nHost: app.local\r\nConnection: close\r\n\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"REMOTE_ADDR\":\"unix:\""), "{out}");

    // A slow request in flight when SIGTERM arrives still completes.
    let slow = send_over_unix(
        &sock,
        "GET /slow.php?ms=700 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    wait::peer_has_read(&slow, Duration::from_secs(10));
    sigterm(&child);
    let slow_out = read_reply(slow);
    assert!(slow_out.starts_with("HTTP/1.1 200"), "{slow_out}");
    assert!(slow_out.contains("slept 700"), "{slow_out}");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        !sock.exists(),
        "the listening socket file is removed on exit"
    );
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(log.contains("GET /env.php"), "access log line: {log}");
}

/// Serves one request on a unix socket and returns what the gateway logged.
fn log_of_one_request(extra: &[&str], rust_log: Option<&str>) -> String {
    let fpm = PhpFpm::start();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gw.sock");
    let mut cmd = bin();
    cmd.args([
        "serve",
        "--listen",
        &format!("unix:{}", sock.display()),
        "--upstream",
        &format!("unix:{}", fpm.unix_socket.display()),
        "--root",
        &fixtures_dir().display().to_string(),
    ])
    .args(extra)
    .env_remove("RUST_LOG")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if let Some(filter) = rust_log {
        cmd.env("RUST_LOG", filter);
    }
    let mut child = cmd.spawn().expect("spawn gateway");
    wait::socket_listens_blocking(&sock, Duration::from_secs(10));
    let out = http_over_unix(
        &sock,
        "GET /hello.php HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    sigterm(&child);
    child.wait().unwrap();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    log
}

#[test]
fn log_level_flag_and_rust_log_both_work() {
    let quiet = log_of_one_request(&["--log-level", "warn"], None);
    assert!(
        !quiet.contains("GET /hello.php"),
        "warn hides access lines: {quiet}"
    );
    let loud = log_of_one_request(&["--log-level", "warn"], Some("info"));
    assert!(loud.contains("GET /hello.php"), "RUST_LOG wins: {loud}");
    let default = log_of_one_request(&[], None);
    assert!(
        default.contains("GET /hello.php"),
        "info by default: {default}"
    );
    // Written to a pipe, not a terminal: no colour codes in the lines.
    assert!(default.contains(" INFO "), "{default}");
    assert!(
        !default.contains('\u{1b}'),
        "ANSI escapes in a log file: {default:?}"
    );
}

/// Threads of the process `pid` whose name starts with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> usize {
    thread_names(pid)
        .iter()
        .filter(|name| name.starts_with(prefix))
        .count()
}

/// The names of the threads of the process `pid`, read at once.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .collect()
}

/// `--workers N` sets how many threads serve connections (nginx's
/// worker_processes); without it, one per CPU. With one, the main thread
/// itself serves (tokio's single-threaded scheduler): no worker thread, no
/// hand-off between threads.
#[test]
fn workers_flag_sets_the_runtime_threads() {
    let upstream = format!("tcp:{}", support::shared_fpm().tcp_addr);
    let root = fixtures_dir().display().to_string();
    let cpus = std::thread::available_parallelism().unwrap().get();
    // (flags, serving threads); besides them only the main thread (and
    // tokio's blocking-pool threads, started on demand, and the idle
    // poller's probe and watchdog, `poll-*`), never tokio's work-stealing
    // scheduler.
    for (extra, expected) in [
        (vec!["--workers", "1"], 1),
        (vec!["--workers", "3"], 3),
        (vec![], cpus),
    ] {
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--root",
            &root,
        ];
        args.extend(extra.iter().copied());
        let mut gw = support::binary::Binary::start_as_given(&args);
        gw.wait_for("serving");
        let pid = gw.child.id();
        // Each thread names itself as it starts: on a busy machine a
        // moment after "serving" is logged, and until then it shows its
        // parent's name (a blocking-pool thread being started, say).
        // (serving threads, the rest), from one reading of the names.
        let counts = || {
            let names = thread_names(pid);
            let serving = names.iter().filter(|n| n.starts_with("serve-")).count();
            let others = names
                .iter()
                .filter(|name| {
                    !["serve-", "tokio-runtime", "poll-"]
                        .iter()
                        .any(|p| name.starts_with(p))
                })
                .count();
            (serving, others)
        };
        wait::holds_within_blocking(Duration::from_secs(5), || counts() == (expected, 1));
        let (serving, others) = counts();
        assert_eq!(serving, expected, "{extra:?}");
        assert_eq!(threads_named(pid, "tokio-rt-worker"), 0, "{extra:?}");
        assert_eq!(others, 1, "{extra:?}: the main thread besides");
        // And they serve PHP.
        let mut conn = std::net::TcpStream::connect(gw.listen_addr("http")).unwrap();
        conn.write_all(b"GET /hello.php HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{extra:?}: {reply}");
        gw.signal(libc::SIGTERM);
        assert_eq!(gw.wait_exit(), Some(0));
    }
    let (code, _, err) = run(&["serve", "--root", &root, "--workers", "0"]);
    assert_eq!(code, 2);
    assert!(err.contains("--workers"), "{err}");
}

/// SIGTERM the moment the listeners are up still drains and exits 0: the
/// handlers are installed before serving starts, not when the shutdown
/// future is first polled (CI once saw the default action kill the process
/// in that window).
#[test]
fn sigterm_right_after_start_drains() {
    let upstream = format!("tcp:{}", support::shared_fpm().tcp_addr);
    let root = fixtures_dir().display().to_string();
    for _ in 0..10 {
        let mut gw = support::binary::Binary::start(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--root",
            &root,
        ]);
        gw.wait_for("serving");
        gw.signal(libc::SIGTERM);
        assert_eq!(gw.wait_exit(), Some(0), "log:\n{}", gw.log.join("\n"));
    }
}
