//! The drop-in promise of `import-nginx`: for each corpus config, nginx
//! (running the config) and the gateway (running the TOML imported from
//! it) serve the same fixture tree (`fixtures/sites/`) through the same
//! php-fpm, and a list of URLs gets the same status, `Location`, body and
//! the headers the config sets from both. Where the two differ by design,
//! the case says so and what each answers (docs/nginx-import.md lists them).
//!
//! nginx's answers are checked first, so the expectations stay true to
//! nginx even where the gateway side cannot run (it needs the sites keys
//! of docs/sites.md: main's bdce522 and after).

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::net::TcpStream;

use crate::support::corpus::{self, fixture_site, Placeholders};
use crate::support::gateway::Gateway;
use crate::support::nginx::Nginx;
use crate::support::shared_fpm;

/// Headers compared besides status, Location and body: the ones the
/// corpus configs set (`add_header`, `expires`).
const COMPARED_HEADERS: &[&str] = &[
    "cache-control",
    "x-frame-options",
    "x-content-type-options",
    "access-control-allow-origin",
];

/// What the gateway answers, next to nginx's.
#[derive(Debug, Clone, Copy)]
enum Gw {
    /// Status, Location (host stripped), body and the compared headers.
    Same,
    /// Status and Location only: the body is the server's own page (an
    /// error or a redirect's "Moved Permanently").
    SameStatus,
    /// A difference by design: the gateway's status, and why.
    Status(u16, &'static str),
    /// Same status and body, one header differs by design.
    Header(&'static str, Option<&'static str>, &'static str),
}

struct Case {
    host: &'static str,
    path: &'static str,
    nginx: u16,
    gateway: Gw,
}

const fn case(host: &'static str, path: &'static str, nginx: u16, gateway: Gw) -> Case {
    Case {
        host,
        path,
        nginx,
        gateway,
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    location: Option<String>,
    headers: Vec<(String, Option<String>)>,
    body: Bytes,
}

/// One GET with exactly this Host, over a fresh connection.
async fn fetch(addr: std::net::SocketAddr, host: &str, path: &str) -> Answer {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = http::Request::builder()
        .uri(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let (parts, body) = response.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    // nginx writes redirects absolute (absolute_redirect on), with its port.
    let location = header("location").map(|l| {
        let origin = format!("http://{host}");
        match l.strip_prefix(&origin) {
            Some(rest) if rest.starts_with('/') => rest.to_string(),
            Some(rest) if rest.starts_with(':') => {
                rest[rest.find('/').unwrap_or(rest.len())..].to_string()
            }
            _ => l,
        }
    });
    let headers = COMPARED_HEADERS
        .iter()
        .map(|h| (h.to_string(), header(h)))
        .collect();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status.as_u16(),
        location,
        headers,
        body,
    }
}

/// Runs the corpus config `name` (its `file` is what nginx includes in
/// `http { }` and what is imported) with `root` for `@ROOT@`.
async fn drop_in(name: &str, file: &str, root: PathBuf, cases: &[Case]) {
    let fpm = shared_fpm();
    let with = |port: u16| Placeholders {
        root: root.clone(),
        fpm_unix: fpm.unix_socket.display().to_string(),
        fpm_tcp: fpm.tcp_addr.to_string(),
        port,
    };
    let nginx = Nginx::start_http(|dir, addr| {
        corpus::copy_config(name, dir, &with(addr.port()));
        format!("include {};\n", dir.join(file).display())
    });
    let mut wrong = Vec::new();
    let mut from_nginx = Vec::new();
    for c in cases {
        let answer = fetch(nginx.addr, c.host, c.path).await;
        if answer.status != c.nginx {
            wrong.push(format!(
                "nginx {} {}: {} (expected {}): {}",
                c.host,
                c.path,
                answer.status,
                c.nginx,
                String::from_utf8_lossy(&answer.body)
            ));
        }
        from_nginx.push(answer);
    }
    assert!(
        wrong.is_empty(),
        "{name}: nginx answered otherwise than the cases say:\n{}\n{}",
        wrong.join("\n"),
        nginx.error_log()
    );

    let imported = corpus::import(&[&nginx.dir().join(file)]);
    assert!(
        matches!(imported.code, Some(0 | 3)),
        "import failed: {}",
        imported.stderr
    );
    let toml_dir = tempfile::tempdir().unwrap();
    let toml = imported.write_to(&toml_dir.path().join("gateway.toml"));
    let gateway = Gateway::start(&["--config", &toml.display().to_string()]).await;
    for (c, theirs) in cases.iter().zip(&from_nginx) {
        let ours = fetch(gateway.addr, c.host, c.path).await;
        let at = format!("{name}: {} {}", c.host, c.path);
        let same_status = ours.status == theirs.status && ours.location == theirs.location;
        let problem = match c.gateway {
            Gw::Same
                if !same_status
                    || ours.body != theirs.body
                    || !headers_match(&theirs.headers, &ours.headers) =>
            {
                Some(format!("differs: nginx {theirs:?}\n gateway {ours:?}"))
            }
            Gw::SameStatus if !same_status => Some(format!(
                "status differs: nginx {theirs:?}\n gateway {ours:?}"
            )),
            Gw::Status(status, why) if ours.status != status => Some(format!(
                "gateway answered {} where {status} was expected ({why}): {ours:?}",
                ours.status
            )),
            Gw::Header(name, value, why) => {
                let got = ours
                    .headers
                    .iter()
                    .find(|(h, _)| h == name)
                    .and_then(|(_, v)| v.as_deref());
                (!same_status || ours.body != theirs.body || got != value).then(|| {
                    format!(
                        "expected {name}: {value:?} ({why}), nginx {theirs:?}\n gateway {ours:?}"
                    )
                })
            }
            _ => None,
        };
        if let Some(problem) = problem {
            wrong.push(format!("{at}: {problem}"));
        }
    }
    gateway.shutdown().await;
    assert!(
        wrong.is_empty(),
        "{}\n--- imported TOML ---\n{}",
        wrong.join("\n"),
        imported.toml
    );
}

/// The compared headers agree, but for the one the gateway adds by design:
/// `X-Content-Type-Options: nosniff` on every static file.
fn headers_match(nginx: &[(String, Option<String>)], gateway: &[(String, Option<String>)]) -> bool {
    nginx
        .iter()
        .zip(gateway)
        .all(|((name, theirs), (_, ours))| {
            theirs == ours
                || (name == "x-content-type-options"
                    && theirs.is_none()
                    && ours.as_deref() == Some("nosniff"))
        })
}

const DOTFILE: Gw = Gw::Status(404, "the gateway never serves dotfiles other than /.well-known (nginx: only where a deny rule says so, 403)");

#[tokio::test]
async fn laravel() {
    let h = "laravel.test";
    let cases = [
        case(h, "/", 200, Gw::Same),
        case(h, "/some/route?x=1", 200, Gw::Same),
        case(h, "/index.php/foo", 200, Gw::Same),
        case(h, "/hello.txt", 200, Gw::Same),
        case(h, "/css/site.css", 200, Gw::Same),
        case(h, "/missing.css", 200, Gw::Same),
        case(h, "/uploads/x.jpg", 200, Gw::Same),
        case(h, "/.well-known/token.txt", 200, Gw::Same),
        case(h, "/.env", 403, DOTFILE),
        case(h, "/other.php", 200, Gw::Status(404, "php-only-front-controller: nginx sends another script's source as a file")),
        case(h, "/uploads/evil.php", 200, Gw::Status(404, "php-only-front-controller: nginx sends the uploaded script's source")),
        case(h, "/pathinfo.php/x", 200, Gw::Status(404, "nginx hands /pathinfo.php/x to the front controller; the gateway 404s a path through a script that may not run")),
        case(h, "/favicon.ico", 404, Gw::Status(200, "nginx's exact location for a missing /favicon.ico answers 404; the gateway asks the front controller")),
    ];
    drop_in("laravel", "site.conf", fixture_site("app"), &cases).await;
}

#[tokio::test]
async fn symfony() {
    let h = "symfony.test";
    let cases = [
        case(h, "/", 200, Gw::Same),
        case(h, "/some/route?x=1", 200, Gw::Same),
        case("www.symfony.test", "/a/b", 200, Gw::Same),
        case(h, "/hello.txt", 200, Gw::Same),
        case(h, "/missing", 200, Gw::Same),
        case(h, "/other.php", 404, Gw::SameStatus),
        case(h, "/uploads/evil.php", 404, Gw::SameStatus),
        case(h, "/index.php", 404, Gw::Status(200, "`internal;` on the front controller: nginx 404s it asked for directly, the gateway runs it")),
        case(h, "/.env", 200, DOTFILE),
    ];
    drop_in("symfony", "site.conf", fixture_site("app"), &cases).await;
}

#[tokio::test]
async fn wordpress() {
    let h = "wordpress.test";
    let cases = [
        case(h, "/", 200, Gw::Same),
        case(h, "/?p=1", 200, Gw::Same),
        case(h, "/2024/01/hello/", 200, Gw::Same),
        case(h, "/wp-login.php", 200, Gw::Same),
        case(h, "/readme.html", 200, Gw::Same),
        case(h, "/wp-content/uploads/x.jpg", 200, Gw::Same),
        case(h, "/wp-includes/js/app.js", 200, Gw::Same),
        case(h, "/wp-content/uploads/shell.php", 403, Gw::SameStatus),
        case(h, "/.htaccess", 403, Gw::SameStatus),
        case(h, "/missing.php", 404, Gw::SameStatus),
        case(h, "/wp-includes/js/missing.js", 404, Gw::Status(200, "nginx's static-file location 404s a missing file; the gateway asks the front controller")),
        case("other.test", "/", 200, Gw::Same),
    ];
    drop_in("wordpress", "site.conf", fixture_site("wordpress"), &cases).await;
}

#[tokio::test]
async fn debian_default() {
    let h = "localhost";
    let cases = [
        case(h, "/", 200, Gw::Same),
        case(h, "/hello.txt", 200, Gw::Same),
        case(h, "/pathinfo.php/a/b", 404, Gw::Status(200, "`location ~ \\.php$` never sees a path with PATH_INFO in nginx; the gateway runs the script with PATH_INFO=/a/b")),
        case(h, "/other.php", 200, Gw::Same),
        case(h, "/uploads/evil.php", 200, Gw::Same),
        case(h, "/missing", 404, Gw::SameStatus),
        case(h, "/missing.php", 404, Gw::SameStatus),
        case(h, "/uploads/x.jpg/x.php", 404, Gw::SameStatus),
        case(h, "/.env", 200, DOTFILE),
    ];
    drop_in(
        "debian-default",
        "sites-enabled/default",
        fixture_site("app"),
        &cases,
    )
    .await;
}

#[tokio::test]
async fn multi_site() {
    let (app, www, blog) = ("app.test", "www.app.test", "blog.test");
    let cases = [
        case(app, "/", 200, Gw::Same),
        case(app, "/route?x=1", 200, Gw::Same),
        case(app, "/css/site.css", 200, Gw::Same),
        case(app, "/api/data.txt", 200, Gw::Same),
        case(app, "/api/users", 200, Gw::Header("access-control-allow-origin", Some("*"), "nginx adds the headers of the location that finally answers (the PHP one, after try_files); the gateway those of the request's path")),
        case(app, "/old-page", 301, Gw::SameStatus),
        case(app, "/vendor/x", 403, Gw::SameStatus),
        case(app, "/nothing.txt", 200, Gw::Same),
        case(app, "/nothing.php", 404, Gw::Same),
        case(app, "/fail.php", 500, Gw::Same),
        case(www, "/a?b=1", 301, Gw::SameStatus),
        case(blog, "/", 200, Gw::Same),
        case(blog, "/post/1", 200, Gw::Same),
        case("other.test", "/", 200, Gw::Same),
    ];
    drop_in("multi-site", "site.conf", fixture_site(""), &cases).await;
}
