//! HTTP request → ordered CGI/1.1 params (RFC 3875 §4.1, plus the extra
//! variables php-fpm expects, following nginx's `fastcgi_params`).
//!
//! The order is fixed (the request's own headers in the order it sent
//! them) so that the FastCGI PARAMS stream is byte-for-byte reproducible,
//! which keeps golden tests stable.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use http::{header, HeaderMap, HeaderName, Method, Uri, Version};

use crate::ascii::{self, StackText};
use crate::route::Script;

/// The address of one end of the client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    /// HTTP served on a unix socket (behind another proxy): no IP or port.
    Unix,
    /// The client as a trusted proxy reported it; the port only when the
    /// proxy gave one (else REMOTE_PORT is empty: the proxy's own port would mislead).
    Forwarded {
        ip: IpAddr,
        port: Option<u16>,
    },
}

/// What PHP learns of a TLS connection (`SSL_PROTOCOL`, `SSL_CIPHER`), in
/// OpenSSL's names as Apache and nginx pass them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsInfo {
    /// e.g. `TLSv1.3`.
    pub protocol: &'static str,
    /// e.g. `TLS_AES_256_GCM_SHA384`.
    pub cipher: &'static str,
}

/// The parts of an HTTP request that CGI params are derived from.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub method: &'a Method,
    /// As the client sent it; REQUEST_URI is its path-and-query, undecoded.
    pub uri: &'a Uri,
    pub version: Version,
    pub headers: &'a HeaderMap,
    /// `"http"` or `"https"`.
    pub scheme: &'a str,
    /// The true body length to announce; `None` means no body.
    pub content_length: Option<u64>,
    pub remote: Endpoint,
    pub local: Endpoint,
    /// Already chosen by the caller.
    pub server_name: &'a str,
    /// The connection's TLS, when it came over TLS (then `scheme` is `"https"`).
    pub tls: Option<TlsInfo>,
}

const SERVER_SOFTWARE: &str = concat!("fcgi-gateway/", env!("CARGO_PKG_VERSION"));

/// Where the params go, pair by pair, in order: the request's PARAMS
/// stream (`upstream::request` frames them), so no list of pairs is built
/// in between.
pub trait ParamSink {
    /// One whole pair.
    fn pair(&mut self, name: &[u8], value: &[u8]);
    /// Announces a pair of these lengths; exactly that many bytes, the
    /// name then the value, follow through `piece`. `false` when the pair
    /// cannot be written (its pieces are then not to be given).
    fn begin_pair(&mut self, name_len: usize, value_len: usize) -> bool;
    /// The next bytes of the pair begun last.
    fn piece(&mut self, bytes: &[u8]);
}

/// About how many bytes [`write_params`] writes for this request: enough
/// that the request's buffer is allocated once (more costs a reallocation,
/// never correctness).
pub fn encoded_len_hint(
    req: &RequestInfo<'_>,
    script: &Script,
    document_root: &Path,
    extra: &[(String, String)],
) -> usize {
    // Each header: "HTTP_", its name, its values, lengths and separators.
    let headers: usize = req
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 16)
        .sum();
    let extra: usize = extra.iter().map(|(n, v)| n.len() + v.len() + 8).sum();
    let root = document_root.as_os_str().len();
    headers
        + extra
        + script.script_filename.as_os_str().len()
        + req.uri.query().map_or(0, str::len)
        + req.method.as_str().len()
        + req.uri.path_and_query().map_or(1, |pq| pq.as_str().len() + 1)
        + script.script_name.len()
        + script.document_uri.len()
        + root
        + req.server_name.len()
        + script.path_info.as_ref().map_or(0, |p| p.len() * 2 + root)
        // The fixed params' names, their lengths, the addresses, ports and
        // the fixed values (TLS's included).
        + 640
}

