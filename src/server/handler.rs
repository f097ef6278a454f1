//! One HTTP request: route it (static files and redirects are answered
//! here), prepare the body (stream, inline or spool), build CGI params, hand
//! it to the upstream, and turn the CGI head into the HTTP response while
//! the body streams through.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio_util::either::Either;

use super::accel;
use super::access_log::AccessLog;
use super::forwarded::Client;
use super::framing;
use super::idle::InFlight;
use super::respond;
use super::site::SiteState;
use super::site_rules;
use super::AppState;
use crate::body::GatewayBody;
use crate::cgi::params::{encoded_len_hint, write_params, Endpoint, RequestInfo, TlsInfo};
use crate::cgi::response::{CgiHead, HeadParser, DEFAULT_HEAD_LIMIT};
use crate::cgi::stderr::{log_stderr, StderrContext};
use crate::compress;
use crate::route::{self, Route};
use crate::sites::{self, ErrorTarget};
use crate::static_files;
use crate::upstream::request::{self, Stdin};
use crate::upstream::{self, FcgiRequest, Output, RequestBody, Spool, Timing, UpstreamResponse};

/// Bodies up to this size are read whole and sent with the request head in one write.
const INLINE_BODY_LIMIT: u64 = 64 * 1024;

/// A request id for log lines, unique in the process. Each thread takes a
/// block of ids at a time from the shared counter: one locked add per
/// `BLOCK` requests, where one per request had every serving thread write
/// the same cache line.
fn next_request_id() -> u64 {
    const BLOCK: u64 = 1024;
    static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        /// The next id of this thread's block, and the block's end.
        static BLOCK_LEFT: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
    }
    BLOCK_LEFT.with(|left| {
        let (mut next, mut end) = left.get();
        if next == end {
            next = NEXT_BLOCK.fetch_add(BLOCK, Ordering::Relaxed);
            end = next + BLOCK;
        }
        left.set((next + 1, end));
        next
    })
}

/// Handles one request. A plain fn returning the future rather than an
/// `async fn`: the checks before serving run here, and the future holds the
/// request's head once, which the levels below borrow (an `async fn` keeps
/// its arguments beside their moved copies, and each level took the request
/// by value). The future is boxed and moved per request: smaller is cheaper.
pub(crate) fn handle(
    state: Arc<AppState>,
    remote: Endpoint,
    local: Endpoint,
    tls: Option<TlsInfo>,
    mut req: Request<Incoming>,
    in_flight: InFlight,
) -> impl Future<Output = Response<GatewayBody>> {
    let start = Instant::now();
    framing::take_target_host(&mut req);
    let client = state.forwarding.resolve(remote, req.headers());
    let mut log = AccessLog::new(
        state.metrics.clone(),
        state.access_log_format,
        start,
        client.remote,
        &req,
    );
    let dropped_length = req
        .extensions()
        .get::<framing::DroppedContentLength>()
        .is_some();
    let refused = match framing::check(req.version(), req.uri(), req.headers(), dropped_length) {
        Err(refusal) => Some(respond::refused(&refusal)),
        Ok(()) => state.limits.check(&req).err().map(respond::head_too_large),
    };
    let (head, body) = req.into_parts();
    async move {
        let (resp, upstream_time) = match refused {
            None => serve(&state, start, client, local, tls, &head, body).await,
            Some(refused) => (refused, None),
        };
        let (parts, body) = resp.into_parts();
        log.status = parts.status.as_u16();
        log.upstream_time = upstream_time;
        let end = RequestEnd {
            log,
            _in_flight: in_flight,
        };
        Response::from_parts(parts, body.watched(Box::new(end)))
    }
}

/// What the response body holds until it is sent or abandoned: the access
/// record, told what goes out, then the connection's in-flight guard. One
/// allocation for both; fields drop in order, so the line is written
/// before the connection's idle timer starts.
struct RequestEnd {
    log: AccessLog,
    /// Held for its drop only.
    _in_flight: InFlight,
}

impl crate::body::BodyWatch for RequestEnd {
    fn sent(&mut self, bytes: usize) {
        self.log.sent(bytes);
    }

    fn completed(&mut self) {
        self.log.completed();
    }
}

/// An answer, and whether the application gave it (error pages replace
/// those only with `intercept-errors`).
struct Answer {
    resp: Response<GatewayBody>,
    upstream_time: Option<Duration>,
    from_app: bool,
}

impl Answer {
    fn ours(resp: Response<GatewayBody>) -> Answer {
        Answer {
            resp,
            upstream_time: None,
            from_app: false,
        }
    }
}

