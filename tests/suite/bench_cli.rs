//! `fcgi-gateway bench` as a user runs it, against a real php-fpm over both
//! a unix socket and tcp: exit codes, the table, `--json` and `--plot`.

use crate::support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::php_fpm::{fixtures_dir, PhpFpm, PhpFpmOptions};

fn bench(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fcgi-gateway"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run fcgi-gateway bench");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn hello() -> String {
    fixtures_dir().join("hello.php").display().to_string()
}

#[test]
fn brief_run_writes_table_json_and_svg() {
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        status_path: Some("/status".into()),
        ..Default::default()
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let json_path = dir.path().join("out.json");
    let svg_path = dir.path().join("out.svg");
    let unix = format!("unix:{}", fpm.unix_socket.display());
    let tcp = format!("tcp:{}", fpm.tcp_addr);
    let script = hello();
    let (code, stdout, stderr) = bench(&[
        "--upstream",
        &unix,
        "--upstream",
        &tcp,
        "--script",
        &script,
        "--duration",
        "300ms",
        "--concurrency",
        "1,4",
        "--rounds",
        "1",
        "--warmup",
        "100ms",
        "--keepalive",
        "both",
        "--fpm-status-path",
        "/status",
        "--json",
        json_path.to_str().expect("utf-8 path"),
        "--plot",
        svg_path.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    // Output is not a terminal here, so no progress bar may appear.
    assert_eq!(stderr, "", "stderr must stay empty without a TTY");
    let header = stdout.lines().next().unwrap_or_default();
    for column in [
        "keepalive",
        "conc",
        "upstream",
        "req/s",
        "p99.9 ms",
        "errors",
    ] {
        assert!(header.contains(column), "{column} missing from {header:?}");
    }
    assert_eq!(stdout.matches("unix/tcp req/s:").count(), 4, "{stdout}");

    let report: Value = serde_json::from_slice(&std::fs::read(&json_path).expect("json written"))
        .expect("valid JSON");
    check_report(&report, &unix, &tcp);

    let svg = std::fs::read_to_string(&svg_path).expect("svg written");
    check_svg(&svg);
}

fn check_report(report: &Value, unix: &str, tcp: &str) {
    assert_eq!(report["schema"], "fcgi-gateway-bench/1");
    let settings = &report["settings"];
    assert_eq!(settings["upstreams"], serde_json::json!([unix, tcp]));
    assert_eq!(settings["concurrency"], serde_json::json!([1, 4]));
    assert_eq!(settings["keepalive"], serde_json::json!([true, false]));
    assert_eq!(settings["duration_ms"], 300);
    assert_eq!(settings["rounds"], 1);

    let cells = report["cells"].as_array().expect("cells array");
    assert_eq!(
        cells.len(),
        2 * 2 * 2,
        "upstream × concurrency × keep-alive"
    );
    for upstream in [unix, tcp] {
        let mine: Vec<&Value> = cells.iter().filter(|c| c["upstream"] == upstream).collect();
        assert_eq!(mine.len(), 4, "{upstream}");
        for cell in mine {
            let what = format!("{upstream} {}", cell);
            assert!(cell["requests"].as_u64().unwrap_or(0) > 0, "{what}");
            assert_eq!(cell["error_total"], 0, "{what}");
            for kind in ["refused", "eagain", "reset", "timeout", "status", "other"] {
                assert_eq!(cell["errors"][kind], 0, "{kind} in {what}");
            }
            assert!(
                cell["rps"]["median"].as_f64().unwrap_or(0.0) > 0.0,
                "{what}"
            );
            assert_eq!(cell["rps"]["rounds"].as_array().map(Vec::len), Some(1));
            let total = &cell["latency_ms"]["total"];
            for p in ["p50", "p90", "p99", "p99_9", "max", "mean"] {
                assert!(total[p].as_f64().unwrap_or(0.0) > 0.0, "{p} in {what}");
            }
            assert!(total["p50"].as_f64() <= total["p99"].as_f64(), "{what}");
            assert!(cell["latency_ms"]["ttfb"]["count"].as_u64().unwrap_or(0) > 0);
            // Keep-alive on: one connect per client; off: one per request.
            let connects = cell["connects"].as_u64().unwrap_or(0);
            let concurrency = cell["concurrency"].as_u64().unwrap_or(0);
            if cell["keepalive"] == true {
                assert_eq!(connects, concurrency, "{what}");
            } else {
                assert!(connects >= cell["requests"].as_u64().unwrap_or(0), "{what}");
            }
            assert_eq!(cell["workers_served_min"].as_u64(), Some(concurrency));
            let status = cell["fpm_status"].as_array().expect("fpm_status array");
            assert_eq!(status.len(), 1, "{what}");
            assert!(status[0]["after"]["listen_queue"].is_u64(), "{what}");
            assert!(status[0]["max_children_reached_delta"].is_u64(), "{what}");
        }
    }
    let ratios = report["ratios"].as_array().expect("ratios array");
    assert_eq!(ratios.len(), 4);
    for r in ratios {
        assert_eq!(r["numerator"], "unix");
        assert_eq!(r["denominator"], "tcp");
        assert!(r["ratio"]["median"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
    }
}

fn check_svg(svg: &str) {
    let start = svg.trim_start();
    assert!(
        start.starts_with("<svg") || start.starts_with("<?xml"),
        "{}",
        &svg[..svg.len().min(200)]
    );
    assert!(svg.trim_end().ends_with("</svg>"));
    for text in [
        "unix keep-alive on",
        "tcp keep-alive on",
        "tcp keep-alive off",
        "concurrency 1",
        "concurrency 4",
        "percentile",
    ] {
        assert!(svg.contains(text), "{text:?} missing from the SVG");
    }
    assert!(svg.matches("<polyline").count() >= 8, "one curve per cell");
}

#[test]
fn unreachable_upstream_or_missing_script_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = format!("unix:{}", dir.path().join("none.sock").display());
    let (code, stdout, stderr) = bench(&["--upstream", &missing, "--script", &hello()]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains(&missing), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let fpm = PhpFpm::start();
    let unix = format!("unix:{}", fpm.unix_socket.display());
    let nowhere = Path::new("/no/such/dir/x.php").display().to_string();
    let (code, _, stderr) = bench(&["--upstream", &unix, "--script", &nowhere]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("404") && stderr.contains(&nowhere),
        "{stderr}"
    );

    // No status page configured: php-fpm treats the path as a script.
    let (code, _, stderr) = bench(&[
        "--upstream",
        &unix,
        "--script",
        &hello(),
        "--fpm-status-path",
        "/status",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("/status"), "{stderr}");
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["--upstream", "unix:/x.sock"][..],
        &["--script", "relative.php"],
        &[
            "--upstream",
            "unix:/x.sock",
            "--script",
            "/x.php",
            "--link-delay",
            "1ms",
        ],
        &["--link-delay", "1"],
        &["--upstream", "unix:/x.sock", "--script", "relative.php"],
        &["--upstream", "http://x", "--script", "/x.php"],
        &[
            "--upstream",
            "unix:/x.sock",
            "--script",
            "/x.php",
            "--concurrency",
            "0",
        ],
        &[
            "--upstream",
            "unix:/x.sock",
            "--script",
            "/x.php",
            "--duration",
            "1s",
            "--requests",
            "10",
        ],
    ] {
        let (code, stdout, stderr) = bench(args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(!stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn requests_mode_stops_after_n() {
    let fpm = PhpFpm::start();
    let unix = format!("unix:{}", fpm.unix_socket.display());
    let dir = tempfile::tempdir().expect("temp dir");
    let json_path = dir.path().join("n.json");
    let (code, stdout, stderr) = bench(&[
        "--upstream",
        &unix,
        "--script",
        &hello(),
        "--requests",
        "200",
        "--concurrency",
        "2",
        "--keepalive",
        "off",
        "--rounds",
        "2",
        "--warmup",
        "0s",
        "--json",
        json_path.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json_path).expect("json")).expect("JSON");
    assert_eq!(report["settings"]["requests"], 200);
    assert!(report["settings"]["duration_ms"].is_null());
    let cell = &report["cells"][0];
    // Both clients may finish one more after the 200th; two rounds.
    let n = cell["requests"].as_u64().unwrap_or(0);
    assert!((400..=404).contains(&n), "{n}");
    assert!(report["ratios"].as_array().is_some_and(Vec::is_empty));
}

#[test]
fn full_unix_backlog_counts_as_eagain() {
    // One worker busy for 200 ms per request and a backlog of one: most
    // connects find the unix socket's queue full.
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        children: 1,
        extra_pool_lines: vec!["listen.backlog = 1".into()],
        ..Default::default()
    });
    let unix = format!("unix:{}", fpm.unix_socket.display());
    let slow = fixtures_dir().join("slow.php").display().to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let json_path = dir.path().join("eagain.json");
    let (code, stdout, stderr) = bench(&[
        "--upstream",
        &unix,
        "--script",
        &slow,
        "--query",
        "ms=200",
        "--concurrency",
        "8",
        "--keepalive",
        "off",
        "--duration",
        "500ms",
        "--rounds",
        "1",
        "--warmup",
        "0s",
        "--json",
        json_path.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json_path).expect("json")).expect("JSON");
    let cell = &report["cells"][0];
    assert!(cell["errors"]["eagain"].as_u64().unwrap_or(0) > 0, "{cell}");
    assert_eq!(
        cell["error_total"], cell["errors"]["eagain"],
        "only EAGAIN expected: {cell}"
    );
    assert!(stdout.contains("eagain="), "{stdout}");
}
