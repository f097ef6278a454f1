//! What one cell run records (HDR histograms in microseconds, error counts)
//! and the summaries built from it: percentiles, rates, ratios with spread.

use std::io;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::upstream::UpstreamError;

/// Three significant digits: a 57 µs sample is kept as 57 µs, a 12.345 ms one
/// within 0.1 %. The histogram grows with the largest value recorded.
const SIGFIG: u8 = 3;

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        // `new` only fails for a sigfig above 5.
        Latencies(Histogram::new(SIGFIG).unwrap_or_else(|_| unreachable!()))
    }
}

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        // `record` grows the histogram; `saturating_record` would clamp to
        // the current top instead, so it is only the fallback.
        if self.0.record(micros).is_err() {
            self.0.saturating_record(micros);
        }
    }

    pub fn merge(&mut self, other: &Latencies) {
        // An auto-resizing histogram grows to fit, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// Latency at `percentile` (0–100) in milliseconds; 0 when empty.
    pub fn at_ms(&self, percentile: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.value_at_percentile(percentile) as f64 / 1000.0
    }

    pub fn summary(&self) -> LatencySummary {
        let ms = |v: u64| v as f64 / 1000.0;
        let empty = self.0.is_empty();
        LatencySummary {
            count: self.0.len(),
            mean: if empty { 0.0 } else { self.0.mean() / 1000.0 },
            p50: self.at_ms(50.0),
            p90: self.at_ms(90.0),
            p99: self.at_ms(99.0),
            p99_9: self.at_ms(99.9),
            max: if empty { 0.0 } else { ms(self.0.max()) },
        }
    }
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

/// Why a request failed, as the bench reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// ECONNREFUSED: nothing listens (or, on TCP, the backlog overflowed with tcp_abort_on_overflow).
    Refused,
    /// EAGAIN on connect: a unix socket's listen backlog is full.
    Eagain,
    /// The connection was reset or closed before the response ended.
    Reset,
    /// Connect or read timeout.
    Timeout,
    /// php-fpm answered with a CGI Status of 400 or more (a missing script is 404).
    Status,
    Other,
}

/// Failed requests by kind.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ErrorCounts {
    pub refused: u64,
    pub eagain: u64,
    pub reset: u64,
    pub timeout: u64,
    pub status: u64,
    pub other: u64,
}

impl ErrorCounts {
    pub fn add(&mut self, kind: ErrorKind) {
        let slot = match kind {
            ErrorKind::Refused => &mut self.refused,
            ErrorKind::Eagain => &mut self.eagain,
            ErrorKind::Reset => &mut self.reset,
            ErrorKind::Timeout => &mut self.timeout,
            ErrorKind::Status => &mut self.status,
            ErrorKind::Other => &mut self.other,
        };
        *slot += 1;
    }

    pub fn merge(&mut self, o: &ErrorCounts) {
        self.refused += o.refused;
        self.eagain += o.eagain;
        self.reset += o.reset;
        self.timeout += o.timeout;
        self.status += o.status;
        self.other += o.other;
    }

    pub fn total(&self) -> u64 {
        self.refused + self.eagain + self.reset + self.timeout + self.status + self.other
    }

    /// `"0"`, or the non-zero kinds like `"eagain=3 timeout=1"`.
    pub fn brief(&self) -> String {
        let parts: Vec<String> = [
            ("refused", self.refused),
            ("eagain", self.eagain),
            ("reset", self.reset),
            ("timeout", self.timeout),
            ("status", self.status),
            ("other", self.other),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name}={n}"))
        .collect();
        if parts.is_empty() {
            "0".to_owned()
        } else {
            parts.join(" ")
        }
    }
}

/// Sorts an upstream failure into the reported kinds.
pub fn classify(error: &UpstreamError) -> ErrorKind {
    match error {
        UpstreamError::Connect { source, .. } => classify_io(source),
        UpstreamError::ConnectTimeout { .. }
        | UpstreamError::HeadTimeout { .. }
        | UpstreamError::ReadTimeout { .. }
        | UpstreamError::AcquireTimeout { .. } => ErrorKind::Timeout,
        UpstreamError::Write(e) | UpstreamError::Read(e) => match classify_io(e) {
            ErrorKind::Refused | ErrorKind::Eagain => ErrorKind::Other,
            kind => kind,
        },
        UpstreamError::Closed => ErrorKind::Reset,
        _ => ErrorKind::Other,
    }
}

fn classify_io(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ErrorKind::Refused,
        io::ErrorKind::WouldBlock => ErrorKind::Eagain,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => ErrorKind::Reset,
        io::ErrorKind::TimedOut => ErrorKind::Timeout,
        _ => ErrorKind::Other,
    }
}

/// Median, min and max of per-round values.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub rounds: Vec<f64>,
}

impl Spread {
    pub fn of(rounds: Vec<f64>) -> Spread {
        let mut sorted: Vec<f64> = rounds.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let (median, min, max) = match sorted.len() {
            0 => (0.0, 0.0, 0.0),
            n => {
                let mid = n / 2;
                let median = if n % 2 == 1 {
                    sorted[mid]
                } else {
                    (sorted[mid - 1] + sorted[mid]) / 2.0
                };
                (median, sorted[0], sorted[n - 1])
            }
        };
        Spread {
            median,
            min,
            max,
            rounds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_ms() {
        let mut h = Latencies::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50 - 0.5).abs() < 0.002, "{s:?}");
        assert!((s.p99 - 0.99).abs() < 0.002, "{s:?}");
        assert!((s.max - 1.0).abs() < 0.002, "{s:?}");
        let mut other = Latencies::default();
        other.record(Duration::from_secs(3));
        h.merge(&other);
        assert_eq!(h.count(), 1001);
        let max = h.summary().max;
        assert!((max - 3000.0).abs() < 4.0, "{max}");
        assert_eq!(Latencies::default().summary().p99, 0.0);
    }

    #[test]
    fn error_kinds() {
        let io = |k: io::ErrorKind| io::Error::new(k, "x");
        let connect = |k| UpstreamError::Connect {
            addr: "unix:/x".into(),
            source: io(k),
        };
        assert_eq!(
            classify(&connect(io::ErrorKind::ConnectionRefused)),
            ErrorKind::Refused
        );
        assert_eq!(
            classify(&connect(io::ErrorKind::WouldBlock)),
            ErrorKind::Eagain
        );
        assert_eq!(
            classify(&UpstreamError::Read(io(io::ErrorKind::ConnectionReset))),
            ErrorKind::Reset
        );
        assert_eq!(classify(&UpstreamError::Closed), ErrorKind::Reset);
        assert_eq!(
            classify(&UpstreamError::HeadTimeout {
                after: Duration::from_secs(1)
            }),
            ErrorKind::Timeout
        );
        let mut counts = ErrorCounts::default();
        assert_eq!(counts.brief(), "0");
        counts.add(ErrorKind::Eagain);
        counts.add(ErrorKind::Eagain);
        counts.add(ErrorKind::Timeout);
        assert_eq!(counts.brief(), "eagain=2 timeout=1");
        assert_eq!(counts.total(), 3);
    }

    #[test]
    fn spread() {
        let s = Spread::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(vec![1.0, 4.0]).median, 2.5);
        assert_eq!(Spread::of(vec![]).median, 0.0);
    }
}
