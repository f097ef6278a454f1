//! Prometheus metrics: requests by status class and their durations
//! (recorded where the access-log line is written), upstream connect,
//! first-byte and total times (recorded by the pool as they happen), the
//! upstream pool's gauges and counters, and php-fpm's status page, read at
//! scrape time. One `Metrics` per server, so several gateways in one
//! process keep apart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::{Registry, Unit};

mod per_thread;

pub(crate) use per_thread::claim_slot;
use per_thread::{ThreadCounter, ThreadHistogram};

use crate::fpm::status::FpmStatus;
use crate::upstream::{ExchangeObserver, Member, Pool, PoolSnapshot, Upstreams};

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
    /// Counters and histograms are per thread (`per_thread`): counting a
    /// request takes no lock and writes nothing another thread writes.
    requests_by_class: [ThreadCounter; CLASSES.len()],
    duration: ThreadHistogram,
    /// The last status page read of each upstream (by its label).
    fpm_status: FpmStatuses,
    /// The upstreams the collector reads; a config reload may replace them.
    upstreams: Arc<ArcSwap<Upstreams>>,
    upstream_times: UpstreamFamilies,
    /// What the serving threads' idle pollers did (`server::idle_poll`).
    idle_poll: Arc<IdlePollStats>,
}

type FpmStatuses = Arc<Mutex<HashMap<String, FpmStatus>>>;

