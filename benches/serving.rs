//! Per-request costs on the serving path that the codec bench does not
//! cover: parsing a PHP script's CGI head, and answering a request for a
//! small remembered static file (validators, conditionals, ranges and the
//! response head). `cargo bench --bench serving`.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use fcgi_gateway::cgi::response::{HeadParser, DEFAULT_HEAD_LIMIT};
use fcgi_gateway::static_files::{serve, StaticConfig};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method};

const PAGE: &str =
    "<!DOCTYPE html>\n<html><head><title>x</title></head><body>hello</body></html>\n";

/// A hello-world page's head, and a login redirect's ten headers.
fn heads() -> [(&'static str, Bytes); 2] {
    let small =
        format!("Content-type: text/html; charset=UTF-8\r\nX-Powered-By: PHP/8.2\r\n\r\n{PAGE}");
    let ten = format!(
        "Status: 302 Found\r\n\
         X-Powered-By: PHP/8.2.20\r\n\
         Set-Cookie: PHPSESSID=5f3a0c9e1b7d4e2a8c6f0b1d3e5a7c9f; path=/; HttpOnly; SameSite=Lax\r\n\
         Expires: Thu, 19 Nov 1981 08:52:00 GMT\r\n\
         Cache-Control: no-store, no-cache, must-revalidate\r\n\
         Pragma: no-cache\r\n\
         Set-Cookie: lang=en; expires=Fri, 31 Dec 2038 23:59:59 GMT; Max-Age=433036800; path=/\r\n\
         Location: https://wiki.example.org/doku.php?id=start&do=login&sectok=\r\n\
         Vary: Accept-Encoding\r\n\
         Content-type: text/html; charset=UTF-8\r\n\
         \r\n{PAGE}"
    );
    [
        ("2 headers", Bytes::from(small)),
        ("10 headers", Bytes::from(ten)),
    ]
}

fn cgi_head(c: &mut Criterion) {
    for (what, input) in heads() {
        // In one STDOUT record, and split across two mid-line.
        let mid = (input.len() - PAGE.len()) / 2;
        c.bench_function(&format!("cgi head: {what}, one record"), |b| {
            b.iter(|| {
                let mut parser = HeadParser::new(DEFAULT_HEAD_LIMIT);
                black_box(parser.push(black_box(input.clone())))
            })
        });
        c.bench_function(&format!("cgi head: {what}, two records"), |b| {
            b.iter(|| {
                let mut parser = HeadParser::new(DEFAULT_HEAD_LIMIT);
                let first = parser.push(black_box(input.slice(..mid)));
                assert!(matches!(first, Ok(None)));
                black_box(parser.push(black_box(input.slice(mid..))))
            })
        });
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            panic!("bad header {name}: {value}");
        };
        map.append(name, value);
    }
    map
}

fn static_file(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("page.css");
    std::fs::write(&path, [b'x'; 4096]).expect("write page.css");
    // A file is remembered (served from memory) once it has stayed
    // unchanged for a second.
    std::thread::sleep(Duration::from_millis(1100));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let cfg = StaticConfig::default();
    let meta = std::fs::metadata(&path).expect("stat page.css");
    let first = rt
        .block_on(serve(
            &cfg,
            &path,
            Some(&meta),
            &Method::GET,
            &HeaderMap::new(),
        ))
        .expect("first serve");
    let etag = first.headers()[header::ETAG]
        .to_str()
        .expect("etag")
        .to_owned();
    let modified = first.headers()[header::LAST_MODIFIED]
        .to_str()
        .expect("last-modified")
        .to_owned();

    // What a browser sends for a stylesheet, plus the header under test.
    let browser: [(&str, &str); 8] = [
        ("host", "example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        ("accept", "text/css,*/*;q=0.1"),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("connection", "keep-alive"),
        ("referer", "http://example.com/"),
        ("sec-fetch-dest", "style"),
    ];
    let cases: [(&str, Vec<(&str, &str)>); 5] = [
        ("plain GET", vec![]),
        ("If-None-Match (304)", vec![("if-none-match", &etag)]),
        (
            "If-Modified-Since (304)",
            vec![("if-modified-since", &modified)],
        ),
        ("Range", vec![("range", "bytes=0-99")]),
        (
            "Range + If-Range",
            vec![("range", "bytes=0-99"), ("if-range", &etag)],
        ),
    ];
    for (what, extra) in cases {
        let mut pairs = browser.to_vec();
        pairs.extend(extra);
        let request = headers(&pairs);
        c.bench_function(&format!("static 4 KiB remembered: {what}"), |b| {
            b.iter(|| {
                let answer = rt.block_on(serve(&cfg, &path, Some(&meta), &Method::GET, &request));
                black_box(answer.expect("served"))
            })
        });
    }
}

criterion_group!(benches, cgi_head, static_file);
criterion_main!(benches);
