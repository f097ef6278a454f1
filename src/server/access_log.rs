//! One access-log line per request, written when the response body is done
//! (or dropped, when the client went away), so it carries the bytes sent.
//! Two formats: Apache/nginx `combined` plus times, or one JSON object.
//! Whatever the client sent is escaped, so a request can never make its
//! line look like two.

use std::cell::RefCell;
use std::fmt::{self, Display, Write as _};
use std::sync::Arc;
use std::thread::LocalKey;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderValue};
use serde::Serialize;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};
use tracing::span;
use tracing_subscriber::layer::Context;

use crate::ascii;
use crate::cgi::params::Endpoint;
pub use crate::config::AccessLogFormat;
use crate::metrics::Metrics;

#[derive(Debug)]
pub struct AccessLog {
    /// Counts the request where its log line is written, so both agree.
    pub metrics: Arc<Metrics>,
    pub format: AccessLogFormat,
    pub start: Instant,
    pub remote: Endpoint,
    pub method: http::Method,
    pub uri: http::Uri,
    pub version: http::Version,
    /// Header values share the request's buffer: keeping them copies nothing.
    pub referer: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
    pub status: u16,
    pub bytes: u64,
    /// From handing the request to the pool until the response head arrived.
    pub upstream_time: Option<Duration>,
    pub completed: bool,
}

impl AccessLog {
    pub fn new<B>(
        metrics: Arc<Metrics>,
        format: AccessLogFormat,
        start: Instant,
        remote: Endpoint,
        req: &http::Request<B>,
    ) -> Self {
        // One pass over the headers, not two hashed lookups: cheaper for
        // the few headers requests carry. The first value of each, as `get`.
        let (mut referer, mut user_agent) = (None, None);
        for (name, value) in req.headers() {
            if name == header::REFERER {
                referer.get_or_insert_with(|| value.clone());
            } else if name == header::USER_AGENT {
                user_agent.get_or_insert_with(|| value.clone());
            }
        }
        AccessLog {
            metrics,
            format,
            start,
            remote,
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            referer,
            user_agent,
            status: 0,
            bytes: 0,
            upstream_time: None,
            completed: false,
        }
    }
}

/// The body tells the record what went out; the line is written when the
/// body (and with it the record) is dropped.
impl crate::body::BodyWatch for AccessLog {
    fn sent(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
    }

    fn completed(&mut self) {
        self.completed = true;
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        self.metrics.observe_request(self.status, elapsed);
        // With access lines filtered out (`--log-level warn`), build none.
        if !tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO) {
            return;
        }
        // When the request came in, as the combined format has it.
        let received = SystemTime::now().checked_sub(elapsed).unwrap_or(UNIX_EPOCH);
        match self.format {
            AccessLogFormat::Combined => with_thread_buffer(&LINE, |line| {
                self.write_combined(line, received, elapsed);
                // Client bytes are escaped, so the line is printable ASCII.
                // A `str` message reaches a visitor as it is; "{text}"
                // would go through `fmt` (~350 instructions a line).
                match std::str::from_utf8(line) {
                    Ok(text) => tracing::info!(target: ACCESS_TARGET, message = text),
                    Err(e) => tracing::warn!(error = %e, "access log line not encoded"),
                }
            }),
            AccessLogFormat::Json => match serde_json::to_string(&self.json(received, elapsed)) {
                Ok(line) => tracing::info!(target: ACCESS_TARGET, message = line.as_str()),
                Err(e) => tracing::warn!(error = %e, "access log line not encoded"),
            },
        }
    }
}

thread_local! {
    /// Where this thread builds its access lines.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
    /// Where `BareAccessLines` puts a line and its newline, for one write.
    static OUT: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// Runs `f` with this thread's buffer `key`, emptied: no allocation per
/// line. (A fresh buffer if the thread's is busy or gone, as when a line
/// is logged while the thread exits.)
fn with_thread_buffer(key: &'static LocalKey<RefCell<Vec<u8>>>, f: impl FnOnce(&mut Vec<u8>)) {
    let mut f = Some(f);
    let _ = key.try_with(|cell| {
        if let Ok(mut buf) = cell.try_borrow_mut() {
            buf.clear();
            if let Some(f) = f.take() {
                f(&mut buf);
            }
            keep_small(&mut buf);
        }
    });
    if let Some(f) = f {
        f(&mut Vec::new());
    }
}

/// A line buffer that one long line (a huge escaped target or agent)
/// grew is given back, not kept by the thread for good.
fn keep_small(buf: &mut Vec<u8>) {
    give_back_past(buf, 16 * 1024, 512);
}

/// Empties `buf` and shrinks it to `usual` when it has grown past `kept`.
fn give_back_past(buf: &mut Vec<u8>, kept: usize, usual: usize) {
    if buf.capacity() > kept {
        buf.clear();
        buf.shrink_to(usual);
    }
}

impl AccessLog {
    /// The combined line, written byte by byte: formatting it through
    /// `fmt` machinery cost more than serving a small static file
    /// (callgrind: ~11k instructions per line against ~22k per request).
    fn write_combined(&self, line: &mut Vec<u8>, received: SystemTime, elapsed: Duration) {
        push_remote(line, self.remote);
        line.extend_from_slice(b" - - [");
        push_clf_time(line, received);
        line.extend_from_slice(b"] \"");
        push_escaped(line, self.method.as_str().as_bytes());
        line.push(b' ');
        push_uri(line, &self.uri);
        line.push(b' ');
        push_version(line, self.version);
        line.extend_from_slice(b"\" ");
        ascii::put_decimal(line, u64::from(self.status));
        line.push(b' ');
        ascii::put_decimal(line, self.bytes);
        line.extend_from_slice(b" \"");
        push_escaped(line, header_or_dash(&self.referer));
        line.extend_from_slice(b"\" \"");
        push_escaped(line, header_or_dash(&self.user_agent));
        line.extend_from_slice(b"\" ");
        push_seconds(line, elapsed);
        line.push(b' ');
        match self.upstream_time {
            Some(t) => push_seconds(line, t),
            None => line.push(b'-'),
        }
        if !self.completed {
            line.extend_from_slice(b" aborted");
        }
    }
}

/// `fmt::Write` into a byte buffer, for the rare field written with `fmt`.
struct ByteSink<'a>(&'a mut Vec<u8>);

