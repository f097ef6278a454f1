//! One access-log line per request, written when the response body is done
//! (or dropped, when the client went away), so it carries the bytes sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cgi::params::Endpoint;
use crate::metrics::Metrics;

#[derive(Debug)]
pub struct AccessLog {
    /// Counts the request where its log line is written, so both agree.
    pub metrics: Arc<Metrics>,
    pub start: Instant,
    pub remote: Endpoint,
    pub method: http::Method,
    pub uri: http::Uri,
    pub status: u16,
    pub bytes: u64,
    /// From handing the request to the pool until the response head arrived.
    pub upstream_time: Option<Duration>,
    pub completed: bool,
}

impl AccessLog {
    pub fn new(
        metrics: Arc<Metrics>,
        start: Instant,
        remote: Endpoint,
        method: http::Method,
        uri: http::Uri,
    ) -> Self {
        AccessLog {
            metrics,
            start,
            remote,
            method,
            uri,
            status: 0,
            bytes: 0,
            upstream_time: None,
            completed: false,
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        let remote = match self.remote {
            Endpoint::Tcp(a) => a.ip().to_string(),
            Endpoint::Unix => "unix:".to_owned(),
            Endpoint::Forwarded { ip, .. } => ip.to_string(),
        };
        let elapsed = self.start.elapsed().as_secs_f64();
        self.metrics.observe_request(self.status, elapsed);
        let total_ms = elapsed * 1000.0;
        let upstream_ms = self
            .upstream_time
            .map(|d| format!("{:.3}", d.as_secs_f64() * 1000.0))
            .unwrap_or_else(|| "-".to_owned());
        tracing::info!(
            target: "access",
            "{remote} \"{} {}\" {} {} {:.3}ms upstream={upstream_ms}ms{}",
            self.method,
            self.uri,
            self.status,
            self.bytes,
            total_ms,
            if self.completed { "" } else { " aborted" },
        );
    }
}
