//! Upstream addresses as users write them: `unix:/path/to.sock` or `tcp:host:port`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where php-fpm (or any FastCGI server) listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpstreamAddr {
    Unix(PathBuf),
    /// Host name or IP literal (IPv6 in brackets) and port; resolved at connect time.
    Tcp {
        host: String,
        port: u16,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddrError {
    #[error("`{0}`: expected `unix:/path/to.sock` or `tcp:host:port`")]
    Scheme(String),
    #[error("`{0}`: the unix socket path is empty")]
    EmptyPath(String),
    #[error("`{0}`: expected `tcp:host:port` with a port number 1-65535")]
    Port(String),
    #[error("`{0}`: the host is empty")]
    EmptyHost(String),
}

impl UpstreamAddr {
    /// `"unix"` or `"tcp"`, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamAddr::Unix(_) => "unix",
            UpstreamAddr::Tcp { .. } => "tcp",
        }
    }
}

impl UpstreamAddr {
    /// A unix socket, or TCP to `localhost` or a loopback address: not
    /// reachable from other hosts.
    pub fn is_local(&self) -> bool {
        match self {
            UpstreamAddr::Unix(_) => true,
            UpstreamAddr::Tcp { host, .. } => {
                host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        }
    }
}

impl FromStr for UpstreamAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(AddrError::EmptyPath(s.to_owned()));
            }
            return Ok(UpstreamAddr::Unix(PathBuf::from(path)));
        }
        let Some(rest) = s.strip_prefix("tcp:") else {
            return Err(AddrError::Scheme(s.to_owned()));
        };
        let (host, port) = split_host_port(rest).ok_or_else(|| AddrError::Port(s.to_owned()))?;
        if host.is_empty() {
            return Err(AddrError::EmptyHost(s.to_owned()));
        }
        let port: u16 = port.parse().map_err(|_| AddrError::Port(s.to_owned()))?;
        if port == 0 {
            return Err(AddrError::Port(s.to_owned()));
        }
        Ok(UpstreamAddr::Tcp {
            host: host.to_owned(),
            port,
        })
    }
}

/// Splits `host:port` and `[v6]:port`; the brackets are removed from the host.
pub(crate) fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = s.rsplit_once(':')?;
    if host.contains(':') {
        // An IPv6 literal without brackets is ambiguous.
        return None;
    }
    Some((host, port))
}

impl fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            UpstreamAddr::Tcp { host, port } if host.contains(':') => {
                write!(f, "tcp:[{host}]:{port}")
            }
            UpstreamAddr::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_kinds() {
        assert_eq!(
            "unix:/run/php/fpm.sock".parse::<UpstreamAddr>(),
            Ok(UpstreamAddr::Unix("/run/php/fpm.sock".into()))
        );
        assert_eq!(
            "tcp:127.0.0.1:9000".parse::<UpstreamAddr>(),
            Ok(UpstreamAddr::Tcp {
                host: "127.0.0.1".into(),
                port: 9000
            })
        );
        assert_eq!(
            "tcp:[::1]:9000".parse::<UpstreamAddr>(),
            Ok(UpstreamAddr::Tcp {
                host: "::1".into(),
                port: 9000
            })
        );
        assert_eq!(
            "tcp:[::1]:9000"
                .parse::<UpstreamAddr>()
                .map(|a| a.to_string()),
            Ok("tcp:[::1]:9000".to_owned())
        );
    }

    #[test]
    fn knows_which_addresses_stay_on_this_host() {
        for local in [
            "unix:/x.sock",
            "tcp:127.0.0.1:9000",
            "tcp:[::1]:9000",
            "tcp:localhost:9000",
        ] {
            assert!(local.parse::<UpstreamAddr>().unwrap().is_local(), "{local}");
        }
        for remote in ["tcp:192.0.2.1:9000", "tcp:php:9000"] {
            assert!(
                !remote.parse::<UpstreamAddr>().unwrap().is_local(),
                "{remote}"
            );
        }
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in [
            "",
            "127.0.0.1:9000",
            "unix:",
            "tcp:127.0.0.1",
            "tcp:127.0.0.1:0",
            "tcp:127.0.0.1:70000",
            "tcp::9000",
            "tcp:::1:9000",
            "http://x",
        ] {
            assert!(bad.parse::<UpstreamAddr>().is_err(), "{bad} accepted");
        }
    }
}