impl fmt::Write for ByteSink<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Seconds to the millisecond, rounded: `0.004`, `12.250`.
fn push_seconds(line: &mut Vec<u8>, d: Duration) {
    let millis = d.as_nanos().saturating_add(500_000) / 1_000_000;
    let millis = u64::try_from(millis).unwrap_or(u64::MAX);
    ascii::put_decimal(line, millis / 1000);
    let frac = millis % 1000;
    let digit = |n: u64| b'0' + (n % 10) as u8;
    line.extend_from_slice(&[b'.', digit(frac / 100), digit(frac / 10), digit(frac)]);
}

fn push_remote(line: &mut Vec<u8>, remote: Endpoint) {
    match remote {
        Endpoint::Tcp(a) => ascii::put_ip(line, a.ip()),
        Endpoint::Unix => line.extend_from_slice(b"unix:"),
        Endpoint::Forwarded { ip, .. } => ascii::put_ip(line, ip),
    }
}

fn push_version(line: &mut Vec<u8>, version: http::Version) {
    let text: &[u8] = match version {
        http::Version::HTTP_09 => b"HTTP/0.9",
        http::Version::HTTP_10 => b"HTTP/1.0",
        http::Version::HTTP_11 => b"HTTP/1.1",
        http::Version::HTTP_2 => b"HTTP/2.0",
        http::Version::HTTP_3 => b"HTTP/3.0",
        other => {
            let _ = write!(ByteSink(line), "{other:?}");
            return;
        }
    };
    line.extend_from_slice(text);
}

/// The request target as sent, escaped: origin form (the usual) straight
/// from its bytes, any other form as `Uri` prints it.
fn push_uri(line: &mut Vec<u8>, uri: &http::Uri) {
    if uri.scheme().is_none() && uri.authority().is_none() {
        if let Some(target) = uri.path_and_query() {
            return push_escaped(line, target.as_str().as_bytes());
        }
    }
    push_escaped(line, uri.to_string().as_bytes());
}

/// nginx's escaping for quoted log fields: `"`, `\`, control bytes and
/// bytes above 0x7e become `\xHH`, so a value can neither end its quotes
/// nor start a new line.
fn push_escaped(line: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut rest = bytes;
    while let Some(at) = rest.iter().position(|&b| needs_escape(b)) {
        line.extend_from_slice(&rest[..at]);
        let b = rest[at];
        line.extend_from_slice(&[
            b'\\',
            b'x',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 0xf)],
        ]);
        rest = &rest[at + 1..];
    }
    line.extend_from_slice(rest);
}

/// The common log format's time of `t`. Lines come many per second: the
/// text is made once per second per thread and copied after that.
fn push_clf_time(line: &mut Vec<u8>, t: SystemTime) {
    thread_local! {
        static SECOND: std::cell::Cell<Option<(u64, [u8; 48], usize)>> =
            const { std::cell::Cell::new(None) };
    }
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let cached = SECOND.try_with(std::cell::Cell::get).ok().flatten();
    let (buf, len) = match cached {
        Some((at, buf, len)) if at == secs => (buf, len),
        _ => {
            let whole = UNIX_EPOCH + Duration::from_secs(secs);
            let (buf, len) = format_time(whole, CLF);
            let _ = SECOND.try_with(|c| c.set(Some((secs, buf, len))));
            (buf, len)
        }
    };
    line.extend_from_slice(&buf[..len]);
}

fn header_or_dash(value: &Option<HeaderValue>) -> &[u8] {
    value.as_ref().map_or(b"-", HeaderValue::as_bytes)
}

#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    remote: String,
    method: &'a str,
    uri: String,
    protocol: String,
    status: u16,
    bytes: u64,
    duration_ms: f64,
    upstream_ms: Option<f64>,
    referer: Option<String>,
    user_agent: Option<String>,
    aborted: bool,
}

impl AccessLog {
    fn json(&self, received: SystemTime, elapsed: Duration) -> JsonLine<'_> {
        let text = |v: &Option<HeaderValue>| {
            v.as_ref()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        JsonLine {
            time: Rfc3339(received).to_string(),
            remote: Remote(self.remote).to_string(),
            method: self.method.as_str(),
            uri: self.uri.to_string(),
            protocol: format!("{:?}", self.version),
            status: self.status,
            bytes: self.bytes,
            duration_ms: millis(elapsed),
            upstream_ms: self.upstream_time.map(millis),
            referer: text(&self.referer),
            user_agent: text(&self.user_agent),
            aborted: !self.completed,
        }
    }
}

