//! `fcgi-gateway bench` without `--upstream`: it starts its own php-fpm
//! (a unix and a tcp pool, a built-in script) and, with `--link-delay`, a
//! php-fpm in a network namespace behind an emulated link of that
//! round-trip delay. Checks the table and JSON, that the delay shows up in
//! the latency, and that nothing is left behind: no php-fpm, no namespace,
//! no device, after a normal run and after Ctrl-C.
//!
//! The link tests need root (namespaces, tun devices), as CI runs: without
//! it they fail, they do not skip.

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::wait;

fn bench_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fcgi-gateway"));
    cmd.arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A bench run, with the php-fpm PIDs it started (seen while it ran).
struct Run {
    pid: u32,
    output: Output,
    php_fpm: HashSet<u32>,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
}

/// Runs the bench to its end, noting its php-fpm children as they appear.
fn run_bench(args: &[&str]) -> Run {
    let mut child = bench_command(args).spawn().expect("run fcgi-gateway bench");
    let pid = child.id();
    let mut php_fpm = HashSet::new();
    // Drained on threads, so a full pipe cannot stall it.
    let out_thread = drain(child.stdout.take());
    let err_thread = drain(child.stderr.take());
    let status = loop {
        php_fpm.extend(children_named(pid, "php-fpm"));
        if let Some(status) = child.try_wait().expect("wait for the bench") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = Output {
        status,
        stdout: out_thread.join().expect("stdout reader"),
        stderr: err_thread.join().expect("stderr reader"),
    };
    Run {
        pid,
        output,
        php_fpm,
    }
}

fn drain<R: std::io::Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// PIDs whose parent is `parent` and whose name starts with `name`.
fn children_named(parent: u32, name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // "pid (comm) state ppid ..."
                let Some((head, rest)) = stat.rsplit_once(')') else {
                    return false;
                };
                let comm = head.split_once('(').map_or("", |(_, c)| c);
                let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
                comm.starts_with(name) && ppid == Some(parent)
            })
        })
        .collect()
}

/// Running (not a zombie awaiting its parent).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        state != Some("Z")
    })
}

fn assert_php_fpm_gone(run: &Run, at_least: usize) {
    assert!(
        run.php_fpm.len() >= at_least,
        "expected {at_least} php-fpm masters started by the bench, saw {:?}",
        run.php_fpm
    );
    let left: Vec<u32> = run.php_fpm.iter().copied().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "php-fpm {left:?} outlived the bench");
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (apt-get install iproute2)");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// No namespace and no device of the bench with this PID.
fn assert_links_gone(pid: u32) {
    let namespaces = ip(&["netns", "list"]);
    let prefix = format!("fcgi-bench-{pid}-");
    assert!(
        !namespaces.contains(&prefix),
        "namespaces left behind:\n{namespaces}"
    );
    let devices = ip(&["-o", "link", "show"]);
    let prefix = format!("fgb{pid}");
    assert!(
        !devices.contains(&prefix),
        "devices left behind:\n{devices}"
    );
}

fn require_root() {
    // SAFETY: geteuid takes no arguments and cannot fail.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "\n\nthis test needs root (network namespaces and tun devices for --link-delay); \
         CI runs as root. Run the suite as root.\n"
    );
}

/// Table rows as words, keyed by (keepalive, concurrency, upstream).
fn table_rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .take_while(|l| !l.is_empty())
        .skip(1)
        .filter(|l| !l.starts_with(' '))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

fn row<'a>(rows: &'a [Vec<String>], keepalive: &str, conc: &str, label: &str) -> &'a [String] {
    rows.iter()
        .find(|r| r[0] == keepalive && r[1] == conc && r[2] == label)
        .unwrap_or_else(|| panic!("no row {keepalive} {conc} {label} in {rows:?}"))
}

fn number(word: &str) -> f64 {
    word.parse()
        .unwrap_or_else(|_| panic!("{word:?} is not a number"))
}

fn cell<'a>(report: &'a Value, label: &str, concurrency: u64, keepalive: bool) -> &'a Value {
    report["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .find(|c| {
            c["label"] == label && c["concurrency"] == concurrency && c["keepalive"] == keepalive
        })
        .unwrap_or_else(|| panic!("no cell {label} c={concurrency} keepalive={keepalive}"))
}

