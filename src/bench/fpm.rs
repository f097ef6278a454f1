//! `fcgi-gateway bench` without `--upstream`: the php-fpm it measures,
//! started for the run and stopped after it.
//!
//! One master with two pools, `unix` (a socket in a private temp dir) and
//! `tcp` (127.0.0.1 on a free port), and for each `--link-delay` a master of
//! its own in a network namespace behind an emulated link (`link`), its one
//! pool listening on the namespace's address. Every pool has the same
//! settings (`pm = static`, `--fpm-children` workers). Unless `--script` is
//! given they serve a built-in hello-world script written into the temp dir.
//!
//! php-fpm runs as our child in a process group of its own (a terminal's
//! Ctrl-C reaches only us, and we stop it), with `PR_SET_PDEATHSIG` so that
//! even a bench killed outright takes it along. It is stopped by PID with
//! SIGTERM, then SIGKILL to its group after a grace period, when
//! [`SelfStarted`] is finished or dropped: after the run, on errors, on a
//! panic, and on Ctrl-C (`bench::run` turns SIGINT/SIGTERM into a drop).

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::args::FpmPlan;
use super::link::{self, Link, LinkReport};
use crate::fpm::embedded::{installed_php_fpm, INSTALL_HINTS};
use crate::upstream::UpstreamAddr;

/// How long a php-fpm gets to log that it is ready and accept on every pool.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long php-fpm gets after SIGTERM before its group gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// php-fpm logs this (NOTICE) once its pools listen and its workers run.
const READY_LINE: &str = "ready to handle connections";
/// Tries at a free port for the local tcp pool (another process may take it first).
const PORT_ATTEMPTS: u32 = 3;
/// The port php-fpm listens on inside a link's namespace (nothing else is there).
const LINK_PORT: u16 = 9000;

/// The built-in script: the same hello world as `fixtures/php/hello.php`.
pub const BUILTIN_SCRIPT: &str =
    "<?php\nheader('Content-Type: text/plain');\necho 'Hello, world!';\n";

/// One pool of a generated config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConf {
    pub name: String,
    /// A socket path or `address:port`.
    pub listen: String,
    /// TCP only: the one client address php-fpm accepts.
    pub allowed_client: Option<IpAddr>,
}

/// What a generated php-fpm config depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterConf {
    pub pid_file: PathBuf,
    pub error_log: PathBuf,
    pub children: u32,
    pub status_path: Option<String>,
    pub as_root: bool,
    pub pools: Vec<PoolConf>,
}

/// The php-fpm config for `conf`.
pub fn render_config(conf: &MasterConf) -> String {
    let mut c = String::new();
    // writeln! into a String cannot fail.
    let _ = writeln!(c, "; written by fcgi-gateway bench");
    let _ = writeln!(c, "[global]");
    let _ = writeln!(c, "pid = {}", conf.pid_file.display());
    let _ = writeln!(c, "error_log = {}", conf.error_log.display());
    let _ = writeln!(c, "log_level = notice");
    let _ = writeln!(c, "daemonize = no");
    for pool in &conf.pools {
        let _ = writeln!(c, "\n[{}]", pool.name);
        let _ = writeln!(c, "listen = {}", pool.listen);
        // FastCGI access is code execution: only we may connect.
        let _ = writeln!(c, "listen.mode = 0600");
        if let Some(client) = pool.allowed_client {
            let _ = writeln!(c, "listen.allowed_clients = {client}");
        }
        if conf.as_root {
            let _ = writeln!(c, "user = root");
            let _ = writeln!(c, "group = root");
        }
        let _ = writeln!(c, "pm = static");
        let _ = writeln!(c, "pm.max_children = {}", conf.children);
        if let Some(path) = &conf.status_path {
            let _ = writeln!(c, "pm.status_path = {path}");
        }
        let _ = writeln!(c, "clear_env = yes");
        let _ = writeln!(c, "security.limit_extensions = .php");
    }
    c
}

