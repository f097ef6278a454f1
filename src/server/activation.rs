//! Socket activation: listening sockets handed over by systemd (or
//! `systemd-socket-activate`) per the `sd_listen_fds` protocol: when
//! `LISTEN_PID` is our pid, `LISTEN_FDS=N` sockets are open at fds 3..3+N,
//! optionally named by `LISTEN_FDNAMES` (colon-separated). TCP and unix
//! stream sockets are served like `--listen` ones; the socket stays with
//! systemd when we exit (its file is not removed).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, Socket, Type};

use super::Listener;

/// The first fd of the protocol (after stdin, stdout, stderr).
const FIRST_FD: RawFd = 3;
/// More than any real unit passes; keeps `3 + N` far from overflow.
const MAX_FDS: u32 = 4096;

/// One listening socket handed over, not yet registered with tokio.
#[derive(Debug)]
pub struct Inherited {
    pub fd: RawFd,
    /// Its `FileDescriptorName=` (systemd names unnamed ones after the unit).
    pub name: Option<String>,
    socket: Socket,
}

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("socket activation: {var}=`{value}`: {reason}")]
    Env {
        var: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("socket activation: fd {fd}{}: {reason}", named(name))]
    Fd {
        fd: RawFd,
        name: Option<String>,
        reason: String,
    },
}

fn named(name: &Option<String>) -> String {
    name.as_ref().map_or(String::new(), |n| format!(" (`{n}`)"))
}

static TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes the sockets handed to this process, if any; none when `LISTEN_PID`
/// is unset or names another process. The `LISTEN_*` variables are removed
/// either way and the sockets get `FD_CLOEXEC`, so children (the embedded
/// php-fpm) inherit neither. Only the first call takes anything.
///
/// It edits the environment, so call it while the process has one thread
/// (before the tokio runtime starts).
pub fn take_inherited() -> Result<Vec<Inherited>, ActivationError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let Some(pid) = pid else {
        return Ok(Vec::new());
    };
    let env_error = |var, value: &str, reason| ActivationError::Env {
        var,
        value: value.to_owned(),
        reason,
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| env_error("LISTEN_PID", &pid, "not a process id"))?;
    if pid != std::process::id() || TAKEN.swap(true, Ordering::AcqRel) {
        return Ok(Vec::new());
    }
    let text = fds.unwrap_or_default();
    let count: u32 = text
        .trim()
        .parse()
        .map_err(|_| env_error("LISTEN_FDS", &text, "not a count"))?;
    if count > MAX_FDS {
        return Err(env_error("LISTEN_FDS", &text, "too many"));
    }
    let names: Vec<String> = names
        .map(|n| n.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    (0..count)
        .map(|i| {
            // `i < MAX_FDS`, so the sum stays far below RawFd::MAX.
            let fd = FIRST_FD + i as RawFd;
            // Names are only for logs; a list of the wrong length is ignored.
            let name = (names.len() == count as usize).then(|| names[i as usize].clone());
            adopt(fd, name)
        })
        .collect()
}

fn adopt(fd: RawFd, name: Option<String>) -> Result<Inherited, ActivationError> {
    let fail = |reason: String| ActivationError::Fd {
        fd,
        name: name.clone(),
        reason,
    };
    // SAFETY: fcntl with F_GETFD/F_SETFD takes and returns integers only and
    // touches no memory of ours; on a closed fd it fails with EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(fail(format!("not open ({})", io::Error::last_os_error())));
    }
    // SAFETY: as above; only the close-on-exec bit of our own fd changes.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(fail(format!(
            "cannot set close-on-exec ({})",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: `Socket` takes ownership of the fd and closes it when dropped,
    // which is sound when the fd is open and nothing else owns it:
    // - it is open: F_GETFD just succeeded;
    // - it is ours: LISTEN_PID named this process, and by the protocol fds
    //   3..3+LISTEN_FDS were left open across exec for it; since they were
    //   open from the start, nothing in this process could have opened
    //   another file under these numbers, and no code here adopts or closes
    //   fds it did not open;
    // - it is taken once: `TAKEN` lets only one call past, each number in
    //   3..3+N is visited once, and the variables are gone for any later reader.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    let check = || -> io::Result<Option<&'static str>> {
        if socket.r#type()? != Type::STREAM {
            return Ok(Some("not a stream socket (ListenStream= is needed)"));
        }
        if !socket.is_listener()? {
            return Ok(Some(
                "not a listening socket (use Accept=no in the .socket unit)",
            ));
        }
        let domain = socket.domain()?;
        if domain != Domain::IPV4 && domain != Domain::IPV6 && domain != Domain::UNIX {
            return Ok(Some("neither TCP nor a unix socket"));
        }
        socket.set_nonblocking(true)?;
        Ok(None)
    };
    match check() {
        Ok(None) => Ok(Inherited { fd, name, socket }),
        Ok(Some(reason)) => Err(fail(reason.to_owned())),
        Err(e) => Err(fail(e.to_string())),
    }
}

impl Inherited {
    /// Registers the socket with tokio; needs a runtime.
    pub fn into_listener(self) -> io::Result<Listener> {
        let Inherited { fd, name, socket } = self;
        let listener = if socket.domain()? == Domain::UNIX {
            let path = match socket.local_addr()?.as_pathname() {
                Some(p) => p.to_owned(),
                // Abstract or unnamed: no file, nothing a config could name.
                None => PathBuf::from(format!("(inherited fd {fd})")),
            };
            let std = std::os::unix::net::UnixListener::from(OwnedFd::from(socket));
            Listener::Unix {
                listener: tokio::net::UnixListener::from_std(std)?,
                path,
            }
        } else {
            let std = std::net::TcpListener::from(socket);
            Listener::Tcp(tokio::net::TcpListener::from_std(std)?)
        };
        tracing::info!(fd, name = name.as_deref().unwrap_or(""), listen = %listener.describe(), "listening socket handed over by systemd");
        Ok(listener)
    }
}
