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

/// An address that could not be bound. The OS error is part of the
/// message, not a `source`: printed with its chain it would show twice.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {cause}")]
pub struct BindError {
    pub addr: String,
    pub cause: io::Error,
}

/// Binds every configured address. A stale unix socket file (nobody
/// listening) is replaced; a live one is an error.
pub async fn bind(addrs: &[ListenAddr]) -> Result<Vec<Listener>, BindError> {
    bind_beside(addrs, addrs).await
}

/// Binds `addrs`, some of the `configured` ones. An IPv6 wildcard
/// (`[::]:P`) also takes IPv4 clients (dual-stack), unless an IPv4 address
/// with the same port is configured too: then it is bound IPv6-only (as
/// nginx binds `[::]`), or the two could not both be bound.
pub async fn bind_beside(
    addrs: &[ListenAddr],
    configured: &[ListenAddr],
) -> Result<Vec<Listener>, BindError> {
    let mut out = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let err = |cause| BindError {
            addr: addr.to_string(),
            cause,
        };
        match addr {
            ListenAddr::Tcp(sa) | ListenAddr::Http(sa) => {
                out.push(Listener::Tcp(bind_tcp(*sa, configured).await.map_err(err)?))
            }
            ListenAddr::Https(sa) => {
                out.push(Listener::Tls(bind_tcp(*sa, configured).await.map_err(err)?))
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

async fn bind_tcp(addr: SocketAddr, configured: &[ListenAddr]) -> io::Result<TcpListener> {
    if !needs_v6_only(addr, configured) {
        return TcpListener::bind(addr).await;
    }
    let socket = tokio::net::TcpSocket::new_v6()?;
    // What `TcpListener::bind` sets, plus IPV6_V6ONLY.
    socket.set_reuseaddr(true)?;
    socket2::SockRef::from(&socket).set_only_v6(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Whether `addr` is an IPv6 wildcard whose port an IPv4 address in
/// `configured` also listens on.
fn needs_v6_only(addr: SocketAddr, configured: &[ListenAddr]) -> bool {
    addr.is_ipv6()
        && addr.ip().is_unspecified()
        && configured.iter().any(|other| match other {
            ListenAddr::Tcp(o) | ListenAddr::Http(o) | ListenAddr::Https(o) => {
                o.is_ipv4() && o.port() == addr.port()
            }
            ListenAddr::Unix(_) => false,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `listen 0.0.0.0:P` beside `listen [::]:P`: both bind (the IPv6 one
    /// IPv6-only), and each takes its own family's clients. A dual-stack
    /// `[::]:P` would have failed with "address already in use".
    #[tokio::test]
    async fn ipv4_and_ipv6_wildcards_on_one_port_both_bind() {
        let port = std::net::TcpListener::bind("0.0.0.0:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let v4: SocketAddr = format!("0.0.0.0:{port}").parse().unwrap();
        let v6: SocketAddr = format!("[::]:{port}").parse().unwrap();
        // The IPv6 one first: the order must not matter.
        let listeners = bind(&[ListenAddr::Tcp(v6), ListenAddr::Tcp(v4)])
            .await
            .unwrap();
        let [Listener::Tcp(on_v6), Listener::Tcp(on_v4)] = &listeners[..] else {
            panic!("two TCP listeners expected: {listeners:?}");
        };
        let _client4 = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (_, from) = on_v4.accept().await.unwrap();
        assert!(from.is_ipv4(), "{from}");
        let _client6 = tokio::net::TcpStream::connect(("::1", port)).await.unwrap();
        let (_, from) = on_v6.accept().await.unwrap();
        assert!(from.is_ipv6(), "{from}");
    }

    /// Alone, `[::]:P` stays dual-stack: IPv4 clients reach it too.
    #[tokio::test]
    async fn an_ipv6_wildcard_alone_takes_ipv4_clients_too() {
        let v6: SocketAddr = "[::]:0".parse().unwrap();
        assert!(!needs_v6_only(v6, &[ListenAddr::Tcp(v6)]));
        let listeners = bind(&[ListenAddr::Tcp(v6)]).await.unwrap();
        let Some(Listener::Tcp(on_v6)) = listeners.first() else {
            panic!("a TCP listener expected");
        };
        let port = on_v6.local_addr().unwrap().port();
        let _client4 = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (_, from) = on_v6.accept().await.unwrap();
        assert_eq!(from.ip().to_canonical().to_string(), "127.0.0.1");
    }

    #[test]
    fn only_a_wildcard_beside_ipv4_on_its_port_is_ipv6_only() {
        let tcp = |s: &str| ListenAddr::Tcp(s.parse().unwrap());
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        let both = [tcp("0.0.0.0:80"), tcp("[::]:80")];
        assert!(needs_v6_only(at("[::]:80"), &both));
        assert!(!needs_v6_only(at("0.0.0.0:80"), &both));
        assert!(needs_v6_only(at("[::]:80"), &[tcp("127.0.0.1:80")]));
        assert!(!needs_v6_only(at("[::]:80"), &[tcp("0.0.0.0:8080")]));
        assert!(!needs_v6_only(at("[::1]:80"), &both));
    }
}
