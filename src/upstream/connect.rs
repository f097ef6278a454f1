//! How the pool reaches its upstream (`Connect`): dialing, and when php-fpm
//! runs on this host, reading its listening socket's accept queue (the
//! exact backlog signal). A seam: the pool's unit tests connect it to an
//! in-memory php-fpm instead.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};

use super::conn::{self, Stream};
use super::listen_queue::{ListenQueue, Listener};
use super::UpstreamAddr;

/// A boxed future, as the trait returns (dialing is once per connection,
/// so the allocation does not matter).
pub type Dialing<'a> = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send + 'a>>;

/// Opens connections to one upstream, and says how many connections wait
/// in its accept queue when that can be seen from here.
pub trait Connect: Send + Sync + std::fmt::Debug + 'static {
    /// Opens one new connection (the pool applies the connect timeout).
    fn connect(&self) -> Dialing<'_>;

    /// Connections waiting in the upstream's listen backlog for a worker
    /// to accept them, or None when this host cannot see it (a remote
    /// host, another network namespace, or the upstream is down).
    fn backlog(&self) -> Option<usize>;

    /// Whether `backlog` can answer at all (for logs and the README's promise).
    fn sees_backlog(&self) -> bool;
}

/// The real connector: `unix:` or `tcp:` as configured.
#[derive(Debug)]
pub struct AddrConnector {
    addr: UpstreamAddr,
    /// The accept-queue reader: made at once for a unix socket, after the
    /// first connect for tcp (once we know the address it resolved to,
    /// and only when that address is this host's own). None inside: not local.
    queue: OnceLock<Option<Mutex<ListenQueue>>>,
}

impl AddrConnector {
    pub fn new(addr: UpstreamAddr) -> AddrConnector {
        let queue = OnceLock::new();
        if let UpstreamAddr::Unix(path) = &addr {
            let _ = queue.set(open_queue(Listener::Unix(path.clone())));
        }
        AddrConnector { addr, queue }
    }

    /// A tcp connection reached `peer`: if that is this host, its listener's
    /// queue can be read from here.
    fn learn_peer(&self, peer: io::Result<SocketAddr>) {
        if self.queue.get().is_some() {
            return;
        }
        let probe = match peer {
            Ok(peer) if is_this_host(peer.ip()) => open_queue(Listener::Tcp(peer)),
            _ => None,
        };
        if probe.is_some() {
            tracing::debug!(upstream = %self.addr, "php-fpm's listen backlog is visible: the pool sizes itself by it");
        }
        let _ = self.queue.set(probe);
    }
}

fn open_queue(listener: Listener) -> Option<Mutex<ListenQueue>> {
    match ListenQueue::new(listener) {
        Ok(q) => Some(Mutex::new(q)),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read listen backlogs (sock_diag); the pool sizes itself by timing");
            None
        }
    }
}

/// Whether `ip` is an address of this host: loopback, or one we can bind.
fn is_this_host(ip: IpAddr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

impl Connect for AddrConnector {
    fn connect(&self) -> Dialing<'_> {
        Box::pin(async move {
            let stream = conn::open(&self.addr).await?;
            if let Stream::Tcp(s) = &stream {
                self.learn_peer(s.peer_addr());
            }
            Ok(stream)
        })
    }

    fn backlog(&self) -> Option<usize> {
        let queue = self.queue.get()?.as_ref()?;
        let mut queue = queue.lock().ok()?;
        match queue.query() {
            Ok(Some(len)) => usize::try_from(len.waiting).ok(),
            Ok(None) | Err(_) => None,
        }
    }

    fn sees_backlog(&self) -> bool {
        self.queue.get().is_some_and(|q| q.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_own_addresses_are_this_host() {
        assert!(is_this_host("127.0.0.1".parse().unwrap()));
        assert!(is_this_host("::1".parse().unwrap()));
        // TEST-NET-1 (RFC 5737) is never assigned to a host.
        assert!(!is_this_host("192.0.2.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn a_local_unix_listener_shows_its_backlog() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fpm.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let connector = AddrConnector::new(UpstreamAddr::Unix(path));
        assert!(connector.sees_backlog());
        assert_eq!(connector.backlog(), Some(0));
        let _a = connector.connect().await.unwrap();
        let _b = connector.connect().await.unwrap();
        assert_eq!(connector.backlog(), Some(2));
    }

    #[tokio::test]
    async fn a_local_tcp_listener_shows_its_backlog_after_the_first_connect() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connector = AddrConnector::new(UpstreamAddr::Tcp {
            host: "localhost".into(),
            port,
        });
        assert_eq!(connector.backlog(), None, "unknown before a connect");
        let _a = connector.connect().await.unwrap();
        assert!(connector.sees_backlog());
        let mut seen = None;
        for _ in 0..100 {
            seen = connector.backlog();
            if seen == Some(1) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(seen, Some(1));
    }
}
