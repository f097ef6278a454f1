//! A real php-fpm for integration tests.
//!
//! [`PhpFpm::start`] writes a php-fpm configuration into a fresh temporary
//! directory and runs php-fpm in the foreground (`-F`) as our child, with two
//! pools serving the same settings:
//!
//! * `unix` listening on `<tmp>/fpm.sock` (mode 0666), and
//! * `tcp` listening on `127.0.0.1:<free port>`.
//!
//! Pool settings that matter to tests:
//!
//! * `output_buffering = 0`, `zlib.output_compression = 0`: a script's
//!   `flush()` reaches the FastCGI client at once.
//! * `log_errors = on`, `display_errors = off`, and `error_log` left empty
//!   (`-d error_log=`): `error_log("x")` and PHP warnings go to the SAPI
//!   logger, which sends them to the client as FCGI_STDERR
//!   (`PHP message: x`) and, because `fcgi.logging = 1`, also to the php-fpm
//!   log. Note that php-fpm has no `STDERR` constant; `php://stderr` writes go
//!   to the worker's stderr, i.e. only to the php-fpm log
//!   (`catch_workers_output = yes`), never to the client.
//! * `post_max_size = 0`: request bodies of any size reach `php://input`.
//! * `security.limit_extensions = .php`, `ping.path = /ping`
//!   (`ping.response = pong`), `clear_env = no`.
//!
//! php-fpm is stopped by PID ([`PhpFpm::stop`], also on drop). It is started
//! with `PR_SET_PDEATHSIG = SIGTERM` from a helper thread that lives as long as
//! the test process, so even a test binary that is killed outright (Ctrl-C,
//! SIGKILL) takes its php-fpm with it, and a `PhpFpm` kept in a `static` (never
//! dropped) is still stopped when the test binary exits.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use tempfile::TempDir;

use super::wait;

/// How long php-fpm gets to open both sockets and log that it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long php-fpm gets to exit after SIGTERM before it (and its workers) get
/// SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Attempts at finding a TCP port that nobody else grabs meanwhile.
const PORT_ATTEMPTS: u32 = 5;
/// php-fpm logs this (at notice level) once every pool listens and the
/// workers are forked.
const READY_LINE: &str = "ready to handle connections";

/// Knobs for [`PhpFpm::start_with`]. Both pools get the same settings.
#[derive(Debug, Clone)]
pub struct PhpFpmOptions {
    /// `pm.max_children` of each pool (default 4).
    pub children: u32,
    /// `pm`: `"static"` (default), `"dynamic"` or `"ondemand"`. For `dynamic`
    /// the harness sets `pm.start_servers = 1`, `pm.min_spare_servers = 1`,
    /// `pm.max_spare_servers = children`.
    pub pm: &'static str,
    /// `pm.max_requests` (default 0 = workers are never recycled).
    pub max_requests: u32,
    /// `pm.status_path`, e.g. `Some("/status".into())`.
    pub status_path: Option<String>,
    /// Extra lines appended verbatim to both pool sections, e.g.
    /// `"env[FOO] = bar"` or `"php_admin_value[memory_limit] = 64M"`.
    /// Paths relative to the temp dir work (it is php-fpm's `-p` prefix).
    pub extra_pool_lines: Vec<String>,
    /// `request_terminate_timeout` in seconds.
    pub request_terminate_timeout: Option<u32>,
    /// The tcp pool's address (default 127.0.0.1; any 127.x.y.z works on
    /// Linux, or an address inside `netns`).
    pub tcp_ip: Ipv4Addr,
    /// The tcp pool's port (default: a free one).
    pub tcp_port: Option<u16>,
    /// Run php-fpm inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
}

impl Default for PhpFpmOptions {
    fn default() -> Self {
        PhpFpmOptions {
            children: 4,
            pm: "static",
            max_requests: 0,
            status_path: None,
            extra_pool_lines: Vec::new(),
            request_terminate_timeout: None,
            tcp_ip: Ipv4Addr::LOCALHOST,
            tcp_port: None,
            netns: None,
        }
    }
}

