//! TLS and HTTP/2 with real clients: curl (h2 and http/1.1 over TLS, h2c with
//! prior knowledge on plain TCP and unix listeners), h2load, openssl, and a
//! rustls client for what curl cannot show (a connection kept across a
//! certificate reload). One gateway serves plain, TLS and unix at once.

use crate::support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use fcgi_gateway::cli::{Cli, Command};
use fcgi_gateway::config;
use fcgi_gateway::server::tls::ReloadableTls;
use fcgi_gateway::server::{self, Listener, Server};
use http_body_util::{BodyExt, Full};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use support::binary::Binary;
use support::php_fpm::fixtures_dir;

/// A self-signed certificate for localhost and 127.0.0.1, in PEM.
struct Pem {
    cert: String,
    key: String,
    der: CertificateDer<'static>,
}

fn self_signed() -> Pem {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("rcgen makes a certificate");
    Pem {
        cert: made.cert.pem(),
        key: made.signing_key.serialize_pem(),
        der: made.cert.der().clone(),
    }
}

/// The `--tls-cert`/`--tls-key` files, and spare copies of certificates as
/// trust roots for curl's `--cacert`.
struct CertFiles {
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl CertFiles {
    fn new(pem: &Pem) -> CertFiles {
        let dir = tempfile::tempdir().unwrap();
        let files = CertFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            dir,
        };
        files.write(pem);
        files
    }

    /// Replaces both files, as a renewal would.
    fn write(&self, pem: &Pem) {
        std::fs::write(&self.cert, &pem.cert).unwrap();
        std::fs::write(&self.key, &pem.key).unwrap();
    }

    /// A file holding just `pem`'s certificate, to trust it.
    fn root(&self, name: &str, pem: &Pem) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, &pem.cert).unwrap();
        path.display().to_string()
    }
}

/// The listeners of most tests here: plain, TLS (a bare address with a
/// certificate) and unix (`UNIX` is replaced by a temp socket path).
const ALL_THREE: &[&str] = &["http://127.0.0.1:0", "127.0.0.1:0", "unix:UNIX"];

/// One in-process gateway with a certificate.
struct TlsGateway {
    /// The first plain TCP listener, if any.
    plain: Option<SocketAddr>,
    /// The first TLS listener.
    tls: SocketAddr,
    unix: PathBuf,
    certs: Arc<ReloadableTls>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl TlsGateway {
    async fn start(upstream: &str, files: &CertFiles, extra: &[&str]) -> TlsGateway {
        TlsGateway::start_on(ALL_THREE, upstream, files, extra).await
    }

    async fn start_on(
        listen: &[&str],
        upstream: &str,
        files: &CertFiles,
        extra: &[&str],
    ) -> TlsGateway {
        let dir = tempfile::tempdir().unwrap();
        let unix = dir.path().join("gw.sock");
        let root = fixtures_dir().display().to_string();
        let unix_text = unix.display().to_string();
        let listen: Vec<String> = listen
            .iter()
            .map(|l| l.replace("UNIX", &unix_text))
            .collect();
        let (cert, key) = (files.cert.display(), files.key.display());
        let (cert, key) = (cert.to_string(), key.to_string());
        let mut argv = vec![
            "fcgi-gateway",
            "serve",
            "--upstream",
            upstream,
            "--root",
            &root,
        ];
        for l in &listen {
            argv.extend(["--listen", l]);
        }
        argv.extend(["--tls-cert", &cert, "--tls-key", &key]);
        argv.extend_from_slice(extra);
        let Command::Serve(args) = Cli::try_parse_from(&argv).unwrap().command else {
            panic!("not serve")
        };
        let config = config::load(&args).expect("valid config");
        // The real path: the config turned bare addresses into TLS.
        let listeners = server::bind(&config.listen).await.expect("bind");
        let first = |tls: bool| {
            listeners
                .iter()
                .find(|l| matches!(l, Listener::Tls(_)) == tls && l.tcp_addr().is_some())
                .and_then(Listener::tcp_addr)
        };
        let plain = first(false);
        let tls = first(true).expect("a TLS listener");
        let certs = server::load_tls(&config).unwrap().expect("a certificate");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = Server::new(config).with_tls(Some(certs.clone()));
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            server.run(listeners, shutdown).await.expect("gateway ran");
        });
        TlsGateway {
            plain,
            tls,
            unix,
            certs,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut self.task).await;
    }
}

async fn run_tool(tool: &str, package: &str, args: &[String]) -> Output {
    tokio::process::Command::new(tool)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {tool} ({e}): apt-get install {package}"))
}

