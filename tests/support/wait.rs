//! Waiting for something to happen by looking again every [`INTERVAL`],
//! instead of sleeping and hoping it has.
//!
//! Every wait has a timeout. The `until*` helpers panic when it passes,
//! naming what they waited for and how long; `holds_within*` return whether
//! the condition came true and leave the failure to the caller, whose
//! assertion can say more (a log, a pool snapshot). The plain helpers are
//! for async tests (on tokio's clock, so a paused one works too); the
//! `_blocking` ones for `#[test]`s and the harness's own threads.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the helpers wait between two looks.
pub const INTERVAL: Duration = Duration::from_millis(10);

/// Looks at `condition` every [`INTERVAL`] until it holds or `timeout` has
/// passed; returns whether it held.
pub async fn holds_within(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    holds_within_async(timeout, async || condition()).await
}

/// Waits until `condition` holds; panics naming `what` after `timeout`.
pub async fn until(what: &str, timeout: Duration, condition: impl FnMut() -> bool) {
    let started = tokio::time::Instant::now();
    if !holds_within(timeout, condition).await {
        timed_out(what, started.elapsed());
    }
}

/// [`until`] for a condition that has to await (e.g. a request).
pub async fn until_async(what: &str, timeout: Duration, condition: impl AsyncFnMut() -> bool) {
    let started = tokio::time::Instant::now();
    if !holds_within_async(timeout, condition).await {
        timed_out(what, started.elapsed());
    }
}

/// [`holds_within`] for synchronous code: sleeps the thread between looks.
pub fn holds_within_blocking(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if started.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(INTERVAL);
    }
}

/// [`until`] for synchronous code.
pub fn until_blocking(what: &str, timeout: Duration, condition: impl FnMut() -> bool) {
    let started = Instant::now();
    if !holds_within_blocking(timeout, condition) {
        timed_out(what, started.elapsed());
    }
}

/// Waits until a unix socket listens at `path`. Its file appears at
/// bind(2), a moment before listen(2), and a connect in between is
/// refused; so this looks for a listening socket bound there in
/// /proc/net/unix.
pub async fn socket_listens(path: &Path, timeout: Duration) {
    let what = format!("a socket to listen at {}", path.display());
    until(&what, timeout, || listens_at(path)).await;
}

/// [`socket_listens`] for synchronous code.
pub fn socket_listens_blocking(path: &Path, timeout: Duration) {
    let what = format!("a socket to listen at {}", path.display());
    until_blocking(&what, timeout, || listens_at(path));
}

/// Whether /proc/net/unix lists a listening socket bound to `path`.
fn listens_at(path: &Path) -> bool {
    // __SO_ACCEPTCON in the Flags column: listen(2) was called.
    const LISTENING: u32 = 0x0001_0000;
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    let path = path.display().to_string();
    // Num RefCount Protocol Flags Type St Inode Path
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() >= 8
            && fields[7..].join(" ") == path
            && u32::from_str_radix(fields[3], 16).is_ok_and(|flags| flags & LISTENING != 0)
    })
}

/// Scrapes the admin listener's /metrics (each answer must be 200) until
/// `done` holds for its text, and returns that text. Counters lag the
/// client a little: they are written with the access line, just after the
/// client had its last byte.
pub async fn scrape_until(
    admin: SocketAddr,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let mut last = String::new();
    let matched = holds_within_async(timeout, async || {
        let reply = super::gateway::get(admin, "/metrics").await;
        assert_eq!(reply.status, 200, "/metrics answered {}", reply.text());
        last = reply.text();
        done(&last)
    })
    .await;
    assert!(matched, "metrics never matched in {timeout:?}:\n{last}");
    last
}

/// The value of the sample `series` (name with its labels) in a /metrics
/// text.
pub fn sample(text: &str, series: &str) -> u64 {
    let prefix = format!("{series} ");
    let line = text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{series}` in:\n{text}"));
    line[prefix.len()..]
        .parse()
        .unwrap_or_else(|_| panic!("not a count: {line}"))
}

/// Waits until the other end of `stream` has read everything written to
/// it (the unread bytes a unix socket holds for its peer, `SIOCOUTQ`, are
/// down to 0): a server has taken the request written just before.
pub fn peer_has_read(stream: &UnixStream, timeout: Duration) {
    until_blocking("the peer to read what was written", timeout, || {
        unread_by_peer(stream) == 0
    });
}

/// Bytes written to `stream` that its peer has not read yet.
fn unread_by_peer(stream: &UnixStream) -> usize {
    send_queue(stream)
}

/// The bytes in `socket`'s send queue (`SIOCOUTQ`): on a unix socket,
/// written and not yet read by the peer; on tcp, written and not yet
/// ACKed by it.
pub fn send_queue(socket: &impl AsRawFd) -> usize {
    let mut queued: libc::c_int = 0;
    // SAFETY: ioctl(2) SIOCOUTQ (same number as TIOCOUTQ) on a socket the
    // caller holds, open for the whole call, writes one c_int through the
    // pointer, which points at a live local of that type.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    assert_eq!(rc, 0, "SIOCOUTQ: {}", std::io::Error::last_os_error());
    usize::try_from(queued).unwrap_or(0)
}

/// The async primitive the others build on.
async fn holds_within_async(timeout: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let started = tokio::time::Instant::now();
    loop {
        if condition().await {
            return true;
        }
        if started.elapsed() >= timeout {
            return false;
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

fn timed_out(what: &str, waited: Duration) -> ! {
    panic!("timed out after {waited:.1?} waiting for {what}")
}