/// A request that passed framing, for the site its Host names: the site's
/// rules, routing, then its error page and headers. A plain fn returning
/// its future: the rules run before it, so what they need is not kept in
/// it (it is part of the future boxed and moved per request).
fn serve<'a>(
    state: &'a AppState,
    start: Instant,
    client: Client,
    local: Endpoint,
    tls: Option<TlsInfo>,
    head: &'a Parts,
    body: Incoming,
) -> impl Future<Output = (Response<GatewayBody>, Option<Duration>)> + 'a {
    // Looked up once: the site, its rules and SERVER_NAME all use it.
    let host = site_rules::request_host(&head.uri, &head.headers);
    // Borrowed, not cloned: no shared reference count is touched per request.
    let site: &SiteState = state.sites.for_host(host);
    let https = client.https || tls.is_some();
    // The path as rules match it, worked out only for a site with rules.
    let path = site_rules::has_path_rules(site)
        .then(|| site_rules::normalised_path(head.uri.path()))
        .flatten();
    if let Some(mut resp) = site_rules::before_routing(site, head, host, path.as_deref(), https) {
        site_rules::add_headers(site, path.as_deref(), &mut resp);
        return Either::Left(std::future::ready((resp, None)));
    }
    let ctx = Ctx {
        state,
        site,
        host,
        start,
        client,
        local,
        tls,
    };
    Either::Right(async move {
        let answer = route_and_forward(&ctx, head, body).await;
        let status = answer.resp.status().as_u16();
        // An error page's request is made from the original head, which the
        // caller keeps.
        let wanted = !answer.from_app || site.intercept_errors;
        let page = sites::error_page_for(&site.error_pages, status).filter(|_| wanted);
        let mut answer = match page {
            // Boxed, with the answer it may replace: a rare path that runs a
            // script of its own, whose future would otherwise grow every
            // request's, which is boxed and moved by memcpy.
            Some(target) => Box::pin(answer_with_error_page(&ctx, head, answer, target)).await,
            None => answer,
        };
        site_rules::add_headers(site, path.as_deref(), &mut answer.resp);
        (answer.resp, answer.upstream_time)
    })
}

/// What running a request for a site needs besides the request.
struct Ctx<'a> {
    state: &'a AppState,
    site: &'a SiteState,
    /// The host the request names (`site_rules::request_host`).
    host: Option<&'a str>,
    start: Instant,
    client: Client,
    local: Endpoint,
    tls: Option<TlsInfo>,
}

/// `answer` replaced by the error page `target`, or as it is when the page
/// cannot be served. The failed answer's body is dropped: its upstream
/// exchange finishes or is cancelled on its own.
async fn answer_with_error_page(
    ctx: &Ctx<'_>,
    head: &Parts,
    answer: Answer,
    target: &ErrorTarget,
) -> Answer {
    match error_page(ctx, head, answer.resp.status(), target).await {
        Some(page) => Answer {
            upstream_time: page.upstream_time.or(answer.upstream_time),
            ..page
        },
        None => answer,
    }
}

/// The error page `target` for an answer with `status`: a file or a script
/// under the root, fetched with GET as nginx does, or a redirect. `None`
/// when the page itself cannot be served: the plain answer stays, so an
/// error page never loops.
async fn error_page(
    ctx: &Ctx<'_>,
    head: &Parts,
    status: StatusCode,
    target: &ErrorTarget,
) -> Option<Answer> {
    let (page_path, keep_status) = match target {
        ErrorTarget::Url(url) => {
            return Some(Answer::ours(respond::redirect_with(StatusCode::FOUND, url)))
        }
        ErrorTarget::Page { path, keep_status } => (path.as_str(), *keep_status),
    };
    // After the request's own answer, perhaps long after it began: now.
    let routing = ctx.site.docroot.current(Instant::now());
    let (page_path, query) = match page_path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (page_path, None),
    };
    let mut answer = match route::resolve(&routing, page_path, query) {
        Route::Static { path, seen } => {
            let served = static_files::serve(
                &ctx.site.static_files,
                &path,
                seen.as_ref().map(|s| &s.0),
                &Method::GET,
                &http::HeaderMap::new(),
            )
            .await
            .ok()?;
            Answer::ours(served)
        }
        Route::Script(script) => {
            let empty = PreparedBody::empty(false);
            let request = ScriptRequest {
                method: &Method::GET,
                uri: &head.uri,
                version: head.version,
                headers: &head.headers,
            };
            run_script(ctx, &routing, script, request, empty).await
        }
        other => {
            tracing::warn!(page = page_path, route = ?other, "the error page cannot be served");
            return None;
        }
    };
    if keep_status {
        *answer.resp.status_mut() = status;
    }
    Some(answer)
}