/// A running php-fpm master with a unix-socket pool and a TCP pool.
pub struct PhpFpm {
    /// `<tmp>/fpm.sock`, served by the pool named `unix`.
    pub unix_socket: PathBuf,
    /// `127.0.0.1:<port>`, served by the pool named `tcp`.
    pub tcp_addr: SocketAddr,
    /// PID of the php-fpm master. After [`PhpFpm::stop`] this is the PID of the
    /// master that was stopped; [`PhpFpm::restart`] updates it.
    pub pid: u32,
    dir: TempDir,
    opts: PhpFpmOptions,
    bin: PathBuf,
    child: Option<Child>,
}

enum LaunchError {
    /// Some other process owns the TCP port we picked.
    AddrInUse,
    /// php-fpm exited or never became ready; the message says why.
    Failed(String),
}

impl PhpFpm {
    /// Start php-fpm with [`PhpFpmOptions::default`].
    pub fn start() -> PhpFpm {
        PhpFpm::start_with(PhpFpmOptions::default())
    }

    /// Start php-fpm with the given options. Panics (with php-fpm's log) if it
    /// does not come up within 10 s, and panics if php-fpm is not installed.
    pub fn start_with(opts: PhpFpmOptions) -> PhpFpm {
        assert!(
            opts.children > 0,
            "PhpFpmOptions.children must be at least 1"
        );
        let bin = find_php_fpm();
        let dir = tempfile::Builder::new()
            .prefix("php-fpm-test-")
            .tempdir()
            .expect("could not create a temp dir for php-fpm");
        let unix_socket = dir.path().join("fpm.sock");
        let mut fpm = PhpFpm {
            unix_socket,
            tcp_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            pid: 0,
            dir,
            opts,
            bin,
            child: None,
        };
        fpm.launch(None);
        fpm
    }