/// The running php-fpm masters, their upstreams and links.
#[derive(Debug)]
pub struct SelfStarted {
    /// `unix`, `tcp`, then one per link, in the order of `--link-delay`.
    pub upstreams: Vec<UpstreamAddr>,
    /// `unix`, `tcp`, `tcp+0.2ms`, …
    pub labels: Vec<String>,
    pub script: String,
    masters: Vec<Master>,
    /// `links[i]` serves `upstreams[2 + i]`.
    links: Vec<Link>,
    // Removed after the masters stop (field order: dropped last).
    dir: tempfile::TempDir,
}

impl SelfStarted {
    /// Starts every php-fpm of `plan` and waits until each pool accepts.
    /// Call it from the thread that outlives them (the main thread): their
    /// parent-death signal fires when the thread that spawned them ends.
    pub fn start(
        plan: &FpmPlan,
        script: Option<&str>,
        status_path: Option<&str>,
    ) -> Result<SelfStarted, String> {
        let ip = if plan.links.is_empty() {
            None
        } else {
            Some(link::prerequisites()?)
        };
        let bin = locate(plan.bin.as_deref())?;
        let dir = tempfile::Builder::new()
            .prefix("fcgi-gateway-bench-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir for php-fpm: {e}"))?;
        let mut me = SelfStarted {
            upstreams: Vec::new(),
            labels: Vec::new(),
            script: String::new(),
            masters: Vec::new(),
            links: Vec::new(),
            dir,
        };
        let dir = me.dir.path().to_owned();
        me.script = match script {
            Some(s) => s.to_owned(),
            None => {
                let path = dir.join("hello.php");
                fs::write(&path, BUILTIN_SCRIPT)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                path.display().to_string()
            }
        };
        let as_root = is_root();
        let master_conf = |name: &str, pools: Vec<PoolConf>| MasterConf {
            pid_file: dir.join(format!("{name}.pid")),
            error_log: dir.join(format!("{name}.log")),
            children: plan.children,
            status_path: status_path.map(str::to_owned),
            as_root,
            pools,
        };

        let unix = dir.join("unix.sock");
        let mut attempt = 1;
        let tcp = loop {
            let port = free_port().map_err(|e| format!("cannot find a free port: {e}"))?;
            let tcp = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let conf = master_conf(
                "local",
                vec![
                    PoolConf {
                        name: "unix".into(),
                        listen: unix.display().to_string(),
                        allowed_client: None,
                    },
                    PoolConf {
                        name: "tcp".into(),
                        listen: tcp.to_string(),
                        allowed_client: Some(Ipv4Addr::LOCALHOST.into()),
                    },
                ],
            );
            let targets = vec![
                UpstreamAddr::Unix(unix.clone()),
                tcp_upstream(tcp.ip(), port),
            ];
            let mut master = Master::spawn(&bin, &dir, "local", &conf, as_root, None, targets)?;
            match master.wait_ready() {
                Ok(()) => {
                    me.masters.push(master);
                    break tcp;
                }
                Err(_) if attempt < PORT_ATTEMPTS && master.port_taken() => {
                    master.stop();
                    attempt += 1;
                }
                Err(e) => {
                    master.stop();
                    return Err(e);
                }
            }
        };
        me.upstreams = vec![UpstreamAddr::Unix(unix), tcp_upstream(tcp.ip(), tcp.port())];
        me.labels = vec!["unix".into(), "tcp".into()];

