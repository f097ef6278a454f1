//! The embedded php-fpm: when no upstream is given, php-fpm runs as our
//! child on a private unix socket. This module owns finding it, its config,
//! starting it, logging its output, restarting it when it dies, and stopping it.

mod setup;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::upstream::UpstreamAddr;
pub use setup::INSTALL_HINTS;
use setup::{default_children, find_php_fpm, render_config, PoolPlan};

/// How long php-fpm gets to open its socket.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long php-fpm gets after SIGTERM before it and its workers get SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Restart back-off: doubles per quick death, up to the maximum.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A php-fpm that ran this long died on its own, not in a crash loop.
const STABLE_RUN: Duration = Duration::from_secs(10);

/// What the embedded php-fpm needs from the config.
#[derive(Debug, Clone)]
pub struct FpmSettings {
    pub bin: Option<PathBuf>,
    pub children: Option<usize>,
    pub status_path: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FpmError {
    #[error("{INSTALL_HINTS}")]
    NotFound,
    #[error("--php-fpm {}: not an executable file", .0.display())]
    NotExecutable(PathBuf),
    #[error("embedded php-fpm: cannot prepare its runtime dir: {0}")]
    RuntimeDir(std::io::Error),
    #[error("embedded php-fpm: cannot start {}: {source}", bin.display())]
    Spawn {
        bin: PathBuf,
        source: std::io::Error,
    },
    #[error("embedded php-fpm ({}) exited during startup ({status}); its log is above", bin.display())]
    ExitedEarly { bin: PathBuf, status: ExitStatus },
    #[error("embedded php-fpm ({}) did not open {} within {READY_TIMEOUT:?}", bin.display(), socket.display())]
    NotReady { bin: PathBuf, socket: PathBuf },
}

/// A running, supervised php-fpm. Call [`EmbeddedFpm::stop`] to end it.
#[derive(Debug)]
pub struct EmbeddedFpm {
    socket: PathBuf,
    stop_tx: watch::Sender<bool>,
    supervisor: JoinHandle<()>,
    // Removed (with config and socket) when this is dropped, after php-fpm stops.
    _dir: tempfile::TempDir,
}

/// Everything needed to (re)start php-fpm.
#[derive(Debug, Clone)]
struct Launch {
    bin: PathBuf,
    conf: PathBuf,
    dir: PathBuf,
    socket: PathBuf,
    as_root: bool,
}

impl EmbeddedFpm {
    /// Finds php-fpm, writes its config into a private temp dir, starts it
    /// and waits until its socket accepts connections.
    pub async fn start(settings: FpmSettings) -> Result<EmbeddedFpm, FpmError> {
        let bin = locate(settings.bin.as_deref())?;
        let dir = tempfile::Builder::new()
            .prefix("fcgi-gateway-fpm-")
            .tempdir()
            .map_err(FpmError::RuntimeDir)?;
        // tempdir makes it 0700 already; stated here because the socket's
        // privacy rests on it.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .map_err(FpmError::RuntimeDir)?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let plan = PoolPlan {
            dir: dir.path().to_owned(),
            socket: dir.path().join("php-fpm.sock"),
            children: settings.children.unwrap_or_else(|| default_children(cpus)),
            status_path: settings.status_path,
            as_root: is_root(),
        };
        let conf = dir.path().join("php-fpm.conf");
        std::fs::write(&conf, render_config(&plan)).map_err(FpmError::RuntimeDir)?;
        let launch = Launch {
            bin,
            conf,
            dir: dir.path().to_owned(),
            socket: plan.socket.clone(),
            as_root: plan.as_root,
        };
        let child = launch.start().await?;
        tracing::info!(bin = %launch.bin.display(), children = plan.children, socket = %plan.socket.display(), "embedded php-fpm ready");
        let (stop_tx, stop_rx) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(launch, child, stop_rx));
        Ok(EmbeddedFpm {
            socket: plan.socket,
            stop_tx,
            supervisor,
            _dir: dir,
        })
    }

    /// Where the gateway reaches it.
    pub fn upstream(&self) -> UpstreamAddr {
        UpstreamAddr::Unix(self.socket.clone())
    }

    /// SIGTERM, wait; SIGKILL to it and its workers after a few seconds.
    pub async fn stop(self) {
        let _ = self.stop_tx.send(true);
        if let Err(e) = self.supervisor.await {
            tracing::error!(error = %e, "embedded php-fpm supervisor failed");
        }
    }
}

/// The php-fpm this machine has: `explicit` if it is an executable file;
/// else `php-fpm` on PATH; else the highest `php-fpm8.x`/`php-fpm7.x` on PATH
/// or in /usr/sbin. The test harness finds its php-fpm the same way.
pub fn installed_php_fpm(explicit: Option<&Path>) -> Option<PathBuf> {
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    find_php_fpm(explicit, &path_dirs, Path::new("/usr/sbin"))
}

