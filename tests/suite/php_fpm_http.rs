//! Black-box tests through HTTP against a real php-fpm, over both `unix:` and `tcp:`.

use crate::support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use support::gateway::{self, Gateway};
use support::php_fpm::{fixtures_dir, PhpFpm};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Both upstream addresses of one php-fpm, as `--upstream` values.
fn upstreams(fpm: &PhpFpm) -> Vec<String> {
    support::upstreams_of(fpm)
}

fn root() -> String {
    fixtures_dir().display().to_string()
}

async fn gateway_for(upstream: &str, extra: &[&str]) -> Gateway {
    Gateway::serve(upstream, &root(), extra).await
}

fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn cgi_variables_as_php_sees_them() {
    let fpm = PhpFpm::start();
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(&upstream, &[]).await;
        let reply = gateway::request(
            gw.addr,
            "GET",
            "/env.php/extra/some%20path?a=1&b=%2F%20x&c",
            &[
                ("X-Custom", "value"),
                ("X-Multi", "one"),
                ("X-Multi", "two"),
                ("Cookie", "a=1"),
                ("Cookie", "b=2"),
                ("X_Forwarded_For", "6.6.6.6"),
                ("Proxy", "http://evil.example:1"),
                ("User-Agent", "fcgi-gateway-test"),
            ],
            Bytes::new(),
        )
        .await;
        assert_eq!(reply.status, 200, "{upstream}: {}", reply.text());
        let env = reply.json();
        let s = |k: &str| env.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let root = root();
        assert_eq!(
            s("SCRIPT_FILENAME"),
            Some(format!("{root}/env.php")),
            "{upstream}"
        );
        assert_eq!(s("SCRIPT_NAME").as_deref(), Some("/env.php"));
        assert_eq!(s("PATH_INFO").as_deref(), Some("/extra/some path"));
        assert_eq!(
            s("PATH_TRANSLATED"),
            Some(format!("{root}/extra/some path"))
        );
        assert_eq!(
            s("REQUEST_URI").as_deref(),
            Some("/env.php/extra/some%20path?a=1&b=%2F%20x&c")
        );
        assert_eq!(s("QUERY_STRING").as_deref(), Some("a=1&b=%2F%20x&c"));
        assert_eq!(
            s("DOCUMENT_URI").as_deref(),
            Some("/env.php/extra/some path")
        );
        assert_eq!(s("DOCUMENT_ROOT"), Some(root.clone()));
        assert_eq!(s("REQUEST_METHOD").as_deref(), Some("GET"));
        assert_eq!(s("SERVER_PROTOCOL").as_deref(), Some("HTTP/1.1"));
        assert_eq!(s("REQUEST_SCHEME").as_deref(), Some("http"));
        assert_eq!(s("GATEWAY_INTERFACE").as_deref(), Some("CGI/1.1"));
        assert_eq!(s("REDIRECT_STATUS").as_deref(), Some("200"));
        assert!(s("SERVER_SOFTWARE").is_some_and(|v| v.starts_with("fcgi-gateway/")));
        assert_eq!(s("REMOTE_ADDR").as_deref(), Some("127.0.0.1"));
        assert!(s("REMOTE_PORT").is_some_and(|p| p.parse::<u16>().is_ok()));
        assert_eq!(s("SERVER_ADDR").as_deref(), Some("127.0.0.1"));
        assert_eq!(s("SERVER_PORT"), Some(gw.addr.port().to_string()));
        assert_eq!(s("SERVER_NAME").as_deref(), Some("localhost"));
        assert_eq!(s("HTTP_HOST").as_deref(), Some("localhost"));
        assert_eq!(s("HTTP_X_CUSTOM").as_deref(), Some("value"));
        assert_eq!(s("HTTP_X_MULTI").as_deref(), Some("one, two"));
        assert_eq!(s("HTTP_COOKIE").as_deref(), Some("a=1; b=2"));
        assert_eq!(s("HTTP_USER_AGENT").as_deref(), Some("fcgi-gateway-test"));
        assert_eq!(
            s("HTTP_X_FORWARDED_FOR"),
            None,
            "underscore header must be dropped"
        );
        assert_eq!(
            s("HTTP_PROXY"),
            None,
            "Proxy header must be dropped (httpoxy)"
        );
        assert_eq!(s("CONTENT_LENGTH").as_deref(), Some(""));
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn config_params_override_defaults() {
    let fpm = PhpFpm::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.toml");
    std::fs::write(
        &file,
        format!(
            "upstream = \"unix:{}\"\nroot = \"{}\"\n[params]\nAPP_ENV = \"test\"\nSERVER_NAME = \"configured.example\"\n",
            fpm.unix_socket.display(),
            root()
        ),
    )
    .unwrap();
    let gw = Gateway::start(&["--config", file.to_str().unwrap()]).await;
    let env = gateway::get(gw.addr, "/env.php").await.json();
    assert_eq!(env["APP_ENV"], "test");
    assert_eq!(env["SERVER_NAME"], "configured.example");
    gw.shutdown().await;
}

#[tokio::test]
async fn status_location_and_cookies() {
    let fpm = PhpFpm::start();
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(&upstream, &[]).await;
        let r = gateway::get(gw.addr, "/headers.php?case=status").await;
        assert_eq!(r.status, 404, "{upstream}");
        assert_eq!(r.text(), "nope");
        assert!(
            r.header("status").is_none(),
            "Status is not passed on as a header"
        );

        let r = gateway::get(gw.addr, "/headers.php?case=teapot").await;
        assert_eq!(r.status, 418);

        let r = gateway::get(gw.addr, "/headers.php?case=location").await;
        assert_eq!(r.status, 302);
        assert_eq!(r.header("location").as_deref(), Some("/elsewhere"));

        let r = gateway::get(gw.addr, "/headers.php?case=cookies").await;
        assert_eq!(r.status, 200);
        let cookies: Vec<_> = r
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(cookies.len(), 2, "{cookies:?}");
        assert!(cookies[0].starts_with("a=1"));
        assert!(cookies[1].starts_with("b=2"));

        let r = gateway::get(gw.addr, "/headers.php?case=custom").await;
        assert_eq!(r.header("x-custom").as_deref(), Some("yes"));

        let r = gateway::get(gw.addr, "/headers.php?case=many").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "many");
        for i in 0..40 {
            let want = i.to_string();
            assert_eq!(r.header(&format!("x-many-{i}")), Some(want), "x-many-{i}");
        }
        assert_eq!(
            r.headers.get("x-latin1").map(|v| v.as_bytes()),
            Some(&b"caf\xe9"[..])
        );
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn large_response_arrives_intact() {
    let fpm = PhpFpm::start();
    let size = 5_000_000;
    let expected = sha256_hex(&support::big_body(size));
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(&upstream, &[]).await;
        let r = gateway::get(gw.addr, &format!("/big.php?size={size}")).await;
        assert_eq!(r.status, 200, "{upstream}");
        assert_eq!(r.body.len(), size, "{upstream}");
        assert_eq!(sha256_hex(&r.body), expected, "{upstream}");
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn large_upload_streams_through() {
    let fpm = PhpFpm::start();
    let body: Vec<u8> = (0..20_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let expected = sha256_hex(&body);
    let body = Bytes::from(body);
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(&upstream, &["--max-body-size", "32M"]).await;
        let r = gateway::request(
            gw.addr,
            "POST",
            "/echo_post.php",
            &[("content-type", "application/octet-stream")],
            body.clone(),
        )
        .await;
        assert_eq!(r.status, 200, "{upstream}: {}", r.text());
        let j = r.json();
        assert_eq!(j["length"], 20_000_000, "{upstream}");
        assert_eq!(j["sha256"], expected.as_str());
        assert_eq!(j["content_length_param"], "20000000");
        assert_eq!(j["content_type"], "application/octet-stream");
        gw.shutdown().await;
    }
}

/// Sends a chunked body over a raw connection and returns the response text.
async fn chunked_post(addr: std::net::SocketAddr, path: &str, chunks: &[&[u8]]) -> String {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for c in chunks {
        req.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        req.extend_from_slice(c);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let out = gateway::raw(addr, &req, Duration::from_secs(20)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn chunked_upload_gets_a_true_content_length() {
    let fpm = PhpFpm::start();
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(&upstream, &[]).await;
        let big = vec![b'x'; 1_500_000]; // beyond the in-memory spool limit
        let resp = chunked_post(gw.addr, "/echo_post.php", &[b"hello ", b"world", &big]).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{upstream}: {resp}");
        let total = 11 + big.len();
        assert!(resp.contains(&format!("\"length\":{total}")), "{resp}");
        assert!(
            resp.contains(&format!("\"content_length_param\":\"{total}\"")),
            "{resp}"
        );
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let fpm = PhpFpm::start();
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(&upstream, &["--max-body-size", "1000"]).await;
        let r = gateway::request(
            gw.addr,
            "POST",
            "/echo_post.php",
            &[],
            Bytes::from(vec![b'a'; 2000]),
        )
        .await;
        assert_eq!(r.status, 413, "{upstream}");
        let resp = chunked_post(gw.addr, "/echo_post.php", &[&[b'b'; 600], &[b'c'; 600]]).await;
        assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
        // At the limit is fine.
        let r = gateway::request(
            gw.addr,
            "POST",
            "/echo_post.php",
            &[],
            Bytes::from(vec![b'a'; 1000]),
        )
        .await;
        assert_eq!(r.status, 200);
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn expect_100_continue_works() {
    let fpm = PhpFpm::start();
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(&upstream, &[]).await;
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"POST /echo_post.php HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("100 Continue arrives before the body is sent")
            .unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        s.write_all(b"hello").await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        let rest = String::from_utf8_lossy(&rest);
        assert!(rest.contains("200 OK"), "{rest}");
        assert!(rest.contains("\"length\":5"), "{rest}");
        gw.shutdown().await;
    }
}

/// A page php-fpm ended before its head was read goes out whole, with a
/// Content-Length (so an HTTP/1.0 client keeps its connection); one still
/// running streams chunked, as it arrives.
#[tokio::test]
async fn an_ended_page_gets_a_content_length_and_a_running_one_streams() {
    let fpm = PhpFpm::start();
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(&upstream, &[]).await;
        let r = gateway::get(gw.addr, "/hello.php").await;
        assert_eq!(r.text(), "Hello, world!", "{upstream}");
        assert_eq!(
            r.header("content-length").as_deref(),
            Some("13"),
            "{upstream}"
        );
        assert_eq!(r.header("transfer-encoding"), None, "{upstream}");
        let r = gateway::get(gw.addr, "/stream.php?n=2&delay_ms=100").await;
        assert_eq!(r.text(), "line 1\nline 2\n", "{upstream}");
        assert_eq!(
            r.header("transfer-encoding").as_deref(),
            Some("chunked"),
            "{upstream}"
        );
        assert_eq!(r.header("content-length"), None, "{upstream}");

        // HTTP/1.0 has no chunks: only a known length lets the connection
        // carry a second request.
        let one = "GET /hello.php HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n";
        let reply = gateway::raw(gw.addr, one.repeat(2).as_bytes(), Duration::from_secs(1)).await;
        let reply = String::from_utf8_lossy(&reply);
        assert_eq!(
            reply.matches("Hello, world!").count(),
            2,
            "{upstream}: {reply}"
        );
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn flushed_output_arrives_incrementally() {
    let fpm = PhpFpm::start();
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(&upstream, &[]).await;
        let start = Instant::now();
        let resp = gateway::send(
            gw.addr,
            "GET",
            "/stream.php?n=5&delay_ms=200",
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut seen = Vec::new();
        let mut first_line_at = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            if let Some(data) = frame.data_ref() {
                seen.extend_from_slice(data);
                if first_line_at.is_none() && seen.contains(&b'\n') {
                    first_line_at = Some(start.elapsed());
                }
            }
        }
        let total = start.elapsed();
        let first = first_line_at.expect("a line arrived");
        assert_eq!(
            String::from_utf8_lossy(&seen),
            "line 1\nline 2\nline 3\nline 4\nline 5\n"
        );
        // The script runs ≥ 800 ms; the first line must not wait for its end.
        assert!(
            first + Duration::from_millis(500) < total,
            "{upstream}: first line at {first:?}, end at {total:?}"
        );
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn head_has_no_body_and_missing_scripts_are_404() {
    let fpm = PhpFpm::start();
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(&upstream, &[]).await;
        let r = gateway::request(gw.addr, "HEAD", "/hello.php", &[], Bytes::new()).await;
        assert_eq!(r.status, 200, "{upstream}");
        assert!(r.body.is_empty());
        // The raw wire carries no body either.
        let raw = gateway::raw(
            gw.addr,
            b"HEAD /hello.php HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        let raw = String::from_utf8_lossy(&raw);
        assert!(raw.ends_with("\r\n\r\n"), "{raw}");
        assert!(!raw.contains("Hello"), "{raw}");

        for path in ["/nope.php", "/nope.php/extra", "/missing/route"] {
            let r = gateway::get(gw.addr, path).await;
            assert_eq!(r.status, 404, "{upstream} {path}");
        }
        let r = gateway::get(gw.addr, "/hello.php").await;
        assert_eq!(r.text(), "Hello, world!");
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn dangerous_paths_get_400() {
    let fpm = PhpFpm::start();
    let gw = gateway_for(&format!("unix:{}", fpm.unix_socket.display()), &[]).await;
    for path in [
        "/env.php%0a.php",
        "/hello.php%00.txt",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/a%0d.php",
    ] {
        let r = gateway::get(gw.addr, path).await;
        assert_eq!(r.status, 400, "{path}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn index_and_front_controller() {
    let fpm = PhpFpm::start();
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(&upstream, &["--front-controller", "/index.php"]).await;
        let r = gateway::get(gw.addr, "/sub/").await;
        assert_eq!(r.text(), "sub index", "{upstream}");
        let r = gateway::get(gw.addr, "/blog/post%20one?page=2&q=%C3%A9").await;
        assert_eq!(r.status, 200);
        let j = r.json();
        assert_eq!(j["front"], true);
        assert_eq!(j["REQUEST_URI"], "/blog/post%20one?page=2&q=%C3%A9");
        assert_eq!(j["QUERY_STRING"], "page=2&q=%C3%A9");
        assert_eq!(j["SCRIPT_NAME"], "/index.php");
        // A missing .php is still 404, front controller or not.
        assert_eq!(gateway::get(gw.addr, "/nope.php").await.status, 404);
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn php_fpm_down_is_502_fast() {
    let mut fpm = PhpFpm::start();
    let ups = upstreams(&fpm);
    fpm.stop();
    for upstream in ups {
        let gw = gateway_for(&upstream, &[]).await;
        let start = Instant::now();
        let r = gateway::get(gw.addr, "/hello.php").await;
        assert_eq!(r.status, 502, "{upstream}");
        // Not a hang: refused connections fail at once (the issue asks for < 100 ms;
        // the bound here leaves room for a loaded CI machine).
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(r.text().contains("Bad Gateway"));
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn slow_script_past_read_timeout_is_504() {
    let fpm = PhpFpm::start();
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(&upstream, &["--read-timeout", "300ms"]).await;
        let r = gateway::get(gw.addr, "/slow.php?ms=3000").await;
        assert_eq!(r.status, 504, "{upstream}");
        assert!(r.text().contains("read-timeout"), "{}", r.text());
        // Within the timeout is fine.
        let r = gateway::get(gw.addr, "/slow.php?ms=50").await;
        assert_eq!(r.status, 200);
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn same_body_as_the_reference_client() {
    use fastcgi_client::{Client, Params, Request};
    let fpm = PhpFpm::start();
    let root = root();
    let script = format!("{root}/hello.php");
    // Reference: php-fpm asked directly by the independent client.
    let stream = tokio::net::UnixStream::connect(&fpm.unix_socket)
        .await
        .unwrap();
    let mut client = Client::new_keep_alive_tokio(stream);
    let params = Params::default()
        .request_method("GET")
        .script_filename(script.as_str())
        .script_name("/hello.php")
        .request_uri("/hello.php")
        .document_root(root.as_str());
    let direct = client.execute(Request::new(params, &[][..])).await.unwrap();
    let stdout = direct.stdout.unwrap_or_default();
    let split = stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("CGI head ends");
    let direct_body = &stdout[split + 4..];
    for upstream in upstreams(&fpm) {
        let gw = gateway_for(&upstream, &[]).await;
        let r = gateway::get(gw.addr, "/hello.php").await;
        assert_eq!(&r.body[..], direct_body, "{upstream}");
        gw.shutdown().await;
    }
}
