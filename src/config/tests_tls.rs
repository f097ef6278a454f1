//! Tests for `tls-cert`/`tls-key` and the TLS forms of `listen`.

use std::net::SocketAddr;

use super::test_support::{file_with, flags, message, serve_args};
use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn a_certificate_makes_bare_tcp_listeners_tls() {
    let config = flags(&[
        "--listen",
        "http://127.0.0.1:8080",
        "--listen",
        "127.0.0.1:8443",
        "--listen",
        "unix:/run/x.sock",
        "--listen",
        "https://[::1]:9443",
        "--tls-cert",
        "c.pem",
        "--tls-key",
        "k.pem",
    ])
    .unwrap();
    assert_eq!(
        config.listen,
        vec![
            ListenAddr::Http(sa("127.0.0.1:8080")),
            ListenAddr::Https(sa("127.0.0.1:8443")),
            ListenAddr::Unix("/run/x.sock".into()),
            ListenAddr::Https(sa("[::1]:9443")),
        ]
    );
    assert_eq!(
        config.tls(),
        Some(TlsFiles {
            cert: "c.pem".into(),
            key: "k.pem".into()
        })
    );
    // The default listener too.
    let config = flags(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
    assert_eq!(config.listen, vec![ListenAddr::Https(sa("127.0.0.1:8080"))]);
}

#[test]
fn without_a_certificate_bare_tcp_stays_plain() {
    let config = flags(&["--listen", "127.0.0.1:8080", "--listen", "http://[::1]:80"]).unwrap();
    assert_eq!(
        config.listen,
        vec![
            ListenAddr::Tcp(sa("127.0.0.1:8080")),
            ListenAddr::Http(sa("[::1]:80"))
        ]
    );
    assert_eq!(config.tls(), None);
}

#[test]
fn https_without_a_certificate_names_listen() {
    let text = message(flags(&["--listen", "https://127.0.0.1:8443"]));
    assert!(
        text.starts_with("--listen `https://127.0.0.1:8443`"),
        "{text}"
    );
    assert!(text.contains("--tls-cert"), "{text}");
    let (_dir, path) = file_with("listen = [\"https://127.0.0.1:8443\"]\n");
    assert!(message(check_file(&path)).contains("https://127.0.0.1:8443"));
}

#[test]
fn cert_and_key_come_in_pairs() {
    let text = message(flags(&["--tls-cert", "c.pem"]));
    assert!(text.starts_with("--tls-cert"), "{text}");
    assert!(text.contains("--tls-key"), "{text}");
    let text = message(flags(&["--tls-key", "k.pem"]));
    assert!(text.starts_with("--tls-key"), "{text}");
    let (_dir, path) = file_with("tls-key = \"k.pem\"\n");
    let text = message(check_file(&path));
    assert!(
        text.contains("`tls-key`") && text.contains("tls-cert"),
        "{text}"
    );
    // One from the file, one from the flags: a pair all the same.
    let (dir, path) = file_with("tls-key = \"k.pem\"\n");
    let config = load(&serve_args(&[
        "--config",
        path.to_str().unwrap(),
        "--tls-cert",
        "/etc/c.pem",
    ]))
    .unwrap();
    let tls = config.tls().unwrap();
    assert_eq!(tls.cert, std::path::PathBuf::from("/etc/c.pem"));
    assert_eq!(tls.key, dir.path().join("k.pem"));
}

#[test]
fn file_keys_are_relative_to_the_file() {
    let (dir, path) = file_with(
        "tls-cert = \"tls/cert.pem\"\ntls-key = \"/abs/key.pem\"\nlisten = [\"127.0.0.1:1\", \"http://127.0.0.1:2\"]\n",
    );
    let config = check_file(&path).unwrap();
    let tls = config.tls().unwrap();
    assert_eq!(tls.cert, dir.path().join("tls/cert.pem"));
    assert_eq!(tls.key, std::path::PathBuf::from("/abs/key.pem"));
    assert_eq!(
        config.listen,
        vec![
            ListenAddr::Https(sa("127.0.0.1:1")),
            ListenAddr::Http(sa("127.0.0.1:2"))
        ]
    );
    let (_dir, path) = file_with("tls-cert = \"\"\ntls-key = \"k\"\n");
    assert!(message(check_file(&path)).contains("key `tls-cert`"));
    let (_dir, path) = file_with("tls-cert = 1\ntls-key = \"k\"\n");
    assert!(message(check_file(&path)).contains("key `tls-cert`"));
}

#[test]
fn the_admin_listener_stays_plain() {
    let config = flags(&[
        "--admin-listen",
        "127.0.0.1:9100",
        "--tls-cert",
        "c.pem",
        "--tls-key",
        "k.pem",
    ])
    .unwrap();
    assert_eq!(
        config.admin_listen,
        Some(ListenAddr::Tcp(sa("127.0.0.1:9100")))
    );
    let text = message(flags(&[
        "--admin-listen",
        "https://127.0.0.1:9100",
        "--tls-cert",
        "c.pem",
        "--tls-key",
        "k.pem",
    ]));
    assert!(text.starts_with("--admin-listen"), "{text}");
}
