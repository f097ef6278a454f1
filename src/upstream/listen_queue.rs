//! The accept queue of php-fpm's listening socket, read from the kernel over
//! sock_diag netlink (what `ss -l` shows as Recv-Q / Send-Q on a LISTEN socket).
//! It is the exact backlog signal for the pool: how many of the connections to
//! php-fpm wait for a worker to accept them, with no php-fpm configuration.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Duration;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::{
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{self, nlas::Nla as InetNla},
    unix, SockDiagMessage,
};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket};

/// Where to look: a unix socket path, or a local TCP port (any local address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listener {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

/// The accept queue of one listening socket: connections waiting for accept(), and the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLen {
    pub waiting: u32,
    pub limit: u32,
}

impl QueueLen {
    fn add(acc: &mut Option<QueueLen>, waiting: u32, limit: u32) {
        let q = acc.get_or_insert(QueueLen {
            waiting: 0,
            limit: 0,
        });
        q.waiting = q.waiting.saturating_add(waiting);
        q.limit = q.limit.saturating_add(limit);
    }
}

/// A reusable prober: holds one NETLINK_SOCK_DIAG socket (opened in `new`,
/// reopened after a failure). Blocking but fast (the kernel answers in the
/// send call's context); callers may call it from async code.
///
/// Several matching listeners (SO_REUSEPORT groups, or the same unix path
/// bound twice after an unlink) are summed, waiting and limit alike. For TCP,
/// listeners on exactly the given IP win over wildcard ones (as the kernel's
/// lookup does); an unspecified IP (`0.0.0.0`, `::`) matches any listener on
/// the port. Unix names are compared as UTF-8 (how the crate decodes them).
#[derive(Debug)]
pub struct ListenQueue {
    listener: Listener,
    socket: Option<Socket>,
    seq: u32,
    buf: Vec<u8>,
}

/// A dump is answered before `send` returns; this only bounds a kernel bug.
const RECV_TIMEOUT: Duration = Duration::from_secs(1);

fn open_socket() -> io::Result<Socket> {
    // netlink-sys opens it with SOCK_CLOEXEC: not inherited by php-fpm or CGIs.
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    socket2::SockRef::from(&socket).set_read_timeout(Some(RECV_TIMEOUT))?;
    Ok(socket)
}

impl ListenQueue {
    pub fn new(listener: Listener) -> io::Result<ListenQueue> {
        Ok(ListenQueue {
            listener,
            socket: Some(open_socket()?),
            seq: 0,
            buf: Vec::with_capacity(32 * 1024),
        })
    }

    /// Ok(Some(q)) when the listening socket was found; Ok(None) when no such listener exists
    /// (php-fpm down, or not on this host / not in this network namespace); Err on netlink failure.
    pub fn query(&mut self) -> io::Result<Option<QueueLen>> {
        let result = match self.listener.clone() {
            Listener::Unix(path) => self.query_unix(path),
            Listener::Tcp(addr) => self.query_tcp(addr),
        };
        if result.is_err() {
            // A half-read dump may be left queued; start the next query afresh.
            self.socket = None;
        }
        result
    }

    fn query_unix(&mut self, path: PathBuf) -> io::Result<Option<QueueLen>> {
        let given = path.as_os_str().as_bytes().to_vec();
        // Canonicalized at each query: php-fpm may create the socket after us.
        let canonical = std::fs::canonicalize(&path)
            .ok()
            .map(|p| p.into_os_string().into_vec())
            .filter(|c| *c != given);
        let request = SockDiagMessage::UnixRequest(unix::UnixRequest {
            state_flags: unix::StateFlags::LISTEN,
            inode: 0,
            show_flags: unix::ShowFlags::NAME | unix::ShowFlags::RQLEN,
            cookie: [0; 8],
        });
        let mut found = None;
        self.dump(request, |message| {
            let SockDiagMessage::UnixResponse(response) = message else {
                return;
            };
            let Some(name) = response.name() else { return };
            let name = name.as_bytes();
            if name == given || canonical.as_deref() == Some(name) {
                if let (Some(waiting), Some(limit)) = (
                    response.number_of_pending_connection(),
                    response.max_number_of_pending_connection(),
                ) {
                    QueueLen::add(&mut found, waiting, limit);
                }
            }
        })?;
        Ok(found)
    }