#[test]
fn without_upstream_it_starts_php_fpm_and_measures_unix_and_tcp() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json_path = dir.path().join("self.json");
    let run = run_bench(&[
        "--duration",
        "300ms",
        "--rounds",
        "1",
        "--warmup",
        "100ms",
        "--concurrency",
        "1,2",
        "--keepalive",
        "on",
        "--fpm-children",
        "2",
        "--fpm-status-path",
        "/status",
        "--json",
        json_path.to_str().expect("utf-8 path"),
    ]);
    let (stdout, stderr) = (run.stdout(), run.stderr());
    assert_eq!(run.code(), 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(stderr, "", "php-fpm's output must not reach our stderr");
    let rows = table_rows(&stdout);
    assert_eq!(rows.len(), 4, "{stdout}");
    for label in ["unix", "tcp"] {
        for conc in ["1", "2"] {
            let r = row(&rows, "on", conc, label);
            assert!(number(&r[3]) > 0.0, "req/s in {r:?}");
            assert!(number(&r[5]) > 0.0, "p50 in {r:?}");
            assert_eq!(r[13], "0", "errors in {r:?}");
        }
    }
    assert_eq!(stdout.matches("unix/tcp req/s:").count(), 2, "{stdout}");
    assert!(!stdout.contains("tcp+"), "no links asked for:\n{stdout}");

    let report: Value = serde_json::from_slice(&std::fs::read(&json_path).expect("json written"))
        .expect("valid JSON");
    let fpm = &report["settings"]["php_fpm"];
    assert_eq!(fpm["children"], 2);
    assert_eq!(fpm["builtin_script"], true);
    assert!(report["links"].as_array().is_some_and(Vec::is_empty));
    let script = report["settings"]["script"].as_str().expect("script");
    assert!(script.ends_with("/hello.php"), "{script}");
    let upstreams = &report["settings"]["upstreams"];
    assert!(upstreams[0]
        .as_str()
        .is_some_and(|u| u.starts_with("unix:")));
    assert!(upstreams[1]
        .as_str()
        .is_some_and(|u| u.starts_with("tcp:127.0.0.1:")));
    // The built-in script answers (bytes came back) and the status page is set up.
    let c = cell(&report, "tcp", 1, true);
    assert!(c["stdout_bytes"].as_u64().unwrap_or(0) > 0, "{c}");
    assert_eq!(c["fpm_status"][0]["after"]["listen_queue"], 0, "{c}");

    assert_php_fpm_gone(&run, 1);
    // The built-in script lived in the temp dir, which is gone too.
    assert!(
        !std::path::Path::new(script).exists(),
        "{script} left behind"
    );
}

