//! The sockets clients connect to: binding TCP, TLS and unix listeners,
//! accepting on them, and moving an accepted socket to another thread's
//! event loop. Below `server` (which serves HTTP on them) and `admin`
//! (which serves its few paths on one).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixListener};
use tokio::runtime::Handle;
use tokio_util::either::Either;

use crate::cgi::params::Endpoint;
use crate::config::ListenAddr;

/// A bound listening socket.
#[derive(Debug)]
pub enum Listener {
    /// Plain HTTP/1.1, and HTTP/2 with prior knowledge (h2c).
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
    /// TLS; h2 or http/1.1 as ALPN chose. Needs a configured certificate.
    Tls(TcpListener),
}

impl Listener {
    /// How to reach it, for logs: `http://127.0.0.1:8080`,
    /// `https://127.0.0.1:8443` or `unix:/path`.
    pub fn describe(&self) -> String {
        let tcp = |scheme: &str, l: &TcpListener| match l.local_addr() {
            Ok(a) => format!("{scheme}://{a}"),
            Err(_) => format!("{scheme}://?"),
        };
        match self {
            Listener::Tcp(l) => tcp("http", l),
            Listener::Tls(l) => tcp("https", l),
            Listener::Unix { path, .. } => format!("unix:{}", path.display()),
        }
    }

    /// The bound address of a TCP or TLS listener (port 0 resolved).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) | Listener::Tls(l) => l.local_addr().ok(),
            Listener::Unix { .. } => None,
        }
    }
}

/// An address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: String,
    #[source]
    pub source: io::Error,
}

/// Binds every configured address. A stale unix socket file (nobody
/// listening) is replaced; a live one is an error.
pub async fn bind(addrs: &[ListenAddr]) -> Result<Vec<Listener>, BindError> {
    let mut out = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let err = |source| BindError {
            addr: addr.to_string(),
            source,
        };
        match addr {
            ListenAddr::Tcp(sa) | ListenAddr::Http(sa) => {
                out.push(Listener::Tcp(TcpListener::bind(sa).await.map_err(err)?))
            }
            ListenAddr::Https(sa) => {
                out.push(Listener::Tls(TcpListener::bind(sa).await.map_err(err)?))
            }
            ListenAddr::Unix(path) => {
                if path.exists() && tokio::net::UnixStream::connect(path).await.is_err() {
                    let _ = std::fs::remove_file(path);
                }
                let listener = UnixListener::bind(path).map_err(err)?;
                out.push(Listener::Unix {
                    listener,
                    path: path.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// An accepted client socket, before hyper or TLS takes it.
#[derive(Debug)]
pub(crate) enum Accepted {
    Tcp(tokio::net::TcpStream),
    /// To be served over TLS.
    Tls(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Accepted {
    /// Moves it from the accepting thread's event loop to `worker`'s.
    pub(crate) fn move_to(self, worker: &Handle) -> io::Result<Accepted> {
        Ok(match self {
            Accepted::Tcp(s) => Accepted::Tcp(move_tcp(s, worker)?),
            Accepted::Tls(s) => Accepted::Tls(move_tcp(s, worker)?),
            Accepted::Unix(s) => {
                let detached = s.into_std()?;
                let _there = worker.enter();
                Accepted::Unix(tokio::net::UnixStream::from_std(detached)?)
            }
        })
    }
}

fn move_tcp(s: tokio::net::TcpStream, worker: &Handle) -> io::Result<tokio::net::TcpStream> {
    let detached = s.into_std()?;
    // Registered with the event loop of the runtime entered here.
    let _there = worker.enter();
    tokio::net::TcpStream::from_std(detached)
}

/// An accepted client connection over TCP or a unix socket.
pub(crate) type ClientStream = Either<tokio::net::TcpStream, tokio::net::UnixStream>;
/// Either kind of accepted stream, as hyper IO.
pub(crate) type ClientIo = TokioIo<ClientStream>;

/// Accepts a connection to serve without TLS. A `Tls` listener is accepted
/// as plain TCP here: only the admin listener takes this path, and the
/// config refuses `https://` for it.
pub(crate) async fn accept(listener: &Listener) -> std::io::Result<(ClientIo, Endpoint, Endpoint)> {
    let (accepted, remote, local) = accept_any(listener).await?;
    let io = match accepted {
        Accepted::Tcp(s) | Accepted::Tls(s) => TokioIo::new(Either::Left(s)),
        Accepted::Unix(s) => TokioIo::new(Either::Right(s)),
    };
    Ok((io, remote, local))
}

/// Accepts a connection, to be served with TLS when the listener is a TLS one.
pub(crate) async fn accept_any(
    listener: &Listener,
) -> std::io::Result<(Accepted, Endpoint, Endpoint)> {
    match listener {
        Listener::Tls(l) => {
            let (s, remote, local) = accept_tcp(l).await?;
            Ok((Accepted::Tls(s), remote, local))
        }
        Listener::Tcp(l) => {
            let (s, remote, local) = accept_tcp(l).await?;
            Ok((Accepted::Tcp(s), remote, local))
        }
        Listener::Unix { listener, .. } => {
            let (s, _) = listener.accept().await?;
            Ok((Accepted::Unix(s), Endpoint::Unix, Endpoint::Unix))
        }
    }
}

async fn accept_tcp(
    l: &TcpListener,
) -> std::io::Result<(tokio::net::TcpStream, Endpoint, Endpoint)> {
    let (s, peer) = l.accept().await?;
    let _ = s.set_nodelay(true);
    let local = s.local_addr()?;
    Ok((s, Endpoint::Tcp(peer), Endpoint::Tcp(local)))
}