    /// The temp dir holding its config, log and unix socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stop php-fpm: SIGTERM to the master by PID and wait for it to exit; if
    /// it is still running after 5 s, SIGKILL the master and its workers by
    /// PID. Calling it again (or dropping afterwards) does nothing.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as libc::pid_t;
        // Remember the workers: should the master die without reaping them,
        // they must not outlive the test.
        let workers = child_pids(pid);
        if matches!(child.try_wait(), Ok(None)) {
            // SAFETY: plain kill(2) on the PID of our own, not yet reaped,
            // child; the PID cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            // Stops looking once it exited or cannot be waited for; only a
            // master still running after the grace period gets SIGKILL.
            let done = wait::holds_within_blocking(STOP_GRACE, || match child.try_wait() {
                Ok(exited) => exited.is_some(),
                Err(e) => {
                    eprintln!("waiting for php-fpm master {pid} failed: {e}");
                    true
                }
            });
            if !done {
                let mut stuck = child_pids(pid);
                stuck.extend(workers.iter().copied());
                eprintln!(
                    "php-fpm master {pid} still runs {STOP_GRACE:?} after SIGTERM; \
                     sending SIGKILL to it and its workers {stuck:?}"
                );
                // SAFETY: as above, the child is not reaped yet.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                kill_php_fpm_pids(&stuck);
                if let Err(e) = child.wait() {
                    eprintln!("waiting for php-fpm master {pid} after SIGKILL: {e}");
                }
            }
        }
        // A master that exits normally has reaped its workers; anything left is
        // an orphan (its master was SIGKILLed or crashed).
        let orphans: Vec<_> = workers
            .into_iter()
            .filter(|&w| is_live_php_fpm(w))
            .collect();
        if !orphans.is_empty() {
            eprintln!("php-fpm workers {orphans:?} outlived master {pid}; sending SIGKILL");
            kill_php_fpm_pids(&orphans);
        }
    }

    /// Stop php-fpm, then start it again with the same options on the SAME
    /// unix socket path and the SAME TCP port. Updates [`PhpFpm::pid`].
    pub fn restart(&mut self) {
        self.stop();
        let port = self.tcp_addr.port();
        self.launch(Some(port));
    }

    /// PIDs of the current worker processes (children of the master), from
    /// /proc. Empty when stopped.
    pub fn worker_pids(&self) -> Vec<u32> {
        match &self.child {
            Some(child) => child_pids(child.id() as libc::pid_t)
                .into_iter()
                .map(|pid| pid as u32)
                .collect(),
            None => Vec::new(),
        }
    }

    /// Everything php-fpm wrote to its error log so far (across restarts):
    /// its own notices/warnings, `error_log()` messages (`fcgi.logging`) and
    /// whatever workers wrote to their stdout/stderr.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("fpm.log")
    }

    fn console_path(&self) -> PathBuf {
        self.dir.path().join("fpm-console.log")
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("php-fpm.conf")
    }

    /// Start php-fpm on `fixed_port`, or on a fresh free port (retrying when
    /// another process grabs it first).
    fn launch(&mut self, fixed_port: Option<u16>) {
        let mut last_error = String::new();
        for attempt in 1..=PORT_ATTEMPTS {
            let port = fixed_port.or(self.opts.tcp_port).unwrap_or_else(free_port);
            match self.try_launch(port) {
                Ok(()) => return,
                Err(LaunchError::AddrInUse) => {
                    eprintln!(
                        "php-fpm could not listen on {}:{port} (in use); attempt \
                         {attempt} of {PORT_ATTEMPTS}",
                        self.opts.tcp_ip
                    );
                    last_error = format!(
                        "attempt {attempt}: {}:{port} is already in use\n{}",
                        self.opts.tcp_ip,
                        self.diagnostics()
                    );
                    // A fixed port (restart) may be free again in a moment.
                    if fixed_port.is_some() {
                        thread::sleep(Duration::from_millis(300));
                    }
                }
                Err(LaunchError::Failed(why)) => {
                    panic!("php-fpm ({}) failed to start: {why}", self.bin.display())
                }
            }
        }
        panic!(
            "php-fpm ({}) could not listen on a TCP port after {PORT_ATTEMPTS} attempts; \
             last: {last_error}",
            self.bin.display()
        );
    }

    fn try_launch(&mut self, port: u16) -> Result<(), LaunchError> {
        let tcp_addr = SocketAddr::from((self.opts.tcp_ip, port));
        let as_root = unsafe { libc::geteuid() } == 0;
        let config = render_config(
            self.dir.path(),
            &self.unix_socket,
            tcp_addr,
            &self.opts,
            as_root,
        );
        fs::write(self.conf_path(), config).expect("could not write php-fpm.conf");
        // A socket file left by a killed php-fpm must not look like readiness.
        match fs::remove_file(&self.unix_socket) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => panic!("could not remove stale {}: {e}", self.unix_socket.display()),
        }
        let log_offset = fs::metadata(self.log_path()).map_or(0, |m| m.len() as usize);
        let console_offset = fs::metadata(self.console_path()).map_or(0, |m| m.len() as usize);

        let console = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.console_path())
            .expect("could not create php-fpm console log");
        let mut cmd = match &self.opts.netns {
            Some(ns) => {
                // `ip netns exec` execs php-fpm: the PID stays the master's.
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(&self.bin);
                cmd
            }
            None => Command::new(&self.bin),
        };
        cmd.arg("-F") // foreground: the master stays our child
            .arg("-y")
            .arg(self.conf_path())
            .arg("-p")
            .arg(self.dir.path())
            // An error_log set in php.ini would divert error_log() output away
            // from FCGI_STDERR; empty means "the SAPI logger".
            .args(["-d", "error_log=", "-d", "fcgi.logging=1"]);
        if as_root {
            cmd.arg("-R"); // allow pools with user = root
        }
        cmd.stdin(Stdio::null())
            .stdout(console.try_clone().expect("dup console log"))
            .stderr(console);
        let child = spawn_tied_to_test_process(cmd).unwrap_or_else(|e| {
            panic!(
                "could not execute {}: {e}; install php-fpm (`apt-get install php8.2-fpm`) \
                 or set PHP_FPM_BIN",
                self.bin.display()
            )
        });
        self.pid = child.id();
        self.tcp_addr = tcp_addr;
        self.child = Some(child);

        let (log_path, unix_socket) = (self.log_path(), self.unix_socket.clone());
        let child = self.child.as_mut().expect("child just stored");
        let mut exited: Option<ExitStatus> = None;
        let settled = wait::holds_within_blocking(START_TIMEOUT, || {
            exited = child.try_wait().expect("try_wait on php-fpm");
            let logged_ready = || {
                read_lossy(&log_path)
                    .get(log_offset..)
                    .is_some_and(|l| l.contains(READY_LINE))
            };
            exited.is_some()
                || logged_ready()
                    && UnixStream::connect(&unix_socket).is_ok()
                    && TcpStream::connect_timeout(&tcp_addr, Duration::from_millis(200)).is_ok()
        });
        if let Some(status) = exited {
            self.child = None;
            // Startup errors land in the error log and/or on stderr.
            let new_output = [
                (self.log_path(), log_offset),
                (self.console_path(), console_offset),
            ]
            .iter()
            .map(|(path, offset)| {
                read_lossy(path)
                    .get(*offset..)
                    .unwrap_or_default()
                    .to_string()
            })
            .collect::<String>();
            if new_output.contains("Address already in use")
                && new_output.contains(&format!(":{port}'"))
            {
                return Err(LaunchError::AddrInUse);
            }
            return Err(LaunchError::Failed(format!(
                "it exited during startup ({status})\n{}",
                self.diagnostics()
            )));
        }
        if !settled {
            let why = format!(
                "not ready after {START_TIMEOUT:?} (want {READY_LINE:?} in the log, \
                 {} connectable and {tcp_addr} accepting)\n{}",
                self.unix_socket.display(),
                self.diagnostics()
            );
            self.stop();
            return Err(LaunchError::Failed(why));
        }
        Ok(())
    }

    /// Config, error log and console output, for panic messages.
    fn diagnostics(&self) -> String {
        format!(
            "--- {} ---\n{}\n--- php-fpm error log ({}) ---\n{}\n--- php-fpm stdout/stderr ---\n{}",
            self.conf_path().display(),
            read_lossy(&self.conf_path()),
            self.log_path().display(),
            self.log(),
            read_lossy(&self.console_path()),
        )
    }
}

