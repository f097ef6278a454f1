//! Names that stand for several php-fpm hosts: `tcp:name:port` whose name
//! has several addresses is one upstream per address, looked up again every
//! `resolve-interval` (a Kubernetes headless Service lists one address per
//! ready php-fpm replica). `Resolve` is the seam tests replace.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;

use super::super::UpstreamAddr;

pub type Lookup = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// Looks up a host name's addresses.
pub trait Resolve: Send + Sync + std::fmt::Debug {
    fn lookup(&self, host: &str, port: u16) -> Lookup;
}

/// The system's resolver (getaddrinfo, through tokio's blocking pool).
#[derive(Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup(&self, host: &str, port: u16) -> Lookup {
        let target = format!("{host}:{port}");
        Box::pin(async move {
            let found = tokio::net::lookup_host(target).await?;
            Ok(found.map(|a: SocketAddr| a.ip()).collect())
        })
    }
}

/// The name to look up, when `addr` is a tcp address written with a host
/// name. IP literals need no lookup; neither does `localhost`, which names
/// this host whatever addresses it has (php-fpm listens on one of them).
pub(super) fn name_of(addr: &UpstreamAddr) -> Option<(&str, u16)> {
    match addr {
        UpstreamAddr::Tcp { host, port }
            if host.parse::<IpAddr>().is_err() && !host.eq_ignore_ascii_case("localhost") =>
        {
            Some((host.as_str(), *port))
        }
        _ => None,
    }
}

/// The tcp address of one of a name's addresses.
pub(super) fn address(ip: IpAddr, port: u16) -> UpstreamAddr {
    UpstreamAddr::Tcp {
        host: ip.to_string(),
        port,
    }
}

/// Sorted and without repeats (getaddrinfo lists an address once per
/// socket type), so two lookups compare equal when the set is the same.
pub(super) fn distinct(mut ips: Vec<IpAddr>) -> Vec<IpAddr> {
    ips.sort();
    ips.dedup();
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_names_are_looked_up() {
        let name = |s: &str| name_of(&s.parse().unwrap()).map(|(h, p)| (h.to_owned(), p));
        assert_eq!(
            name("tcp:php-fpm.default.svc:9000"),
            Some(("php-fpm.default.svc".to_owned(), 9000))
        );
        assert_eq!(name("tcp:10.0.0.1:9000"), None);
        assert_eq!(name("tcp:[::1]:9000"), None);
        assert_eq!(name("tcp:localhost:9000"), None);
        assert_eq!(name("unix:/run/php.sock"), None);
    }

    #[test]
    fn addresses_are_written_as_users_would() {
        assert_eq!(
            address("10.0.0.7".parse().unwrap(), 9000).to_string(),
            "tcp:10.0.0.7:9000"
        );
        assert_eq!(
            address("fd00::7".parse().unwrap(), 9000).to_string(),
            "tcp:[fd00::7]:9000"
        );
    }

    #[test]
    fn repeats_go() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            distinct(vec![ip("10.0.0.2"), ip("10.0.0.1"), ip("10.0.0.2")]),
            vec![ip("10.0.0.1"), ip("10.0.0.2")]
        );
    }
}