/// Writes the CGI params for one request, in the fixed order documented
/// in the module, straight into the request's PARAMS stream. `extra` (the
/// config's `[params]`) replaces an emitted param's value in place or is
/// appended at the end.
pub fn write_params(
    writer: &mut impl ParamSink,
    req: &RequestInfo<'_>,
    script: &Script,
    document_root: &Path,
    extra: &[(String, String)],
) {
    let script_filename = script.script_filename.as_os_str().as_bytes();
    let root = document_root.as_os_str().as_bytes();
    let path_info = script
        .path_info
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(str::as_bytes);
    let request_uri = request_uri(req.uri);
    let query = req.uri.query().unwrap_or("");
    let content_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .map_or(&[][..], |v| v.as_bytes());
    let content_length = req.content_length.map(ascii::decimal_text);

    let mut out = Emit::new(writer, extra);
    out.param(b"SCRIPT_FILENAME", script_filename);
    out.param(b"QUERY_STRING", query.as_bytes());
    out.param(b"REQUEST_METHOD", req.method.as_str().as_bytes());
    out.param(b"CONTENT_TYPE", content_type);
    out.param(
        b"CONTENT_LENGTH",
        content_length.as_ref().map_or(&[][..], StackText::as_bytes),
    );
    out.param(b"SCRIPT_NAME", script.script_name.as_bytes());
    out.param(b"REQUEST_URI", request_uri.as_bytes());
    out.param(b"DOCUMENT_URI", script.document_uri.as_bytes());
    out.param(b"DOCUMENT_ROOT", root);
    out.param(b"SERVER_PROTOCOL", protocol(req.version));
    out.param(b"REQUEST_SCHEME", req.scheme.as_bytes());
    if req.scheme == "https" {
        // Exactly "on": what Apache and nginx send and what apps compare against.
        out.param(b"HTTPS", b"on");
    }
    if let Some(tls) = req.tls {
        out.param(b"SSL_PROTOCOL", tls.protocol.as_bytes());
        out.param(b"SSL_CIPHER", tls.cipher.as_bytes());
    }
    out.param(b"GATEWAY_INTERFACE", b"CGI/1.1");
    out.param(b"SERVER_SOFTWARE", SERVER_SOFTWARE.as_bytes());
    out.endpoint(b"REMOTE_ADDR", b"REMOTE_PORT", req.remote);
    out.endpoint(b"SERVER_ADDR", b"SERVER_PORT", req.local);
    out.param(b"SERVER_NAME", req.server_name.as_bytes());
    // php-cgi refuses to run without it when built with force-cgi-redirect.
    out.param(b"REDIRECT_STATUS", b"200");

    if let Some(pi) = path_info {
        out.param(b"PATH_INFO", pi);
        // Avoid "//" when the root is configured with a trailing slash.
        let base = root.strip_suffix(b"/").unwrap_or(root);
        out.param_with(b"PATH_TRANSLATED", base.len() + pi.len(), |w| {
            w.piece(base);
            w.piece(pi);
        });
    }

    write_http_headers(&mut out, req.headers);
    out.append_unused_extra();
}

/// Emits params into the writer, each with the value of the config's
/// `[params]` entry of its name when there is one (the last, if several);
/// the entries no param took go at the end, in their order.
struct Emit<'w, 'e, S> {
    writer: &'w mut S,
    extra: &'e [(String, String)],
    /// Which entries of `extra` replaced an emitted param's value.
    took: Vec<bool>,
}

impl<'w, 'e, S: ParamSink> Emit<'w, 'e, S> {
    fn new(writer: &'w mut S, extra: &'e [(String, String)]) -> Self {
        Emit {
            writer,
            extra,
            // Empty (no allocation) without `[params]`, the usual case.
            took: vec![false; extra.len()],
        }
    }

