//! Prometheus metrics: requests by status class and their durations
//! (recorded where the access-log line is written), the upstream pool's
//! gauges and counters, and php-fpm's status page, read at scrape time.
//! One `Metrics` per server, so several gateways in one process keep apart.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::upstream::fpm_status::FpmStatus;
use crate::upstream::Pool;

/// `Content-Type` of what [`Metrics::encode`] returns.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

type ClassLabel = [(&'static str, &'static str); 1];

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The registry and the metrics the request path updates.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<ClassLabel, Counter>,
    duration: Histogram,
    fpm_status: Arc<Mutex<Option<FpmStatus>>>,
    /// The pool the collector reads; a config reload may replace it.
    pool: Arc<ArcSwap<Pool>>,
}

impl Metrics {
    pub fn new(pool: Pool) -> Metrics {
        let mut registry = Registry::with_prefix("fcgi_gateway");
        let requests = Family::<ClassLabel, Counter>::default();
        // Every class from the start, so a rate over a fresh series is defined.
        for class in CLASSES {
            let _ = requests.get_or_create(&[("class", class)]);
        }
        registry.register(
            "requests",
            "HTTP requests answered, by status class",
            requests.clone(),
        );
        // 1 ms .. ~33 s: static files up to slow PHP.
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register_with_unit(
            "request_duration",
            "Time from the request head to the last response byte (or the client leaving)",
            Unit::Seconds,
            duration.clone(),
        );
        let fpm_status = Arc::new(Mutex::new(None));
        let pool = Arc::new(ArcSwap::from_pointee(pool));
        registry.register_collector(Box::new(UpstreamCollector {
            pool: pool.clone(),
            fpm_status: fpm_status.clone(),
        }));
        Metrics {
            registry,
            requests,
            duration,
            fpm_status,
            pool,
        }
    }

    /// Reads `pool` from now on (a reload replaced the pool); the request
    /// counters go on, the old pool's status reading is forgotten.
    pub fn set_pool(&self, pool: Pool) {
        self.pool.store(Arc::new(pool));
        if let Ok(mut last) = self.fpm_status.lock() {
            *last = None;
        }
    }

    /// One finished (or abandoned) request.
    pub fn observe_request(&self, status: u16, seconds: f64) {
        if let Some(class) = class_of(status) {
            self.requests.get_or_create(&[("class", class)]).inc();
        }
        self.duration.observe(seconds);
    }

    /// The last status page read, exposed until the next one replaces it.
    pub fn record_fpm_status(&self, status: FpmStatus) {
        if let Ok(mut last) = self.fpm_status.lock() {
            *last = Some(status);
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn class_of(status: u16) -> Option<&'static str> {
    CLASSES
        .get(usize::from(status / 100).checked_sub(1)?)
        .copied()
}

/// Reads the pool (and php-fpm's last status) on each scrape, so the
/// request path pays nothing for them.
#[derive(Debug)]
struct UpstreamCollector {
    pool: Arc<ArcSwap<Pool>>,
    fpm_status: Arc<Mutex<Option<FpmStatus>>>,
}

/// The labels of one pool's series.
struct Labels {
    upstream: String,
    socket: &'static str,
}

impl Labels {
    fn of(pool: &Pool) -> Labels {
        Labels {
            upstream: pool.settings().addr.to_string(),
            socket: pool.settings().addr.kind(),
        }
    }

    fn pairs(&self) -> [(&'static str, &str); 2] {
        [("upstream", &self.upstream), ("socket", self.socket)]
    }
}

impl UpstreamCollector {
    fn gauge(
        labels: &Labels,
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: u64,
    ) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
        let mut metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
        gauge.encode(metric.encode_family(&labels.pairs())?)
    }

    fn counter(
        labels: &Labels,
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: u64,
    ) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(value);
        let mut metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
        counter.encode(metric.encode_family(&labels.pairs())?)
    }
}

impl Collector for UpstreamCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let pool = self.pool.load();
        let labels = Labels::of(&pool);
        let s = pool.snapshot();
        let as_u64 = |n: usize| n as u64;
        Self::gauge(
            &labels,
            &mut e,
            "upstream_pool_size",
            "Upstream connections allowed at once",
            as_u64(s.size),
        )?;
        Self::gauge(
            &labels,
            &mut e,
            "upstream_pool_open",
            "Upstream connections open (idle + busy)",
            as_u64(s.open),
        )?;
        Self::gauge(
            &labels,
            &mut e,
            "upstream_pool_idle",
            "Upstream connections idle in the pool",
            as_u64(s.idle),
        )?;
        Self::gauge(
            &labels,
            &mut e,
            "upstream_pool_busy",
            "Upstream connections serving a request",
            as_u64(s.busy),
        )?;
        Self::gauge(
            &labels,
            &mut e,
            "upstream_pool_waiting",
            "Requests waiting for an upstream connection",
            as_u64(s.waiting),
        )?;
        Self::counter(
            &labels,
            &mut e,
            "upstream_connects",
            "Upstream connections opened",
            s.connects,
        )?;
        Self::counter(
            &labels,
            &mut e,
            "upstream_connect_failures",
            "Upstream connects that failed or timed out",
            s.connect_failures,
        )?;
        Self::counter(
            &labels,
            &mut e,
            "upstream_retries",
            "Requests retried on a fresh connection after a reused one failed",
            s.retries,
        )?;
        Self::counter(
            &labels,
            &mut e,
            "upstream_saturated",
            "Requests answered 503: pool queue full or acquire timeout",
            s.saturated,
        )?;
        Self::counter(
            &labels,
            &mut e,
            "upstream_stale_dropped",
            "Idle connections found closed by the upstream at checkout",
            s.stale_dropped,
        )?;
        Self::counter(
            &labels,
            &mut e,
            "upstream_idle_reaped",
            "Idle connections closed by the idle timeout",
            s.idle_reaped,
        )?;
        let last = self.fpm_status.lock().ok().and_then(|g| g.clone());
        if let Some(fpm) = last {
            Self::gauge(
                &labels,
                &mut e,
                "fpm_listen_queue",
                "Connections waiting in php-fpm's listen queue (last status read)",
                fpm.listen_queue,
            )?;
            Self::counter(
                &labels,
                &mut e,
                "fpm_max_children_reached",
                "Times php-fpm hit its max children (last status read)",
                fpm.max_children_reached,
            )?;
            Self::gauge(
                &labels,
                &mut e,
                "fpm_active_processes",
                "php-fpm workers serving a request (last status read)",
                fpm.active_processes,
            )?;
            Self::gauge(
                &labels,
                &mut e,
                "fpm_idle_processes",
                "php-fpm workers idle (last status read)",
                fpm.idle_processes,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(class_of(101), Some("1xx"));
        assert_eq!(class_of(200), Some("2xx"));
        assert_eq!(class_of(404), Some("4xx"));
        assert_eq!(class_of(599), Some("5xx"));
        assert_eq!(class_of(0), None);
        assert_eq!(class_of(600), None);
    }
}