/// Milliseconds, to the microsecond.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

struct Remote(Endpoint);

impl Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Endpoint::Tcp(a) => a.ip().fmt(f),
            Endpoint::Unix => f.write_str("unix:"),
            Endpoint::Forwarded { ip, .. } => ip.fmt(f),
        }
    }
}

fn needs_escape(b: u8) -> bool {
    b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b)
}

/// `10/Oct/2000:13:55:36 +0000`, the common log format's time, in UTC.
const CLF: &[BorrowedFormatItem<'_>] =
    format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000");

/// `2000-10-10T13:55:36.123Z`: RFC 3339 in UTC, milliseconds truncated.
const RFC3339_MILLIS: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// The JSON format's time of an instant.
struct Rfc3339(SystemTime);

impl Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_time(f, self.0, RFC3339_MILLIS)
    }
}

/// Writes `t` in UTC through a stack buffer (`time` writes to an
/// `io::Write`), so no String is built for it.
fn write_time(
    f: &mut fmt::Formatter<'_>,
    t: SystemTime,
    format: &[BorrowedFormatItem<'_>],
) -> fmt::Result {
    let (buf, len) = format_time(t, format);
    f.write_str(std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)
}

/// `t` in UTC as `format` has it, in a stack buffer, and its length. A
/// clock before 1970 shows 1970, one past year 9999 shows 9999's last
/// second: nothing here panics.
fn format_time(t: SystemTime, format: &[BorrowedFormatItem<'_>]) -> ([u8; 48], usize) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let nanos = i128::try_from(since.as_nanos()).unwrap_or(i128::MAX);
    let at = OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(PrimitiveDateTime::MAX.assume_utc());
    let mut buf = [0u8; 48];
    let mut out = &mut buf[..];
    // Both formats fit the buffer; a failure would leave the field empty.
    let len = at.format_into(&mut out, format).unwrap_or(0);
    (buf, len)
}

/// Prints access lines bare, each exactly as its event carries it, in one
/// write: tracing's `fmt` layer would pass the already escaped line through
/// its own escaping character by character (half a line's cost) and add
/// its prefix.
pub struct BareAccessLines<W> {
    make_writer: W,
}

impl<W> BareAccessLines<W> {
    pub fn new(make_writer: W) -> Self {
        BareAccessLines { make_writer }
    }
}

impl<S, W> tracing_subscriber::Layer<S> for BareAccessLines<W>
where
    S: tracing::Subscriber,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        with_thread_buffer(&OUT, |out| {
            event.record(&mut MessageInto(out));
            out.push(b'\n');
            // A log that cannot be written has nowhere to say so.
            let _ = std::io::Write::write_all(&mut self.make_writer.make_writer(), out);
        });
    }
}

/// The target access lines are logged with.
pub const ACCESS_TARGET: &str = "access";

fn is_access(meta: &tracing::Metadata<'_>) -> bool {
    meta.target() == ACCESS_TARGET
}

/// Access lines to [`BareAccessLines`], every other event and all spans to
/// `rest` (the `fmt` layer). One layer that routes by target rather than
/// two behind per-layer filters: with those, an event one layer takes and
/// the other refuses leaves its callsite's interest at "sometimes", so each
/// access line asked the filters again, twice (~300 instructions a
/// request); routed here, the interest is settled once per callsite.
pub struct AccessLinesBeside<W, R> {
    access: BareAccessLines<W>,
    rest: R,
}

impl<W, R> AccessLinesBeside<W, R> {
    pub fn new(access: BareAccessLines<W>, rest: R) -> Self {
        AccessLinesBeside { access, rest }
    }
}

impl<S, W, R> tracing_subscriber::Layer<S> for AccessLinesBeside<W, R>
where
    S: tracing::Subscriber,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
    R: tracing_subscriber::Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.rest.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.rest.on_layer(subscriber);
    }

    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if is_access(meta) {
            tracing::subscriber::Interest::always()
        } else {
            self.rest.register_callsite(meta)
        }
    }

    fn enabled(&self, meta: &tracing::Metadata<'_>, ctx: Context<'_, S>) -> bool {
        is_access(meta) || self.rest.enabled(meta, ctx)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        // Access lines are INFO.
        self.rest
            .max_level_hint()
            .map(|rest| rest.max(tracing::level_filters::LevelFilter::INFO))
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        self.rest.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, span: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        self.rest.on_record(span, values, ctx);
    }

    fn on_follows_from(&self, span: &span::Id, follows: &span::Id, ctx: Context<'_, S>) {
        self.rest.on_follows_from(span, follows, ctx);
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) -> bool {
        is_access(event.metadata()) || self.rest.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if is_access(event.metadata()) {
            self.access.on_event(event, ctx);
        } else {
            self.rest.on_event(event, ctx);
        }
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.rest.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.rest.on_exit(id, ctx);
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        self.rest.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &span::Id, new: &span::Id, ctx: Context<'_, S>) {
        self.rest.on_id_change(old, new, ctx);
    }
}