/// curl with `args` (plus `-sS --max-time 20`); its output, whatever the exit code.
async fn curl(args: &[&str]) -> Output {
    let mut all: Vec<String> = ["-sS", "--max-time", "20"].map(String::from).to_vec();
    all.extend(args.iter().map(|a| a.to_string()));
    run_tool("curl", "curl", &all).await
}

/// GET env.php through curl with `args`; the HTTP version curl used and
/// what PHP saw in $_SERVER.
async fn curl_env(args: &[&str], url: &str) -> (String, Value) {
    let mut all = args.to_vec();
    all.extend(["-w", "\n%{http_version}", url]);
    let out = curl(&all).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {all:?} failed: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, version) = text.rsplit_once('\n').expect("the -w line");
    let env = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    (version.to_owned(), env)
}

fn s<'a>(env: &'a Value, key: &str) -> Option<&'a str> {
    env.get(key).and_then(Value::as_str)
}

#[tokio::test]
async fn plain_tls_and_unix_listeners_in_one_gateway_speak_h2_and_http1() {
    let files = CertFiles::new(&self_signed());
    for upstream in support::shared_upstreams() {
        let gw = TlsGateway::start(&upstream, &files, &[]).await;
        let https = format!("https://127.0.0.1:{}/env.php", gw.tls.port());

        let (version, env) = curl_env(&["--http2", "-k"], &https).await;
        assert_eq!(version, "2", "{upstream}");
        assert_eq!(s(&env, "HTTPS"), Some("on"), "{upstream}: {env}");
        assert_eq!(s(&env, "REQUEST_SCHEME"), Some("https"));
        assert_eq!(s(&env, "SSL_PROTOCOL"), Some("TLSv1.3"));
        assert!(
            s(&env, "SSL_CIPHER").is_some_and(|c| c.starts_with("TLS_")),
            "{env}"
        );
        assert_eq!(s(&env, "SERVER_PORT"), Some(&*gw.tls.port().to_string()));
        assert_eq!(s(&env, "SERVER_PROTOCOL"), Some("HTTP/2.0"));

        let (version, env) = curl_env(&["--http1.1", "-k"], &https).await;
        assert_eq!(version, "1.1", "{upstream}");
        assert_eq!(s(&env, "HTTPS"), Some("on"));
        assert_eq!(s(&env, "SERVER_PROTOCOL"), Some("HTTP/1.1"));

        // TLS 1.2 too, with the cipher in OpenSSL's spelling (rcgen's key is ECDSA).
        let (_, env) = curl_env(&["-k", "--tlsv1.2", "--tls-max", "1.2"], &https).await;
        assert_eq!(s(&env, "SSL_PROTOCOL"), Some("TLSv1.2"));
        assert!(
            s(&env, "SSL_CIPHER").is_some_and(|c| c.starts_with("ECDHE-ECDSA-")),
            "{env}"
        );

        // The plain listener of the same gateway: h2c with prior knowledge, and no HTTPS.
        let plain = gw.plain.expect("a plain listener");
        let http = format!("http://127.0.0.1:{}/env.php", plain.port());
        let (version, env) = curl_env(&["--http2-prior-knowledge"], &http).await;
        assert_eq!(version, "2", "{upstream}");
        assert_eq!(env.get("HTTPS"), None, "{env}");
        assert_eq!(env.get("SSL_PROTOCOL"), None);
        assert_eq!(s(&env, "REQUEST_SCHEME"), Some("http"));
        assert_eq!(s(&env, "SERVER_PORT"), Some(&*plain.port().to_string()));
        let (version, env) = curl_env(&["--http1.1"], &http).await;
        assert_eq!(version, "1.1");
        assert_eq!(env.get("HTTPS"), None);

        // The unix listener: plain, h2c too.
        let unix = gw.unix.display().to_string();
        let args = ["--unix-socket", &unix, "--http2-prior-knowledge"];
        let (version, env) = curl_env(&args, "http://localhost/env.php").await;
        assert_eq!(version, "2");
        assert_eq!(env.get("HTTPS"), None);
        assert_eq!(s(&env, "REMOTE_ADDR"), Some("unix:"));

        // Plain HTTP sent to the TLS port is a failed handshake, not a response.
        let out = curl(&[&format!("http://127.0.0.1:{}/env.php", gw.tls.port())]).await;
        assert!(!out.status.success());
        let (version, _) = curl_env(&["--http2", "-k"], &https).await;
        assert_eq!(version, "2", "still serving after a bad handshake");
        gw.shutdown().await;
    }
}

