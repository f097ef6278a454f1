//! Value types of settings that other layers act on: who may forward a
//! client's address (`TrustedProxy`, `RealIpHeader`) and how access lines
//! are written (`AccessLogFormat`). Defined here, below `server`, so the
//! config depends on nothing above it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// A `--trusted-proxy` value: a network (`10.0.0.0/8`, `::1`) or `unix`
/// (clients of the gateway's unix-socket listeners, i.e. a local proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustedProxy {
    /// Host bits cleared: `10.1.2.3/8` means 10.0.0.0/8.
    Net(IpNet),
    Unix,
}

impl FromStr for TrustedProxy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("unix") {
            return Ok(TrustedProxy::Unix);
        }
        let bad =
            || format!("`{s}`: expected a CIDR such as 10.0.0.0/8 or fd00::/8, an IP, or unix");
        let net = match s.split_once('/') {
            // Digits only after the slash: a sign or space is not a prefix length.
            Some((_, prefix))
                if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) =>
            {
                return Err(bad())
            }
            Some(_) => s.parse::<IpNet>().map_err(|_| bad())?,
            None => IpNet::from(s.parse::<IpAddr>().map_err(|_| bad())?),
        };
        Ok(TrustedProxy::Net(net.trunc()))
    }
}

impl fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustedProxy::Net(net) => write!(f, "{net}"),
            TrustedProxy::Unix => f.write_str("unix"),
        }
    }
}

impl TrustedProxy {
    /// Whether a TCP peer at `ip` is this proxy. IPv4 peers of a dual-stack
    /// listener arrive as `::ffff:a.b.c.d` and match the IPv4 network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match self {
            TrustedProxy::Net(net) => net.contains(&ip),
            TrustedProxy::Unix => false,
        }
    }
}

/// Which header carries the client address (and scheme).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RealIpHeader {
    /// `X-Forwarded-For` with `X-Forwarded-Proto`: what most proxies send.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=...;proto=...`.
    Forwarded,
}

impl FromStr for RealIpHeader {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(RealIpHeader::XForwardedFor),
            "forwarded" => Ok(RealIpHeader::Forwarded),
            _ => Err(format!("`{s}`: expected x-forwarded-for or forwarded")),
        }
    }
}

/// How access lines are written (`--access-log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// `remote - - [time] "METHOD URI PROTO" status bytes "referer" "user-agent"`
    /// then the request time and the upstream time in seconds.
    #[default]
    Combined,
    /// One JSON object with named fields.
    Json,
}

impl FromStr for AccessLogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "combined" => Ok(AccessLogFormat::Combined),
            "json" => Ok(AccessLogFormat::Json),
            _ => Err(format!("`{s}`: expected combined or json")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> TrustedProxy {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_mask_and_match() {
        assert_eq!(net("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("127.0.0.1").to_string(), "127.0.0.1/32");
        assert_eq!(net("2001:db8::1/32").to_string(), "2001:db8::/32");
        assert_eq!(net("::1").to_string(), "::1/128");
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(net(" UNIX "), TrustedProxy::Unix);
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "host",
            "10.0.0/8",
            "/8",
        ] {
            assert!(bad.parse::<TrustedProxy>().is_err(), "{bad:?} accepted");
        }
        let ten = net("10.0.0.0/8");
        assert!(ten.contains("10.255.0.1".parse().unwrap()));
        assert!(!ten.contains("11.0.0.1".parse().unwrap()));
        // A dual-stack listener's mapped form matches the IPv4 network.
        assert!(ten.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!net("::/0").contains("10.0.0.1".parse().unwrap()));
        assert!(net("0.0.0.0/0").contains("1.2.3.4".parse().unwrap()));
        assert!(net("fd00::/8").contains("fd12::1".parse().unwrap()));
        assert!(!TrustedProxy::Unix.contains("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn formats_and_headers_parse() {
        assert_eq!("combined".parse(), Ok(AccessLogFormat::Combined));
        assert_eq!(" JSON ".parse(), Ok(AccessLogFormat::Json));
        let err = "apache".parse::<AccessLogFormat>().unwrap_err();
        assert!(err.contains("combined or json"), "{err}");
        assert_eq!("Forwarded".parse(), Ok(RealIpHeader::Forwarded));
        assert!("x-real-ip".parse::<RealIpHeader>().is_err());
    }
}
