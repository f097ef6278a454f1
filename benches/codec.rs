//! Codec and CGI params throughput: `cargo bench --bench codec`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fcgi_gateway::cgi::params::{encoded_len_hint, write_params, Endpoint, RequestInfo};
use fcgi_gateway::fastcgi::{self, RecordType, ResponseDecoder, Role};
use fcgi_gateway::route::Script;
use fcgi_gateway::upstream::request::{self, Stdin};

/// The CGI params of a typical GET (6 headers, path info) written into a
/// request head, as the gateway sends it.
fn typical_head() -> Bytes {
    let mut headers = http::HeaderMap::new();
    for (k, v) in [
        ("host", "example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br"),
        ("cookie", "session=abcdef0123456789; theme=dark"),
    ] {
        headers.insert(k, http::HeaderValue::from_static(v));
    }
    let method = http::Method::GET;
    let uri: http::Uri = "/index.php/blog/post?id=42&sort=desc".parse().unwrap();
    let remote: SocketAddr = "127.0.0.1:51234".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let info = RequestInfo {
        method: &method,
        uri: &uri,
        version: http::Version::HTTP_11,
        headers: &headers,
        scheme: "http",
        content_length: None,
        remote: Endpoint::Tcp(remote),
        local: Endpoint::Tcp(local),
        server_name: "example.com",
        tls: None,
    };
    let script = Script {
        script_filename: "/srv/app/public/index.php".into(),
        script_name: "/index.php".into(),
        path_info: Some("/blog/post".into()),
        document_uri: "/index.php/blog/post".into(),
    };
    let root = Path::new("/srv/app/public");
    let hint = encoded_len_hint(&info, &script, root, &[]);
    request::encode_with(hint, true, Stdin::Complete(b""), |writer| {
        write_params(writer, &info, &script, root, &[])
    })
}

/// The same params as a list of pairs.
fn typical_params() -> Vec<(Bytes, Bytes)> {
    let mut decoder = fastcgi::RequestDecoder::new();
    let mut head = BytesMut::from(&typical_head()[..]);
    std::iter::from_fn(|| decoder.decode(&mut head).unwrap())
        .find_map(|event| match event {
            fastcgi::RequestEvent::Params(pairs) => Some(pairs),
            _ => None,
        })
        .unwrap()
}

fn params(c: &mut Criterion) {
    c.bench_function(
        "CGI params into a request head (typical GET, 6 headers)",
        |b| b.iter(|| black_box(typical_head())),
    );
    let params = typical_params();
    c.bench_function("encode request head from a list of pairs", |b| {
        let mut out = BytesMut::with_capacity(2048);
        b.iter(|| {
            out.clear();
            fastcgi::encode_begin_request(&mut out, 1, Role::Responder, true);
            fastcgi::encode_params(&mut out, 1, &params);
            fastcgi::encode_stream_end(&mut out, RecordType::Stdin, 1);
            black_box(out.len())
        })
    });
}

fn decode(c: &mut Criterion) {
    let body = vec![b'x'; 1 << 20];
    let mut wire = BytesMut::new();
    fastcgi::encode_stream(&mut wire, RecordType::Stdout, 1, &body);
    fastcgi::encode_end_request(&mut wire, 1, 0, fastcgi::ProtocolStatus::RequestComplete);
    let wire = wire.freeze();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("1 MiB STDOUT in 64 KiB records", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&wire[..]);
            let mut dec = ResponseDecoder::new(1);
            let mut n = 0;
            while let Ok(Some(ev)) = dec.decode(&mut buf) {
                if let fastcgi::Event::Stdout(d) = ev {
                    n += d.len();
                }
            }
            black_box(n)
        })
    });
    group.bench_function("encode 1 MiB STDIN", |b| {
        let mut out = BytesMut::with_capacity(body.len() + 1024);
        b.iter(|| {
            out.clear();
            fastcgi::encode_stream(&mut out, RecordType::Stdin, 1, &body);
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, params, decode);
criterion_main!(benches);
