//! Sockets handed over by systemd (`LISTEN_FDS`), by hand and through
//! `systemd-socket-activate`, and the contrib units under `systemd-analyze verify`.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use super::{get, support, Dir, Proc, WAIT};
use support::php_fpm::fixtures_dir;
use support::wait;

/// The socket inode a `/proc/PID/fd/N` link names (`socket:[123]`).
fn fd_target(pid: u32, fd: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .ok()
        .map(|p| p.display().to_string())
}

/// PIDs whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        if after.split_whitespace().nth(1) == Some(&pid.to_string()) {
            out.push(child);
        }
    }
    out
}

/// The gateway with `fd` handed over as fd 3 (`LISTEN_FDS=1`, named `web`).
fn handing_over(fd: RawFd, args: &[&str]) -> Command {
    // LISTEN_PID must be the gateway's pid, known only after fork: a shell
    // sets it to its own pid ($$), then execs the gateway in its place.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_fcgi-gateway"))
        .args(args);
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: dup2 and fcntl are, and it
    // allocates nothing. `fd` is open in the parent (the caller holds it
    // until the child has started) and so in the child.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inherited_tcp_socket_is_served_and_not_passed_to_php_fpm() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    let mut cmd = handing_over(
        fd,
        &[
            "serve",
            "--root",
            &fixtures_dir().display().to_string(),
            "--fpm-children",
            "2",
            // The same address as the handed-over socket: served by it, not bound again.
            "--listen",
            &addr.to_string(),
        ],
    );
    let gw = Proc::spawn(&mut cmd);
    gw.wait_log("handed over by systemd", 1).await;
    gw.wait_log("serving", 1).await;

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = "GET /hello.php HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    tokio::io::AsyncWriteExt::write_all(&mut stream, req.as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut out)
        .await
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // The socket itself (the same in every process holding a copy): the
    // gateway keeps its own copies under other numbers than 3 (one per
    // serving thread), so it is found by what it is, not by number.
    let socket = fd_target(std::process::id(), &fd.to_string()).expect("our copy of the socket");
    drop(listener);

    let log = gw.lines();
    let handed = log.iter().find(|l| l.contains("handed over")).unwrap();
    assert!(
        handed.contains("fd=3") && handed.contains("web"),
        "{handed}"
    );
    let serving: Vec<_> = log.iter().filter(|l| l.contains(" serving ")).collect();
    assert_eq!(serving.len(), 1, "only the handed-over socket: {serving:?}");
    assert!(serving[0].contains("inherited=true"), "{serving:?}");

    // The embedded php-fpm inherits neither the variables nor the socket.
    let pid = gw.child.id();
    let holds = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .any(|e| fd_target(pid, &e.file_name().to_string_lossy()) == Some(socket.clone()))
    };
    assert!(holds(pid), "the gateway holds the handed-over socket");
    let fpm: Vec<u32> = children_of(pid);
    assert!(!fpm.is_empty(), "no php-fpm child");
    for child in fpm {
        let environ = std::fs::read(format!("/proc/{child}/environ")).unwrap();
        let environ = String::from_utf8_lossy(&environ);
        assert!(!environ.contains("LISTEN_"), "php-fpm got {environ}");
        for entry in std::fs::read_dir(format!("/proc/{child}/fd"))
            .unwrap()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert_ne!(fd_target(child, &name), Some(socket.clone()), "fd {name}");
        }
    }
    assert_eq!(gw.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_over_socket_that_does_not_listen_is_refused() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let root = fixtures_dir().display().to_string();
    let args = [
        "serve",
        "--root",
        &root,
        "--upstream",
        "unix:/nonexistent.sock",
    ];
    let mut gw = Proc::spawn(&mut handing_over(udp.as_raw_fd(), &args));
    let line = gw.wait_log("socket activation", 1).await;
    assert!(line.contains("fd 3") && line.contains("web"), "{line}");
    assert!(line.contains("not a stream socket"), "{line}");
    assert_eq!(gw.child.wait().unwrap().code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_socket_activate_hands_over_a_unix_socket() {
    let activate = Path::new("/usr/bin/systemd-socket-activate");
    assert!(
        activate.exists(),
        "systemd-socket-activate is missing: apt-get install systemd"
    );
    let fpm = support::shared_fpm();
    let dir = Dir::new();
    let sock = dir.sock("activated.sock");
    let gw = Proc::spawn(
        Command::new(activate)
            .arg("--listen")
            .arg(&sock)
            .arg("--fdname=web")
            .arg(env!("CARGO_BIN_EXE_fcgi-gateway"))
            .args(["serve", "--root", &dir.path.join("a").display().to_string()])
            .args(["--upstream", &format!("unix:{}", fpm.unix_socket.display())])
            .args(["--server-name", "cli-name"]),
    );
    wait::socket_listens(&sock, WAIT).await;
    // systemd-socket-activate starts the gateway at the first connection.
    assert_eq!(
        get(&sock, "/who.php").await,
        Ok((200, "root-a cli-name".to_owned()))
    );
    let handed = gw.wait_log("handed over by systemd", 1).await;
    assert!(handed.contains("web"), "{handed}");
    // The handed-over socket is logged before it is served: wait for that,
    // then count on the whole log that no other address was bound.
    gw.wait_log(" serving ", 1).await;
    let (code, log) = gw.stop_with_log();
    assert_eq!(code, Some(0));
    let serving: Vec<_> = log.iter().filter(|l| l.contains(" serving ")).collect();
    assert_eq!(
        serving.len(),
        1,
        "the default address is not bound: {serving:?}"
    );
    assert!(
        sock.exists(),
        "the socket file belongs to systemd and stays"
    );
}

#[test]
fn contrib_units_pass_systemd_analyze_verify() {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    assert!(
        analyze.exists(),
        "systemd-analyze is missing: apt-get install systemd"
    );
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    let dir = tempfile::tempdir().unwrap();
    // verify checks that ExecStart's binary exists: point it at the one built.
    for unit in ["fcgi-gateway.service", "fcgi-gateway.socket"] {
        let text = std::fs::read_to_string(contrib.join(unit)).unwrap();
        let text = text.replace(
            "/usr/local/bin/fcgi-gateway",
            env!("CARGO_BIN_EXE_fcgi-gateway"),
        );
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let service = std::fs::read_to_string(dir.path().join("fcgi-gateway.service")).unwrap();
    assert!(service.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    let out = Command::new(analyze)
        .arg("verify")
        .arg(dir.path().join("fcgi-gateway.socket"))
        .arg(dir.path().join("fcgi-gateway.service"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Unknown keys are only warned about, so any output is a failure.
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}
