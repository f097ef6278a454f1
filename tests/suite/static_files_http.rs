//! Static files through HTTP: content types, validators and 304, ranges,
//! HEAD, precompressed siblings, Cache-Control and large files. The gateway
//! runs in front of a real php-fpm over both `unix:` and `tcp:` (static
//! answers must not depend on which), on a copy of `fixtures/site`.

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use support::gateway::{self, Gateway, Reply};
use support::site::Site;

async fn start(upstream: &str, root: &str, extra: &[&str]) -> Gateway {
    let mut args = vec!["--upstream", upstream, "--root", root];
    args.extend_from_slice(extra);
    Gateway::start(&args).await
}

async fn get_with(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    gateway::request(gw.addr, "GET", path, headers, Bytes::new()).await
}

#[tokio::test]
async fn content_type_length_and_nosniff() {
    let site = Site::new();
    for upstream in support::shared_upstreams() {
        let gw = start(&upstream, &site.root_arg(), &[]).await;
        for (path, rel, ctype) in [
            ("/css/app.css", "css/app.css", "text/css; charset=utf-8"),
            ("/img/logo.png", "img/logo.png", "image/png"),
            ("/js/app.js", "js/app.js", "text/javascript; charset=utf-8"),
            (
                "/noindex/readme.txt",
                "noindex/readme.txt",
                "text/plain; charset=utf-8",
            ),
        ] {
            let r = gateway::get(gw.addr, path).await;
            assert_eq!(r.status, 200, "{upstream} {path}");
            assert_eq!(r.body, site.bytes(rel), "{path}");
            assert_eq!(r.header("content-type").as_deref(), Some(ctype), "{path}");
            assert_eq!(
                r.header("content-length"),
                Some(site.bytes(rel).len().to_string())
            );
            assert_eq!(
                r.header("x-content-type-options").as_deref(),
                Some("nosniff")
            );
            assert_eq!(r.header("accept-ranges").as_deref(), Some("bytes"));
        }
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn conditional_get_gives_304() {
    let site = Site::new();
    for upstream in support::shared_upstreams() {
        let gw = start(&upstream, &site.root_arg(), &[]).await;
        let first = gateway::get(gw.addr, "/css/app.css").await;
        let etag = first.header("etag").expect("ETag");
        let modified = first.header("last-modified").expect("Last-Modified");
        for header in [
            ("if-none-match", etag.as_str()),
            ("if-modified-since", modified.as_str()),
        ] {
            let r = get_with(&gw, "/css/app.css", &[header]).await;
            assert_eq!(r.status, 304, "{upstream} {header:?}");
            assert!(r.body.is_empty());
            assert_eq!(r.header("etag").as_deref(), Some(etag.as_str()));
        }
        let r = get_with(&gw, "/css/app.css", &[("if-none-match", "\"stale\"")]).await;
        assert_eq!(r.status, 200, "{upstream}");
        let r = get_with(
            &gw,
            "/css/app.css",
            &[("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT")],
        )
        .await;
        assert_eq!(r.status, 200, "{upstream}");

        // A changed file gets a new ETag, so the old one no longer matches.
        std::fs::write(site.root.join("css/app.css"), "body { color: red; }\n").unwrap();
        let r = get_with(&gw, "/css/app.css", &[("if-none-match", etag.as_str())]).await;
        assert_eq!(r.status, 200, "{upstream}");
        assert_ne!(r.header("etag"), Some(etag.clone()));
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn single_range_is_206_and_unsatisfiable_is_416() {
    let site = Site::new();
    let js = site.bytes("js/app.js");
    let len = js.len();
    for upstream in support::shared_upstreams() {
        let gw = start(&upstream, &site.root_arg(), &[]).await;
        for (range, start, end) in [
            ("bytes=0-9", 0, 9),
            ("bytes=100-", 100, len - 1),
            ("bytes=-10", len - 10, len - 1),
            (&format!("bytes=5-{}", len * 2), 5, len - 1),
        ] {
            let r = get_with(&gw, "/js/app.js", &[("range", range)]).await;
            assert_eq!(r.status, 206, "{upstream} {range}");
            assert_eq!(r.body, js[start..=end], "{range}");
            assert_eq!(
                r.header("content-range"),
                Some(format!("bytes {start}-{end}/{len}"))
            );
        }
        for range in [format!("bytes={len}-"), "bytes=-0".to_owned()] {
            let r = get_with(&gw, "/js/app.js", &[("range", &range)]).await;
            assert_eq!(r.status, 416, "{upstream} {range}");
            assert_eq!(r.header("content-range"), Some(format!("bytes */{len}")));
        }
        // Several ranges: the whole file, no multipart.
        let r = get_with(&gw, "/js/app.js", &[("range", "bytes=0-1,5-6")]).await;
        assert_eq!(r.status, 200, "{upstream}");
        assert_eq!(r.body, js);
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn head_sends_headers_only() {
    let site = Site::new();
    let len = site.bytes("js/app.js").len();
    for upstream in support::shared_upstreams() {
        let gw = start(&upstream, &site.root_arg(), &[]).await;
        let raw = gateway::raw(
            gw.addr,
            b"HEAD /js/app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        let raw = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        assert!(raw.starts_with("http/1.1 200"), "{upstream}: {raw}");
        assert!(
            raw.contains(&format!("\r\ncontent-length: {len}\r\n")),
            "{raw}"
        );
        assert!(raw.contains("\r\netag: "), "{raw}");
        assert!(raw.ends_with("\r\n\r\n"), "a body was sent: {raw}");
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn precompressed_siblings_follow_accept_encoding() {
    let site = Site::new();
    for upstream in support::shared_upstreams() {
        let gw = start(&upstream, &site.root_arg(), &[]).await;
        for (accept, rel, encoding) in [
            ("", "js/app.js", None),
            ("gzip, deflate, br", "js/app.js.br", Some("br")),
            ("gzip", "js/app.js.gz", Some("gzip")),
            ("br;q=0, gzip", "js/app.js.gz", Some("gzip")),
            ("identity", "js/app.js", None),
        ] {
            let headers: &[(&str, &str)] = if accept.is_empty() {
                &[]
            } else {
                &[("accept-encoding", accept)]
            };
            let r = get_with(&gw, "/js/app.js", headers).await;
            assert_eq!(r.status, 200, "{upstream} {accept}");
            assert_eq!(r.body, site.bytes(rel), "{upstream} {accept}");
            assert_eq!(
                r.header("content-encoding").as_deref(),
                encoding,
                "{accept}"
            );
            assert_eq!(r.header("vary").as_deref(), Some("accept-encoding"));
            assert_eq!(
                r.header("content-type").as_deref(),
                Some("text/javascript; charset=utf-8")
            );
        }
        // Without siblings there is nothing to vary.
        let r = get_with(&gw, "/css/app.css", &[("accept-encoding", "br, gzip")]).await;
        assert_eq!(r.header("content-encoding"), None);
        assert_eq!(r.header("vary"), None);
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn cache_control_per_extension() {
    let site = Site::new();
    let dir = tempfile::tempdir().unwrap();
    for upstream in support::shared_upstreams() {
        let file = dir.path().join("gw.toml");
        std::fs::write(
            &file,
            format!(
                "upstream = \"{upstream}\"\nroot = \"{}\"\n\n[cache-control]\ncss = \"max-age=3600\"\npng = \"public, max-age=86400, immutable\"\n",
                site.root.display()
            ),
        )
        .unwrap();
        let gw = Gateway::start(&["--config", file.to_str().unwrap()]).await;
        let cc = |r: &Reply| r.header("cache-control");
        assert_eq!(
            cc(&gateway::get(gw.addr, "/css/app.css").await).as_deref(),
            Some("max-age=3600"),
            "{upstream}"
        );
        assert_eq!(
            cc(&gateway::get(gw.addr, "/img/logo.png").await).as_deref(),
            Some("public, max-age=86400, immutable")
        );
        assert_eq!(cc(&gateway::get(gw.addr, "/js/app.js").await), None);
        gw.shutdown().await;

        let gw = start(
            &upstream,
            &site.root_arg(),
            &["--cache-control", "js=no-cache"],
        )
        .await;
        assert_eq!(
            cc(&gateway::get(gw.addr, "/js/app.js").await).as_deref(),
            Some("no-cache")
        );
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn large_file_streams_intact() {
    let site = Site::new();
    // 5 MiB + a bit, so the body spans many 64 KiB reads and a partial last one.
    let data: Vec<u8> = (0..5 * 1024 * 1024 + 777u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(site.root.join("big.bin"), &data).unwrap();
    let digest = |d: &[u8]| Sha256::digest(d).to_vec();
    for upstream in support::shared_upstreams() {
        let gw = start(&upstream, &site.root_arg(), &[]).await;
        let r = gateway::get(gw.addr, "/big.bin").await;
        assert_eq!(r.status, 200, "{upstream}");
        assert_eq!(r.body.len(), data.len());
        assert_eq!(digest(&r.body), digest(&data));
        let r = get_with(&gw, "/big.bin", &[("range", "bytes=1000000-3000000")]).await;
        assert_eq!(r.status, 206);
        assert_eq!(digest(&r.body), digest(&data[1_000_000..=3_000_000]));
        gw.shutdown().await;
    }
}