    fn query_tcp(&mut self, addr: SocketAddr) -> io::Result<Option<QueueLen>> {
        let (mut exact, mut wildcard) = (None, None);
        // A v4 address is also served by a dual-stack `[::]:port` listener.
        let families: &[u8] = match addr {
            SocketAddr::V4(_) => &[AF_INET, AF_INET6],
            SocketAddr::V6(_) => &[AF_INET6],
        };
        for &family in families {
            let mut socket_id = match family {
                AF_INET => inet::SocketId::new_v4(),
                _ => inet::SocketId::new_v6(),
            };
            // The kernel filters the listening hash by this port.
            socket_id.source_port = addr.port();
            let request = SockDiagMessage::InetRequest(inet::InetRequest {
                family,
                protocol: IPPROTO_TCP,
                extensions: inet::ExtensionFlags::empty(),
                states: inet::StateFlags::LISTEN,
                socket_id,
            });
            let result = self.dump(request, |message| {
                let SockDiagMessage::InetResponse(response) = message else {
                    return;
                };
                let header = &response.header;
                if header.socket_id.source_port != addr.port() {
                    return;
                }
                let v6only = response
                    .nlas
                    .iter()
                    .any(|nla| matches!(nla, InetNla::SkV6Only(true)));
                let slot = match tcp_match(addr.ip(), header.socket_id.source_address, v6only) {
                    Some(Match::Exact) => &mut exact,
                    Some(Match::Wildcard) => &mut wildcard,
                    None => return,
                };
                QueueLen::add(slot, header.recv_queue, header.send_queue);
            });
            // The dual-stack pass is best effort: a host without IPv6 may refuse it.
            if family == AF_INET || addr.is_ipv6() {
                result?;
            }
        }
        Ok(exact.or(wildcard))
    }

    /// Sends one dump request and feeds every response of this request to
    /// `visit`, until NLMSG_DONE; an NLMSG_ERROR becomes the error.
    fn dump(
        &mut self,
        request: SockDiagMessage,
        mut visit: impl FnMut(SockDiagMessage),
    ) -> io::Result<()> {
        let socket = match self.socket.take() {
            Some(socket) => socket,
            None => open_socket()?,
        };
        let socket = self.socket.insert(socket);
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(request));
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        socket.send(&out, 0)?;