/// h2load's "requests: ..." summary line.
fn h2load_requests(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| {
            panic!(
                "no summary from h2load: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_owned()
}

#[tokio::test]
async fn h2load_over_tls_and_h2c() {
    let files = CertFiles::new(&self_signed());
    for upstream in support::shared_upstreams() {
        let gw = TlsGateway::start(&upstream, &files, &[]).await;
        for url in [
            format!("https://127.0.0.1:{}/hello.php", gw.tls.port()),
            format!("http://127.0.0.1:{}/hello.php", gw.plain.unwrap().port()),
        ] {
            let args: Vec<String> = ["-n", "200", "-c", "4", "-m", "4", &url]
                .map(String::from)
                .to_vec();
            let out = run_tool("h2load", "nghttp2-client", &args).await;
            let requests = h2load_requests(&out);
            assert!(
                requests.contains("200 succeeded, 0 failed, 0 errored"),
                "{upstream} {url}: {requests}"
            );
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("200 2xx"), "{text}");
            if url.starts_with("https") {
                assert!(text.contains("Application protocol: h2"), "{text}");
            }
        }
        gw.shutdown().await;
    }
}

/// Whether curl, trusting only `root`, accepts the served certificate.
async fn trusts(gw: &TlsGateway, root: &str) -> bool {
    let url = format!("https://localhost:{}/hello.php", gw.tls.port());
    let resolve = format!("localhost:{}:127.0.0.1", gw.tls.port());
    let out = curl(&[
        "--cacert",
        root,
        "--resolve",
        &resolve,
        "-o",
        "/dev/null",
        &url,
    ])
    .await;
    out.status.success()
}

/// A TLS connection made with a rustls client trusting only `root`.
async fn rustls_connect(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn http1_over(stream: tokio_rustls::client::TlsStream<TcpStream>) -> Sender {
    let io = hyper_util::rt::TokioIo::new(stream);
    let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

async fn hello(sender: &mut Sender) -> String {
    let req = http::Request::get("/hello.php")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.expect("a response");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn reload_swaps_the_certificate_for_new_connections_only() {
    let (a, b) = (self_signed(), self_signed());
    let files = CertFiles::new(&a);
    let (root_a, root_b) = (files.root("a.pem", &a), files.root("b.pem", &b));
    let upstream = support::shared_upstreams().remove(0);
    let gw = TlsGateway::start(&upstream, &files, &[]).await;
    assert!(trusts(&gw, &root_a).await);
    assert!(!trusts(&gw, &root_b).await);
    let mut kept = http1_over(rustls_connect(gw.tls, &a.der).await.unwrap()).await;
    assert_eq!(hello(&mut kept).await, "Hello, world!");

    files.write(&b);
    gw.certs.reload().expect("cert B loads");
    assert!(trusts(&gw, &root_b).await, "new connections get B");
    assert!(!trusts(&gw, &root_a).await);
    assert!(rustls_connect(gw.tls, &a.der).await.is_err());
    assert_eq!(
        hello(&mut kept).await,
        "Hello, world!",
        "the connection opened with A is untouched"
    );

    // A broken certificate, then a key that is not the certificate's: both
    // refused naming the file, and B keeps serving.
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    let err = gw.certs.reload().unwrap_err().to_string();
    assert!(
        err.contains("tls-cert") && err.contains("cert.pem"),
        "{err}"
    );
    files.write(&b);
    std::fs::write(&files.key, &a.key).unwrap();
    let err = gw.certs.reload().unwrap_err().to_string();
    assert!(err.contains("key.pem"), "{err}");
    std::fs::remove_file(&files.key).unwrap();
    let err = gw.certs.reload().unwrap_err().to_string();
    assert!(
        err.starts_with("tls-key") && err.contains("key.pem"),
        "{err}"
    );
    assert!(trusts(&gw, &root_b).await, "B still served");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_silent_client_loses_its_permit_at_the_handshake_timeout() {
    let files = CertFiles::new(&self_signed());
    let upstream = support::shared_upstreams().remove(0);
    let extra = ["--max-connections", "1", "--header-timeout", "500ms"];
    // TLS only: an idle accept loop of another listener would hold the one
    // permit while it waits.
    let gw = TlsGateway::start_on(&["127.0.0.1:0"], &upstream, &files, &extra).await;
    // Holds the only connection permit while saying nothing.
    let mut silent = TcpStream::connect(gw.tls).await.unwrap();
    // Without a handshake timeout this would wait until curl gives up.
    let https = format!("https://127.0.0.1:{}/env.php", gw.tls.port());
    let (_, env) = curl_env(&["-k"], &https).await;
    assert_eq!(s(&env, "HTTPS"), Some("on"));
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection was closed: {read:?}"
    );
    gw.shutdown().await;
}

fn curl_blocking(root: &str, port: u16) -> bool {
    let url = format!("https://localhost:{port}/hello.php");
    let resolve = format!("localhost:{port}:127.0.0.1");
    std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o", "/dev/null"])
        .args(["--cacert", root, "--resolve", &resolve, &url])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run curl ({e}): apt-get install curl"))
        .success()
}

#[test]
fn the_binary_reloads_its_certificate_on_sighup() {
    let (a, b) = (self_signed(), self_signed());
    let files = CertFiles::new(&a);
    let (root_a, root_b) = (files.root("a.pem", &a), files.root("b.pem", &b));
    let upstream = format!("tcp:{}", support::shared_fpm().tcp_addr);
    let root = fixtures_dir().display().to_string();
    let (cert, key) = (
        files.cert.display().to_string(),
        files.key.display().to_string(),
    );
    let mut bin = Binary::start(&[
        "serve",
        "--upstream",
        &upstream,
        "--root",
        &root,
        "--listen",
        "https://127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    let port = bin.listen_addr("https").port();
    assert!(curl_blocking(&root_a, port));

    files.write(&b);
    bin.signal(libc::SIGHUP);
    bin.wait_for_new("TLS certificate reloaded");
    assert!(curl_blocking(&root_b, port), "log:\n{}", bin.log.join("\n"));
    assert!(!curl_blocking(&root_a, port));

    std::fs::write(&files.key, "garbage\n").unwrap();
    bin.signal(libc::SIGHUP);
    let line = bin.wait_for_new("reload from the command line rejected");
    assert!(line.contains("ERROR") && line.contains(&key), "{line}");
    assert!(
        curl_blocking(&root_b, port),
        "the old certificate keeps serving"
    );

    bin.signal(libc::SIGTERM);
    assert_eq!(bin.wait_exit(), Some(0), "log:\n{}", bin.log.join("\n"));
}

#[test]
fn the_binary_refuses_bad_tls_settings_naming_them() {
    let files = CertFiles::new(&self_signed());
    let root = fixtures_dir().display().to_string();
    let cert = files.cert.display().to_string();
    let missing = files.dir.path().join("missing.pem").display().to_string();
    let base = [
        "serve",
        "--upstream",
        "unix:/nonexistent.sock",
        "--root",
        &root,
    ];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--listen", "https://127.0.0.1:0"], "--listen"),
        (vec!["--tls-cert", &cert], "--tls-key"),
        (
            vec![
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                &cert,
                "--tls-key",
                &missing,
            ],
            "missing.pem",
        ),
    ];
    for (extra, culprit) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fcgi-gateway"))
            .args(base)
            .args(&extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(culprit), "{extra:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Keys as other tools write them: RSA in PKCS#1 and EC in SEC1 (rcgen
/// writes PKCS#8), made with openssl.
#[tokio::test]
async fn rsa_and_ec_keys_from_openssl_serve() {
    let dir = tempfile::tempdir().unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run openssl ({e}): apt-get install openssl"));
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let subject = [
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost",
    ];
    for (kind, newkey, convert) in [
        ("rsa", "rsa:2048", vec!["rsa", "-traditional"]),
        ("ec", "ec", vec!["ec"]),
    ] {
        let mut req = vec!["req", "-x509", "-nodes", "-days", "2", "-newkey", newkey];
        if kind == "ec" {
            req.extend(["-pkeyopt", "ec_paramgen_curve:prime256v1"]);
        }
        req.extend(["-keyout", "pkcs8.pem", "-out", "cert.pem"]);
        req.extend(subject);
        openssl(&req);
        let mut conv = convert.clone();
        conv.extend(["-in", "pkcs8.pem", "-out", "key.pem"]);
        openssl(&conv);
        let key = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
        let marker = if kind == "rsa" {
            "BEGIN RSA PRIVATE KEY"
        } else {
            "BEGIN EC PRIVATE KEY"
        };
        assert!(key.contains(marker), "{key}");
        let files = CertFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            dir: tempfile::tempdir().unwrap(),
        };
        let upstream = support::shared_upstreams().remove(1);
        let gw = TlsGateway::start(&upstream, &files, &[]).await;
        let https = format!("https://127.0.0.1:{}/env.php", gw.tls.port());
        let (_, env) = curl_env(&["-k", "--tlsv1.2", "--tls-max", "1.2"], &https).await;
        let want = if kind == "rsa" {
            "ECDHE-RSA-"
        } else {
            "ECDHE-ECDSA-"
        };
        assert!(
            s(&env, "SSL_CIPHER").is_some_and(|c| c.starts_with(want)),
            "{kind}: {env}"
        );
        gw.shutdown().await;
    }
}
