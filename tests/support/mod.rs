//! Shared integration-test harness.
//!
//! Included by `tests/suite/main.rs` and `tests/logging.rs`. Each test binary
//! uses only part of it, hence the blanket `allow`s below.
//!
//! * [`php_fpm`] runs a real php-fpm (one unix-socket pool, one TCP pool) in a
//!   temporary directory and stops it by PID.
//! * [`nginx`] runs a real nginx with a config the test writes, for a site
//!   served by another server than ours (`doctor`'s tests).
//! * [`corpus`] makes the `import-nginx` corpus concrete (placeholders
//!   replaced) and runs `import-nginx` and `check-config` on it.
//! * [`fake_fcgi`] is a scripted FastCGI server for faults php-fpm cannot
//!   produce on demand (malformed records, wrong request ids, early close...).
//! * [`wait`] polls for something to happen (a condition, a listening socket,
//!   a metric) with a timeout, where a sleep would only hope it has.
//! * The helpers here describe what the PHP fixtures produce, so tests can
//!   compute expected bodies without duplicating magic constants.
#![allow(dead_code, unused_imports)]

pub mod binary;
pub mod corpus;
pub mod delay;
pub mod fake_fcgi;
pub mod gateway;
pub mod netns;
pub mod nginx;
pub mod php_fpm;
pub mod site;
pub mod wait;

pub use fake_fcgi::{FakeFcgi, Script, Step};
pub use php_fpm::{fixtures_dir, PhpFpm, PhpFpmOptions};

/// The 64-byte pattern `fixtures/php/big.php` repeats. Byte `i` of its body is
/// `BIG_PATTERN[i % 64]`.
pub const BIG_PATTERN: &[u8; 64] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_";

/// Default body size of `big.php` when no `?size=` is given.
pub const BIG_DEFAULT_SIZE: usize = 5_000_000;

/// The exact body `big.php?size=<size>` sends.
pub fn big_body(size: usize) -> Vec<u8> {
    BIG_PATTERN.iter().copied().cycle().take(size).collect()
}

/// Absolute path of `<crate>/fixtures/demo`.
pub fn demo_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("demo")
}

/// Split a raw CGI response (as found in FastCGI STDOUT) into its header
/// lines `(name, value)` and body. Accepts `\r\n\r\n` or `\n\n` as separator.
/// Panics with the (lossy) response text if there is no separator.
pub fn split_cgi_response(stdout: &[u8]) -> (Vec<(String, String)>, Vec<u8>) {
    let (head, body) = if let Some(i) = find(stdout, b"\r\n\r\n") {
        (&stdout[..i], &stdout[i + 4..])
    } else if let Some(i) = find(stdout, b"\n\n") {
        (&stdout[..i], &stdout[i + 2..])
    } else {
        panic!(
            "CGI response has no header/body separator; response was:\n{}",
            String::from_utf8_lossy(stdout)
        );
    };
    let headers = String::from_utf8_lossy(head)
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| match line.split_once(':') {
            Some((name, value)) => (name.trim().to_string(), value.trim().to_string()),
            None => panic!("malformed CGI header line {line:?}"),
        })
        .collect();
    (headers, body.to_vec())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

static SHARED_FPM: std::sync::OnceLock<PhpFpm> = std::sync::OnceLock::new();

/// One php-fpm for the whole test binary. A `static` is never dropped, so
/// when the test binary exits an `atexit` hook stops it by PID and removes
/// its temp dir (before, every run left one in /tmp).
pub fn shared_fpm() -> &'static PhpFpm {
    SHARED_FPM.get_or_init(|| {
        let fpm = PhpFpm::start();
        // SAFETY: atexit(3) only stores the pointer of a plain `extern "C"`
        // function without captures; the function touches nothing but a
        // static that is set by then, makes no call that can unwind, and runs
        // once, at exit.
        unsafe { libc::atexit(stop_shared_fpm) };
        fpm
    })
}

extern "C" fn stop_shared_fpm() {
    if let Some(fpm) = SHARED_FPM.get() {
        // SAFETY: kill(2) on the PID of our own child php-fpm master; the
        // process is not reaped before we exit, so the PID names it.
        unsafe { libc::kill(fpm.pid as libc::pid_t, libc::SIGTERM) };
        let _ = std::fs::remove_dir_all(fpm.dir());
    }
}

/// `--upstream` values for both of a php-fpm's pools: unix, then tcp.
pub fn upstreams_of(fpm: &PhpFpm) -> Vec<String> {
    vec![
        format!("unix:{}", fpm.unix_socket.display()),
        format!("tcp:{}", fpm.tcp_addr),
    ]
}

/// `--upstream` values for both pools of the shared php-fpm.
pub fn shared_upstreams() -> Vec<String> {
    upstreams_of(shared_fpm())
}

/// `args` for a `serve` command, with `--workers N` added when the suite
/// runs with a set number of serving threads (`FCGI_GATEWAY_TEST_WORKERS`,
/// set by scripts/test.sh for its passes with 2 and with 1) and the test
/// did not choose one itself.
pub fn with_test_workers(args: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let serving = args.first() != Some(&"check-config") && args.first() != Some(&"bench");
    if let Ok(workers) = std::env::var("FCGI_GATEWAY_TEST_WORKERS") {
        if serving && !args.iter().any(|a| a.starts_with("--workers")) {
            out.push("--workers".into());
            out.push(workers);
        }
    }
    out
}
