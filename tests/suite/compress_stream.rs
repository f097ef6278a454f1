//! Streaming and compression of PHP responses through HTTP against a real
//! php-fpm over both `unix:` and `tcp:`: `--compress` (gzip/brotli by
//! Accept-Encoding and type), and responses that must never be held back or
//! compressed (event streams, `X-Accel-Buffering: no`).
//!
//! `fixtures/php/events.php` proves a stream is not held back without
//! timing anything: it sends "first", then waits for a file the test creates
//! only once it has read "first"; a buffered response would end in "timeout".

use crate::support;

use std::io::{Read, Write};

use bytes::Bytes;
use http_body_util::BodyExt;
use support::gateway::{self, Gateway};
use support::php_fpm::fixtures_dir;

async fn start(upstream: &str, extra: &[&str]) -> Gateway {
    let root = fixtures_dir().display().to_string();
    let mut args = vec!["--upstream", upstream, "--root", root.as_str()];
    args.extend_from_slice(extra);
    Gateway::start(&args).await
}

fn html() -> Vec<u8> {
    b"<p>hello compressed world</p>\n".repeat(200)
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn unbrotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(data, 4096)
        .read_to_end(&mut out)
        .expect("valid brotli");
    out
}

/// Decodes a stream as its bytes arrive, as a browser does.
enum Decoder {
    Identity(Vec<u8>),
    Gzip(Box<flate2::write::GzDecoder<Vec<u8>>>),
    Brotli(Box<brotli::DecompressorWriter<Vec<u8>>>),
}

impl Decoder {
    fn new(content_encoding: Option<&str>) -> Decoder {
        match content_encoding {
            None => Decoder::Identity(Vec::new()),
            Some("gzip") => Decoder::Gzip(Box::new(flate2::write::GzDecoder::new(Vec::new()))),
            Some("br") => {
                Decoder::Brotli(Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096)))
            }
            Some(other) => panic!("unexpected Content-Encoding {other}"),
        }
    }

    fn push(&mut self, data: &[u8]) -> String {
        let out = match self {
            Decoder::Identity(v) => {
                v.extend_from_slice(data);
                &*v
            }
            Decoder::Gzip(d) => {
                d.write_all(data).unwrap();
                d.flush().unwrap();
                d.get_ref()
            }
            Decoder::Brotli(d) => {
                d.write_all(data).unwrap();
                let _ = d.flush();
                d.get_ref()
            }
        };
        String::from_utf8_lossy(out).into_owned()
    }
}

/// Requests events.php with `query` and `headers`, reads until "first" has
/// been decoded, releases the script, and returns the response headers and
/// the whole decoded text.
async fn released_stream(
    gw: &Gateway,
    query: &str,
    headers: &[(&str, &str)],
) -> (http::HeaderMap, String) {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    let url = format!(
        "/events.php?wait={}{query}",
        release.display().to_string().replace('/', "%2F")
    );
    let resp = gateway::send(gw.addr, "GET", &url, headers, Bytes::new()).await;
    assert_eq!(resp.status(), 200);
    let (parts, mut body) = resp.into_parts();
    let encoding = parts
        .headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut decoder = Decoder::new(encoding.as_deref());
    let mut text = String::new();
    let mut released = false;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.expect("body frame").into_data() else {
            continue;
        };
        text = decoder.push(&data);
        if !released && text.contains("data: first") {
            std::fs::write(&release, b"go").unwrap();
            released = true;
        }
    }
    (parts.headers, text)
}

#[tokio::test]
async fn event_stream_arrives_incrementally_and_uncompressed() {
    for upstream in support::shared_upstreams() {
        for extra in [&[][..], &["--compress"][..]] {
            let gw = start(&upstream, extra).await;
            let (headers, text) =
                released_stream(&gw, "", &[("Accept-Encoding", "gzip, br")]).await;
            assert!(
                text.contains("data: released"),
                "{upstream} {extra:?}: {text}"
            );
            assert!(headers.get("content-encoding").is_none());
            let content_type = headers["content-type"].to_str().unwrap();
            assert!(
                content_type.starts_with("text/event-stream"),
                "{content_type}"
            );
            gw.shutdown().await;
        }
    }
}