    fn replacement(&mut self, name: &[u8]) -> Option<&'e [u8]> {
        let mut last = None;
        for (entry, took) in self.extra.iter().zip(&mut self.took) {
            if entry.0.as_bytes() == name {
                *took = true;
                last = Some(entry.1.as_bytes());
            }
        }
        last
    }

    #[inline]
    fn param(&mut self, name: &[u8], value: &[u8]) {
        let value = self.replacement(name).unwrap_or(value);
        self.writer.pair(name, value);
    }

    /// A param whose value (`value_len` bytes) `write_value` writes in pieces.
    fn param_with(&mut self, name: &[u8], value_len: usize, write_value: impl FnOnce(&mut S)) {
        if let Some(value) = self.replacement(name) {
            self.writer.pair(name, value);
        } else if self.writer.begin_pair(name.len(), value_len) {
            self.writer.piece(name);
            write_value(self.writer);
        }
    }

    /// (ADDR, PORT) for one end; unix sockets get "unix:" and an empty port as in nginx.
    fn endpoint(&mut self, addr_name: &[u8], port_name: &[u8], ep: Endpoint) {
        let (ip, port) = match ep {
            Endpoint::Tcp(sa) => {
                let ip = match sa.ip() {
                    // Dual-stack listeners report IPv4 peers as ::ffff:a.b.c.d;
                    // apps (and allow-lists) expect the plain IPv4 form.
                    IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                        Some(v4) => IpAddr::V4(v4),
                        None => IpAddr::V6(v6),
                    },
                    v4 => v4,
                };
                (ip, Some(sa.port()))
            }
            Endpoint::Unix => {
                self.param(addr_name, b"unix:");
                self.param(port_name, b"");
                return;
            }
            Endpoint::Forwarded { ip, port } => (ip, port),
        };
        self.param(addr_name, ascii::ip_text(ip).as_bytes());
        let port = port.map(|p| ascii::decimal_text(u64::from(p)));
        self.param(
            port_name,
            port.as_ref().map_or(&[][..], StackText::as_bytes),
        );
    }

    fn append_unused_extra(self) {
        for (i, (name, _)) in self.extra.iter().enumerate() {
            let first_of_name = self.extra[..i].iter().all(|(n, _)| n != name);
            if self.took[i] || !first_of_name {
                continue;
            }
            let value = self
                .extra
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map_or("", |(_, v)| v.as_str());
            self.writer.pair(name.as_bytes(), value.as_bytes());
        }
    }
}

/// The request target's path-and-query as sent; for absolute-form targets
/// the scheme and authority are dropped, and an empty path becomes "/".
fn request_uri(uri: &Uri) -> std::borrow::Cow<'_, str> {
    let pq = uri.path_and_query().map_or("", |pq| pq.as_str());
    if pq.is_empty() || pq.starts_with('?') {
        std::borrow::Cow::Owned(format!("/{pq}"))
    } else {
        std::borrow::Cow::Borrowed(pq)
    }
}

fn protocol(v: Version) -> &'static [u8] {
    match v {
        Version::HTTP_09 => b"HTTP/0.9",
        Version::HTTP_10 => b"HTTP/1.0",
        Version::HTTP_2 => b"HTTP/2.0",
        Version::HTTP_3 => b"HTTP/3.0",
        // `Version` is open-ended; 1.1 is the only remaining real value.
        _ => b"HTTP/1.1",
    }
}

/// Names that must never become HTTP_* params.
fn skip_header(name: &HeaderName) -> bool {
    let s = name.as_str();
    // '_' and '.' would map onto the same HTTP_* name as a dashed header
    // (X_Forwarded_For vs X-Forwarded-For) and so could spoof proxy-set values.
    *name == header::CONTENT_TYPE
        || *name == header::CONTENT_LENGTH
        || s == "proxy" // httpoxy, CVE-2016-5385
        || s.bytes().any(|b| b == b'_' || b == b'.')
}

/// Names of HTTP_* params up to this long are formed on the stack.
const SHORT_PARAM_NAME: usize = 64;

