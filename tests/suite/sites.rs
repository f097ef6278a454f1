//! Several sites in one gateway, and what nginx site configs use daily:
//! sites chosen by Host as nginx's `server_name` (each with its own root
//! and upstream), certificates chosen by SNI, error pages, `add_header`,
//! redirects, deny patterns and HTTP → HTTPS. Real php-fpm throughout.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use fcgi_gateway::cli::{Cli, Command};
use fcgi_gateway::config;
use fcgi_gateway::server::{self, Listener, Server};
use tokio::sync::oneshot;

use crate::support;
use crate::support::gateway::{self, Reply};
use crate::support::php_fpm::{free_port, PhpFpm, PhpFpmOptions};

/// Two document roots, `a` and `b`, whose scripts say which they are.
struct Roots {
    dir: tempfile::TempDir,
}

impl Roots {
    fn new() -> Roots {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a", "b"] {
            let root = dir.path().join(name);
            fs::create_dir_all(root.join("vendor")).unwrap();
            fs::create_dir_all(root.join("api")).unwrap();
            let put = |path: &str, text: &str| fs::write(root.join(path), text).unwrap();
            put(
                "who.php",
                &format!("<?php echo '{name} ', $_SERVER['SERVER_NAME'];"),
            );
            put(
                "whoami.php",
                "<?php $n = getenv('FPM_NAME'); echo $n === false ? 'unnamed' : $n;",
            );
            put(
                "notfound.php",
                &format!("<?php echo 'page-{name} ', $_SERVER['REQUEST_URI'];"),
            );
            put(
                "fail.php",
                "<?php http_response_code(500); echo 'php-error';",
            );
            put("50x.html", &format!("sorry-{name}\n"));
            put("style.css", "body{}\n");
            put("api/data.json", "{}\n");
            put(".htaccess", "deny from all\n");
            put("vendor/x.php", "<?php echo 'vendor ran';");
        }
        Roots { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `gateway.toml` next to the roots; returns its path.
    fn config(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("gateway.toml");
        fs::write(&path, text).unwrap();
        path
    }
}

/// An in-process gateway run from a config file, on the listeners it
/// names (ports 0), with its certificates loaded as `serve` does.
struct FileGateway {
    plain: Option<SocketAddr>,
    tls: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl FileGateway {
    async fn start(file: &Path) -> FileGateway {
        let file = file.display().to_string();
        let argv = support::with_test_workers(&["--config", &file]);
        let mut full = vec!["fcgi-gateway".to_owned(), "serve".to_owned()];
        full.extend(argv);
        let Command::Serve(args) = Cli::try_parse_from(&full).unwrap().command else {
            panic!("not serve")
        };
        let config = config::load(&args).expect("valid config");
        let listeners = server::bind(&config.listen).await.expect("bind");
        let first = |tls: bool| {
            listeners
                .iter()
                .find(|l| matches!(l, Listener::Tls(_)) == tls && l.tcp_addr().is_some())
                .and_then(Listener::tcp_addr)
        };
        let (plain, tls) = (first(false), first(true));
        let certs = server::load_tls(&config).expect("certificates load");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = Server::new(config).with_tls(certs);
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            server.run(listeners, shutdown).await.expect("gateway ran");
        });
        FileGateway {
            plain,
            tls,
            stop: Some(stop),
            task,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.plain.expect("a plain listener")
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut self.task).await;
    }
}

async fn get_as(addr: SocketAddr, host: &str, path: &str) -> Reply {
    gateway::request(addr, "GET", path, &[("host", host)], Bytes::new()).await
}