        if let Some(ip) = ip {
            let block = link::choose_block(&ip)?;
            for (i, &delay) in plan.links.iter().enumerate() {
                let subnet = block * super::args::MAX_LINKS as u32 + i as u32;
                let link = Link::create(&ip, i, subnet, delay)?;
                let name = format!("link{i}");
                let listen = SocketAddr::from((link.ns_addr, LINK_PORT));
                let conf = master_conf(
                    &name,
                    vec![PoolConf {
                        name: format!("tcp-{}", link::delay_label(delay)),
                        listen: listen.to_string(),
                        allowed_client: Some(link.host_addr.into()),
                    }],
                );
                let namespace = link
                    .namespace_file()
                    .map_err(|e| format!("cannot open the namespace {}: {e}", link.namespace))?;
                let upstream = tcp_upstream(listen.ip(), LINK_PORT);
                me.upstreams.push(upstream.clone());
                me.labels.push(format!("tcp+{}", link::delay_label(delay)));
                me.links.push(link);
                let master = Master::spawn(
                    &bin,
                    &dir,
                    &name,
                    &conf,
                    as_root,
                    Some(&namespace),
                    vec![upstream],
                )?;
                me.masters.push(master);
            }
            for master in me.masters.iter_mut().skip(1) {
                master.wait_ready()?;
            }
        }
        Ok(me)
    }

    /// Stops every php-fpm, then the links, and reports what each link did;
    /// the namespaces and the temp dir go when `self` is dropped.
    pub fn finish(mut self) -> Vec<LinkReport> {
        self.stop_masters();
        let mut reports = Vec::new();
        for (i, link) in self.links.iter_mut().enumerate() {
            if let Some(stats) = link.stop_relay() {
                reports.push(LinkReport::new(
                    self.labels[2 + i].clone(),
                    self.upstreams[2 + i].to_string(),
                    link,
                    &stats,
                ));
            }
        }
        reports
    }

    fn stop_masters(&mut self) {
        for master in self.masters.iter_mut().rev() {
            master.stop();
        }
    }
}

impl Drop for SelfStarted {
    fn drop(&mut self) {
        self.stop_masters();
        // Each link stops its relay and deletes its namespace.
        self.links.clear();
    }
}

fn tcp_upstream(ip: IpAddr, port: u16) -> UpstreamAddr {
    UpstreamAddr::Tcp {
        host: ip.to_string(),
        port,
    }
}