        loop {
            // Learn the datagram's size first, so that none is ever truncated.
            self.buf.clear();
            let size = socket.recv(&mut self.buf, libc::MSG_PEEK | libc::MSG_TRUNC)?;
            self.buf.clear();
            self.buf.reserve(size);
            let size = socket.recv(&mut self.buf, 0)?;
            let mut datagram = &self.buf[..size.min(self.buf.len())];
            while !datagram.is_empty() {
                let len = NetlinkBuffer::new_checked(datagram)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
                    .length() as usize;
                // Messages are 4-byte aligned within a datagram.
                let (message, rest) = datagram.split_at(len);
                datagram = rest.get(len.next_multiple_of(4) - len..).unwrap_or(&[]);
                // A message that does not decode (a unix name that is not UTF-8)
                // cannot be the listener asked for: skip it.
                let Ok(message) = NetlinkMessage::<SockDiagMessage>::deserialize(message) else {
                    continue;
                };
                if message.header.sequence_number != self.seq {
                    continue; // left over from an earlier, failed query
                }
                match message.payload {
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                    NetlinkPayload::InnerMessage(inner) => visit(inner),
                    _ => {}
                }
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Match {
    Exact,
    Wildcard,
}

/// Whether a listener bound on `local` takes connections to `wanted`.
fn tcp_match(wanted: IpAddr, local: IpAddr, v6only: bool) -> Option<Match> {
    let local_v4 = match local {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    };
    if wanted.is_unspecified() || local == wanted || local_v4 == Some(wanted) {
        Some(Match::Exact)
    } else if local.is_unspecified()
        && (local.is_ipv4() == wanted.is_ipv4() || (wanted.is_ipv4() && !v6only))
    {
        Some(Match::Wildcard)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::time::Instant;

    use super::*;

    fn probe(listener: Listener) -> Option<QueueLen> {
        ListenQueue::new(listener).unwrap().query().unwrap()
    }

    /// Queries until `waiting` is `want` (TCP handshakes finish in softirq), for up to ~1 s.
    fn settle(probe: &mut ListenQueue, want: u32) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let waiting = probe.query().unwrap().expect("listener found").waiting;
            if waiting == want || Instant::now() > deadline {
                return waiting;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn unix_listener_queue() {
        let dir = tempfile::tempdir().unwrap();
        // Enough other listeners (long names) that the dump spans several datagrams.
        let _others: Vec<_> = (0..400)
            .map(|i| UnixListener::bind(dir.path().join(format!("{i:0>80}.sock"))).unwrap())
            .collect();
        let path = dir.path().join("fpm.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let _clients: Vec<_> = (0..3)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let mut probe_it = ListenQueue::new(Listener::Unix(path.clone())).unwrap();
        let q = probe_it.query().unwrap().unwrap();
        assert_eq!(q.waiting, 3);
        assert!(q.limit >= 3, "{q:?}");
        let _accepted = listener.accept().unwrap();
        assert_eq!(probe_it.query().unwrap().unwrap().waiting, 2);

        // The same socket through a path that is not canonical.
        let indirect = dir.path().join(".").join("fpm.sock");
        assert_eq!(probe(Listener::Unix(indirect)).unwrap().waiting, 2);
        assert_eq!(probe(Listener::Unix(dir.path().join("absent.sock"))), None);
        drop(listener); // the socket file stays, the listener is gone
        assert_eq!(probe_it.query().unwrap(), None);
    }

    #[test]
    fn tcp_listener_queue() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut probe_it = ListenQueue::new(Listener::Tcp(addr)).unwrap();
        assert_eq!(settle(&mut probe_it, 0), 0);
        let _clients: Vec<_> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        assert_eq!(settle(&mut probe_it, 3), 3);
        assert!(probe_it.query().unwrap().unwrap().limit >= 3);
        let _accepted = listener.accept().unwrap();
        assert_eq!(settle(&mut probe_it, 2), 2);
        drop(listener); // now nothing listens on that port
        assert_eq!(probe_it.query().unwrap(), None);
    }

    #[test]
    fn tcp_wildcard_listeners_found_by_loopback() {
        let listener = TcpListener::bind("0.0.0.0:0").unwrap();
        let loopback = SocketAddr::from(([127, 0, 0, 1], listener.local_addr().unwrap().port()));
        let _client = TcpStream::connect(loopback).unwrap();
        let mut probe_it = ListenQueue::new(Listener::Tcp(loopback)).unwrap();
        assert_eq!(settle(&mut probe_it, 1), 1);

        // Dual-stack `[::]:port` (the Linux default, net.ipv6.bindv6only=0), if IPv6 is up.
        let Ok(listener6) = TcpListener::bind("[::]:0") else {
            return;
        };
        let loopback = SocketAddr::from(([127, 0, 0, 1], listener6.local_addr().unwrap().port()));
        let _client = TcpStream::connect(loopback).unwrap();
        let mut probe_it = ListenQueue::new(Listener::Tcp(loopback)).unwrap();
        assert_eq!(settle(&mut probe_it, 1), 1);
    }

    #[test]
    fn tcp_matching_rules() {
        for (wanted, local, v6only, expected) in [
            ("127.0.0.1", "127.0.0.1", false, Some(Match::Exact)),
            ("127.0.0.1", "::ffff:127.0.0.1", false, Some(Match::Exact)),
            ("0.0.0.0", "10.0.0.1", false, Some(Match::Exact)),
            ("127.0.0.1", "0.0.0.0", false, Some(Match::Wildcard)),
            ("127.0.0.1", "::", false, Some(Match::Wildcard)),
            ("::1", "::", true, Some(Match::Wildcard)),
            ("127.0.0.1", "::", true, None),
            ("127.0.0.1", "10.0.0.1", false, None),
        ] {
            let got = tcp_match(wanted.parse().unwrap(), local.parse().unwrap(), v6only);
            assert_eq!(got, expected, "{wanted} on {local} v6only={v6only}");
        }
    }
}
