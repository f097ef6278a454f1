use std::net::SocketAddr;

use http::{HeaderMap, HeaderValue};

use super::*;

fn net(s: &str) -> TrustedProxy {
    s.parse().unwrap()
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(*name, HeaderValue::from_str(value).unwrap());
    }
    h
}

fn peer(s: &str) -> Endpoint {
    Endpoint::Tcp(s.parse::<SocketAddr>().unwrap())
}

fn fwd(ip: &str, port: Option<u16>) -> Endpoint {
    Endpoint::Forwarded {
        ip: ip.parse().unwrap(),
        port,
    }
}

fn xff(trusted: &[&str]) -> Forwarding {
    Forwarding {
        trusted: trusted.iter().map(|t| net(t)).collect(),
        header: RealIpHeader::XForwardedFor,
    }
}

#[test]
fn untrusted_peers_change_nothing() {
    let h = headers(&[
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-proto", "https"),
    ]);
    let p = peer("192.0.2.1:5000");
    let direct = Client {
        remote: p,
        https: false,
    };
    assert_eq!(xff(&[]).resolve(p, &h), direct);
    assert_eq!(xff(&["10.0.0.0/8"]).resolve(p, &h), direct);
    assert_eq!(
        xff(&["10.0.0.0/8"]).resolve(Endpoint::Unix, &h).remote,
        Endpoint::Unix
    );
}

#[test]
fn right_most_untrusted_entry_is_the_client() {
    let f = xff(&["127.0.0.0/8", "10.0.0.0/8"]);
    let p = peer("127.0.0.1:5000");
    let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.2.3")]);
    assert_eq!(f.resolve(p, &h).remote, fwd("203.0.113.9", None));
    // Several header lines are one list, in order.
    let h = headers(&[
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-for", "203.0.113.9,10.1.2.3"),
    ]);
    assert_eq!(f.resolve(p, &h).remote, fwd("203.0.113.9", None));
    // All trusted: the left-most is as far as we can see.
    let h = headers(&[("x-forwarded-for", "10.0.0.5, 10.0.0.6")]);
    assert_eq!(f.resolve(p, &h).remote, fwd("10.0.0.5", None));
    // An unreadable entry stops the walk at the last readable hop.
    let h = headers(&[("x-forwarded-for", "203.0.113.9, unknown")]);
    assert_eq!(f.resolve(p, &h).remote, p);
    let h = headers(&[("x-forwarded-for", "unknown, 10.0.0.7")]);
    assert_eq!(f.resolve(p, &h).remote, fwd("10.0.0.7", None));
    // Ports and brackets are understood.
    let h = headers(&[("x-forwarded-for", "[2001:db8::1]:443")]);
    assert_eq!(f.resolve(p, &h).remote, fwd("2001:db8::1", Some(443)));
    let h = headers(&[("x-forwarded-for", "198.51.100.2:81")]);
    assert_eq!(f.resolve(p, &h).remote, fwd("198.51.100.2", Some(81)));
    assert_eq!(f.resolve(p, &HeaderMap::new()).remote, p);
}

#[test]
fn proto_follows_the_chosen_hop_or_the_nearest_proxy() {
    let f = xff(&["127.0.0.0/8", "10.0.0.0/8"]);
    let p = peer("127.0.0.1:5000");
    let https = |pairs: &[(&'static str, &str)]| f.resolve(p, &headers(pairs)).https;
    assert!(https(&[("x-forwarded-proto", "https")]));
    assert!(https(&[("x-forwarded-proto", "HTTPS")]));
    assert!(!https(&[("x-forwarded-proto", "http")]));
    assert!(!https(&[]));
    // Appended by each proxy: the client's hop decides.
    assert!(https(&[
        ("x-forwarded-for", "203.0.113.9, 10.0.0.1"),
        ("x-forwarded-proto", "https, http"),
    ]));
    // Overwritten by the last proxy: its value decides.
    assert!(!https(&[
        ("x-forwarded-for", "203.0.113.9, 10.0.0.1"),
        ("x-forwarded-proto", "http"),
    ]));
}

#[test]
fn forwarded_header_elements() {
    let f = Forwarding {
        trusted: vec![net("127.0.0.1")],
        header: RealIpHeader::Forwarded,
    };
    let p = peer("127.0.0.1:5000");
    let h = headers(&[(
        "forwarded",
        r#"for=6.6.6.6;proto=http, For="[2001:db8:cafe::17]:4711";proto=https;by=10.0.0.1"#,
    )]);
    let c = f.resolve(p, &h);
    assert_eq!(c.remote, fwd("2001:db8:cafe::17", Some(4711)));
    assert!(c.https);
    let h = headers(&[("forwarded", "for=192.0.2.43:_hidden")]);
    assert_eq!(f.resolve(p, &h).remote, fwd("192.0.2.43", None));
    let h = headers(&[("forwarded", "for=_hidden;proto=https")]);
    assert_eq!(
        f.resolve(p, &h),
        Client {
            remote: p,
            https: false
        }
    );
    // The other header is ignored in this mode, and vice versa.
    let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
    assert_eq!(f.resolve(p, &h).remote, p);
    let h = headers(&[("forwarded", "for=1.2.3.4")]);
    assert_eq!(xff(&["127.0.0.1"]).resolve(p, &h).remote, p);
}

#[test]
fn unix_peers_are_trusted_only_when_listed() {
    let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
    assert_eq!(
        xff(&["unix"]).resolve(Endpoint::Unix, &h).remote,
        fwd("203.0.113.9", None)
    );
    assert_eq!(
        xff(&["0.0.0.0/0"]).resolve(Endpoint::Unix, &h).remote,
        Endpoint::Unix
    );
}

#[test]
fn real_ip_header_names() {
    assert_eq!("X-Forwarded-For".parse(), Ok(RealIpHeader::XForwardedFor));
    assert_eq!("forwarded".parse(), Ok(RealIpHeader::Forwarded));
    assert!("x-real-ip".parse::<RealIpHeader>().is_err());
}
