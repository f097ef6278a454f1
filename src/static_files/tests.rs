//! Unit tests of `serve` on real temporary files.

use super::*;
use http_body_util::BodyExt;

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(files: &[(&str, &[u8])]) -> Site {
        let dir = tempfile::tempdir().unwrap();
        for (name, data) in files {
            std::fs::write(dir.path().join(name), data).unwrap();
        }
        Site { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn get_with(cfg: &StaticConfig, path: &Path, method: Method, pairs: &[(&str, &str)]) -> Got {
    let resp = serve(cfg, path, None, &method, &headers(pairs))
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

async fn get(path: &Path, pairs: &[(&str, &str)]) -> Got {
    get_with(&StaticConfig::default(), path, Method::GET, pairs).await
}

#[tokio::test]
async fn content_types() {
    let site = Site::new(&[
        ("a.css", b"x"),
        ("a.js", b"x"),
        ("a.html", b"x"),
        ("a.json", b"x"),
        ("a.svg", b"x"),
        ("a.png", b"x"),
        ("a.woff2", b"x"),
        ("a.unknownext", b"x"),
        ("noext", b"x"),
    ]);
    let cases = [
        ("a.css", "text/css; charset=utf-8"),
        ("a.js", "text/javascript; charset=utf-8"),
        ("a.html", "text/html; charset=utf-8"),
        ("a.json", "application/json; charset=utf-8"),
        ("a.svg", "image/svg+xml; charset=utf-8"),
        ("a.png", "image/png"),
        ("a.woff2", "font/woff2"),
        ("a.unknownext", "application/octet-stream"),
        ("noext", "application/octet-stream"),
    ];
    for (name, want) in cases {
        let got = get(&site.path(name), &[]).await;
        assert_eq!(got.status, StatusCode::OK, "{name}");
        assert_eq!(got.header("content-type"), Some(want), "{name}");
        assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(got.header("accept-ranges"), Some("bytes"));
    }
}

#[tokio::test]
async fn body_length_and_validators() {
    let site = Site::new(&[("a.txt", b"hello world")]);
    let got = get(&site.path("a.txt"), &[]).await;
    assert_eq!(got.body, b"hello world");
    assert_eq!(got.header("content-length"), Some("11"));
    let etag = got.header("etag").unwrap().to_owned();
    let lm = got.header("last-modified").unwrap().to_owned();
    assert!(httpdate::parse_http_date(&lm).is_ok(), "{lm}");
    assert_eq!(got.header("vary"), None, "no variants, no Vary");

    for cond in [
        ("if-none-match", etag.as_str()),
        ("if-modified-since", lm.as_str()),
    ] {
        let got = get(&site.path("a.txt"), &[cond]).await;
        assert_eq!(got.status, StatusCode::NOT_MODIFIED, "{cond:?}");
        assert!(got.body.is_empty());
        assert_eq!(got.header("etag"), Some(etag.as_str()));
    }
    let got = get(&site.path("a.txt"), &[("if-none-match", "\"stale\"")]).await;
    assert_eq!(got.status, StatusCode::OK);
}

#[tokio::test]
async fn ranges() {
    let site = Site::new(&[("a.txt", b"0123456789")]);
    let path = site.path("a.txt");
    let got = get(&path, &[("range", "bytes=2-4")]).await;
    assert_eq!(got.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(got.body, b"234");
    assert_eq!(got.header("content-range"), Some("bytes 2-4/10"));
    assert_eq!(got.header("content-length"), Some("3"));
    assert_eq!(get(&path, &[("range", "bytes=7-")]).await.body, b"789");
    assert_eq!(get(&path, &[("range", "bytes=-2")]).await.body, b"89");

    let got = get(&path, &[("range", "bytes=10-")]).await;
    assert_eq!(got.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(got.header("content-range"), Some("bytes */10"));
    assert!(got.body.is_empty());

    let got = get(&path, &[("range", "bytes=0-1,4-5")]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, b"0123456789");

    // If-Range with a stale validator: the whole (changed) file.
    let got = get(&path, &[("range", "bytes=0-1"), ("if-range", "\"old\"")]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body.len(), 10);

    // HEAD ignores Range and sends headers only.
    let got = get_with(
        &StaticConfig::default(),
        &path,
        Method::HEAD,
        &[("range", "bytes=0-1")],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.header("content-length"), Some("10"));
    assert!(got.body.is_empty());
}

/// Through `serve`, the edge cases where `headers` and the hand-written
/// parsing it replaced answer differently; RFC 9110 is followed in each.
#[tokio::test]
async fn conditional_edge_cases() {
    let site = Site::new(&[("a.txt", b"0123456789")]);
    let path = site.path("a.txt");
    let first = get(&path, &[]).await;
    let etag = first.header("etag").unwrap().to_owned();
    let lm = first.header("last-modified").unwrap().to_owned();
    let later = httpdate::fmt_http_date(
        httpdate::parse_http_date(&lm).unwrap() + Duration::from_secs(3600),
    );

    // If-Range by date: exactly Last-Modified (§13.1.5), not a later date.
    let got = get(&path, &[("range", "bytes=0-1"), ("if-range", &lm)]).await;
    assert_eq!(got.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(got.body, b"01");
    let got = get(&path, &[("range", "bytes=0-1"), ("if-range", &later)]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, b"0123456789");
    let got = get(&path, &[("range", "bytes=0-1"), ("if-range", &etag)]).await;
    assert_eq!(got.status, StatusCode::PARTIAL_CONTENT);

    // `*` only as the whole If-None-Match (§13.1.2).
    let got = get(&path, &[("if-none-match", "*")]).await;
    assert_eq!(got.status, StatusCode::NOT_MODIFIED);
    let got = get(&path, &[("if-none-match", "\"x\", *")]).await;
    assert_eq!(got.status, StatusCode::OK);
    // Our tag on a second line still matches.
    let got = get(
        &path,
        &[("if-none-match", "\"x\""), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(got.status, StatusCode::NOT_MODIFIED);

    // If-Modified-Since with more than one member is ignored (§13.1.3).
    let got = get(&path, &[("if-modified-since", &lm)]).await;
    assert_eq!(got.status, StatusCode::NOT_MODIFIED);
    let twice = [
        ("if-modified-since", lm.as_str()),
        ("if-modified-since", &later),
    ];
    let got = get(&path, &twice).await;
    assert_eq!(got.status, StatusCode::OK);

    // A 304 leaves Range aside; HEAD too.
    let got = get(&path, &[("range", "bytes=0-1"), ("if-none-match", &etag)]).await;
    assert_eq!(got.status, StatusCode::NOT_MODIFIED);
    assert_eq!(got.header("content-range"), None);
    let cfg = StaticConfig::default();
    let got = get_with(&cfg, &path, Method::HEAD, &[("range", "bytes=20-")]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.header("content-range"), None);
}

#[tokio::test]
async fn empty_file() {
    let site = Site::new(&[("empty.txt", b"")]);
    let got = get(&site.path("empty.txt"), &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.header("content-length"), Some("0"));
    let got = get(&site.path("empty.txt"), &[("range", "bytes=0-")]).await;
    assert_eq!(got.status, StatusCode::RANGE_NOT_SATISFIABLE);
}

#[tokio::test]
async fn precompressed_siblings() {
    let site = Site::new(&[
        ("app.js", b"plain"),
        ("app.js.gz", b"gzip-bytes"),
        ("app.js.br", b"br-bytes"),
        ("only.css", b"plain"),
        ("only.css.gz", b"gz"),
    ]);
    let js = site.path("app.js");
    // (Accept-Encoding, body sent, Content-Encoding)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [u8], Option<&'a str>);
    let cases: [Case; 6] = [
        (&[], b"plain", None),
        (&[("accept-encoding", "gzip, br")], b"br-bytes", Some("br")),
        (&[("accept-encoding", "gzip")], b"gzip-bytes", Some("gzip")),
        (
            &[("accept-encoding", "br;q=0.5, gzip")],
            b"gzip-bytes",
            Some("gzip"),
        ),
        (
            &[("accept-encoding", "br;q=0, *")],
            b"gzip-bytes",
            Some("gzip"),
        ),
        (&[("accept-encoding", "deflate")], b"plain", None),
    ];
    let mut etags = Vec::new();
    for (pairs, body, encoding) in cases {
        let got = get(&js, pairs).await;
        assert_eq!(got.body, body, "{pairs:?}");
        assert_eq!(got.header("content-encoding"), encoding, "{pairs:?}");
        assert_eq!(got.header("vary"), Some("accept-encoding"), "{pairs:?}");
        assert_eq!(
            got.header("content-type"),
            Some("text/javascript; charset=utf-8")
        );
        etags.push((encoding, got.header("etag").unwrap().to_owned()));
    }
    // Each representation has its own validator.
    assert_ne!(etags[0].1, etags[1].1);
    assert_ne!(etags[1].1, etags[2].1);

    let got = get(&site.path("only.css"), &[("accept-encoding", "br")]).await;
    assert_eq!(got.body, b"plain");
    assert_eq!(got.header("vary"), Some("accept-encoding"));
}

#[tokio::test]
async fn symlinked_sibling_is_ignored() {
    let site = Site::new(&[("a.txt", b"plain"), ("elsewhere", b"not this")]);
    std::os::unix::fs::symlink(site.path("elsewhere"), site.path("a.txt.gz")).unwrap();
    let got = get(&site.path("a.txt"), &[("accept-encoding", "gzip")]).await;
    assert_eq!(got.body, b"plain");
    assert_eq!(got.header("content-encoding"), None);
}

#[tokio::test]
async fn cache_control_per_extension() {
    let site = Site::new(&[("a.css", b"x"), ("a.CSS", b"x"), ("a.txt", b"x")]);
    let cfg = StaticConfig::new(&[
        ("css".to_owned(), "max-age=3600".to_owned()),
        (".TXT".to_owned(), "no-cache".to_owned()),
    ]);
    let cc = |got: &Got| got.header("cache-control").map(str::to_owned);
    for (name, want) in [
        ("a.css", "max-age=3600"),
        ("a.CSS", "max-age=3600"),
        ("a.txt", "no-cache"),
    ] {
        let got = get_with(&cfg, &site.path(name), Method::GET, &[]).await;
        assert_eq!(cc(&got).as_deref(), Some(want), "{name}");
    }
    let got = get(&site.path("a.css"), &[]).await;
    assert_eq!(cc(&got), None);
}

#[tokio::test]
async fn other_methods_and_missing_files() {
    let site = Site::new(&[("a.txt", b"x")]);
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
        let err = serve(
            &StaticConfig::default(),
            &site.path("a.txt"),
            None,
            &method,
            &HeaderMap::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StaticError::MethodNotAllowed), "{method}");
    }
    let err = serve(
        &StaticConfig::default(),
        &site.path("gone.txt"),
        None,
        &Method::GET,
        &HeaderMap::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StaticError::NotAFile { .. }), "{err}");
    let err = serve(
        &StaticConfig::default(),
        site.dir.path(),
        None,
        &Method::GET,
        &HeaderMap::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StaticError::NotAFile { .. }), "{err}");
}

#[test]
fn content_type_cache_keys_on_the_lowercase_extension() {
    let css = cached_content_type(Path::new("/x/a.CSS"));
    assert_eq!(css, "text/css; charset=utf-8");
    assert_eq!(cached_content_type(Path::new("/x/b.css")), css);
    assert_eq!(cached_content_type(Path::new("/x/c.png")), "image/png");
    assert_eq!(
        cached_content_type(Path::new("/x/noext")),
        "application/octet-stream"
    );
}

/// What is known of siblings is remembered for a moment: one stat per
/// encoding per request was two of a small file's seven syscalls. A sibling
/// added shows within `SIBLINGS_FRESH_FOR`; one removed while still
/// remembered falls back to the file itself, never to an error.
#[tokio::test]
async fn siblings_are_remembered_briefly_and_a_vanished_one_falls_back() {
    let site = Site::new(&[("page.css", b"plain")]);
    let css = site.path("page.css");
    let gzip = [("accept-encoding", "gzip")];
    let got = get(&css, &gzip).await;
    assert_eq!(got.body, b"plain");
    assert_eq!(got.header("vary"), None);

    std::fs::write(site.path("page.css.gz"), b"gz-bytes").unwrap();
    // Within the moment the earlier look stands...
    let got = get(&css, &gzip).await;
    assert_eq!(got.header("content-encoding"), None);
    assert_eq!(got.body, b"plain");
    // ...after it the new sibling is seen.
    tokio::time::sleep(SIBLINGS_FRESH_FOR + Duration::from_millis(50)).await;
    let got = get(&css, &gzip).await;
    assert_eq!(got.header("content-encoding"), Some("gzip"));
    assert_eq!(got.header("vary"), Some("accept-encoding"));
    assert_eq!(got.body, b"gz-bytes");

    // Removed while still remembered: the plain file, with a 200.
    std::fs::remove_file(site.path("page.css.gz")).unwrap();
    let got = get(&css, &gzip).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.header("content-encoding"), None);
    assert_eq!(got.body, b"plain");
}

#[tokio::test]
async fn small_files_are_served_from_memory_while_unchanged() {
    let site = Site::new(&[("page.html", b"first"), ("big.bin", &[7u8; 70 * 1024])]);
    let path = site.path("page.html");
    // A file changed within the last second is not remembered: a second
    // write in the same tick of the file clock could keep its ctime.
    assert_eq!(get(&path, &[]).await.body, b"first");
    assert!(contents::lookup(&path, None).is_none());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&path, &[]).await.body, b"first");
    // Serving remembered it, with the file's identity.
    let (data, _) = contents::lookup(&path, None).expect("remembered after one GET");
    assert_eq!(&data[..], b"first");

    // What is sent comes from memory: a stand-in with the same identity is
    // what goes out, whole and in ranges.
    let meta = std::fs::metadata(&path).unwrap();
    contents::remember(&path, &meta, &bytes::Bytes::from_static(b"FROMM"));
    assert_eq!(get(&path, &[]).await.body, b"FROMM");
    let part = get(&path, &[("range", "bytes=1-2")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, b"RO");

    // A stat the caller just took stands for the file's: with routing's
    // metadata no stat of its own is made, so metadata of another state
    // means "changed" even though the file itself is not.
    let (data, _) = contents::lookup(&path, Some(&meta)).expect("same state");
    assert_eq!(&data[..], b"FROMM");
    let other = std::fs::metadata(site.path("big.bin")).unwrap();
    assert!(contents::lookup(&path, Some(&other)).is_none());
    let (cfg, no_headers) = (StaticConfig::default(), HeaderMap::new());
    let served = serve(&cfg, &path, Some(&meta), &Method::GET, &no_headers).await;
    let body = served
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"FROMM");

    // Any later write changes the identity (ctime at least): the file is
    // read again.
    std::fs::write(&path, b"other").unwrap();
    assert_eq!(get(&path, &[]).await.body, b"other");

    // Bigger files are read each time.
    let big = site.path("big.bin");
    assert_eq!(get(&big, &[]).await.body.len(), 70 * 1024);
    assert!(contents::lookup(&big, None).is_none());
}
