//! The binary with no `--upstream`: php-fpm runs as its child. Learned from
//! the log: the master's PID (`embedded php-fpm started pid=N`); its workers
//! are read from /proc.

use crate::support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use support::binary::Binary;
use support::demo_dir;
use support::wait;

/// How long php-fpm may take to fork, exit or serve again.
const WAIT: Duration = Duration::from_secs(10);

/// A running gateway binary and the address it serves on.
struct Running {
    bin: Binary,
    addr: SocketAddr,
}

impl std::ops::Deref for Running {
    type Target = Binary;
    fn deref(&self) -> &Binary {
        &self.bin
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Binary {
        &mut self.bin
    }
}

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn start(extra: &[&str]) -> Running {
    let addr = free_addr();
    let root = demo_dir().display().to_string();
    let addr_text = addr.to_string();
    let mut args = vec!["serve", "--root", &root];
    args.extend(["--listen", &addr_text, "--fpm-children", "2"]);
    args.extend_from_slice(extra);
    Running {
        bin: Binary::start(&args),
        addr,
    }
}

impl Running {
    /// The PID in the first line containing `needle` (`... pid=N`).
    fn pid_after(&mut self, needle: &str) -> i32 {
        let line = self.wait_for(needle);
        let (_, rest) = line.split_once("pid=").expect("pid= in the line");
        rest.split_whitespace().next().unwrap().parse().unwrap()
    }

    fn get(&self, path: &str) -> String {
        let mut s = TcpStream::connect(self.addr).expect("connect to the gateway");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }
}

/// Alive (not a zombie) and a php-fpm process.
fn is_live_php_fpm(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let comm = stat
        .get(stat.find('(').unwrap_or(0) + 1..close)
        .unwrap_or("");
    let state = stat[close + 1..].split_whitespace().next();
    comm.starts_with("php-fpm") && state != Some("Z")
}

fn children_of(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rfind(')')
                    .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
                    .and_then(|p| p.parse::<i32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

/// Waits until php-fpm `master` has forked `n` workers; returns their PIDs.
fn workers(master: i32, n: usize) -> Vec<i32> {
    let mut w = Vec::new();
    let forked = wait::holds_within_blocking(WAIT, || {
        w = children_of(master)
            .into_iter()
            .filter(|&p| is_live_php_fpm(p))
            .collect();
        w.len() >= n
    });
    assert!(forked, "php-fpm {master} has workers {w:?}");
    w
}

fn assert_gone(pids: &[i32]) {
    let gone = wait::holds_within_blocking(WAIT, || !pids.iter().any(|&p| is_live_php_fpm(p)));
    assert!(gone, "php-fpm processes left: {pids:?}");
}

#[test]
fn serves_the_demo_through_its_own_php_fpm_and_stops_it_on_sigterm() {
    let mut gw = start(&[]);
    let master = gw.pid_after("embedded php-fpm started");
    gw.wait_for("serving");
    let page = gw.get("/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("Hello from PHP"), "{page}");
    // The pool sized itself from the embedded php-fpm's status page.
    gw.wait_for("reports 2 children");
    let mut all = workers(master, 2);
    all.push(master);
    assert!(is_live_php_fpm(master));

    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit(), Some(0), "log:\n{}", gw.log.join("\n"));
    assert_gone(&all);
    gw.wait_for("embedded php-fpm stopped");
}

#[test]
fn a_killed_php_fpm_is_restarted_and_requests_succeed_again() {
    let mut gw = start(&[]);
    let master = gw.pid_after("embedded php-fpm started");
    gw.wait_for("serving");
    assert!(gw.get("/").starts_with("HTTP/1.1 200"));
    let old_workers = workers(master, 2);
    assert!(is_live_php_fpm(master));
    // SAFETY: kill(2) by PID, just checked to be the live php-fpm master.
    assert_eq!(unsafe { libc::kill(master, libc::SIGKILL) }, 0);

    gw.wait_for("embedded php-fpm exited; restarting it");
    let new_master = gw.pid_after("embedded php-fpm restarted");
    assert_ne!(new_master, master);
    // The orphaned workers of the killed master do not linger.
    assert_gone(&old_workers);
    let mut page = String::new();
    let served = wait::holds_within_blocking(WAIT, || {
        page = gw.get("/");
        page.starts_with("HTTP/1.1 200") && page.contains("Hello from PHP")
    });
    assert!(served, "never served again: {page}");
    let mut all = workers(new_master, 2);
    all.push(new_master);
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit(), Some(0));
    assert_gone(&all);
}

#[test]
fn missing_php_fpm_exits_2_with_install_hints_once() {
    let out = Command::new(env!("CARGO_BIN_EXE_fcgi-gateway"))
        .args(["serve", "--root", &demo_dir().display().to_string()])
        .args(["--listen", &free_addr().to_string()])
        .args(["--php-fpm", "/nonexistent/php-fpm"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for hint in [
        "apt-get install php-fpm",
        "apk add php83-fpm",
        "dnf install php-fpm",
        "brew install php",
    ] {
        assert_eq!(err.matches(hint).count(), 1, "{hint}: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_php_fpm_that_is_not_executable_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("php-fpm");
    std::fs::write(&bin, "not a program").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fcgi-gateway"))
        .args(["serve", "--root", &demo_dir().display().to_string()])
        .args(["--listen", &free_addr().to_string()])
        .args(["--php-fpm", &bin.display().to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "--php-fpm {}: not an executable file",
            bin.display()
        )),
        "{err}"
    );
}