fn named_fpm(name: &str) -> PhpFpm {
    let mut opts = PhpFpmOptions::default();
    opts.extra_pool_lines
        .push(format!("env[FPM_NAME] = {name}"));
    PhpFpm::start_with(opts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_are_chosen_by_host_as_nginx_server_name_does() {
    let roots = Roots::new();
    let fpm_a = support::shared_fpm();
    let fpm_b = named_fpm("fpm-b");
    let file = roots.config(&format!(
        r#"
listen = "http://127.0.0.1:0"
upstream = "unix:{}"

[[site]]
server-names = ["a.test", "www.a.test"]
root = "a"

[[site]]
server-names = ["*.b.test", "b.test"]
root = "b"
default = true
upstream = "tcp:{}"

[[site]]
server-names = ["www.c.test"]
[[site.redirect]]
to = "https://c.test$request_uri"
"#,
        fpm_a.unix_socket.display(),
        fpm_b.tcp_addr
    ));
    let gw = FileGateway::start(&file).await;
    let addr = gw.addr();
    // Case, port and a trailing dot do not matter; SERVER_NAME is the
    // site's first name, whichever the client used.
    for host in ["a.test", "A.Test:8080", "www.a.test.", "WWW.A.TEST"] {
        let reply = get_as(addr, host, "/who.php").await;
        assert_eq!(
            (reply.status, reply.text()),
            (200, "a a.test".into()),
            "{host}"
        );
    }
    for host in ["b.test", "x.b.test", "deep.x.b.test:80"] {
        let reply = get_as(addr, host, "/who.php").await;
        assert_eq!(
            (reply.status, reply.text()),
            (200, "b b.test".into()),
            "{host}"
        );
    }
    // No site's name: the default site.
    let reply = get_as(addr, "elsewhere.example", "/who.php").await;
    assert_eq!(reply.text(), "b b.test");
    // A redirect-only site (www → apex), even for paths that do not route.
    for path in ["/x/y?z=1", "/%2e%2e/etc/passwd"] {
        let reply = get_as(addr, "www.c.test", path).await;
        assert_eq!(reply.status, 301, "{path}");
        let expected = format!("https://c.test{path}");
        assert_eq!(reply.header("location").as_deref(), Some(expected.as_str()));
    }
    // Each site's PHP goes to its own upstream.
    assert_eq!(
        get_as(addr, "a.test", "/whoami.php").await.text(),
        "unnamed"
    );
    assert_eq!(get_as(addr, "b.test", "/whoami.php").await.text(), "fpm-b");
    // An absolute-form target's authority picks the site, as it is the host.
    let raw = gateway::raw(
        addr,
        b"GET http://a.test/who.php HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    let raw = String::from_utf8_lossy(&raw);
    assert!(
        raw.starts_with("HTTP/1.1 200") && raw.contains("a a.test"),
        "{raw}"
    );
    drop(fpm_b);
    gw.shutdown().await;
}

/// The site the rules tests run against, its config given as `rules`,
/// with a second site `plain.test` that opts out of them (sites inherit
/// the top level's rules, as nginx servers inherit the http block's).
async fn rules_gateway(roots: &Roots, rules: &str, upstream: &str) -> FileGateway {
    let file = roots.config(&format!(
        r#"
listen = "http://127.0.0.1:0"
upstream = "{upstream}"
root = "a"
{rules}

[[site]]
server-names = ["plain.test"]
root = "b"
error-page = {{}}
add-header = []
deny = []
redirect = []
"#
    ));
    FileGateway::start(&file).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_pages_as_nginx_error_page() {
    let roots = Roots::new();
    let fpm = support::shared_fpm();
    let upstream = format!("unix:{}", fpm.unix_socket.display());
    let gw = rules_gateway(
        &roots,
        r#"
[error-page]
"404" = "/notfound.php"
"403" = "=/who.php"
"500 502 503 504" = "/50x.html"
"410" = "https://example.com/gone"
"#,
        &upstream,
    )
    .await;
    let addr = gw.addr();
    // 404 → a PHP page: the status stays, the script sees the original URI.
    let reply = get_as(addr, "localhost", "/missing/page?x=1").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.text(), "page-a /missing/page?x=1");
    // PHP's own 500 passes through: no intercept-errors.
    let reply = get_as(addr, "localhost", "/fail.php").await;
    assert_eq!((reply.status, reply.text()), (500, "php-error".into()));
    // A site without error pages keeps the plain answers.
    let reply = get_as(addr, "plain.test", "/missing").await;
    assert_eq!((reply.status, reply.text()), (404, "Not Found\n".into()));
    gw.shutdown().await;

    // intercept-errors: PHP's 500 gets the page; its status stays.
    let gw = rules_gateway(
        &roots,
        "intercept-errors = true\n[error-page]\n\"500\" = \"/50x.html\"\n\"404\" = \"=/who.php\"\n",
        &upstream,
    )
    .await;
    let reply = get_as(gw.addr(), "localhost", "/fail.php").await;
    assert_eq!((reply.status, reply.text()), (500, "sorry-a\n".into()));
    // `=`: the page's own status (200 from who.php).
    let reply = get_as(gw.addr(), "localhost", "/nothing-here").await;
    assert_eq!((reply.status, reply.text()), (200, "a localhost".into()));
    gw.shutdown().await;

    // The gateway's own 502 (php-fpm down) gets the 50x page.
    let dead = roots.path().join("no-fpm.sock").display().to_string();
    let gw = rules_gateway(
        &roots,
        "[error-page]\n\"502 504\" = \"/50x.html\"\n\"404\" = \"/fail.php\"\n",
        &format!("unix:{dead}"),
    )
    .await;
    let reply = get_as(gw.addr(), "localhost", "/who.php").await;
    assert_eq!((reply.status, reply.text()), (502, "sorry-a\n".into()));
    // An error page that fails itself: the plain answer, no loop.
    let reply = get_as(gw.addr(), "localhost", "/missing").await;
    assert_eq!(reply.status, 404);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_page_urls_redirect() {
    let roots = Roots::new();
    let fpm = support::shared_fpm();
    let gw = rules_gateway(
        &roots,
        "[error-page]\n\"404\" = \"https://example.com/gone\"\n",
        &format!("unix:{}", fpm.unix_socket.display()),
    )
    .await;
    let reply = get_as(gw.addr(), "localhost", "/missing").await;
    assert_eq!(reply.status, 302);
    assert_eq!(
        reply.header("location").as_deref(),
        Some("https://example.com/gone")
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_redirects_and_deny_rules() {
    let roots = Roots::new();
    let fpm = support::shared_fpm();
    let gw = rules_gateway(
        &roots,
        r#"
add-header = [
    "X-Frame-Options: SAMEORIGIN",
    { name = "X-Always", value = "1", always = true },
    { name = "Access-Control-Allow-Origin", value = "*", prefix = "/api/" },
]
deny = ['/\.ht', '^/vendor/']

[[redirect]]
path = "/old"
to = "/new?from=$uri"
status = 302

[[redirect]]
prefix = "/blog/"
to = "https://blog.example.com$request_uri"
"#,
        &format!("unix:{}", fpm.unix_socket.display()),
    )
    .await;
    let addr = gw.addr();
    // add_header: on 2xx/3xx; `always` on every status; a prefix's replace the site's.
    let reply = get_as(addr, "localhost", "/style.css").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("x-frame-options").as_deref(),
        Some("SAMEORIGIN")
    );
    assert_eq!(reply.header("x-always").as_deref(), Some("1"));
    let php = get_as(addr, "localhost", "/who.php").await;
    assert_eq!(php.header("x-frame-options").as_deref(), Some("SAMEORIGIN"));
    let missing = get_as(addr, "localhost", "/missing").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("x-frame-options"), None);
    assert_eq!(missing.header("x-always").as_deref(), Some("1"));
    let api = get_as(addr, "localhost", "/api/data.json").await;
    assert_eq!(
        api.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(api.header("x-frame-options"), None);
    // The other site has none of it.
    let other = get_as(addr, "plain.test", "/style.css").await;
    assert_eq!(other.header("x-frame-options"), None);

    // Redirects: exact path and prefix, with variables.
    let reply = get_as(addr, "localhost", "/old").await;
    assert_eq!(reply.status, 302);
    assert_eq!(reply.header("location").as_deref(), Some("/new?from=/old"));
    assert_eq!(
        reply.header("x-frame-options").as_deref(),
        Some("SAMEORIGIN")
    );
    let reply = get_as(addr, "localhost", "/blog/2024/post?id=3").await;
    assert_eq!(reply.status, 301);
    assert_eq!(
        reply.header("location").as_deref(),
        Some("https://blog.example.com/blog/2024/post?id=3")
    );
    assert_eq!(get_as(addr, "localhost", "/older").await.status, 404);

    // Deny: 403, and PHP never runs (vendor/x.php would say so).
    for path in [
        "/.htaccess",
        "/vendor/x.php",
        "/%76endor/x.php",
        "/a/../vendor/x.php",
    ] {
        let reply = get_as(addr, "localhost", path).await;
        assert_eq!(reply.status, 403, "{path}: {}", reply.text());
        assert!(!reply.text().contains("vendor ran"), "{path}");
    }
    // Not denied on the site without the rules (dotfiles are 404 there).
    assert_eq!(
        get_as(addr, "plain.test", "/vendor/x.php").await.text(),
        "vendor ran"
    );
    gw.shutdown().await;
}

/// A self-signed certificate for `name`, written as `NAME.pem`/`NAME.key`.
fn certificate(dir: &Path, name: &str) -> PathBuf {
    let made = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    fs::write(dir.join(format!("{name}.pem")), made.cert.pem()).unwrap();
    fs::write(
        dir.join(format!("{name}.key")),
        made.signing_key.serialize_pem(),
    )
    .unwrap();
    dir.join(format!("{name}.pem"))
}

/// curl over TLS to `name` at `addr`, trusting only `ca`: the body, or
/// curl's error when the certificate does not verify for that name.
async fn curl_tls(name: &str, addr: SocketAddr, ca: &Path, path: &str) -> Result<String, String> {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{name}:{}:127.0.0.1", addr.port()))
        .arg(format!("https://{name}:{}{path}", addr.port()))
        .kill_on_drop(true)
        .output()
        .await
        .expect("curl runs (apt-get install curl)");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_by_sni_and_http_to_https() {
    let roots = Roots::new();
    let fpm = support::shared_fpm();
    let ca_a = certificate(roots.path(), "a.test");
    let ca_b = certificate(roots.path(), "b.test");
    // A fixed port: the redirect names the https listener's port.
    let https_port = free_port();
    let file = roots.config(&format!(
        r#"
listen = ["https://127.0.0.1:{https_port}", "http://127.0.0.1:0"]
upstream = "unix:{}"

[[site]]
server-names = ["a.test"]
root = "a"
tls-cert = "a.test.pem"
tls-key = "a.test.key"
redirect-to-https = true

[[site]]
server-names = ["b.test"]
root = "b"
default = true
tls-cert = "b.test.pem"
tls-key = "b.test.key"
"#,
        fpm.unix_socket.display()
    ));
    let gw = FileGateway::start(&file).await;
    let tls = gw.tls.expect("a TLS listener");
    // Each name gets its own certificate: curl verifies it for that name.
    assert_eq!(
        curl_tls("a.test", tls, &ca_a, "/who.php").await,
        Ok("a a.test".into())
    );
    assert_eq!(
        curl_tls("b.test", tls, &ca_b, "/who.php").await,
        Ok("b b.test".into())
    );
    // a.test's certificate is not b.test's.
    let wrong = curl_tls("a.test", tls, &ca_b, "/who.php").await;
    assert!(wrong.is_err(), "{wrong:?}");
    // Plain HTTP to the site that wants HTTPS: 301 to the same URL over
    // the https listener's port; the other site serves plain HTTP.
    let reply = get_as(gw.addr(), "a.test", "/who.php?x=1").await;
    assert_eq!(reply.status, 301);
    assert_eq!(
        reply.header("location"),
        Some(format!("https://a.test:{https_port}/who.php?x=1"))
    );
    assert_eq!(
        get_as(gw.addr(), "b.test", "/who.php").await.text(),
        "b b.test"
    );
    gw.shutdown().await;
}