fn locate(explicit: Option<&Path>) -> Result<PathBuf, FpmError> {
    match (installed_php_fpm(explicit), explicit) {
        (Some(bin), _) => Ok(bin),
        // A missing explicit binary is a missing php-fpm: the hints help most.
        (None, Some(bin)) if bin.exists() => Err(FpmError::NotExecutable(bin.to_owned())),
        (None, _) => Err(FpmError::NotFound),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl Launch {
    /// Spawns php-fpm and waits for its socket; a failure is stopped and reported.
    async fn start(&self) -> Result<Child, FpmError> {
        // A socket file left by a killed php-fpm must not look like readiness.
        let _ = std::fs::remove_file(&self.socket);
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-F")
            .arg("-y")
            .arg(&self.conf)
            .arg("-p")
            .arg(&self.dir)
            // An error_log from php.ini would divert error_log() away from
            // FastCGI STDERR, where the gateway logs it with its request.
            .args(["-d", "error_log="]);
        if self.as_root {
            cmd.arg("-R");
        }
        // Its own process group: a terminal's Ctrl-C reaches only us, so we
        // drain first and stop php-fpm after; and orphaned workers of a
        // killed master can be found by the group id.
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        let mut child = cmd.spawn().map_err(|source| FpmError::Spawn {
            bin: self.bin.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        tracing::info!(pid, "embedded php-fpm started");
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_lines(out, None));
        }
        // php-fpm logs the ready line once its static workers are forked;
        // before that, the status page would under-report the pool's size.
        let (ready_tx, mut ready_rx) = watch::channel(false);
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward_lines(err, Some(ready_tx)));
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                kill_group(pid, libc::SIGKILL);
                return Err(FpmError::ExitedEarly {
                    bin: self.bin.clone(),
                    status,
                });
            }
            if *ready_rx.borrow_and_update()
                && tokio::net::UnixStream::connect(&self.socket).await.is_ok()
            {
                return Ok(child);
            }
            if Instant::now() >= deadline {
                terminate(&mut child).await;
                return Err(FpmError::NotReady {
                    bin: self.bin.clone(),
                    socket: self.socket.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Restarts php-fpm with back-off whenever it dies, until told to stop.
async fn supervise(launch: Launch, mut child: Child, mut stop: watch::Receiver<bool>) {
    let mut backoff = BACKOFF_START;
    let mut started = Instant::now();
    loop {
        let pid = child.id().unwrap_or(0);
        let status = tokio::select! {
            status = child.wait() => status,
            _ = stop.changed() => {
                terminate(&mut child).await;
                return;
            }
        };
        // Workers of a master that died abruptly still hold the old socket
        // and would linger; they are in the master's process group.
        kill_group(pid, libc::SIGKILL);
        if started.elapsed() >= STABLE_RUN {
            backoff = BACKOFF_START;
        }
        match status {
            Ok(s) => {
                tracing::warn!(pid, status = %s, retry_in = ?backoff, "embedded php-fpm exited; restarting it")
            }
            Err(e) => {
                tracing::warn!(pid, error = %e, retry_in = ?backoff, "lost the embedded php-fpm; restarting it")
            }
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            match launch.start().await {
                Ok(c) => {
                    child = c;
                    started = Instant::now();
                    tracing::info!(pid = child.id().unwrap_or(0), "embedded php-fpm restarted");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "embedded php-fpm failed to restart")
                }
            }
        }
    }
}

/// SIGTERM to the master, wait; after `STOP_GRACE`, SIGKILL to its group.
async fn terminate(child: &mut Child) {
    let Some(pid) = child.id() else {
        return; // already reaped
    };
    signal(pid, libc::SIGTERM);
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(status) => tracing::info!(pid, status = ?status.ok(), "embedded php-fpm stopped"),
        Err(_) => {
            tracing::warn!(pid, "embedded php-fpm still runs {STOP_GRACE:?} after SIGTERM; sending SIGKILL to it and its workers");
            kill_group(pid, libc::SIGKILL);
            let _ = child.wait().await;
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid > 0 {
        // SAFETY: kill(2) takes two integers and touches none of our memory;
        // `pid` is our own child, not yet reaped, so it names no other process.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Signals the process group php-fpm's master leads (it was spawned with
/// `process_group(0)`, so the group id is its PID).
fn kill_group(pgid: u32, sig: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid > 1 {
        // SAFETY: kill(2) with a negative id signals a process group and
        // touches none of our memory. The group was created for this php-fpm;
        // while any member lives its id cannot be reused, and once all are
        // gone the call fails with ESRCH.
        unsafe { libc::kill(-pgid, sig) };
    }
}

/// php-fpm logs this (NOTICE) once its pool listens and its workers run.
const READY_LINE: &str = "ready to handle connections";

/// php-fpm's log and its workers' output, line by line into ours; `ready`
/// is set when php-fpm says it is ready.
async fn forward_lines(stream: impl AsyncRead + Unpin, ready: Option<watch::Sender<bool>>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if line.contains(READY_LINE) {
            if let Some(ready) = &ready {
                let _ = ready.send(true);
            }
        }
        if is_warning(line) {
            tracing::warn!(target: "php_fpm", "{line}");
        } else {
            tracing::info!(target: "php_fpm", "{line}");
        }
    }
}

/// php-fpm prefixes its levels (`NOTICE:`, `WARNING:`, `ERROR:`, `ALERT:`);
/// worker output (undecorated) is a script's stderr, worth a warning too.
fn is_warning(line: &str) -> bool {
    const CALM: &[&str] = &["NOTICE:", "DEBUG:"];
    !CALM.iter().any(|level| line.contains(level))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn php_fpm_levels() {
        assert!(!is_warning(
            "[25-Nov-2026 11:31:06] NOTICE: fpm is running, pid 12"
        ));
        assert!(is_warning(
            "[25-Nov-2026 11:31:06] WARNING: [pool app] child 13 exited"
        ));
        assert!(is_warning("[25-Nov-2026 11:31:06] ERROR: unable to bind"));
        assert!(is_warning("a script wrote this to php://stderr"));
    }
}