fn write_http_headers(out: &mut Emit<'_, '_, impl ParamSink>, headers: &HeaderMap) {
    let mut short = [0u8; SHORT_PARAM_NAME];
    let mut long = Vec::new();
    // In the order the client sent them (a `HeaderMap` keeps it), as nginx
    // passes them: reproducible for the same request, and no list to
    // collect and sort per request.
    for name in headers.keys().filter(|n| !skip_header(n)) {
        let param = http_param_name(name.as_str(), &mut short, &mut long);

        // HTTP/2 sends each cookie pair as its own header; PHP parses "; ".
        let sep: &[u8] = if name == header::COOKIE { b"; " } else { b", " };
        let values = headers.get_all(name);
        let (count, bytes) = values.iter().fold((0usize, 0usize), |(count, bytes), v| {
            (count + 1, bytes + v.len())
        });
        let value_len = bytes + sep.len() * count.saturating_sub(1);
        out.param_with(param, value_len, |w| {
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    w.piece(sep);
                }
                w.piece(v.as_bytes());
            }
        });
    }
}

/// `HTTP_` and the header's name upper-cased, dashes as underscores; in
/// `short` when it fits, else in `long`.
fn http_param_name<'b>(
    name: &str,
    short: &'b mut [u8; SHORT_PARAM_NAME],
    long: &'b mut Vec<u8>,
) -> &'b [u8] {
    let len = "HTTP_".len() + name.len();
    let param: &mut [u8] = if len <= SHORT_PARAM_NAME {
        &mut short[..len]
    } else {
        long.clear();
        long.resize(len, 0);
        long
    };
    let (prefix, rest) = param.split_at_mut("HTTP_".len());
    prefix.copy_from_slice(b"HTTP_");
    for (to, from) in rest.iter_mut().zip(name.bytes()) {
        *to = match from {
            b'-' => b'_',
            other => other.to_ascii_uppercase(),
        };
    }
    param
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fastcgi::{RequestDecoder, RequestEvent};
    use crate::upstream::request::{self, Stdin};
    use bytes::BytesMut;
    use http::HeaderValue;
    use std::path::PathBuf;

    fn script(path_info: Option<&str>) -> Script {
        Script {
            script_filename: PathBuf::from("/srv/www/index.php"),
            script_name: "/index.php".into(),
            path_info: path_info.map(Into::into),
            document_uri: format!("/index.php{}", path_info.unwrap_or("")),
        }
    }

    fn tcp(s: &str) -> Endpoint {
        Endpoint::Tcp(s.parse().unwrap())
    }

    struct Req {
        method: Method,
        uri: Uri,
        version: Version,
        headers: HeaderMap,
        content_length: Option<u64>,
        remote: Endpoint,
        local: Endpoint,
        scheme: &'static str,
        tls: Option<TlsInfo>,
    }

    impl Req {
        fn get(uri: &str) -> Self {
            Req {
                method: Method::GET,
                uri: uri.parse().unwrap(),
                version: Version::HTTP_11,
                headers: HeaderMap::new(),
                content_length: None,
                remote: tcp("192.0.2.7:51234"),
                local: tcp("10.0.0.1:8080"),
                scheme: "http",
                tls: None,
            }
        }

        fn header(mut self, name: &str, value: &[u8]) -> Self {
            self.headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
            self
        }

        fn build(&self, script: &Script, extra: &[(String, String)]) -> Vec<(String, Vec<u8>)> {
            let info = RequestInfo {
                method: &self.method,
                uri: &self.uri,
                version: self.version,
                headers: &self.headers,
                scheme: self.scheme,
                content_length: self.content_length,
                remote: self.remote,
                local: self.local,
                server_name: "example.test",
                tls: self.tls,
            };
            let root = Path::new("/srv/www");
            let hint = encoded_len_hint(&info, script, root, extra);
            let head = request::encode_with(hint, true, Stdin::Complete(b""), |w| {
                write_params(w, &info, script, root, extra)
            });
            let mut decoder = RequestDecoder::new();
            let mut buf = BytesMut::from(&head[..]);
            let mut events = std::iter::from_fn(|| decoder.decode(&mut buf).unwrap());
            let params = events
                .find_map(|e| match e {
                    RequestEvent::Params(p) => Some(p),
                    _ => None,
                })
                .expect("a PARAMS stream");
            let pairs_len = crate::fastcgi::nvpair::total_len(&params);
            assert!(
                pairs_len <= hint,
                "the hint ({hint}) covers the params ({pairs_len}): one allocation"
            );
            params
                .into_iter()
                .map(|(n, v)| (String::from_utf8(n.to_vec()).unwrap(), v.to_vec()))
                .collect()
        }
    }

    fn get<'a>(params: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn names(params: &[(String, Vec<u8>)]) -> Vec<&str> {
        params.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn golden_get_with_query_and_headers() {
        let req = Req::get("/index.php?a=1&b=%20x")
            .header("user-agent", b"curl/8")
            .header("host", b"example.test");
        let got = req.build(&script(None), &[]);
        let software = format!("fcgi-gateway/{}", env!("CARGO_PKG_VERSION"));
        let want: Vec<(&str, &str)> = vec![
            ("SCRIPT_FILENAME", "/srv/www/index.php"),
            ("QUERY_STRING", "a=1&b=%20x"),
            ("REQUEST_METHOD", "GET"),
            ("CONTENT_TYPE", ""),
            ("CONTENT_LENGTH", ""),
            ("SCRIPT_NAME", "/index.php"),
            ("REQUEST_URI", "/index.php?a=1&b=%20x"),
            ("DOCUMENT_URI", "/index.php"),
            ("DOCUMENT_ROOT", "/srv/www"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REQUEST_SCHEME", "http"),
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_SOFTWARE", &software),
            ("REMOTE_ADDR", "192.0.2.7"),
            ("REMOTE_PORT", "51234"),
            ("SERVER_ADDR", "10.0.0.1"),
            ("SERVER_PORT", "8080"),
            ("SERVER_NAME", "example.test"),
            ("REDIRECT_STATUS", "200"),
            // The headers in the order the request sent them.
            ("HTTP_USER_AGENT", "curl/8"),
            ("HTTP_HOST", "example.test"),
        ];
        let want: Vec<(String, Vec<u8>)> = want
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn path_info_only_when_present() {
        let req = Req::get("/index.php/a/b");
        let with = req.build(&script(Some("/a/b")), &[]);
        assert_eq!(get(&with, "PATH_INFO"), Some(&b"/a/b"[..]));
        assert_eq!(get(&with, "PATH_TRANSLATED"), Some(&b"/srv/www/a/b"[..]));
        assert_eq!(get(&with, "DOCUMENT_URI"), Some(&b"/index.php/a/b"[..]));
        let n = names(&with);
        let pos = n.iter().position(|&x| x == "PATH_INFO").unwrap();
        assert_eq!(n[pos - 1], "REDIRECT_STATUS");
        assert_eq!(n[pos + 1], "PATH_TRANSLATED");

        for pi in [None, Some("")] {
            let without = req.build(&script(pi), &[]);
            assert_eq!(get(&without, "PATH_INFO"), None);
            assert_eq!(get(&without, "PATH_TRANSLATED"), None);
        }
    }

    #[test]
    fn repeated_header_joined_with_comma() {
        let req = Req::get("/")
            .header("accept", b"text/html")
            .header("accept", b"*/*");
        let p = req.build(&script(None), &[]);
        assert_eq!(get(&p, "HTTP_ACCEPT"), Some(&b"text/html, */*"[..]));
    }

    #[test]
    fn cookies_joined_with_semicolon() {
        let req = Req::get("/")
            .header("cookie", b"a=1")
            .header("cookie", b"b=2");
        let p = req.build(&script(None), &[]);
        assert_eq!(get(&p, "HTTP_COOKIE"), Some(&b"a=1; b=2"[..]));
    }

    #[test]
    fn underscore_and_dot_headers_dropped() {
        let req = Req::get("/")
            .header("x-forwarded-for", b"1.2.3.4")
            .header("x_forwarded_for", b"6.6.6.6")
            .header("x.forwarded.for", b"7.7.7.7");
        let p = req.build(&script(None), &[]);
        assert_eq!(get(&p, "HTTP_X_FORWARDED_FOR"), Some(&b"1.2.3.4"[..]));
        let count = names(&p).iter().filter(|n| n.starts_with("HTTP_")).count();
        assert_eq!(count, 1);
    }

    #[test]
    fn proxy_and_content_headers_not_forwarded_as_http() {
        let mut req = Req::get("/")
            .header("proxy", b"http://evil:1")
            .header("content-type", b"application/json")
            .header("content-length", b"12");
        req.method = Method::POST;
        req.content_length = Some(12);
        let p = req.build(&script(None), &[]);
        assert_eq!(get(&p, "HTTP_PROXY"), None);
        assert_eq!(get(&p, "HTTP_CONTENT_TYPE"), None);
        assert_eq!(get(&p, "HTTP_CONTENT_LENGTH"), None);
        assert_eq!(get(&p, "CONTENT_TYPE"), Some(&b"application/json"[..]));
        assert_eq!(get(&p, "CONTENT_LENGTH"), Some(&b"12"[..]));
        assert_eq!(get(&p, "REQUEST_METHOD"), Some(&b"POST"[..]));
    }

    #[test]
    fn content_length_empty_without_body() {
        let req = Req::get("/");
        let p = req.build(&script(None), &[]);
        assert_eq!(get(&p, "CONTENT_LENGTH"), Some(&b""[..]));
    }

    #[test]
    fn obs_text_value_preserved() {
        let req = Req::get("/").header("x-name", b"caf\xe9 \x80\xff");
        let p = req.build(&script(None), &[]);
        assert_eq!(get(&p, "HTTP_X_NAME"), Some(&b"caf\xe9 \x80\xff"[..]));
    }

    #[test]
    fn unix_endpoints() {
        let mut req = Req::get("/");
        req.remote = Endpoint::Unix;
        req.local = Endpoint::Unix;
        let p = req.build(&script(None), &[]);
        assert_eq!(get(&p, "REMOTE_ADDR"), Some(&b"unix:"[..]));
        assert_eq!(get(&p, "REMOTE_PORT"), Some(&b""[..]));
        assert_eq!(get(&p, "SERVER_ADDR"), Some(&b"unix:"[..]));
        assert_eq!(get(&p, "SERVER_PORT"), Some(&b""[..]));
    }

    #[test]
    fn forwarded_client_and_https() {
        let mut req = Req::get("/");
        req.remote = Endpoint::Forwarded {
            ip: "2001:db8::7".parse().unwrap(),
            port: None,
        };
        req.scheme = "https";
        let p = req.build(&script(None), &[]);
        assert_eq!(get(&p, "REMOTE_ADDR"), Some(&b"2001:db8::7"[..]));
        assert_eq!(get(&p, "REMOTE_PORT"), Some(&b""[..]));
        assert_eq!(get(&p, "REQUEST_SCHEME"), Some(&b"https"[..]));
        assert_eq!(get(&p, "HTTPS"), Some(&b"on"[..]));
        req.remote = Endpoint::Forwarded {
            ip: "203.0.113.9".parse().unwrap(),
            port: Some(4711),
        };
        req.scheme = "http";
        let p = req.build(&script(None), &[]);
        assert_eq!(get(&p, "REMOTE_PORT"), Some(&b"4711"[..]));
        assert_eq!(get(&p, "HTTPS"), None);
    }

    #[test]
    fn tls_connection_params_follow_https() {
        let mut req = Req::get("/");
        req.scheme = "https";
        req.local = tcp("10.0.0.1:8443");
        req.tls = Some(TlsInfo {
            protocol: "TLSv1.3",
            cipher: "TLS_AES_256_GCM_SHA384",
        });
        let p = req.build(&script(None), &[]);
        let n = names(&p);
        let at = n.iter().position(|&x| x == "HTTPS").unwrap();
        assert_eq!(n[at + 1..at + 3], ["SSL_PROTOCOL", "SSL_CIPHER"]);
        assert_eq!(get(&p, "SSL_PROTOCOL"), Some(&b"TLSv1.3"[..]));
        assert_eq!(get(&p, "SSL_CIPHER"), Some(&b"TLS_AES_256_GCM_SHA384"[..]));
        assert_eq!(get(&p, "SERVER_PORT"), Some(&b"8443"[..]));
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let mut req = Req::get("/");
        req.remote = tcp("[2001:db8::1]:443");
        req.local = tcp("[::ffff:192.0.2.1]:80");
        let p = req.build(&script(None), &[]);
        assert_eq!(get(&p, "REMOTE_ADDR"), Some(&b"2001:db8::1"[..]));
        assert_eq!(get(&p, "REMOTE_PORT"), Some(&b"443"[..]));
        assert_eq!(get(&p, "SERVER_ADDR"), Some(&b"192.0.2.1"[..]));
        assert_eq!(get(&p, "SERVER_PORT"), Some(&b"80"[..]));
    }

    #[test]
    fn extra_params_override_and_append() {
        let req = Req::get("/").header("host", b"a");
        let extra = vec![
            ("X_APP_ENV".to_owned(), "prod".to_owned()),
            ("SERVER_NAME".to_owned(), "override.test".to_owned()),
            ("HTTP_HOST".to_owned(), "b".to_owned()),
            ("PHP_VALUE".to_owned(), "memory_limit=1G".to_owned()),
        ];
        let p = req.build(&script(None), &extra);
        let n = names(&p);
        assert_eq!(n[17], "SERVER_NAME");
        assert_eq!(p[17].1, b"override.test");
        assert_eq!(get(&p, "HTTP_HOST"), Some(&b"b"[..]));
        assert_eq!(n[n.len() - 2..], ["X_APP_ENV", "PHP_VALUE"]);
        assert_eq!(n.iter().filter(|&&x| x == "SERVER_NAME").count(), 1);
    }

    #[test]
    fn absolute_form_uri() {
        let req = Req::get("http://example.test:8080/p/x.php?q=1");
        let p = req.build(&script(None), &[]);
        assert_eq!(get(&p, "REQUEST_URI"), Some(&b"/p/x.php?q=1"[..]));
        assert_eq!(get(&p, "QUERY_STRING"), Some(&b"q=1"[..]));

        let bare = Req::get("http://example.test");
        let p = bare.build(&script(None), &[]);
        assert_eq!(get(&p, "REQUEST_URI"), Some(&b"/"[..]));
        assert_eq!(get(&p, "QUERY_STRING"), Some(&b""[..]));
    }

    #[test]
    fn protocol_versions() {
        for (v, s) in [
            (Version::HTTP_09, "HTTP/0.9"),
            (Version::HTTP_10, "HTTP/1.0"),
            (Version::HTTP_11, "HTTP/1.1"),
            (Version::HTTP_2, "HTTP/2.0"),
            (Version::HTTP_3, "HTTP/3.0"),
        ] {
            let mut req = Req::get("/");
            req.version = v;
            let p = req.build(&script(None), &[]);
            assert_eq!(get(&p, "SERVER_PROTOCOL"), Some(s.as_bytes()));
        }
    }

    #[test]
    fn non_utf8_paths_passed_as_bytes() {
        use std::ffi::OsStr;
        let mut s = script(None);
        s.script_filename = PathBuf::from(OsStr::from_bytes(b"/srv/www/\xff.php"));
        let p = Req::get("/").build(&s, &[]);
        assert_eq!(get(&p, "SCRIPT_FILENAME"), Some(&b"/srv/www/\xff.php"[..]));
    }
}