#[tokio::test]
async fn x_accel_buffering_no_streams_uncompressed_and_is_not_passed_on() {
    for upstream in support::shared_upstreams() {
        let gw = start(&upstream, &["--compress"]).await;
        let (headers, text) = released_stream(
            &gw,
            "&type=text/plain&buffering=no",
            &[("Accept-Encoding", "gzip, br")],
        )
        .await;
        assert!(text.contains("data: released"), "{upstream}: {text}");
        assert!(headers.get("content-encoding").is_none(), "{upstream}");
        assert!(headers.get("x-accel-buffering").is_none(), "{upstream}");
        // stream.php says X-Accel-Buffering: no too.
        let r = gateway::request(
            gw.addr,
            "GET",
            "/stream.php?n=3&delay_ms=0",
            &[("Accept-Encoding", "gzip")],
            Bytes::new(),
        )
        .await;
        assert_eq!(r.text(), "line 1\nline 2\nline 3\n", "{upstream}");
        assert!(r.header("content-encoding").is_none());
        assert!(r.header("x-accel-buffering").is_none());
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn compressed_stream_still_delivers_each_flush() {
    for upstream in support::shared_upstreams() {
        let gw = start(&upstream, &["--compress"]).await;
        for accept in ["gzip", "br"] {
            let (headers, text) =
                released_stream(&gw, "&type=text/plain", &[("Accept-Encoding", accept)]).await;
            assert_eq!(headers["content-encoding"], accept, "{upstream}");
            assert!(
                text.contains("data: released"),
                "{upstream} {accept}: {text}"
            );
        }
        gw.shutdown().await;
    }
}

async fn page(gw: &Gateway, query: &str, accept: Option<&str>) -> gateway::Reply {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept-Encoding", a)).into_iter().collect();
    let r = gateway::request(
        gw.addr,
        "GET",
        &format!("/page.php{query}"),
        &headers,
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r
}

#[tokio::test]
async fn compress_is_off_by_default() {
    for upstream in support::shared_upstreams() {
        let gw = start(&upstream, &[]).await;
        let r = page(&gw, "", Some("gzip, br")).await;
        assert!(r.header("content-encoding").is_none(), "{upstream}");
        assert!(r.header("vary").is_none());
        assert_eq!(r.body, html());
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn compress_follows_accept_encoding() {
    for upstream in support::shared_upstreams() {
        let gw = start(&upstream, &["--compress"]).await;
        let r = page(&gw, "?etag=1", Some("gzip")).await;
        assert_eq!(
            r.header("content-encoding").as_deref(),
            Some("gzip"),
            "{upstream}"
        );
        assert_eq!(gunzip(&r.body), html());
        assert!(r.body.len() < html().len() / 4);
        assert!(r.header("content-length").is_none());
        assert_eq!(r.header("vary").as_deref(), Some("Accept-Encoding"));
        assert_eq!(r.header("etag").as_deref(), Some("W/\"v1\""));

        let r = page(&gw, "", Some("gzip, deflate, br")).await;
        assert_eq!(
            r.header("content-encoding").as_deref(),
            Some("br"),
            "{upstream}"
        );
        assert_eq!(unbrotli(&r.body), html());
        let r = page(&gw, "", Some("br;q=0.5, gzip")).await;
        assert_eq!(r.header("content-encoding").as_deref(), Some("gzip"));

        // Not accepted: sent as is, still marked as varying.
        for accept in [None, Some("identity"), Some("gzip;q=0, br;q=0")] {
            let r = page(&gw, "", accept).await;
            assert!(r.header("content-encoding").is_none(), "{accept:?}");
            assert_eq!(r.body, html());
            assert_eq!(r.header("vary").as_deref(), Some("Accept-Encoding"));
        }
        // A HEAD says what the GET would, without a body.
        let r = gateway::request(
            gw.addr,
            "HEAD",
            "/page.php",
            &[("Accept-Encoding", "gzip")],
            Bytes::new(),
        )
        .await;
        assert_eq!(
            r.header("content-encoding").as_deref(),
            Some("gzip"),
            "{upstream}"
        );
        assert!(r.body.is_empty());
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn compress_only_text_like_types_not_yet_encoded() {
    for upstream in support::shared_upstreams() {
        let gw = start(&upstream, &["--compress"]).await;
        let r = page(&gw, "?kind=json", Some("gzip")).await;
        assert_eq!(
            r.header("content-encoding").as_deref(),
            Some("gzip"),
            "{upstream}"
        );
        let json: serde_json::Value = serde_json::from_slice(&gunzip(&r.body)).unwrap();
        assert_eq!(json.as_array().map(Vec::len), Some(300));

        let r = page(&gw, "?kind=png", Some("gzip")).await;
        assert!(r.header("content-encoding").is_none(), "{upstream}");
        assert!(r.header("vary").is_none());
        assert_eq!(r.body.len(), 8 * 500);

        // The script compressed it itself: passed through, not twice.
        let r = page(&gw, "?kind=pregzipped", Some("gzip, br")).await;
        assert_eq!(
            r.header("content-encoding").as_deref(),
            Some("gzip"),
            "{upstream}"
        );
        assert_eq!(gunzip(&r.body), html());

        let r = page(&gw, "?kind=short", Some("gzip")).await;
        assert!(r.header("content-encoding").is_none(), "{upstream}");
        assert_eq!(r.text(), "ok");
        gw.shutdown().await;
    }
}