/// Standard error for access lines, written by each thread through its own
/// duplicate of the descriptor, without std's `Stderr` lock. Under load the
/// serving threads wrote lines at the same moments and met on that lock (a
/// futex call per second line or so, and a thread put to sleep while the
/// holder was in its write).
///
/// A serving thread (`hold_lines_on_this_thread`) also holds its lines:
/// before it waits for events (and at each empty idle poll) it writes them
/// once they fill a write (`write_held_lines_if_full`, `PIPE_ATOMIC`), and
/// a task of its own (`write_held_lines_in_time`) writes whatever is held
/// `WRITTEN_WITHIN` after the first line came. So one write(2) carries tens
/// of lines under load, nginx's one per line, and no line waits longer
/// than that, idle or not. The writes are what made it worth it: to a file
/// each took 2.2 µs (bpftrace), and written at every wait they were 0.30
/// per request at 1 worker, wrk -c32. Lines still held when the process is
/// killed are lost, as with any buffered log (nginx's `buffer=`); a
/// graceful stop writes them (the thread writes what it holds as it ends).
///
/// Each write(2) is whole lines, at most PIPE_BUF (4 KiB) of them: the
/// kernel keeps such a write whole in a file and in a pipe. Only a single
/// line longer than that, written alone, may interleave with another
/// thread's lines in a pipe, as nginx's worker processes' lines can.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadStderr;

/// One thread's writer for `ThreadStderr`.
#[derive(Debug)]
pub struct ThreadStderrWriter;

/// How many bytes of lines a serving thread holds before it writes them
/// even while busy.
const HELD_LIMIT: usize = 32 * 1024;

/// The longest a serving thread holds an access line.
pub(crate) const WRITTEN_WITHIN: Duration = Duration::from_millis(50);

thread_local! {
    /// This thread's duplicate of standard error (None when it could not be
    /// made, e.g. out of descriptors: then the locked `Stderr` is used).
    static THREAD_STDERR: Option<std::fs::File> = duplicate_stderr();
    /// Lines a serving thread holds until they fill a write or are due;
    /// None on other threads, which write each line at once.
    static HELD: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    /// The task that writes held lines in time, while it waits for some.
    static WAITING_WRITER: RefCell<Option<std::task::Waker>> = const { RefCell::new(None) };
}

fn duplicate_stderr() -> Option<std::fs::File> {
    use std::os::fd::AsFd;
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(std::fs::File::from)
}

/// From now on this thread holds its access lines until
/// `write_held_lines`: for threads whose runtime calls that before waiting.
pub(crate) fn hold_lines_on_this_thread() {
    HELD.with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            held.get_or_insert_with(|| Vec::with_capacity(HELD_LIMIT));
        }
    });
}

/// Writes the lines this thread holds, if any.
pub(crate) fn write_held_lines() {
    hand_over_held_lines(0, write_whole_lines);
}

/// Writes the lines this thread holds if they fill a write: before the
/// thread waits for events, and at its empty idle polls.
pub(crate) fn write_held_lines_if_full() {
    hand_over_held_lines(PIPE_ATOMIC, write_whole_lines);
}

/// A serving thread's task: whenever lines come to be held, writes what is
/// held `within` after (`write`: to stderr, in whole-line pieces).
pub(crate) async fn write_held_lines_in_time(within: Duration, write: fn(&[u8])) {
    loop {
        lines_held().await;
        tokio::time::sleep(within).await;
        hand_over_held_lines(0, write);
    }
}

/// Ready once this thread holds lines.
async fn lines_held() {
    std::future::poll_fn(|cx| {
        let held = HELD.with(|held| {
            held.try_borrow()
                .is_ok_and(|held| held.as_ref().is_some_and(|l| !l.is_empty()))
        });
        if held {
            return std::task::Poll::Ready(());
        }
        WAITING_WRITER.with(|w| *w.borrow_mut() = Some(cx.waker().clone()));
        std::task::Poll::Pending
    })
    .await;
}

/// The most a write(2) to a pipe puts in at once, uninterleaved (PIPE_BUF
/// on Linux).
const PIPE_ATOMIC: usize = 4096;

/// `lines` to stderr in writes of whole lines, each at most `PIPE_ATOMIC`
/// bytes unless one line alone is longer: into a pipe (a container's log,
/// a journal) another thread's write cannot land inside a line.
pub(crate) fn write_whole_lines(lines: &[u8]) {
    for_each_piece(lines, PIPE_ATOMIC, write_to_stderr);
}

/// Cuts `lines` after a newline into pieces of at most `max` bytes (a
/// longer line is a piece of its own) and gives each to `write`.
fn for_each_piece(lines: &[u8], max: usize, mut write: impl FnMut(&[u8])) {
    let mut rest = lines;
    while !rest.is_empty() {
        let cut = if rest.len() <= max {
            rest.len()
        } else {
            match rest[..max].iter().rposition(|&b| b == b'\n') {
                Some(newline) => newline + 1,
                None => rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |newline| newline + 1),
            }
        };
        let (piece, after) = rest.split_at(cut);
        write(piece);
        rest = after;
    }
}

/// Gives the lines this thread holds to `write`, and forgets them, if they
/// are at least `at_least` bytes (and any at all).
fn hand_over_held_lines(at_least: usize, write: impl FnOnce(&[u8])) {
    let _ = HELD.try_with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            let enough = |l: &&mut Vec<u8>| !l.is_empty() && l.len() >= at_least;
            if let Some(lines) = held.as_mut().filter(enough) {
                empty_into(lines, write);
            }
        }
    });
}

