//! Prometheus metrics: requests by status class and their durations
//! (recorded where the access-log line is written), upstream connect,
//! first-byte and total times (recorded by the pool as they happen), the
//! upstream pool's gauges and counters, and php-fpm's status page, read at
//! scrape time. One `Metrics` per server, so several gateways in one
//! process keep apart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::fpm::status::FpmStatus;
use crate::upstream::{ExchangeObserver, Pool};

/// `Content-Type` of what [`Metrics::encode`] returns.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

type ClassLabel = [(&'static str, &'static str); 1];
type UpstreamLabels = [(&'static str, String); 2];

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The registry and the metrics the request path updates.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The `requests` family's counter of each class, looked up once: a
    /// lookup per request takes the family's lock and hashes the labels.
    requests_by_class: [Counter; CLASSES.len()],
    duration: Histogram,
    fpm_status: Arc<Mutex<Option<FpmStatus>>>,
    /// The pool the collector reads; a config reload may replace it.
    pool: Arc<ArcSwap<Pool>>,
    upstream_times: UpstreamFamilies,
}

impl Metrics {
    pub fn new(pool: Pool) -> Metrics {
        let mut registry = Registry::with_prefix("fcgi_gateway");
        let requests = Family::<ClassLabel, Counter>::default();
        // Every class from the start, so a rate over a fresh series is defined.
        let requests_by_class =
            CLASSES.map(|class| requests.get_or_create(&[("class", class)]).clone());
        registry.register(
            "requests",
            "HTTP requests answered, by status class",
            requests.clone(),
        );
        let duration = request_buckets();
        registry.register_with_unit(
            "request_duration",
            "Time from the request head to the last response byte (or the client leaving)",
            Unit::Seconds,
            duration.clone(),
        );
        let mut timed = |name: &str, help: &str, buckets: fn() -> Histogram| {
            let family = Family::<UpstreamLabels, Histogram>::new_with_constructor(buckets);
            registry.register_with_unit(name, help, Unit::Seconds, family.clone());
            family
        };
        let upstream_times = UpstreamFamilies {
            connect: timed(
                "upstream_connect_duration",
                "Time to open a new upstream connection (successful dials)",
                connect_buckets,
            ),
            first_byte: timed(
                "upstream_first_byte_duration",
                "Time from writing a request to php-fpm's first STDOUT record",
                request_buckets,
            ),
            total: timed(
                "upstream_duration",
                "Time a request spent at the upstream: pool wait, connect, exchange up to \
                 END_REQUEST (or failure, or the client leaving)",
                request_buckets,
            ),
        };
        upstream_times.observe(&pool);
        let fpm_status = Arc::new(Mutex::new(None));
        let pool = Arc::new(ArcSwap::from_pointee(pool));
        registry.register_collector(Box::new(UpstreamCollector {
            pool: pool.clone(),
            fpm_status: fpm_status.clone(),
        }));
        Metrics {
            registry,
            requests_by_class,
            duration,
            fpm_status,
            pool,
            upstream_times,
        }
    }

    /// Reads `pool` from now on (a reload replaced the pool); the request
    /// counters go on, the old pool's status reading is forgotten.
    pub fn set_pool(&self, pool: Pool) {
        self.upstream_times.observe(&pool);
        self.pool.store(Arc::new(pool));
        if let Ok(mut last) = self.fpm_status.lock() {
            *last = None;
        }
    }

    /// One finished (or abandoned) request.
    pub fn observe_request(&self, status: u16, seconds: f64) {
        if let Some(counter) = class_index(status).map(|i| &self.requests_by_class[i]) {
            counter.inc();
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

/// 1 ms .. ~33 s: static files up to slow PHP.
fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// 10 µs .. ~5 s: a local unix socket up to the default connect timeout.
fn connect_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 20))
}

/// The upstream timing histograms, one series per upstream and socket type.
#[derive(Debug)]
struct UpstreamFamilies {
    connect: Family<UpstreamLabels, Histogram>,
    first_byte: Family<UpstreamLabels, Histogram>,
    total: Family<UpstreamLabels, Histogram>,
}

impl UpstreamFamilies {
    /// Makes `pool` record into the series of its upstream.
    fn observe(&self, pool: &Pool) {
        let labels = Labels::of(pool).owned();
        pool.set_observer(Arc::new(UpstreamTimes {
            connect: self.connect.get_or_create_owned(&labels),
            first_byte: self.first_byte.get_or_create_owned(&labels),
            total: self.total.get_or_create_owned(&labels),
        }));
    }
}

/// The pool's timings, into histograms labelled with its upstream.
#[derive(Debug)]
struct UpstreamTimes {
    connect: Histogram,
    first_byte: Histogram,
    total: Histogram,
}

impl ExchangeObserver for UpstreamTimes {
    fn connected(&self, took: Duration) {
        self.connect.observe(took.as_secs_f64());
    }

    fn first_byte(&self, after: Duration) {
        self.first_byte.observe(after.as_secs_f64());
    }

    fn finished(&self, total: Duration) {
        self.total.observe(total.as_secs_f64());
    }
}

/// The index in `CLASSES` of a status's class; None outside 100..=599.
fn class_index(status: u16) -> Option<usize> {
    usize::from(status / 100)
        .checked_sub(1)
        .filter(|i| *i < CLASSES.len())
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

    /// The same labels as a family key, for the timing histograms.
    fn owned(&self) -> UpstreamLabels {
        [
            ("upstream", self.upstream.clone()),
            ("socket", self.socket.to_owned()),
        ]
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
            "upstream_backlog_visible",
            "1 when php-fpm's listen backlog is read from the kernel (php-fpm on this host), 0 when the pool judges it by timing",
            u64::from(s.sees_backlog),
        )?;
        Self::counter(
            &labels,
            &mut e,
            "upstream_closed_for_backlog",
            "Upstream connections closed to free a php-fpm worker for one of ours waiting in its backlog",
            s.closed_for_waiter,
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
            "upstream_sent_ahead",
            "Requests written onto a busy upstream connection to follow its current one",
            s.sent_ahead,
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
            "upstream_moved_threads",
            "Idle upstream connections a serving thread took over from another (--workers > 1)",
            s.moved_threads,
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
            Self::counter(
                &labels,
                &mut e,
                "fpm_slow_requests",
                "Requests php-fpm saw run past request_slowlog_timeout (last status read)",
                fpm.slow_requests,
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
        assert_eq!(class_index(101).map(|i| CLASSES[i]), Some("1xx"));
        assert_eq!(class_index(200).map(|i| CLASSES[i]), Some("2xx"));
        assert_eq!(class_index(404).map(|i| CLASSES[i]), Some("4xx"));
        assert_eq!(class_index(599).map(|i| CLASSES[i]), Some("5xx"));
        assert_eq!(class_index(0).map(|i| CLASSES[i]), None);
        assert_eq!(class_index(600).map(|i| CLASSES[i]), None);
    }
}