impl Drop for PhpFpm {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Absolute path of `<crate>/fixtures/php`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("php")
}

fn render_config(
    dir: &Path,
    unix_socket: &Path,
    tcp_addr: SocketAddr,
    opts: &PhpFpmOptions,
    as_root: bool,
) -> String {
    let mut conf = String::new();
    let w = &mut conf;
    // writeln! into a String cannot fail.
    let _ = writeln!(w, "; generated by tests/support/php_fpm.rs");
    let _ = writeln!(w, "[global]");
    let _ = writeln!(w, "pid = {}", dir.join("fpm.pid").display());
    let _ = writeln!(w, "error_log = {}", dir.join("fpm.log").display());
    let _ = writeln!(w, "log_level = notice");
    let _ = writeln!(w, "log_limit = 8192");
    let _ = writeln!(w, "daemonize = no");
    let pools = [
        ("unix", unix_socket.display().to_string()),
        ("tcp", tcp_addr.to_string()),
    ];
    for (name, listen) in pools {
        let _ = writeln!(w, "\n[{name}]");
        let _ = writeln!(w, "listen = {listen}");
        if name == "unix" {
            let _ = writeln!(w, "listen.mode = 0666");
        }
        if as_root {
            let _ = writeln!(w, "user = root");
            let _ = writeln!(w, "group = root");
        }
        let _ = writeln!(w, "pm = {}", opts.pm);
        let _ = writeln!(w, "pm.max_children = {}", opts.children);
        if opts.pm == "dynamic" {
            let _ = writeln!(w, "pm.start_servers = 1");
            let _ = writeln!(w, "pm.min_spare_servers = 1");
            let _ = writeln!(w, "pm.max_spare_servers = {}", opts.children);
        }
        let _ = writeln!(w, "pm.max_requests = {}", opts.max_requests);
        if let Some(path) = &opts.status_path {
            let _ = writeln!(w, "pm.status_path = {path}");
        }
        if let Some(secs) = opts.request_terminate_timeout {
            let _ = writeln!(w, "request_terminate_timeout = {secs}s");
        }
        let _ = writeln!(w, "ping.path = /ping");
        let _ = writeln!(w, "ping.response = pong");
        let _ = writeln!(w, "catch_workers_output = yes");
        let _ = writeln!(w, "decorate_workers_output = no");
        let _ = writeln!(w, "clear_env = no");
        let _ = writeln!(w, "security.limit_extensions = .php");
        let _ = writeln!(w, "php_admin_value[output_buffering] = 0");
        let _ = writeln!(w, "php_admin_flag[implicit_flush] = off");
        let _ = writeln!(w, "php_admin_value[zlib.output_compression] = 0");
        let _ = writeln!(w, "php_admin_flag[log_errors] = on");
        let _ = writeln!(w, "php_admin_flag[display_errors] = off");
        let _ = writeln!(w, "php_admin_value[post_max_size] = 0");
        for line in &opts.extra_pool_lines {
            let _ = writeln!(w, "{line}");
        }
    }
    conf
}

