//! Routing and its safety rules through HTTP, against a real php-fpm over
//! both `unix:` and `tcp:`, on a copy of `fixtures/site`. Static-file
//! serving details (types, 304, ranges, precompressed files) are in
//! `tests/suite/static_files_http.rs`.

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use support::fake_fcgi::{FakeFcgi, Script};
use support::gateway::{self, Reply};
use support::site::{Site, OUTSIDE_SECRET};

const FC: [&str; 2] = ["--front-controller", "/index.php"];

fn is_front_controller(r: &Reply) -> bool {
    r.status == 200 && r.json()["front"] == true
}

/// A refused answer that leaks nothing of what the path might have named.
fn assert_refused(r: &Reply, what: &str) {
    assert!(
        r.status == 400 || r.status == 404,
        "{what}: status {} body {}",
        r.status,
        r.text()
    );
    for secret in [
        OUTSIDE_SECRET,
        "secret",
        "pwned",
        "<?php",
        "Hello",
        "outside ran",
    ] {
        assert!(!r.text().contains(secret), "{what}: leaked {secret:?}");
    }
}

#[tokio::test]
async fn existing_file_is_static_and_script_runs() {
    let site = Site::new();
    for upstream in support::shared_upstreams() {
        let gw = site.gateway(&upstream, &FC).await;
        let r = gateway::get(gw.addr, "/css/app.css").await;
        assert_eq!(r.status, 200, "{upstream}");
        assert_eq!(r.body, site.bytes("css/app.css"));
        let r = gateway::get(gw.addr, "/script.php?x=1").await;
        assert_eq!(r.json()["script"], "script.php", "{upstream}");
        assert_eq!(r.json()["QUERY_STRING"], "x=1");
        let r = gateway::get(gw.addr, "/sub/page.php").await;
        assert_eq!(r.text(), "sub page", "{upstream}");
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn directory_without_slash_is_301_keeping_the_query() {
    let site = Site::new();
    for upstream in support::shared_upstreams() {
        let gw = site.gateway(&upstream, &FC).await;
        let r = gateway::get(gw.addr, "/docs?x=1&y=%2F").await;
        assert_eq!(r.status, 301, "{upstream}");
        assert_eq!(r.header("location").as_deref(), Some("/docs/?x=1&y=%2F"));
        let r = gateway::get(gw.addr, "/docs").await;
        assert_eq!(r.header("location").as_deref(), Some("/docs/"));
        // `//docs` must not become a protocol-relative `//docs/` (another host).
        let raw = gateway::raw(
            gw.addr,
            b"GET //docs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        let raw = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        assert!(raw.starts_with("http/1.1 301"), "{raw}");
        assert!(raw.contains("\r\nlocation: /docs/\r\n"), "{raw}");
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn directory_index_php_first_then_html() {
    let site = Site::new();
    for upstream in support::shared_upstreams() {
        for extra in [&[][..], &FC[..]] {
            let gw = site.gateway(&upstream, extra).await;
            let r = gateway::get(gw.addr, "/docs/").await;
            assert_eq!(r.status, 200, "{upstream}");
            assert_eq!(r.body, site.bytes("docs/index.html"));
            assert_eq!(
                r.header("content-type").as_deref(),
                Some("text/html; charset=utf-8")
            );
            // index.php wins over index.html, and runs.
            assert_eq!(gateway::get(gw.addr, "/app/").await.text(), "php app index");
            assert!(is_front_controller(&gateway::get(gw.addr, "/").await));
            gw.shutdown().await;
        }
        // A directory without an index: the front controller, or 404.
        let gw = site.gateway(&upstream, &FC).await;
        assert!(is_front_controller(
            &gateway::get(gw.addr, "/noindex/").await
        ));
        gw.shutdown().await;
        let gw = site.gateway(&upstream, &[]).await;
        assert_eq!(gateway::get(gw.addr, "/noindex/").await.status, 404);
        gw.shutdown().await;
        // The list is --index: here only index.html.
        let gw = site.gateway(&upstream, &["--index", "index.html"]).await;
        assert_eq!(
            gateway::get(gw.addr, "/app/").await.body,
            site.bytes("app/index.html")
        );
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn path_info_only_after_an_existing_script() {
    let site = Site::new();
    for upstream in support::shared_upstreams() {
        let gw = site.gateway(&upstream, &FC).await;
        let r = gateway::get(gw.addr, "/script.php/extra/a%20b?q=1").await;
        let j = r.json();
        assert_eq!(j["script"], "script.php", "{upstream}");
        assert_eq!(j["SCRIPT_NAME"], "/script.php");
        assert_eq!(j["PATH_INFO"], "/extra/a b");
        assert_eq!(j["REQUEST_URI"], "/script.php/extra/a%20b?q=1");
        // The first .php segment is the script; a later one is PATH_INFO.
        let j = gateway::get(gw.addr, "/script.php/x.php").await.json();
        assert_eq!(j["PATH_INFO"], "/x.php", "{upstream}");
        // Not a `.php` segment, so no split: the front controller answers.
        for path in ["/script.phpx/y", "/script.php.txt/y"] {
            let r = gateway::get(gw.addr, path).await;
            assert!(is_front_controller(&r), "{upstream} {path}: {}", r.text());
        }
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn missing_php_is_404_without_contacting_php_fpm() {
    let site = Site::new();
    let fake = FakeFcgi::start(vec![Script::ok("from the fake")]).await;
    for upstream in [
        format!("unix:{}", fake.unix_socket.display()),
        format!("tcp:{}", fake.tcp_addr),
    ] {
        let gw = site.gateway(&upstream, &FC).await;
        for path in [
            "/nope.php",
            "/nope.php/extra",
            "/sub/nope.php",
            "/uploads/evil.jpg/x.php",
            "/.env",
            "/secret.inc",
            "/.git/config",
        ] {
            let r = gateway::get(gw.addr, path).await;
            assert_eq!(r.status, 404, "{upstream} {path}");
        }
        // Static files and redirects need no upstream either.
        assert_eq!(gateway::get(gw.addr, "/css/app.css").await.status, 200);
        assert_eq!(gateway::get(gw.addr, "/docs").await.status, 301);
        gw.shutdown().await;
    }
    assert_eq!(fake.connections_seen(), 0);
    // The control: a script that exists does reach the upstream.
    let upstream = format!("unix:{}", fake.unix_socket.display());
    let gw = site.gateway(&upstream, &FC).await;
    assert_eq!(
        gateway::get(gw.addr, "/script.php").await.text(),
        "from the fake"
    );
    assert_eq!(fake.connections_seen(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn front_controller_gets_request_uri_and_query_as_sent() {
    let site = Site::new();
    for upstream in support::shared_upstreams() {
        let gw = site.gateway(&upstream, &FC).await;
        for path in [
            "/blog/post%20one?page=2&q=%C3%A9",
            "/missing.css?v=1",
            "/css/app.css/extra",
        ] {
            let r = gateway::get(gw.addr, path).await;
            assert!(is_front_controller(&r), "{upstream} {path}");
            let j = r.json();
            assert_eq!(j["REQUEST_URI"], path, "{upstream}");
            assert_eq!(
                j["QUERY_STRING"],
                path.split_once('?').map_or("", |(_, q)| q)
            );
            assert_eq!(j["SCRIPT_NAME"], "/index.php");
        }
        gw.shutdown().await;
        // Without one, 404.
        let gw = site.gateway(&upstream, &[]).await;
        assert_eq!(gateway::get(gw.addr, "/blog/post").await.status, 404);
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn php_only_front_controller_runs_nothing_else() {
    let site = Site::new();
    for upstream in support::shared_upstreams() {
        let gw = site
            .gateway(
                &upstream,
                &[
                    "--front-controller",
                    "/index.php",
                    "--php-only-front-controller",
                ],
            )
            .await;
        for path in ["/script.php", "/sub/page.php", "/script.php/x"] {
            let r = gateway::get(gw.addr, path).await;
            assert_eq!(r.status, 404, "{upstream} {path}");
        }
        for path in ["/", "/index.php", "/some/route"] {
            assert!(
                is_front_controller(&gateway::get(gw.addr, path).await),
                "{upstream} {path}"
            );
        }
        let j = gateway::get(gw.addr, "/index.php/a/b").await.json();
        assert_eq!(j["PATH_INFO"], "/a/b", "{upstream}");
        // app/index.php may not run: its static index answers instead.
        assert_eq!(
            gateway::get(gw.addr, "/app/").await.body,
            site.bytes("app/index.html")
        );
        assert_eq!(gateway::get(gw.addr, "/css/app.css").await.status, 200);
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn php_source_is_never_served() {
    let site = Site::new();
    for upstream in support::shared_upstreams() {
        for extra in [&[][..], &FC[..]] {
            let gw = site.gateway(&upstream, extra).await;
            for path in [
                "/secret.inc",
                "/SECRET.INC",
                "/view.phtml",
                "/tool.phar",
                "/secret%2einc",
            ] {
                assert_refused(
                    &gateway::get(gw.addr, path).await,
                    &format!("{upstream} {path}"),
                );
            }
            gw.shutdown().await;
        }
        // The list is configurable; `.php` always runs and is never sent.
        let gw = site.gateway(&upstream, &["--never-serve-ext", "css"]).await;
        assert_eq!(gateway::get(gw.addr, "/css/app.css").await.status, 404);
        let r = gateway::get(gw.addr, "/script.php").await;
        assert_eq!(r.json()["script"], "script.php", "{upstream}");
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn dotfiles_are_404_except_well_known() {
    let site = Site::new();
    for upstream in support::shared_upstreams() {
        let gw = site.gateway(&upstream, &FC).await;
        for path in [
            "/.env",
            "/.git/config",
            "/.git/",
            "/.git",
            "/.htaccess",
            "/%2eenv",
            "/css/../.env",
            "/.well-known/../.env",
        ] {
            let r = gateway::get(gw.addr, path).await;
            assert_eq!(r.status, 404, "{upstream} {path}");
            assert!(!r.text().contains("secret"), "{upstream} {path}");
        }
        let r = gateway::get(gw.addr, "/.well-known/x.txt").await;
        assert_eq!(r.status, 200, "{upstream}");
        assert_eq!(r.body, site.bytes(".well-known/x.txt"));
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn cve_2019_11043_control_bytes_in_path_are_400() {
    let site = Site::new();
    for upstream in support::shared_upstreams() {
        let gw = site.gateway(&upstream, &FC).await;
        for path in [
            "/script.php/%0a",
            "/script.php/PATH%0Ainfo.php?a",
            "/index.php%0a.php",
            "/script.php%0d",
            "/x%0D%0Ay.php",
            "/css/app.css%00.php",
            "/%00",
        ] {
            let r = gateway::get(gw.addr, path).await;
            assert_eq!(r.status, 400, "{upstream} {path}");
        }
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn fix_pathinfo_trap_never_runs_an_uploaded_image() {
    let site = Site::new();
    for upstream in support::shared_upstreams() {
        for extra in [&[][..], &FC[..]] {
            let gw = site.gateway(&upstream, extra).await;
            for path in [
                "/uploads/evil.jpg/x.php",
                "/uploads/evil.jpg%2fx.php",
                "/uploads/evil.jpg/x.PHP",
                "/uploads/evil.jpg/.php",
            ] {
                let r = gateway::get(gw.addr, path).await;
                assert_eq!(r.status, 404, "{upstream} {path}");
                assert!(!r.text().contains("pwned"), "{upstream} {path}");
            }
            // The upload itself is bytes, as uploaded: never executed.
            let r = gateway::get(gw.addr, "/uploads/evil.jpg").await;
            assert_eq!(r.status, 200);
            assert_eq!(r.body, site.bytes("uploads/evil.jpg"));
            assert_eq!(r.header("content-type").as_deref(), Some("image/jpeg"));
            gw.shutdown().await;
        }
    }
}

#[tokio::test]
async fn unicode_folding_never_runs_php() {
    let site = Site::new();
    let fullwidth = "%EF%BD%90%EF%BD%88%EF%BD%90"; // ｐｈｐ
    for upstream in support::shared_upstreams() {
        let gw = site.gateway(&upstream, &FC).await;
        // An existing `fw.ｐｈｐ` is not PHP: sent as bytes, never executed.
        let r = gateway::get(gw.addr, &format!("/fw.{fullwidth}")).await;
        assert_eq!(r.status, 200, "{upstream}");
        assert_eq!(r.body, site.bytes("fw.\u{ff50}\u{ff48}\u{ff50}"));
        assert!(!r.text().contains("fullwidth executed"));
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/octet-stream")
        );
        // `script.ｐｈｐ` names nothing: the front controller, never script.php.
        let r = gateway::get(gw.addr, &format!("/script.{fullwidth}")).await;
        assert!(is_front_controller(&r), "{upstream}: {}", r.text());
        let r = gateway::get(gw.addr, &format!("/fw.{fullwidth}/x.php")).await;
        assert_eq!(r.status, 404, "{upstream}");
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn path_traversal_never_leaves_the_root() {
    let site = Site::new();
    for upstream in support::shared_upstreams() {
        let gw = site.gateway(&upstream, &FC).await;
        for path in [
            "/../outside/secret.txt",
            "/../outside/hello.php",
            "/%2e%2e/outside/secret.txt",
            "/%2E%2E%2Foutside%2Fsecret.txt",
            "/css/..%2f..%2f..%2foutside/secret.txt",
            "/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            "/%5c..%5coutside%5csecret.txt",
            "/%c0%ae%c0%ae/outside/secret.txt",
            "/%e0%80%ae%e0%80%ae/outside/hello.php",
            "/%c0%af../outside/secret.txt",
            "/.%2e/outside/secret.txt",
        ] {
            let r = gateway::get(gw.addr, path).await;
            assert_refused(&r, &format!("{upstream} {path}"));
        }
        // Spellings an HTTP client library would refuse to send.
        for path in [
            "/..\\outside\\secret.txt",
            "/css\\..\\..\\outside\\hello.php",
        ] {
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let raw = gateway::raw(gw.addr, req.as_bytes(), Duration::from_secs(5)).await;
            let raw = String::from_utf8_lossy(&raw);
            assert!(
                raw.starts_with("HTTP/1.1 400") || raw.starts_with("HTTP/1.1 404"),
                "{upstream} {path}: {raw}"
            );
            assert!(!raw.contains(OUTSIDE_SECRET) && !raw.contains("outside ran"));
        }
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn symlinks_out_of_the_root_are_refused_unless_allowed() {
    let site = Site::new();
    for upstream in support::shared_upstreams() {
        let gw = site.gateway(&upstream, &FC).await;
        for path in [
            "/escape.txt",
            "/linkdir/secret.txt",
            "/linkdir",
            "/outside.php",
            "/linkdir/hello.php",
        ] {
            let r = gateway::get(gw.addr, path).await;
            assert_eq!(r.status, 404, "{upstream} {path}");
            assert_refused(&r, &format!("{upstream} {path}"));
        }
        gw.shutdown().await;

        let mut extra = FC.to_vec();
        extra.push("--follow-symlinks-outside-root");
        let gw = site.gateway(&upstream, &extra).await;
        assert_eq!(
            gateway::get(gw.addr, "/escape.txt").await.text(),
            OUTSIDE_SECRET
        );
        assert_eq!(
            gateway::get(gw.addr, "/linkdir/secret.txt").await.text(),
            OUTSIDE_SECRET
        );
        assert_eq!(
            gateway::get(gw.addr, "/outside.php").await.text(),
            "outside ran",
            "{upstream}"
        );
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn other_methods_on_static_files_are_405() {
    let site = Site::new();
    for upstream in support::shared_upstreams() {
        let gw = site.gateway(&upstream, &FC).await;
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            let r = gateway::request(gw.addr, method, "/css/app.css", &[], Bytes::from("x")).await;
            assert_eq!(r.status, 405, "{upstream} {method}");
            assert_eq!(r.header("allow").as_deref(), Some("GET, HEAD"));
        }
        // Scripts take any method.
        let r = gateway::request(gw.addr, "POST", "/script.php", &[], Bytes::from("x")).await;
        assert_eq!(r.json()["script"], "script.php", "{upstream}");
        gw.shutdown().await;
    }
}

/// `script-stat-cache`: a script found is trusted for the interval, so one
/// removed within it still goes to php-fpm (whose own 404 answers it); with
/// `0s` the gateway sees the removal at once. Both requests ride one
/// kept-alive connection, so one serving thread (whose table it is) routes
/// them.
#[tokio::test]
async fn a_removed_script_within_the_script_stat_cache_interval() {
    let site = Site::new();
    for upstream in support::shared_upstreams() {
        for (interval, php_fpm_answers) in [("60s", true), ("0s", false)] {
            let gw = site
                .gateway(&upstream, &["--script-stat-cache", interval])
                .await;
            let script = site.root.join("going.php");
            std::fs::write(&script, "<?php echo 'still here';\n").unwrap();
            let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
            let mut client = gateway::keep_alive(stream).await.unwrap();
            let (status, body) = gateway::get_on(&mut client, "localhost", "/going.php")
                .await
                .unwrap();
            assert_eq!((status, body.as_str()), (200, "still here"), "{upstream}");
            std::fs::remove_file(&script).unwrap();
            let (status, body) = gateway::get_on(&mut client, "localhost", "/going.php")
                .await
                .unwrap();
            let what = format!("{upstream} --script-stat-cache {interval}: {body:?}");
            assert_eq!(status, 404, "{what}");
            // php-fpm's 404 says "No input file specified." (or "File not
            // found.", as configured), the gateway's "Not Found".
            let from_php_fpm = body.contains("No input file") || body.contains("File not found");
            assert_eq!(from_php_fpm, php_fpm_answers, "{what}");
            assert_eq!(body == "Not Found\n", !php_fpm_answers, "{what}");
            // A new script runs at once either way: what is missing is never remembered.
            std::fs::write(&script, "<?php echo 'back';\n").unwrap();
            let (status, body) = gateway::get_on(&mut client, "localhost", "/going.php")
                .await
                .unwrap();
            assert_eq!((status, body.as_str()), (200, "back"), "{what}");
            std::fs::remove_file(&script).unwrap();
            gw.shutdown().await;
        }
    }
}
