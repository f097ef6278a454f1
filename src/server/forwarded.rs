//! Who the client is behind a trusted reverse proxy: REMOTE_ADDR from the
//! right-most untrusted `X-Forwarded-For` entry (or RFC 7239 `Forwarded:
//! for=`), and the scheme from `X-Forwarded-Proto` (or `proto=`), believed
//! only when the connection comes from a trusted proxy. Anyone else's
//! forwarding headers change nothing.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;

use crate::cgi::params::Endpoint;
pub use crate::config::{RealIpHeader, TrustedProxy};

/// IPv4 peers of a dual-stack listener arrive as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client as the request's origin sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Client {
    pub remote: Endpoint,
    pub https: bool,
}

/// One proxy hop as a forwarding header records it: the address it saw
/// (if readable) and the scheme it was reached with (if said).
#[derive(Debug, Default)]
struct Hop<'a> {
    node: Option<(IpAddr, Option<u16>)>,
    proto: Option<&'a str>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Forwarding {
    pub trusted: Vec<TrustedProxy>,
    pub header: RealIpHeader,
}

impl Forwarding {
    fn trusts_peer(&self, peer: Endpoint) -> bool {
        match peer {
            Endpoint::Tcp(sa) => self.trusts(sa.ip()),
            Endpoint::Unix => self.trusted.contains(&TrustedProxy::Unix),
            Endpoint::Forwarded { .. } => false,
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|t| t.contains(ip))
    }

    /// The client behind `peer`: walks the recorded hops from the right
    /// while they are trusted proxies; the first untrusted one is the client.
    /// An unreadable entry (`unknown`, an obfuscated name) ends the walk at
    /// the last hop that could be read.
    pub fn resolve(&self, peer: Endpoint, headers: &HeaderMap) -> Client {
        let direct = Client {
            remote: peer,
            https: false,
        };
        if self.trusted.is_empty() || !self.trusts_peer(peer) {
            return direct;
        }
        let (hops, protos) = match self.header {
            RealIpHeader::XForwardedFor => x_forwarded(headers),
            RealIpHeader::Forwarded => (forwarded(headers), Vec::new()),
        };
        let mut chosen = None;
        for (i, hop) in hops.iter().enumerate().rev() {
            let Some((ip, _)) = hop.node else { break };
            chosen = Some(i);
            if !self.trusts(ip) {
                break;
            }
        }
        let proto = match self.header {
            RealIpHeader::Forwarded => chosen.and_then(|i| hops[i].proto),
            // X-Forwarded-Proto lines up with X-Forwarded-For when every
            // proxy appends to both; otherwise the nearest proxy's value counts.
            RealIpHeader::XForwardedFor => match chosen {
                Some(i) if protos.len() == hops.len() => protos.get(i).copied(),
                _ => protos.last().copied(),
            },
        };
        let remote = match chosen.and_then(|i| hops[i].node) {
            Some((ip, port)) => Endpoint::Forwarded {
                ip: canonical(ip),
                port,
            },
            None => peer,
        };
        Client {
            remote,
            https: proto.is_some_and(|p| p.eq_ignore_ascii_case("https")),
        }
    }
}

/// Every `X-Forwarded-For` entry in order, and every `X-Forwarded-Proto` value.
fn x_forwarded(headers: &HeaderMap) -> (Vec<Hop<'_>>, Vec<&str>) {
    let list = |name: &str| -> Vec<&str> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect()
    };
    let hops = list("x-forwarded-for")
        .into_iter()
        .map(|entry| Hop {
            node: parse_node(entry),
            proto: None,
        })
        .collect();
    (hops, list("x-forwarded-proto"))
}

/// Every element of every `Forwarded` header, in order.
fn forwarded(headers: &HeaderMap) -> Vec<Hop<'_>> {
    let mut hops = Vec::new();
    for value in headers.get_all("forwarded") {
        let Ok(value) = value.to_str() else {
            // An unreadable header hides the hops in it: nothing past it can be trusted.
            hops.push(Hop::default());
            continue;
        };
        for element in split_outside_quotes(value, ',') {
            let mut hop = Hop::default();
            for pair in split_outside_quotes(element, ';') {
                let Some((key, val)) = pair.split_once('=') else {
                    continue;
                };
                let val = unquote(val.trim());
                match key.trim().to_ascii_lowercase().as_str() {
                    "for" => hop.node = parse_node(val),
                    "proto" => hop.proto = Some(val),
                    _ => {}
                }
            }
            hops.push(hop);
        }
    }
    hops
}

/// Splits on `sep` except inside double quotes (RFC 7239 values may be quoted).
fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty())
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`;
/// a port that is not a number (RFC 7239 obfuscated) is dropped.
fn parse_node(s: &str) -> Option<(IpAddr, Option<u16>)> {
    let s = unquote(s.trim());
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some((ip, None));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some((sa.ip(), Some(sa.port())));
    }
    let (host, port) = match s.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => {
            let (host, port) = s.rsplit_once(':')?;
            (host, Some(port))
        }
    };
    let ip = host.parse::<IpAddr>().ok()?;
    Some((ip, port.and_then(|p| p.parse().ok())))
}

#[cfg(test)]
mod tests;