/// `PHP_FPM_BIN`, else `php-fpm` on PATH, else the newest `php-fpm<version>`
/// on PATH or in /usr/sbin. Panics loudly when there is none: tests that need
/// php-fpm must fail, not skip.
fn find_php_fpm() -> PathBuf {
    let explicit = env::var_os("PHP_FPM_BIN").map(PathBuf::from);
    if let Some(bin) = fcgi_gateway::fpm::embedded::installed_php_fpm(explicit.as_deref()) {
        return bin;
    }
    if let Some(bin) = explicit {
        panic!("PHP_FPM_BIN={} is not an executable file", bin.display());
    }
    panic!(
        "\n\n========================================================================\n\
         php-fpm NOT FOUND: these integration tests need a real php-fpm.\n\
         Install it (Debian/Ubuntu: `apt-get install php8.2-fpm`) or point\n\
         PHP_FPM_BIN at the binary. Looked for `php-fpm` on PATH and for\n\
         php-fpm7.x/php-fpm8.x on PATH and in /usr/sbin.\n\
         ========================================================================\n"
    );
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("could not bind 127.0.0.1:0 to find a free port");
    listener.local_addr().expect("local_addr").port()
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// PIDs whose parent is `parent`, from /proc.
fn child_pids(parent: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|&pid| proc_stat(pid).is_some_and(|(_, ppid)| ppid == parent))
        .collect()
}

/// `(comm, ppid)` from /proc/<pid>/stat.
fn proc_stat(pid: libc::pid_t) -> Option<(String, libc::pid_t)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may contain spaces and parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let ppid = stat
        .get(close + 1..)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((comm, ppid))
}

/// Still running (not a zombie) and still a php-fpm process, so a reused PID
/// is never hit.
fn is_live_php_fpm(pid: libc::pid_t) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 1..))
        .and_then(|rest| rest.split_whitespace().next());
    state != Some("Z") && proc_stat(pid).is_some_and(|(comm, _)| comm.starts_with("php-fpm"))
}

fn kill_php_fpm_pids(pids: &[libc::pid_t]) {
    for &pid in pids {
        if is_live_php_fpm(pid) {
            // SAFETY: kill(2) by PID, checked to be a live php-fpm process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawn `cmd` with `PR_SET_PDEATHSIG = SIGTERM`. The parent-death signal
/// fires when the *thread* that forked exits, so all spawns happen on one
/// helper thread that lives until the test process ends.
pub fn spawn_tied_to_test_process(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs_tx, jobs_rx) = mpsc::channel::<SpawnJob>();
        thread::Builder::new()
            .name("php-fpm-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in jobs_rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("could not start the php-fpm spawner thread");
        Mutex::new(jobs_tx)
    });

    let test_process = std::process::id() as libc::pid_t;
    // SAFETY: the closure only calls async-signal-safe functions (prctl,
    // getppid) and builds an io::Error without allocating.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The test process died before prctl took effect.
            if libc::getppid() != test_process {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send((cmd, reply_tx))
        .expect("php-fpm spawner thread is gone");
    reply_rx
        .recv()
        .expect("php-fpm spawner thread dropped the request")
}
