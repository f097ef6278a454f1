//! One access-log line per request, written when the response body is done
//! (or dropped, when the client went away), so it carries the bytes sent.
//! Two formats: Apache/nginx `combined` plus times, or one JSON object.
//! Whatever the client sent is escaped, so a request can never make its
//! line look like two.

use std::fmt::{self, Display, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderValue};
use serde::Serialize;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

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
        AccessLog {
            metrics,
            format,
            start,
            remote,
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            referer: req.headers().get(header::REFERER).cloned(),
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
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
        if !tracing::enabled!(target: "access", tracing::Level::INFO) {
            return;
        }
        // When the request came in, as the combined format has it.
        let received = SystemTime::now()
            .checked_sub(elapsed)
            .unwrap_or(SystemTime::now());
        match self.format {
            AccessLogFormat::Combined => {
                tracing::info!(target: "access", "{}", Combined { log: self, received, elapsed });
            }
            AccessLogFormat::Json => match serde_json::to_string(&self.json(received, elapsed)) {
                Ok(line) => tracing::info!(target: "access", "{line}"),
                Err(e) => tracing::warn!(error = %e, "access log line not encoded"),
            },
        }
    }
}

/// The combined line, written straight into the log without building a String.
struct Combined<'a> {
    log: &'a AccessLog,
    received: SystemTime,
    elapsed: Duration,
}

impl Display for Combined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let log = self.log;
        write!(
            f,
            "{} - - [{}] \"{} ",
            Remote(log.remote),
            ClfTime(self.received),
            Escaped(log.method.as_str().as_bytes()),
        )?;
        write!(EscapeTo(f), "{}", log.uri)?;
        write!(
            f,
            " {:?}\" {} {} \"{}\" \"{}\" {:.3} ",
            log.version,
            log.status,
            log.bytes,
            Escaped(header_or_dash(&log.referer)),
            Escaped(header_or_dash(&log.user_agent)),
            self.elapsed.as_secs_f64(),
        )?;
        match log.upstream_time {
            Some(t) => write!(f, "{:.3}", t.as_secs_f64())?,
            None => f.write_char('-')?,
        }
        if !log.completed {
            f.write_str(" aborted")?;
        }
        Ok(())
    }
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

/// nginx's escaping for quoted log fields: `"`, `\`, control bytes and
/// bytes above 0x7e become `\xHH`, so a value can neither end its quotes
/// nor start a new line.
struct Escaped<'a>(&'a [u8]);

impl Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        escape_into(f, self.0)
    }
}

/// Escapes whatever is written through it (for values that are `Display`).
struct EscapeTo<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for EscapeTo<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s.as_bytes())
    }
}

fn escape_into(f: &mut impl fmt::Write, bytes: &[u8]) -> fmt::Result {
    let mut rest = bytes;
    while let Some(at) = rest.iter().position(|&b| needs_escape(b)) {
        write_ascii(f, &rest[..at])?;
        write!(f, "\\x{:02X}", rest[at])?;
        rest = &rest[at + 1..];
    }
    write_ascii(f, rest)
}

/// Bytes that need no escaping are printable ASCII, so valid UTF-8.
fn write_ascii(f: &mut impl fmt::Write, plain: &[u8]) -> fmt::Result {
    f.write_str(std::str::from_utf8(plain).map_err(|_| fmt::Error)?)
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

/// The common log format's time of an instant.
struct ClfTime(SystemTime);

impl Display for ClfTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_time(f, self.0, CLF)
    }
}

/// The JSON format's time of an instant.
struct Rfc3339(SystemTime);

impl Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_time(f, self.0, RFC3339_MILLIS)
    }
}

/// Formats `t` in UTC through a stack buffer (`time` writes to an
/// `io::Write`), so the combined line still builds no String. A clock
/// before 1970 shows 1970, one past year 9999 shows 9999's last second:
/// nothing here panics.
fn write_time(
    f: &mut fmt::Formatter<'_>,
    t: SystemTime,
    format: &[BorrowedFormatItem<'_>],
) -> fmt::Result {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let nanos = i128::try_from(since.as_nanos()).unwrap_or(i128::MAX);
    let at = OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(PrimitiveDateTime::MAX.assume_utc());
    let mut buf = [0u8; 48];
    let mut out = &mut buf[..];
    let len = at.format_into(&mut out, format).map_err(|_| fmt::Error)?;
    f.write_str(std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_end_a_field_or_a_line() {
        let shown = Escaped(b"a\"b\\c\nd\re\tf\x01\x7f\xc3\xa9 ok").to_string();
        assert_eq!(shown, r"a\x22b\x5Cc\x0Ad\x0De\x09f\x01\x7F\xC3\xA9 ok");
        assert_eq!(Escaped(b"").to_string(), "");
        assert_eq!(Escaped(b"\"").to_string(), r"\x22");
    }

    #[test]
    fn formats_times_like_httpdate_does() {
        let at = |secs: u64| UNIX_EPOCH + Duration::from_millis(secs * 1000 + 45);
        assert_eq!(ClfTime(at(0)).to_string(), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(Rfc3339(at(0)).to_string(), "1970-01-01T00:00:00.045Z");
        // A leap day, and the first day after a century that is no leap year.
        assert_eq!(
            ClfTime(at(951_782_400)).to_string(),
            "29/Feb/2000:00:00:00 +0000"
        );
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
            assert_eq!(
                ClfTime(at(secs) - Duration::from_millis(45)).to_string(),
                expected
            );
        }
    }

    #[test]
    fn pins_a_known_instant_in_both_formats() {
        // Apache's own example; sub-second digits are truncated, never rounded.
        let at = UNIX_EPOCH + Duration::from_secs(971_186_136) + Duration::from_nanos(123_999_999);
        assert_eq!(ClfTime(at).to_string(), "10/Oct/2000:13:55:36 +0000");
        assert_eq!(Rfc3339(at).to_string(), "2000-10-10T13:55:36.123Z");
        let single_digits =
            UNIX_EPOCH + Duration::from_secs(1_136_171_045) + Duration::from_millis(7);
        assert_eq!(
            ClfTime(single_digits).to_string(),
            "02/Jan/2006:03:04:05 +0000"
        );
        assert_eq!(
            Rfc3339(single_digits).to_string(),
            "2006-01-02T03:04:05.007Z"
        );
        // A clock before 1970 shows the epoch, as the hand-written calendar did.
        let before = UNIX_EPOCH - Duration::from_secs(90_000);
        assert_eq!(ClfTime(before).to_string(), "01/Jan/1970:00:00:00 +0000");
        let after_9999 = UNIX_EPOCH + Duration::from_secs(253_402_300_800);
        assert_eq!(Rfc3339(after_9999).to_string(), "9999-12-31T23:59:59.999Z");
    }

    /// What one line's time costs, to compare formatters; prints, asserts
    /// nothing. `cargo test --release --lib time_format_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn time_format_cost() {
        let base = UNIX_EPOCH + Duration::from_millis(1_760_000_000_123);
        let calls = 1_000_000u32;
        let mut line = String::with_capacity(64);
        for (name, json) in [("combined", false), ("json", true)] {
            let started = Instant::now();
            for i in 0..calls {
                line.clear();
                let t = std::hint::black_box(base + Duration::from_micros(u64::from(i) * 7_919));
                if json {
                    write!(line, "{}", Rfc3339(t)).unwrap();
                } else {
                    write!(line, "{}", ClfTime(t)).unwrap();
                }
                std::hint::black_box(&line);
            }
            let per_call = started.elapsed() / calls;
            println!("{name}: {per_call:?} per call ({line})");
        }
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
}