async fn route_and_forward(ctx: &Ctx<'_>, head: &Parts, body: Incoming) -> Answer {
    let site = ctx.site;
    // This request's routing: a deploy switching the root's symlink
    // reaches the next requests, not this one.
    let routing = site.docroot.current(ctx.start);
    let script = match route::resolve_at(&routing, head.uri.path(), head.uri.query(), ctx.start) {
        Route::Script(script) => script,
        Route::Static { path, seen } => {
            // Boxed with the path and validators it borrows: held across
            // the await here, they would grow every request's future.
            let served = Box::pin(async move {
                let seen = seen.as_ref().map(|s| &s.0);
                static_files::serve(&site.static_files, &path, seen, &head.method, &head.headers)
                    .await
            })
            .await;
            let resp = served.unwrap_or_else(|e| {
                // Wrong methods and files gone since routing are the client's business.
                if let static_files::StaticError::Io { .. } = e {
                    tracing::warn!(error = %e, "static file not served");
                }
                respond::static_error(&e)
            });
            return Answer::ours(resp);
        }
        Route::Redirect(location) => return Answer::ours(respond::redirect(&location)),
        Route::NotFound => return Answer::ours(respond::not_found()),
        Route::BadRequest(why) => return Answer::ours(respond::bad_request(why)),
    };

    let declared_length = head.headers.get(header::CONTENT_LENGTH).is_some();
    let prepared = if body.is_end_stream() {
        PreparedBody::empty(declared_length)
    } else {
        // Boxed: most requests have no body, and reading one would grow
        // every request's future by ~750 bytes.
        match Box::pin(prepare_body(body, declared_length, site.max_body_size)).await {
            Ok(p) => p,
            Err(resp) => return Answer::ours(resp),
        }
    };
    let request = ScriptRequest {
        method: &head.method,
        uri: &head.uri,
        version: head.version,
        headers: &head.headers,
    };
    run_script(ctx, &routing, script, request, prepared).await
}

/// The request head a script runs for.
#[derive(Clone, Copy)]
struct ScriptRequest<'a> {
    method: &'a Method,
    uri: &'a http::Uri,
    version: http::Version,
    headers: &'a http::HeaderMap,
}

/// Runs `script` through the site's upstreams and answers with its output.
/// A plain fn returning the future: the request is encoded and handed to
/// the upstream here, so what that needs (the script, its CGI variables,
/// the prepared body) is never part of the future, which waits on php-fpm
/// for every PHP request and is moved and kept per request.
fn run_script<'a>(
    ctx: &'a Ctx<'a>,
    routing: &'a route::RouteConfig,
    script: route::Script,
    req: ScriptRequest<'a>,
    prepared: PreparedBody,
) -> impl Future<Output = Answer> + 'a {
    let (state, site) = (ctx.state, ctx.site);
    let server_name = choose_server_name(site, ctx.host, ctx.local);
    let info = RequestInfo {
        method: req.method,
        uri: req.uri,
        version: req.version,
        headers: req.headers,
        // Our own TLS, or a trusted proxy's word for its client's.
        scheme: if ctx.client.https || ctx.tls.is_some() {
            "https"
        } else {
            "http"
        },
        content_length: prepared.content_length,
        remote: ctx.client.remote,
        local: ctx.local,
        server_name: &server_name,
        tls: ctx.tls,
    };
    // A body all in memory goes with the head; a longer one streams after it.
    let stdin = match prepared.body {
        RequestBody::Empty => Stdin::Complete(&prepared.inline),
        _ => Stdin::Streamed,
    };
    let (root, extra) = (&routing.root, &site.extra_params);
    let pairs_len = encoded_len_hint(&info, &script, root, extra);
    let head = request::encode_with(pairs_len, true, stdin, |writer| {
        write_params(writer, &info, &script, root, extra)
    });
    let body = prepared.body;

    let upstream_start = Instant::now();
    let rx = upstream::start(
        site.upstreams.clone(),
        FcgiRequest {
            head,
            body,
            route: upstream::route_key(req.uri.path()),
        },
        state.server_timing,
    );
    let stderr_ctx = StderrContext {
        request_id: next_request_id(),
        script: script.script_name,
        script_filename: script.script_filename,
    };
    async move {
        let (mut head, first, rx, timing) = match read_head(rx, &stderr_ctx).await {
            Ok(read) => read,
            Err(resp) => {
                return Answer {
                    resp,
                    upstream_time: Some(upstream_start.elapsed()),
                    from_app: false,
                }
            }
        };
        let upstream_time = Some(upstream_start.elapsed());
        let directives = accel::take_directives(&mut head);
        if let Some(target) = directives
            .file
            .as_ref()
            .and_then(|f| accel::resolve(site, routing, f))
        {
            // The file replaces the body: read the rest so the connection can be reused.
            tokio::spawn(drain(rx, stderr_ctx));
            // Boxed, as a rare path: it would grow every PHP request's future.
            let mut resp = Box::pin(accel::serve(
                site,
                target,
                head.headers,
                req.method,
                req.headers,
            ))
            .await;
            add_server_timing(&mut resp, timing, ctx.start);
            return Answer {
                resp,
                upstream_time,
                from_app: true,
            };
        }
        let resp = build_response(head, first, rx, stderr_ctx, req.method);
        let mut resp = if site.compress {
            compress::apply(resp, req.headers, directives.unbuffered)
        } else {
            resp
        };
        add_server_timing(&mut resp, timing, ctx.start);
        Answer {
            resp,
            upstream_time,
            from_app: true,
        }
    }
}

