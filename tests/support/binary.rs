//! The real `fcgi-gateway` binary as a child process whose log lines
//! (ANSI colours stripped) can be waited for; stopped by PID on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::wait;

pub struct Binary {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every log line read so far.
    pub log: Vec<String>,
}

pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... final letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Binary {
    /// `fcgi-gateway ARGS...` with its stderr followed (and `--workers`
    /// when the suite runs with a set number: `with_test_workers`).
    pub fn start(args: &[&str]) -> Binary {
        Binary::start_as_given(&super::with_test_workers(args))
    }

    /// `fcgi-gateway ARGS...` exactly as given.
    pub fn start_as_given<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fcgi-gateway"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fcgi-gateway");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(strip_ansi(&line)).is_err() {
                    break;
                }
            }
        });
        Binary {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits for a log line containing `needle` (one already read counts); returns it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        if let Some(line) = self.log.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        self.wait_for_new(needle)
    }

    /// The address of the listener whose "serving" line says
    /// `listen=SCHEME://ADDR`.
    pub fn listen_addr(&mut self, scheme: &str) -> std::net::SocketAddr {
        let marker = format!("listen={scheme}://");
        let line = self.wait_for(&marker);
        let (_, rest) = line.split_once(&marker).unwrap();
        rest.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// Waits for a log line containing `needle` not read before.
    pub fn wait_for_new(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no log line with {needle:?}; log:\n{}", self.log.join("\n")),
            }
        }
    }

    /// Every log line, to the end of its stderr: call once the gateway
    /// has exited (`wait_exit`).
    pub fn whole_log(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(20)) {
            self.log.push(line);
        }
        self.log.clone()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) takes two integers and touches no memory; the PID is
        // our own child, not yet waited for, so it names no other process.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    pub fn wait_exit(&mut self) -> Option<i32> {
        let mut status = None;
        wait::until_blocking("the gateway to exit", Duration::from_secs(20), || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status.and_then(|s| s.code())
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(libc::SIGTERM);
            let _ = self.wait_exit();
        }
    }
}