/// Gives the held `lines` to `write` and empties them; a buffer one huge
/// line grew is not kept.
fn empty_into(lines: &mut Vec<u8>, write: impl FnOnce(&[u8])) {
    write(lines);
    lines.clear();
    give_back_past(lines, 2 * HELD_LIMIT, HELD_LIMIT);
}

/// `bytes` to this thread's stderr, all of it. A log that cannot be
/// written has nowhere to say so.
fn write_to_stderr(bytes: &[u8]) {
    use std::io::Write;
    let own = THREAD_STDERR.try_with(|own| match own {
        Some(file) => {
            let mut file: &std::fs::File = file;
            let _ = file.write_all(bytes);
            true
        }
        None => false,
    });
    if own != Ok(true) {
        let _ = std::io::stderr().write_all(bytes);
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ThreadStderr {
    type Writer = ThreadStderrWriter;

    fn make_writer(&'a self) -> ThreadStderrWriter {
        ThreadStderrWriter
    }
}

impl std::io::Write for ThreadStderrWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let held = HELD
            .try_with(|held| {
                let Ok(mut held) = held.try_borrow_mut() else {
                    return false;
                };
                let Some(lines) = held.as_mut() else {
                    return false;
                };
                if lines.is_empty() {
                    // The first line held: it is due `WRITTEN_WITHIN` from now.
                    if let Some(writer) = WAITING_WRITER.with(|w| w.borrow_mut().take()) {
                        writer.wake();
                    }
                }
                lines.extend_from_slice(buf);
                if lines.len() >= HELD_LIMIT {
                    empty_into(lines, write_whole_lines);
                }
                true
            })
            .unwrap_or(false);
        if !held {
            write_to_stderr(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // What a serving thread holds goes out when it fills a write or is due.
        Ok(())
    }
}

/// An event's message, as bytes.
struct MessageInto<'a>(&'a mut Vec<u8>);

impl tracing::field::Visit for MessageInto<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0.extend_from_slice(value.as_bytes());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(ByteSink(self.0), "{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A serving thread holds its lines, in order, until they are handed
    /// over; another thread holds nothing.
    #[test]
    fn a_holding_thread_keeps_its_lines_until_handed_over() {
        use std::io::Write;
        let held_elsewhere = std::thread::spawn(|| {
            hold_lines_on_this_thread();
            use tracing_subscriber::fmt::MakeWriter;
            let mut writer = ThreadStderr.make_writer();
            writer.write_all(b"first line\n").unwrap();
            writer.write_all(b"second line\n").unwrap();
            let mut handed = Vec::new();
            hand_over_held_lines(0, |lines| handed.extend_from_slice(lines));
            let mut again = Vec::new();
            hand_over_held_lines(0, |lines| again.extend_from_slice(lines));
            (handed, again)
        })
        .join()
        .unwrap();
        assert_eq!(held_elsewhere.0, b"first line\nsecond line\n");
        assert!(held_elsewhere.1.is_empty(), "handed over once");
        // This thread was never told to hold: nothing is kept here.
        assert!(HELD.with(|held| held.borrow().is_none()));
    }

    /// Lines short of a write's worth stay held; a write's worth goes.
    #[test]
    fn held_lines_are_handed_over_once_they_fill_a_write() {
        use std::io::Write;
        use tracing_subscriber::fmt::MakeWriter;
        let handed = std::thread::spawn(|| {
            hold_lines_on_this_thread();
            let line = format!("{}\n", "x".repeat(99));
            let mut handed = Vec::new();
            let mut lines = 0;
            while handed.is_empty() {
                ThreadStderr
                    .make_writer()
                    .write_all(line.as_bytes())
                    .unwrap();
                lines += 1;
                hand_over_held_lines(PIPE_ATOMIC, |l| handed.extend_from_slice(l));
            }
            (lines, handed.len())
        })
        .join()
        .unwrap();
        // 100-byte lines: the 41st makes 4100 bytes, past 4096.
        assert_eq!(handed, (41, 4100));
    }

    /// What the lines in time were written to (`write_into_record`).
    static RECORDED: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

    fn write_into_record(lines: &[u8]) {
        RECORDED.lock().unwrap().extend_from_slice(lines);
    }

    /// A serving thread with nothing more to do still writes a line it
    /// holds, within `WRITTEN_WITHIN`, and not at once.
    #[test]
    fn a_held_line_is_written_in_time_on_an_idle_thread() {
        use std::io::Write;
        use tracing_subscriber::fmt::MakeWriter;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(write_held_lines_if_full)
            .build()
            .unwrap();
        let waited = std::thread::spawn(move || {
            hold_lines_on_this_thread();
            runtime.block_on(async {
                let within = Duration::from_millis(200);
                tokio::spawn(write_held_lines_in_time(within, write_into_record));
                tokio::time::sleep(Duration::from_millis(20)).await;
                let start = Instant::now();
                ThreadStderr.make_writer().write_all(b"one line\n").unwrap();
                // The thread parks (its hook leaves a short line held).
                tokio::time::sleep(Duration::from_millis(50)).await;
                let early = RECORDED.lock().unwrap().clone();
                while RECORDED.lock().unwrap().is_empty()
                    && start.elapsed() < Duration::from_secs(5)
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (early, start.elapsed())
            })
        })
        .join()
        .unwrap();
        assert!(waited.0.is_empty(), "written at once: {:?}", waited.0);
        assert_eq!(RECORDED.lock().unwrap().as_slice(), b"one line\n");
        assert!(waited.1 >= Duration::from_millis(200), "{:?}", waited.1);
        assert!(waited.1 < Duration::from_secs(2), "{:?}", waited.1);
    }

    /// Held lines go out in pieces of whole lines, none past the limit
    /// unless one line alone is longer; nothing lost, nothing reordered.
    #[test]
    fn held_lines_are_written_in_whole_line_pieces() {
        let mut lines = Vec::new();
        for i in 0..50 {
            lines.extend_from_slice(format!("line {i} {}\n", "x".repeat(i * 3)).as_bytes());
        }
        let long = format!("{}\n", "y".repeat(300));
        lines.extend_from_slice(long.as_bytes());
        lines.extend_from_slice(b"last\n");
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        for_each_piece(&lines, 256, |piece| pieces.push(piece.to_vec()));
        assert!(pieces.len() > 10, "{}", pieces.len());
        assert_eq!(pieces.concat(), lines);
        for piece in &pieces {
            assert_eq!(piece.last(), Some(&b'\n'));
            assert!(
                piece.len() <= 256 || piece == long.as_bytes(),
                "{}",
                piece.len()
            );
        }
        assert!(
            pieces.iter().any(|p| p == long.as_bytes()),
            "the long line alone"
        );
    }

    /// Each thread's access-line descriptor is its own duplicate of
    /// standard error: another descriptor, the same open file.
    #[test]
    fn thread_stderr_is_a_duplicate_of_stderr() {
        use std::os::fd::{AsFd, AsRawFd};
        use std::os::unix::fs::MetadataExt;
        let stderr = std::fs::File::from(std::io::stderr().as_fd().try_clone_to_owned().unwrap());
        let of_stderr = stderr.metadata().unwrap();
        let mine = THREAD_STDERR.with(|own| {
            let own = own.as_ref().expect("a duplicate");
            (own.as_raw_fd(), own.metadata().unwrap())
        });
        let other =
            std::thread::spawn(|| THREAD_STDERR.with(|own| own.as_ref().map(|f| f.as_raw_fd())))
                .join()
                .unwrap()
                .expect("a duplicate on another thread");
        assert_ne!(mine.0, 2);
        assert_ne!(mine.0, other, "each thread has its own");
        assert_eq!(
            (mine.1.dev(), mine.1.ino()),
            (of_stderr.dev(), of_stderr.ino())
        );
    }

    /// `bytes` escaped as a log field.
    fn escaped(bytes: &[u8]) -> String {
        let mut line = Vec::new();
        push_escaped(&mut line, bytes);
        String::from_utf8(line).unwrap()
    }

    /// The common log format's time of `t`, as a line shows it.
    #[allow(non_snake_case)]
    fn ClfTime(t: SystemTime) -> String {
        let mut line = Vec::new();
        push_clf_time(&mut line, t);
        String::from_utf8(line).unwrap()
    }

    #[test]
    fn escapes_what_could_end_a_field_or_a_line() {
        let shown = escaped(b"a\"b\\c\nd\re\tf\x01\x7f\xc3\xa9 ok");
        assert_eq!(shown, r"a\x22b\x5Cc\x0Ad\x0De\x09f\x01\x7F\xC3\xA9 ok");
        assert_eq!(escaped(b""), "");
        assert_eq!(escaped(b"\""), r"\x22");
    }

    #[test]
    fn formats_times_like_httpdate_does() {
        let at = |secs: u64| UNIX_EPOCH + Duration::from_millis(secs * 1000 + 45);
        assert_eq!(ClfTime(at(0)), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(Rfc3339(at(0)).to_string(), "1970-01-01T00:00:00.045Z");
        // A leap day, and the first day after a century that is no leap year.
        assert_eq!(ClfTime(at(951_782_400)), "29/Feb/2000:00:00:00 +0000");
        assert_eq!(
            Rfc3339(at(4_107_542_400)).to_string(),
            "2100-03-01T00:00:00.045Z"
        );
        // Every ~9 days over 200 years agrees with httpdate's own calendar.
        for secs in (0..6_300_000_000u64).step_by(800_009) {
            let http = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
            // "Tue, 15 Nov 1994 08:12:31 GMT" → "15/Nov/1994:08:12:31"
            let p: Vec<&str> = http.split(' ').collect();
            let expected = format!("{}/{}/{}:{} +0000", p[1], p[2], p[3], p[4]);
            assert_eq!(ClfTime(at(secs) - Duration::from_millis(45)), expected);
        }
    }

    #[test]
    fn pins_a_known_instant_in_both_formats() {
        // Apache's own example; sub-second digits are truncated, never rounded.
        let at = UNIX_EPOCH + Duration::from_secs(971_186_136) + Duration::from_nanos(123_999_999);
        assert_eq!(ClfTime(at), "10/Oct/2000:13:55:36 +0000");
        assert_eq!(Rfc3339(at).to_string(), "2000-10-10T13:55:36.123Z");
        let single_digits =
            UNIX_EPOCH + Duration::from_secs(1_136_171_045) + Duration::from_millis(7);
        assert_eq!(ClfTime(single_digits), "02/Jan/2006:03:04:05 +0000");
        assert_eq!(
            Rfc3339(single_digits).to_string(),
            "2006-01-02T03:04:05.007Z"
        );
        // A clock before 1970 shows the epoch, as the hand-written calendar did.
        let before = UNIX_EPOCH - Duration::from_secs(90_000);
        assert_eq!(ClfTime(before), "01/Jan/1970:00:00:00 +0000");
        let after_9999 = UNIX_EPOCH + Duration::from_secs(253_402_300_800);
        assert_eq!(Rfc3339(after_9999).to_string(), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn json_lines_stay_one_line() {
        let hostile = "a\nb\r\"c\\\u{1}\u{2028}";
        let line = JsonLine {
            time: Rfc3339(UNIX_EPOCH).to_string(),
            remote: "unix:".to_owned(),
            method: "GET",
            uri: "/".to_owned(),
            protocol: "HTTP/1.1".to_owned(),
            status: 200,
            bytes: 0,
            duration_ms: millis(Duration::from_nanos(1_234_567)),
            upstream_ms: None,
            referer: None,
            user_agent: Some(hostile.to_owned()),
            aborted: true,
        };
        let text = serde_json::to_string(&line).unwrap();
        assert!(!text.contains(['\n', '\r', '\u{1}']), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["user_agent"], hostile);
        assert_eq!(back["duration_ms"], 1.235);
        assert_eq!(back["upstream_ms"], serde_json::Value::Null);
    }

    /// One line's fields in bytes, as `fmt` printed them before: numbers,
    /// seconds rounded to the millisecond, addresses, protocol names, a
    /// request target in absolute form escaped like any other.
    #[test]
    fn combined_fields_written_as_bytes() {
        let seconds = |d: Duration| {
            let mut line = Vec::new();
            push_seconds(&mut line, d);
            String::from_utf8(line).unwrap()
        };
        assert_eq!(seconds(Duration::ZERO), "0.000");
        assert_eq!(seconds(Duration::from_micros(4_499)), "0.004");
        assert_eq!(seconds(Duration::from_micros(4_500)), "0.005");
        assert_eq!(seconds(Duration::from_millis(12_250)), "12.250");
        assert_eq!(seconds(Duration::from_micros(999_600)), "1.000");
        assert_eq!(
            seconds(Duration::MAX),
            format!("{}.{:03}", u64::MAX / 1000, u64::MAX % 1000)
        );

        let remote = |ep: Endpoint| {
            let mut line = Vec::new();
            push_remote(&mut line, ep);
            String::from_utf8(line).unwrap()
        };
        assert_eq!(
            remote(Endpoint::Tcp("10.0.255.7:80".parse().unwrap())),
            "10.0.255.7"
        );
        assert_eq!(
            remote(Endpoint::Tcp("[2001:db8::1]:80".parse().unwrap())),
            "2001:db8::1"
        );
        assert_eq!(remote(Endpoint::Unix), "unix:");
        let forwarded = Endpoint::Forwarded {
            ip: "192.0.2.1".parse().unwrap(),
            port: None,
        };
        assert_eq!(remote(forwarded), "192.0.2.1");

        for version in [
            http::Version::HTTP_09,
            http::Version::HTTP_10,
            http::Version::HTTP_11,
            http::Version::HTTP_2,
            http::Version::HTTP_3,
        ] {
            let mut line = Vec::new();
            push_version(&mut line, version);
            assert_eq!(String::from_utf8(line).unwrap(), format!("{version:?}"));
        }

        let target = |uri: &str| {
            let mut line = Vec::new();
            push_uri(&mut line, &uri.parse().unwrap());
            String::from_utf8(line).unwrap()
        };
        assert_eq!(target("/a/b.php?x=1&y=%22"), "/a/b.php?x=1&y=%22");
        assert_eq!(target("*"), "*");
        assert_eq!(target("http://h:81/p?q"), "http://h:81/p?q");
        assert_eq!(target("h:443"), "h:443");
    }

    /// The per-thread time text is remade when the second changes, and
    /// follows the clock back as well as forward.
    #[test]
    fn cached_time_follows_the_second() {
        let at = |secs: u64, millis: u64| {
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
        };
        assert_eq!(ClfTime(at(971_186_136, 1)), "10/Oct/2000:13:55:36 +0000");
        assert_eq!(ClfTime(at(971_186_136, 999)), "10/Oct/2000:13:55:36 +0000");
        assert_eq!(ClfTime(at(971_186_137, 0)), "10/Oct/2000:13:55:37 +0000");
        assert_eq!(ClfTime(at(971_186_135, 500)), "10/Oct/2000:13:55:35 +0000");
        assert_eq!(ClfTime(at(971_186_137, 10)), "10/Oct/2000:13:55:37 +0000");
    }

    fn metrics() -> Arc<Metrics> {
        use crate::upstream::balance::{BalanceSettings, HealthPolicy, Upstreams};
        use crate::upstream::{PoolSettings, UpstreamAddr};
        let pool = PoolSettings {
            addr: UpstreamAddr::Unix("/nowhere".into()),
            max_conns: 1,
            max_idle: 1,
            queue_length: 1,
            connect_timeout: Duration::from_secs(1),
            acquire_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            pipelining: None,
            workers: 1,
        };
        let upstreams = Upstreams::new(BalanceSettings {
            upstreams: vec!["unix:/nowhere".parse().unwrap()],
            pool,
            health: HealthPolicy::default(),
            resolve_interval: Duration::from_secs(5),
        });
        Arc::new(Metrics::new(upstreams))
    }

    /// A whole combined line as the gateway writes it for a request.
    #[tokio::test]
    async fn combined_line_in_order() {
        let req = http::Request::get("/p.php?a=%22")
            .header(header::USER_AGENT, "ua \"quoted\"")
            .body(())
            .unwrap();
        let mut log = AccessLog::new(
            metrics(),
            AccessLogFormat::Combined,
            Instant::now(),
            Endpoint::Tcp("127.0.0.1:5555".parse().unwrap()),
            &req,
        );
        log.status = 404;
        log.bytes = 1234;
        log.upstream_time = Some(Duration::from_millis(3));
        let received = UNIX_EPOCH + Duration::from_secs(971_186_136);
        let mut line = Vec::new();
        log.write_combined(&mut line, received, Duration::from_millis(5));
        assert_eq!(
            String::from_utf8(line).unwrap(),
            r#"127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET /p.php?a=%22 HTTP/1.1" 404 1234 "-" "ua \x22quoted\x22" 0.005 0.003 aborted"#
        );
    }

    /// Referer and User-Agent are found among other headers, and of a
    /// repeated one the first value is logged (as `HeaderMap::get` gives).
    #[tokio::test]
    async fn referer_and_agent_are_the_first_of_each() {
        let req = http::Request::get("/")
            .header(header::HOST, "example.com")
            .header(header::USER_AGENT, "first agent")
            .header("x-referer", "not this")
            .header(header::ACCEPT, "*/*")
            .header(header::USER_AGENT, "second agent")
            .header(header::REFERER, "https://example.com/from")
            .header(header::REFERER, "https://example.com/later")
            .body(())
            .unwrap();
        let log = AccessLog::new(
            metrics(),
            AccessLogFormat::Combined,
            Instant::now(),
            Endpoint::Unix,
            &req,
        );
        assert_eq!(log.user_agent.as_ref().unwrap(), "first agent");
        assert_eq!(log.referer.as_ref().unwrap(), "https://example.com/from");

        let bare = http::Request::get("/").body(()).unwrap();
        let log = AccessLog::new(
            metrics(),
            AccessLogFormat::Combined,
            Instant::now(),
            Endpoint::Unix,
            &bare,
        );
        assert!(log.user_agent.is_none() && log.referer.is_none());
    }

    /// A buffer grown by one huge line is given back; a usual one is kept.
    #[test]
    fn line_buffers_do_not_keep_a_huge_line() {
        let mut huge = Vec::with_capacity(256 * 1024);
        huge.extend_from_slice(b"x");
        keep_small(&mut huge);
        assert!(huge.capacity() < 16 * 1024, "{}", huge.capacity());
        let mut usual = Vec::with_capacity(2048);
        usual.extend_from_slice(b"line");
        keep_small(&mut usual);
        assert_eq!((usual.capacity(), &usual[..]), (2048, &b"line"[..]));
    }

    /// A writer that keeps what the layers write, for the tests to read.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Access lines go bare to their writer and nowhere else; every other
    /// event, and spans, go to the other layer alone. The global filter
    /// still decides for both.
    #[test]
    fn access_lines_and_the_rest_are_routed_apart() {
        use tracing_subscriber::layer::SubscriberExt;
        let (lines, others) = (Sink::default(), Sink::default());
        let (lines_w, others_w) = (lines.clone(), others.clone());
        let rest = tracing_subscriber::fmt::layer()
            .with_writer(move || others_w.clone())
            .with_ansi(false)
            .without_time();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("info"))
            .with(AccessLinesBeside::new(
                BareAccessLines::new(move || lines_w.clone()),
                rest,
            ));
        tracing::subscriber::with_default(subscriber, || {
            assert!(tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO));
            let span = tracing::info_span!("conn", client = 7);
            let _entered = span.enter();
            tracing::info!(target: ACCESS_TARGET, message = "the line");
            tracing::warn!(code = 3, "something else");
            // Below the filter's level: neither gets it.
            tracing::debug!(target: ACCESS_TARGET, message = "hidden line");
            tracing::debug!("hidden other");
        });
        let lines = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let others = String::from_utf8(others.0.lock().unwrap().clone()).unwrap();
        assert_eq!(lines, "the line\n");
        assert!(others.contains("something else"), "{others}");
        assert!(others.contains("conn{client=7}"), "span context: {others}");
        assert!(
            !others.contains("the line") && !others.contains("hidden"),
            "{others}"
        );
        assert_eq!(others.lines().count(), 1, "{others}");
    }

    /// The layer prints each access event's message alone on its line,
    /// with nothing added and nothing escaped twice; other fields are not
    /// printed.
    #[test]
    fn bare_lines_print_the_message_alone() {
        use tracing_subscriber::layer::SubscriberExt;
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber =
            tracing_subscriber::registry().with(BareAccessLines::new(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let text = r#"1.2.3.4 - - [x] "GET / HTTP/1.1" 200 1 "-" "a\x22b" 0.001 -"#;
            // As `AccessLog` sends a line: a `str` message.
            tracing::info!(target: "access", message = text);
            tracing::info!(target: "access", "{text}");
            tracing::info!(target: "access", extra = 5, "second {}", 2);
        });
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let line = "1.2.3.4 - - [x] \"GET / HTTP/1.1\" 200 1 \"-\" \"a\\x22b\" 0.001 -\n";
        assert_eq!(out, format!("{line}{line}second 2\n"));
    }
}
