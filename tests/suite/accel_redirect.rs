//! `X-Accel-Redirect`, `--internal-location` and `X-Sendfile` through HTTP
//! against a real php-fpm over both `unix:` and `tcp:`, on a copy of
//! `fixtures/site`: `download.php` names a file and the gateway sends it
//! instead of the script's body, under the same refusals as client paths.

use crate::support;

use bytes::Bytes;
use support::gateway::{self, Reply};
use support::site::{Site, OUTSIDE_SECRET};

const INTERNAL: [&str; 2] = ["--internal-location", "/protected"];

/// `download.php` with a query built from `pairs` (values percent-encoded).
fn download(pairs: &[(&str, &str)]) -> String {
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let v: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'/' => {
                        char::from(b).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={v}")
        })
        .collect();
    format!("/download.php?{}", query.join("&"))
}

fn assert_no_gateway_headers(r: &Reply) {
    for name in ["x-accel-redirect", "x-sendfile", "x-accel-buffering"] {
        assert!(r.header(name).is_none(), "{name} reached the client");
    }
}

#[tokio::test]
async fn x_accel_redirect_serves_the_internal_file_instead_of_the_php_body() {
    let site = Site::new();
    let report = site.bytes("protected/report.txt");
    for upstream in support::shared_upstreams() {
        let gw = site.gateway(&upstream, &INTERNAL).await;
        let r = gateway::get(gw.addr, &download(&[("accel", "/protected/report.txt")])).await;
        assert_eq!(r.status, 200, "{upstream}: {}", r.text());
        assert_eq!(r.body, report, "{upstream}");
        assert_no_gateway_headers(&r);
        // PHP's default text/html said nothing about the file: the file's type stands.
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(r.header("content-length"), Some(report.len().to_string()));
        // The script's other headers are kept.
        assert_eq!(r.header("x-from-php").as_deref(), Some("yes"));
        assert!(r
            .header("set-cookie")
            .is_some_and(|c| c.starts_with("downloaded=1")));

        // What the script set explicitly wins.
        let r = gateway::get(
            gw.addr,
            &download(&[
                ("accel", "/protected/report.txt"),
                ("type", "application/zip"),
                ("disposition", "attachment; filename=\"q3.zip\""),
            ]),
        )
        .await;
        assert_eq!(r.body, report, "{upstream}");
        assert_eq!(r.header("content-type").as_deref(), Some("application/zip"));
        assert_eq!(
            r.header("content-disposition").as_deref(),
            Some("attachment; filename=\"q3.zip\"")
        );
        assert_no_gateway_headers(&r);
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn internal_location_is_404_for_clients() {
    let site = Site::new();
    for upstream in support::shared_upstreams() {
        let gw = site.gateway(&upstream, &INTERNAL).await;
        for path in [
            "/protected/report.txt",
            "/protected/",
            "/protected",
            "/%70rotected/report.txt",
            "/css/../protected/report.txt",
        ] {
            let r = gateway::get(gw.addr, path).await;
            assert_eq!(r.status, 404, "{upstream} {path}");
            assert!(!r.text().contains("quarterly"), "{path}");
        }
        gw.shutdown().await;
        // Without --internal-location the directory is public, as in nginx.
        let gw = site.gateway(&upstream, &[]).await;
        let r = gateway::get(gw.addr, "/protected/report.txt").await;
        assert_eq!(r.status, 200, "{upstream}");
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn x_accel_redirect_keeps_the_never_serve_rules() {
    let site = Site::new();
    for upstream in support::shared_upstreams() {
        let gw = site.gateway(&upstream, &INTERNAL).await;
        for target in [
            "/.env",
            "/.git/config",
            "/secret.inc",
            "/script.php",
            "/escape.txt",
            "/../outside/secret.txt",
            "/protected/missing.txt",
            "/protected/",
        ] {
            let r = gateway::get(gw.addr, &download(&[("accel", target)])).await;
            assert_eq!(r.status, 404, "{upstream} {target}: {}", r.text());
            for leak in [
                "php body",
                OUTSIDE_SECRET,
                "<?php",
                "git-secret",
                "DB_PASSWORD",
            ] {
                assert!(!r.text().contains(leak), "{target}: leaked {leak:?}");
            }
            assert_no_gateway_headers(&r);
        }
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn x_accel_redirect_file_answers_ranges_conditionals_and_head() {
    let site = Site::new();
    let report = site.bytes("protected/report.txt");
    let url = download(&[("accel", "/protected/report.txt")]);
    for upstream in support::shared_upstreams() {
        let gw = site.gateway(&upstream, &INTERNAL).await;
        let r = gateway::request(
            gw.addr,
            "GET",
            &url,
            &[("Range", "bytes=0-8")],
            Bytes::new(),
        )
        .await;
        assert_eq!(r.status, 206, "{upstream}");
        assert_eq!(&r.body[..], &report[..9]);
        let etag = gateway::get(gw.addr, &url).await.header("etag").unwrap();
        let r = gateway::request(
            gw.addr,
            "GET",
            &url,
            &[("If-None-Match", &etag)],
            Bytes::new(),
        )
        .await;
        assert_eq!(r.status, 304, "{upstream}");
        assert!(r.body.is_empty());
        let r = gateway::request(gw.addr, "HEAD", &url, &[], Bytes::new()).await;
        assert_eq!(r.status, 200, "{upstream}");
        assert!(r.body.is_empty());
        // A POST answered with a file gets the file, as a GET would.
        let r = gateway::request(gw.addr, "POST", &url, &[], Bytes::from_static(b"a=1")).await;
        assert_eq!(r.status, 200, "{upstream}");
        assert_eq!(r.body, report);
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn x_sendfile_only_inside_sendfile_dir() {
    let site = Site::new();
    std::fs::write(site.outside.join(".hidden.txt"), "hidden-outside").unwrap();
    let secret = site.outside.join("secret.txt").display().to_string();
    for upstream in support::shared_upstreams() {
        // Not configured: the header is dropped and the script's body goes out.
        let gw = site.gateway(&upstream, &[]).await;
        let r = gateway::get(gw.addr, &download(&[("sendfile", &secret)])).await;
        assert_eq!(r.status, 200, "{upstream}");
        assert_eq!(r.text(), "php body");
        assert_no_gateway_headers(&r);
        gw.shutdown().await;

        let dir = site.outside.display().to_string();
        let gw = site.gateway(&upstream, &["--sendfile-dir", &dir]).await;
        let r = gateway::get(gw.addr, &download(&[("sendfile", &secret)])).await;
        assert_eq!(r.status, 200, "{upstream}");
        assert_eq!(r.text(), OUTSIDE_SECRET);
        assert_no_gateway_headers(&r);
        let root = site.root_arg();
        for refused in [
            format!("{root}/css/app.css"),
            format!("{dir}/../root/css/app.css"),
            format!("{dir}/.hidden.txt"),
            format!("{dir}/hello.php"),
            format!("{dir}/missing.txt"),
            "/etc/passwd".to_owned(),
            "secret.txt".to_owned(),
        ] {
            let r = gateway::get(gw.addr, &download(&[("sendfile", &refused)])).await;
            assert_eq!(r.status, 404, "{upstream} {refused}");
            assert!(!r.text().contains("php body") && !r.text().contains("root:"));
        }
        gw.shutdown().await;
    }
}