fn locate(explicit: Option<&Path>) -> Result<PathBuf, String> {
    installed_php_fpm(explicit).ok_or_else(|| match explicit {
        Some(bin) if bin.exists() => format!("--php-fpm {}: not an executable file", bin.display()),
        _ => INSTALL_HINTS.to_owned(),
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// One php-fpm master, our child.
#[derive(Debug)]
struct Master {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    console: PathBuf,
    /// Every pool's address, for the readiness check.
    targets: Vec<UpstreamAddr>,
}

impl Master {
    /// Writes the config and starts php-fpm, in `namespace` when given.
    fn spawn(
        bin: &Path,
        dir: &Path,
        name: &str,
        conf: &MasterConf,
        as_root: bool,
        namespace: Option<&File>,
        targets: Vec<UpstreamAddr>,
    ) -> Result<Master, String> {
        let conf_path = dir.join(format!("{name}.conf"));
        fs::write(&conf_path, render_config(conf))
            .map_err(|e| format!("cannot write {}: {e}", conf_path.display()))?;
        let console = dir.join(format!("{name}.console"));
        let out = File::create(&console)
            .map_err(|e| format!("cannot create {}: {e}", console.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("cannot create {}: {e}", console.display()))?;
        let mut cmd = Command::new(bin);
        cmd.arg("-F").arg("-y").arg(&conf_path).arg("-p").arg(dir);
        if as_root {
            cmd.arg("-R");
        }
        // Our stdout is the table; php-fpm's output goes to a file shown on failure.
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = spawn_tied(&mut cmd, namespace)
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        Ok(Master {
            name: name.to_owned(),
            child: Some(child),
            log: dir.join(format!("{name}.log")),
            console,
            targets,
        })
    }

    /// Until php-fpm logged that it is ready and every pool accepts.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err(format!("php-fpm ({}) is not running", self.name));
            };
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Err(format!(
                        "php-fpm ({}) exited during startup ({status}):\n{}",
                        self.name,
                        self.output()
                    ));
                }
                Ok(None) => {}
                Err(e) => return Err(format!("php-fpm ({}): {e}", self.name)),
            }
            let logged = fs::read_to_string(&self.log).is_ok_and(|l| l.contains(READY_LINE));
            if logged && self.targets.iter().all(accepts) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let targets: Vec<String> = self.targets.iter().map(|t| t.to_string()).collect();
                return Err(format!(
                    "php-fpm ({}) did not accept on {} within {READY_TIMEOUT:?}:\n{}",
                    self.name,
                    targets.join(" and "),
                    self.output()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// php-fpm said a listen address was taken.
    fn port_taken(&self) -> bool {
        self.output().contains("Address already in use")
    }

    /// Its error log and console output, for error messages.
    fn output(&self) -> String {
        let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
        format!("{}{}", read(&self.log), read(&self.console))
            .trim_end()
            .to_owned()
    }

    fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child, &format!("php-fpm ({})", self.name));
        }
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Spawns `cmd` as our child in a process group of its own (a terminal's
/// Ctrl-C reaches only us), with `PR_SET_PDEATHSIG = SIGTERM` so that it
/// ends with the thread that spawned it, and inside `namespace` (a network
/// namespace file) when given.
pub fn spawn_tied(cmd: &mut Command, namespace: Option<&File>) -> io::Result<Child> {
    let parent = std::process::id();
    let namespace = namespace.map(AsRawFd::as_raw_fd);
    cmd.process_group(0);
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe system calls (prctl, getppid, setns) on
    // integers captured by value; the namespace file stays open in the
    // parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // We died between fork and prctl: nobody would stop it.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::other("its parent exited"));
            }
            if let Some(fd) = namespace {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// SIGTERM by PID and wait; after `STOP_GRACE`, SIGKILL to it and its
/// group (`spawn_tied` made it a group leader). `what` names it in the
/// message about the SIGKILL.
pub fn stop_child(mut child: Child, what: &str) {
    let pid = child.id();
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "fcgi-gateway bench: {what} (pid {pid}) still runs {STOP_GRACE:?} after SIGTERM; \
         sending SIGKILL to it and its group"
    );
    signal(pid, libc::SIGKILL);
    let _ = child.wait();
    if let Ok(pgid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a negative id signals a process group and
        // touches no memory; while any member lives the id cannot be
        // reused, and once all are gone the call fails with ESRCH.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        if pid > 0 {
            // SAFETY: kill(2) takes two integers and touches no memory; `pid`
            // is our own child, not yet reaped, so it names no other process.
            unsafe { libc::kill(pid, sig) };
        }
    }
}

/// The pool at `addr` accepts a connection now.
fn accepts(addr: &UpstreamAddr) -> bool {
    match addr {
        UpstreamAddr::Unix(path) => UnixStream::connect(path).is_ok(),
        UpstreamAddr::Tcp { host, port } => host.parse::<IpAddr>().is_ok_and(|ip| {
            TcpStream::connect_timeout(&SocketAddr::new(ip, *port), Duration::from_millis(200))
                .is_ok()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_every_pool_with_the_same_settings() {
        let conf = MasterConf {
            pid_file: "/t/local.pid".into(),
            error_log: "/t/local.log".into(),
            children: 4,
            status_path: Some("/status".into()),
            as_root: true,
            pools: vec![
                PoolConf {
                    name: "unix".into(),
                    listen: "/t/unix.sock".into(),
                    allowed_client: None,
                },
                PoolConf {
                    name: "tcp".into(),
                    listen: "127.0.0.1:9001".into(),
                    allowed_client: Some(Ipv4Addr::LOCALHOST.into()),
                },
            ],
        };
        let text = render_config(&conf);
        for line in [
            "[global]",
            "pid = /t/local.pid",
            "error_log = /t/local.log",
            "daemonize = no",
            "[unix]",
            "listen = /t/unix.sock",
            "[tcp]",
            "listen = 127.0.0.1:9001",
            "listen.allowed_clients = 127.0.0.1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        for line in [
            "pm = static",
            "pm.max_children = 4",
            "pm.status_path = /status",
            "listen.mode = 0600",
            "user = root",
        ] {
            assert_eq!(text.matches(line).count(), 2, "{line} per pool:\n{text}");
        }
        let plain = render_config(&MasterConf {
            as_root: false,
            status_path: None,
            ..conf
        });
        assert!(!plain.contains("user = ") && !plain.contains("status_path"));
    }

    #[test]
    fn builtin_script_matches_the_fixture() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/php/hello.php");
        assert_eq!(
            fs::read_to_string(fixture).unwrap().trim_end(),
            BUILTIN_SCRIPT.trim_end()
        );
    }
}