impl Metrics {
    pub fn new(upstreams: Upstreams) -> Metrics {
        let mut registry = Registry::with_prefix("fcgi_gateway");
        let requests = Family::<ClassLabel, ThreadCounter>::default();
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
        let mut timed = |name: &str, help: &str, buckets: fn() -> ThreadHistogram| {
            let family = Family::<UpstreamLabels, ThreadHistogram>::new_with_constructor(buckets);
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
        let fpm_status = FpmStatuses::default();
        let upstreams = Arc::new(ArcSwap::from_pointee(upstreams));
        registry.register_collector(Box::new(UpstreamCollector {
            upstreams: upstreams.clone(),
            fpm_status: fpm_status.clone(),
        }));
        let idle_poll = Arc::new(IdlePollStats::default());
        registry.register_collector(Box::new(IdlePollCollector(idle_poll.clone())));
        Metrics {
            registry,
            requests_by_class,
            duration,
            fpm_status,
            upstreams,
            upstream_times,
            idle_poll,
        }
    }

    /// Where the serving threads' idle pollers count.
    pub(crate) fn idle_poll_stats(&self) -> Arc<IdlePollStats> {
        self.idle_poll.clone()
    }

    /// Makes `pool` record its timings into the series of its upstream
    /// (each upstream's pool, as it starts).
    pub fn observe_pool(&self, pool: &Pool) {
        self.upstream_times.observe(pool);
    }

    /// Reads `upstreams` from now on (a reload replaced them); the request
    /// counters go on, the old status readings are forgotten.
    pub fn set_upstreams(&self, upstreams: Upstreams) {
        self.upstreams.store(Arc::new(upstreams));
        if let Ok(mut last) = self.fpm_status.lock() {
            last.clear();
        }
    }

    /// One finished (or abandoned) request.
    pub fn observe_request(&self, status: u16, took: Duration) {
        if let Some(counter) = class_index(status).map(|i| &self.requests_by_class[i]) {
            counter.inc();
        }
        self.duration.observe(took);
    }

    /// The last status page read of `upstream`, exposed until the next
    /// one replaces it.
    pub fn record_fpm_status(&self, upstream: &str, status: FpmStatus) {
        if let Ok(mut last) = self.fpm_status.lock() {
            last.insert(upstream.to_owned(), status);
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
fn request_buckets() -> ThreadHistogram {
    ThreadHistogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// 10 µs .. ~5 s: a local unix socket up to the default connect timeout.
fn connect_buckets() -> ThreadHistogram {
    ThreadHistogram::new(exponential_buckets(0.000_01, 2.0, 20))
}

/// The upstream timing histograms, one series per upstream and socket type.
#[derive(Debug)]
struct UpstreamFamilies {
    connect: Family<UpstreamLabels, ThreadHistogram>,
    first_byte: Family<UpstreamLabels, ThreadHistogram>,
    total: Family<UpstreamLabels, ThreadHistogram>,
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
    connect: ThreadHistogram,
    first_byte: ThreadHistogram,
    total: ThreadHistogram,
}

impl ExchangeObserver for UpstreamTimes {
    fn connected(&self, took: Duration) {
        self.connect.observe(took);
    }

    fn first_byte(&self, after: Duration) {
        self.first_byte.observe(after);
    }

    fn finished(&self, total: Duration) {
        self.total.observe(total);
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
    upstreams: Arc<ArcSwap<Upstreams>>,
    fpm_status: FpmStatuses,
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

/// One series of an upstream metric: gauge or counter, and how to read it.
struct Series {
    name: &'static str,
    help: &'static str,
    counter: bool,
    read: Read,
}

/// What the collector knows of one upstream at scrape time.
struct Upstream<'a> {
    labels: Labels,
    member: &'a Member,
    pool: PoolSnapshot,
    fpm: Option<FpmStatus>,
}

type Read = fn(&Upstream<'_>) -> Option<u64>;

const fn series(counter: bool, name: &'static str, help: &'static str, read: Read) -> Series {
    Series {
        name,
        help,
        counter,
        read,
    }
}

const fn gauge(name: &'static str, help: &'static str, read: Read) -> Series {
    series(false, name, help, read)
}

const fn counter(name: &'static str, help: &'static str, read: Read) -> Series {
    series(true, name, help, read)
}

fn n(value: usize) -> Option<u64> {
    Some(value as u64)
}

/// Every per-upstream metric, each with one series per upstream.
const UPSTREAM_SERIES: &[Series] = &[
    gauge("upstream_up", "1 while the upstream is in service, 0 while failures or its health probe took it out", |u| Some(u64::from(u.member.is_up()))),
    gauge("upstream_outstanding", "Requests sent to the upstream and not finished (several upstreams only)", |u| n(u.member.outstanding())),
    counter("upstream_picked", "Requests the balancer sent to the upstream (several upstreams only)", |u| Some(u.member.picked())),
    gauge("upstream_pool_size", "Upstream connections allowed at once", |u| n(u.pool.size)),
    gauge("upstream_pool_open", "Upstream connections open (idle + busy)", |u| n(u.pool.open)),
    gauge("upstream_pool_idle", "Upstream connections idle in the pool", |u| n(u.pool.idle)),
    gauge("upstream_pool_busy", "Upstream connections serving a request", |u| n(u.pool.busy)),
    gauge("upstream_backlog_visible", "1 when php-fpm's listen backlog is read from the kernel (php-fpm on this host), 0 when the pool judges it by timing", |u| Some(u64::from(u.pool.sees_backlog))),
    counter("upstream_closed_for_backlog", "Upstream connections closed to free a php-fpm worker for one of ours waiting in its backlog", |u| Some(u.pool.closed_for_waiter)),
    gauge("upstream_pool_waiting", "Requests waiting for an upstream connection", |u| n(u.pool.waiting)),
    counter("upstream_connects", "Upstream connections opened", |u| Some(u.pool.connects)),
    counter("upstream_connect_failures", "Upstream connects that failed or timed out", |u| Some(u.pool.connect_failures)),
    counter("upstream_retries", "Requests retried on a fresh connection after a reused one failed", |u| Some(u.pool.retries)),
    counter("upstream_sent_ahead", "Requests written onto a busy upstream connection to follow its current one", |u| Some(u.pool.sent_ahead)),
    counter("upstream_send_ahead_writes", "Writes that carried requests sent ahead (several gathered into one)", |u| Some(u.pool.send_ahead_writes)),
    counter("upstream_saturated", "Requests answered 503: pool queue full or acquire timeout", |u| Some(u.pool.saturated)),
    counter("upstream_moved_threads", "Idle upstream connections a serving thread took over from another (--workers > 1)", |u| Some(u.pool.moved_threads)),
    counter("upstream_stale_dropped", "Idle connections found closed by the upstream at checkout", |u| Some(u.pool.stale_dropped)),
    counter("upstream_idle_reaped", "Idle connections closed by the idle timeout", |u| Some(u.pool.idle_reaped)),
    gauge("fpm_listen_queue", "Connections waiting in php-fpm's listen queue (last status read)", |u| u.fpm.as_ref().map(|f| f.listen_queue)),
    counter("fpm_max_children_reached", "Times php-fpm hit its max children (last status read)", |u| u.fpm.as_ref().map(|f| f.max_children_reached)),
    gauge("fpm_active_processes", "php-fpm workers serving a request (last status read)", |u| u.fpm.as_ref().map(|f| f.active_processes)),
    gauge("fpm_idle_processes", "php-fpm workers idle (last status read)", |u| u.fpm.as_ref().map(|f| f.idle_processes)),
    counter("fpm_slow_requests", "Requests php-fpm saw run past request_slowlog_timeout (last status read)", |u| u.fpm.as_ref().map(|f| f.slow_requests)),
];

impl Collector for UpstreamCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let upstreams = self.upstreams.load();
        let members = upstreams.members();
        let fpm = self
            .fpm_status
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default();
        let all: Vec<Upstream<'_>> = members
            .iter()
            .map(|m| {
                let labels = Labels::of(m.pool());
                let fpm = fpm.get(&labels.upstream).cloned();
                Upstream {
                    labels,
                    member: m,
                    pool: m.pool().snapshot(),
                    fpm,
                }
            })
            .collect();
        // One descriptor per metric, then its series of each upstream, as
        // the exposition format wants.
        for series in UPSTREAM_SERIES {
            let values: Vec<(&Labels, u64)> = all
                .iter()
                .filter_map(|u| (series.read)(u).map(|v| (&u.labels, v)))
                .collect();
            if values.is_empty() {
                continue;
            }
            let kind = if series.counter {
                ConstCounter::new(0u64).metric_type()
            } else {
                ConstGauge::new(0i64).metric_type()
            };
            let mut metric = e.encode_descriptor(series.name, series.help, None, kind)?;
            for (labels, value) in values {
                let pairs = labels.pairs();
                let family = metric.encode_family(&pairs)?;
                if series.counter {
                    ConstCounter::new(value).encode(family)?;
                } else {
                    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(family)?;
                }
            }
        }
        let failovers = ConstCounter::new(upstreams.failovers());
        let metric = e.encode_descriptor(
            "upstream_failovers",
            "Requests sent to another upstream after one could not take them (not reached, full, or OVERLOADED)",
            None,
            failovers.metric_type(),
        )?;
        failovers.encode(metric)
    }
}

/// What a server's serving threads did while polling after work
/// (`server::idle_poll`); written only by a thread with nothing to do.
#[derive(Debug, Default)]
pub struct IdlePollStats {
    /// Polls that found nothing new to do.
    empty_polls: AtomicU64,
    /// Times polling stopped because another task wanted a CPU (the thread
    /// was switched out, or more tasks were runnable than CPUs).
    gave_way: AtomicU64,
    /// Times polling stopped because the window passed without work.
    windows_ended: AtomicU64,
    /// Naps a thread took before waiting for events, while polling was
    /// paused.
    naps: AtomicU64,
}

impl IdlePollStats {
    pub(crate) fn empty_poll(&self) {
        self.empty_polls.fetch_add(1, Relaxed);
    }

    pub(crate) fn gave_way_once(&self) {
        self.gave_way.fetch_add(1, Relaxed);
    }

    pub(crate) fn window_ended(&self) {
        self.windows_ended.fetch_add(1, Relaxed);
    }

    pub(crate) fn napped(&self) {
        self.naps.fetch_add(1, Relaxed);
    }

    pub fn empty_polls(&self) -> u64 {
        self.empty_polls.load(Relaxed)
    }

    pub fn gave_way(&self) -> u64 {
        self.gave_way.load(Relaxed)
    }

    pub fn windows_ended(&self) -> u64 {
        self.windows_ended.load(Relaxed)
    }

    pub fn naps(&self) -> u64 {
        self.naps.load(Relaxed)
    }
}

/// The idle pollers' counters, read at scrape time.
#[derive(Debug)]
struct IdlePollCollector(Arc<IdlePollStats>);

impl Collector for IdlePollCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let series = [
            (
                "idle_poll_empty_polls",
                "Polls of the sockets that serving threads made after work, before sleeping, \
                 and that found nothing new (--idle-poll)",
                self.0.empty_polls(),
            ),
            (
                "idle_poll_windows_ended",
                "Times a serving thread stopped polling because --idle-poll passed without work",
                self.0.windows_ended(),
            ),
            (
                "idle_poll_gave_way",
                "Times a serving thread stopped polling (for 5 ms) because another task wanted \
                 its CPU",
                self.0.gave_way(),
            ),
            (
                "idle_poll_naps",
                "Times a serving thread, its polling paused, napped 40 us before waiting for \
                 events, to take what arrived meanwhile at once (only while that saves sleeps)",
                self.0.naps(),
            ),
        ];
        for (name, help, value) in series {
            let counter = ConstCounter::new(value);
            let metric = e.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
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