#[test]
fn link_delay_adds_its_round_trip_and_leaves_nothing_behind() {
    require_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let json_path = dir.path().join("link.json");
    let run = run_bench(&[
        "--link-delay",
        "1ms",
        "--duration",
        "500ms",
        "--rounds",
        "1",
        "--warmup",
        "100ms",
        "--concurrency",
        "1",
        "--keepalive",
        "on",
        "--json",
        json_path.to_str().expect("utf-8 path"),
    ]);
    let (stdout, stderr) = (run.stdout(), run.stderr());
    assert_eq!(run.code(), 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let rows = table_rows(&stdout);
    assert_eq!(rows.len(), 3, "unix, tcp, tcp+1ms:\n{stdout}");
    let tcp = row(&rows, "on", "1", "tcp");
    let linked = row(&rows, "on", "1", "tcp+1ms");
    assert!(number(&linked[3]) > 0.0, "{linked:?}");
    assert_eq!(linked[13], "0", "errors in {linked:?}");
    // A kept-alive request crosses the link once each way: 1 ms more.
    // (What it means, not how fast this machine is: a slower machine makes
    // both rows slower alike.)
    let added = number(&linked[5]) - number(&tcp[5]);
    assert!(
        added >= 0.9,
        "tcp+1ms p50 is only {added:.3} ms above local tcp:\n{stdout}"
    );
    assert!(stdout.contains("D/2 each way"), "{stdout}");
    assert!(
        stdout.contains(&format!("fcgi-bench-{}-0", run.pid)),
        "{stdout}"
    );

    let report: Value = serde_json::from_slice(&std::fs::read(&json_path).expect("json written"))
        .expect("valid JSON");
    let p50 = |label| {
        cell(&report, label, 1, true)["latency_ms"]["total"]["p50"]
            .as_f64()
            .expect("p50")
    };
    assert!(p50("tcp+1ms") - p50("tcp") >= 0.9, "{report}");
    let link = &report["links"][0];
    assert_eq!(link["label"], "tcp+1ms");
    assert_eq!(link["rtt_ms"], 1.0);
    assert_eq!(link["one_way_ms"], 0.5);
    assert!(link["packets"].as_u64().unwrap_or(0) > 100, "{link}");
    // The relay holds packets for half the round trip.
    let held = link["held_ms"]["p50"].as_f64().expect("held p50");
    assert!((0.45..0.6).contains(&held), "held p50 {held} ms: {link}");
    let upstream = link["upstream"].as_str().expect("upstream");
    assert!(upstream.starts_with("tcp:10.203."), "{upstream}");
    assert_eq!(report["settings"]["upstreams"][2], upstream);

    assert_php_fpm_gone(&run, 2);
    assert_links_gone(run.pid);
}

#[test]
fn ctrl_c_stops_php_fpm_and_removes_the_links() {
    require_root();
    let mut child: Child = bench_command(&[
        "--link-delay",
        "1ms",
        "--duration",
        "20s",
        "--rounds",
        "1",
        "--warmup",
        "0s",
        "--concurrency",
        "1",
    ])
    .spawn()
    .expect("run fcgi-gateway bench");
    let pid = child.id();
    let namespace = format!("fcgi-bench-{pid}-0");
    let mut php_fpm = HashSet::new();
    wait::until_blocking(
        "the bench's php-fpm masters and namespace",
        Duration::from_secs(20),
        || {
            php_fpm.extend(children_named(pid, "php-fpm"));
            php_fpm.len() >= 2 && ip(&["netns", "list"]).contains(&namespace)
        },
    );
    // Into the measurement (20 s per cell), then Ctrl-C as a terminal sends it.
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    let mut exited = None;
    let done = wait::holds_within_blocking(Duration::from_secs(15), || {
        exited = child.try_wait().expect("wait for the bench");
        exited.is_some()
    });
    if !done {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the bench did not exit within 15 s of SIGINT");
    }
    let output = child.wait_with_output().expect("bench output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(output.stdout.is_empty(), "no table after Ctrl-C");
    let left: Vec<u32> = php_fpm.iter().copied().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "php-fpm {left:?} outlived the bench");
    assert_links_gone(pid);
}

#[test]
fn link_delay_refuses_without_root() {
    require_root(); // to become nobody
                    // As nobody, the bench must say why instead of failing half-way.
    let out = bench_command(&["--link-delay", "1ms", "--duration", "100ms"])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run fcgi-gateway bench as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--link-delay needs root"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn bench_link_runs_a_command_behind_the_link_until_sigterm() {
    require_root();
    // What bench/run.py does with php-fpm, with a command that just waits.
    let mut child = Command::new(env!("CARGO_BIN_EXE_fcgi-gateway"))
        .args(["bench-link", "--delay", "0.2ms", "--", "sleep", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fcgi-gateway bench-link");
    let pid = child.id();
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).expect("first line");
    let words: Vec<&str> = first.split_whitespace().collect();
    let namespace = format!("fcgi-bench-{pid}-0");
    assert_eq!(words.len(), 4, "{first:?}");
    assert_eq!(
        (words[0], words[3]),
        ("link", namespace.as_str()),
        "{first:?}"
    );
    assert!(words[2].starts_with("10.203."), "{first:?}");
    assert!(ip(&["netns", "list"]).contains(&namespace));
    // The command runs inside the namespace, as our child.
    let sleepers = children_named(pid, "sleep");
    assert_eq!(sleepers.len(), 1, "{sleepers:?}");
    let own = std::fs::read_link("/proc/self/ns/net").expect("our netns");
    let theirs = std::fs::read_link(format!("/proc/{}/ns/net", sleepers[0])).expect("its netns");
    assert_ne!(own, theirs, "the command must run in the link's namespace");

    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("rest of stdout");
    let status = child.wait().expect("wait for bench-link");
    assert_eq!(status.code(), Some(0), "{rest}");
    let stats = rest
        .lines()
        .find_map(|l| l.strip_prefix("stats "))
        .unwrap_or_else(|| panic!("no stats line in {rest:?}"));
    let stats: Value = serde_json::from_str(stats).expect("stats JSON");
    assert_eq!(stats["rtt_ms"], 0.2);
    assert!(!alive(sleepers[0]), "the command outlived bench-link");
    assert_links_gone(pid);
}