/// `Server-Timing` (W3C) for a PHP response: pool wait, dial (when a new
/// connection was opened), php-fpm's time to its first byte, and ours up to
/// this response head, in milliseconds. `timing` is only there when
/// `--server-timing` asked the upstream for it.
fn add_server_timing(resp: &mut Response<GatewayBody>, timing: Option<Timing>, start: Instant) {
    let Some(timing) = timing else { return };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut value = String::with_capacity(96);
    let _ = write!(value, "queue;dur={:.3}", ms(timing.queue));
    if let Some(connect) = timing.connect {
        let _ = write!(value, ", connect;dur={:.3}", ms(connect));
    }
    if let Some(first) = timing.first_byte {
        let _ = write!(value, ", fpm;dur={:.3}", ms(first));
    }
    let _ = write!(value, ", total;dur={:.3}", ms(start.elapsed()));
    if let Ok(value) = HeaderValue::try_from(value) {
        // Appended: the application may send Server-Timing of its own.
        resp.headers_mut().append("server-timing", value);
    }
}

struct PreparedBody {
    /// CONTENT_LENGTH to announce.
    content_length: Option<u64>,
    /// A small body already read whole, sent along with the head.
    inline: Bytes,
    body: RequestBody,
}

impl PreparedBody {
    /// No body; CONTENT_LENGTH 0 when the request declared a length.
    fn empty(declared_length: bool) -> PreparedBody {
        PreparedBody {
            content_length: declared_length.then_some(0),
            inline: Bytes::new(),
            body: RequestBody::Empty,
        }
    }
}

/// Decides how the request body travels: small ones inline with the head,
/// large ones with a Content-Length streamed, unknown lengths spooled first.
async fn prepare_body(
    body: Incoming,
    declared_length: bool,
    max_body_size: u64,
) -> Result<PreparedBody, Response<GatewayBody>> {
    // (A body already at its end is the caller's `PreparedBody::empty`.)
    let empty = PreparedBody::empty(declared_length);
    match body.size_hint().exact() {
        Some(len) if len > max_body_size => Err(respond::too_large()),
        Some(0) => Ok(empty),
        Some(len) if len <= INLINE_BODY_LIMIT => match body.collect().await {
            Ok(collected) => {
                let data = collected.to_bytes();
                Ok(PreparedBody {
                    content_length: Some(data.len() as u64),
                    inline: data,
                    body: RequestBody::Empty,
                })
            }
            Err(e) => {
                tracing::debug!(error = %e, "client body read failed");
                Err(respond::bad_request("the request body could not be read"))
            }
        },
        Some(len) => Ok(PreparedBody {
            content_length: Some(len),
            inline: Bytes::new(),
            body: RequestBody::Stream(body.map_err(|e| e.into()).boxed()),
        }),
        // Unknown length (chunked, HTTP/2 without content-length): php-fpm
        // needs the true length, so read it all first.
        None => match Spool::read_from(body, max_body_size).await {
            Ok(spool) => {
                let len = spool.len();
                if len == 0 {
                    return Ok(PreparedBody {
                        content_length: Some(0),
                        ..empty
                    });
                }
                Ok(PreparedBody {
                    content_length: Some(len),
                    inline: Bytes::new(),
                    body: RequestBody::Spooled(spool),
                })
            }
            Err(e) => {
                tracing::info!(error = %e, "request body refused");
                Err(respond::spool_error(&e))
            }
        },
    }
}

/// What `read_head` returns: the head, the body bytes that came along, the
/// channel carrying the rest, and the upstream's timing when asked for.
type HeadRead = (CgiHead, Bytes, UpstreamResponse, Option<Timing>);

/// Waits for the CGI head (logging STDERR meanwhile); returns it with the
/// body bytes that came along and the channel carrying the rest, or the
/// error response.
async fn read_head(
    mut rx: UpstreamResponse,
    ctx: &StderrContext,
) -> Result<HeadRead, Response<GatewayBody>> {
    let mut parser = HeadParser::new(DEFAULT_HEAD_LIMIT);
    let mut timing = None;
    let (head, first) = loop {
        match rx.recv().await {
            Some(Output::Timing(t)) => timing = Some(t),
            Some(Output::Stdout(data)) => match parser.push(data) {
                Ok(Some(done)) => break done,
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(request_id = ctx.request_id, script = %ctx.script, error = %e, "bad CGI response head from the application");
                    return Err(respond::head_error(&e));
                }
            },
            Some(Output::Stderr(data)) => log_stderr(ctx, &data),
            Some(Output::Failed(e)) => {
                if e.severity() == tracing::Level::WARN {
                    tracing::warn!(request_id = ctx.request_id, script = %ctx.script, error = %e, "upstream request failed");
                } else {
                    tracing::error!(request_id = ctx.request_id, script = %ctx.script, error = %e, "upstream request failed");
                }
                return Err(respond::upstream_error(&e));
            }
            None => match parser.finish() {
                Ok(done) => break done,
                Err(e) => {
                    tracing::error!(request_id = ctx.request_id, script = %ctx.script, error = %e, "the application ended without a complete CGI head");
                    return Err(respond::head_error(&e));
                }
            },
        }
    };
    Ok((head, first, rx, timing))
}

fn build_response(
    head: CgiHead,
    first: Bytes,
    rx: UpstreamResponse,
    ctx: StderrContext,
    method: &Method,
) -> Response<GatewayBody> {
    let bodiless = method == Method::HEAD
        || head.status == StatusCode::NO_CONTENT
        || head.status == StatusCode::NOT_MODIFIED
        || head.status.is_informational();
    let body = if bodiless {
        // Read the rest so the connection can be reused; nothing is sent.
        tokio::spawn(drain(rx, ctx));
        GatewayBody::empty()
    } else {
        GatewayBody::upstream(first, rx, ctx)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = head.status;
    let headers = resp.headers_mut();
    headers.reserve(head.headers.len());
    for (name, value) in head.headers {
        headers.append(name, value);
    }
    resp
}

async fn drain(mut rx: UpstreamResponse, ctx: StderrContext) {
    while let Some(out) = rx.recv().await {
        match out {
            Output::Stdout(_) | Output::Timing(_) => {}
            Output::Stderr(data) => log_stderr(&ctx, &data),
            Output::Failed(e) => {
                tracing::warn!(request_id = ctx.request_id, error = %e, "upstream failed after a bodiless response head");
            }
        }
    }
}

/// SERVER_NAME: the site's name, else the Host the client asked for
/// (without port), else the local address.
fn choose_server_name<'a>(
    site: &'a SiteState,
    host: Option<&'a str>,
    local: Endpoint,
) -> Cow<'a, str> {
    if let Some(name) = &site.server_name {
        return Cow::Borrowed(name);
    }
    match host.map(strip_port) {
        Some(h) if !h.is_empty() => Cow::Borrowed(h),
        _ => Cow::Owned(match local {
            Endpoint::Tcp(a) => a.ip().to_string(),
            Endpoint::Forwarded { ip, .. } => ip.to_string(),
            Endpoint::Unix => "localhost".to_owned(),
        }),
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::{next_request_id, strip_port};

    /// Ids taken on several threads at once, past a block's end: none twice.
    #[test]
    fn request_ids_are_unique_across_threads() {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| (0..3000).map(|_| next_request_id()).collect::<Vec<_>>())
            })
            .collect();
        let mut all = Vec::new();
        for t in threads {
            let ids = t.join().expect("no panic");
            // Each thread's own ids only grow.
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
            all.extend(ids);
        }
        let taken = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), taken);
        assert!(!all.contains(&0), "ids start at 1");
    }

    #[test]
    fn host_port_is_stripped() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
