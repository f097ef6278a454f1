//! Counters and histograms that each thread writes into a copy of its own,
//! summed when scraped. prometheus-client's `Histogram` takes a `Mutex`
//! per observation and its `Counter` is one atomic: with every request
//! counted, each serving thread would write the same cache lines (and at
//! 16 or 64 cores, queue on one lock). Here a thread writes only its own
//! slot, a cache-line-aligned block no other thread writes. A thread with a
//! slot to itself adds with a plain load and store (a locked add costs ~5 ns
//! and is paid several times per request); threads past the number of slots
//! share the last one, and add to it atomically. Encoded exactly as
//! prometheus-client's own types.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Slots per metric: twice the CPUs and two more, so the serving threads
/// (one per CPU, each claiming its slot as it starts) and the control
/// thread each get one of their own, with the last left to share.
fn slot_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        cpus * 2 + 2
    })
}

/// Gives the calling thread its slot now rather than when it first counts:
/// a serving thread calls it as it starts, before any other thread can take
/// the slots it would otherwise find.
pub(crate) fn claim_slot() {
    my_slot();
}

/// Where this thread counts.
#[derive(Debug, Clone, Copy)]
struct Slot {
    index: usize,
    /// No other thread ever writes this slot: each thread takes the next
    /// free one the first time it counts, and slots are never handed out
    /// again (a thread that ends leaves its slot unused).
    own: bool,
}

/// This thread's slot: threads take the next one the first time they count;
/// once all but the last are taken, the rest share the last.
fn my_slot() -> Slot {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: Cell<Option<Slot>> = const { Cell::new(None) };
    }
    SLOT.with(|slot| {
        slot.get().unwrap_or_else(|| {
            let shared = slot_count() - 1;
            let taken = NEXT.fetch_add(1, Ordering::Relaxed);
            let mine = Slot {
                index: taken.min(shared),
                own: taken < shared,
            };
            slot.set(Some(mine));
            mine
        })
    })
}

/// Adds `n` to a count in the slot `slot` names: a plain load and store
/// where only this thread writes it (readers see the old or the new value,
/// never a torn one), an atomic add where threads share it.
fn add(slot: Slot, count: &AtomicU64, n: u64) {
    if slot.own {
        count.store(
            count.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    } else {
        count.fetch_add(n, Ordering::Relaxed);
    }
}

/// One thread's counter, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct PaddedCount(AtomicU64);

/// A monotonic counter (a Prometheus counter).
#[derive(Debug, Clone)]
pub(crate) struct ThreadCounter {
    slots: Arc<[PaddedCount]>,
}

impl Default for ThreadCounter {
    fn default() -> Self {
        ThreadCounter {
            slots: (0..slot_count()).map(|_| PaddedCount::default()).collect(),
        }
    }
}

impl ThreadCounter {
    pub(crate) fn inc(&self) {
        let slot = my_slot();
        add(slot, &self.slots[slot.index].0, 1);
    }

    /// The sum over every thread.
    pub(crate) fn get(&self) -> u64 {
        self.slots.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

impl TypedMetric for ThreadCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ThreadCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// One thread's share of a histogram: its count, its sum in nanoseconds,
/// and its count per bucket (the last one past every bound, `+Inf`).
#[derive(Debug)]
#[repr(align(128))]
struct HistogramSlot {
    count: AtomicU64,
    sum_nanos: AtomicU64,
    buckets: Box<[AtomicU64]>,
}

#[derive(Debug)]
struct HistogramInner {
    /// Upper bounds in seconds, ascending (without `+Inf`).
    bounds: Box<[f64]>,
    /// The same bounds in nanoseconds, for the comparison per observation.
    bounds_nanos: Box<[u64]>,
    slots: Box<[HistogramSlot]>,
}

/// A histogram of durations (a Prometheus histogram in seconds).
#[derive(Debug, Clone)]
pub(crate) struct ThreadHistogram {
    inner: Arc<HistogramInner>,
}

impl ThreadHistogram {
    /// With these upper bounds in seconds (ascending), and `+Inf` after them.
    pub(crate) fn new(bounds: impl Iterator<Item = f64>) -> ThreadHistogram {
        let bounds: Box<[f64]> = bounds.collect();
        let bounds_nanos = bounds
            .iter()
            .map(|b| Duration::try_from_secs_f64(*b).map_or(u64::MAX, as_nanos))
            .collect();
        let slots = (0..slot_count())
            .map(|_| HistogramSlot {
                count: AtomicU64::new(0),
                sum_nanos: AtomicU64::new(0),
                buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            })
            .collect();
        ThreadHistogram {
            inner: Arc::new(HistogramInner {
                bounds,
                bounds_nanos,
                slots,
            }),
        }
    }

    /// Counts `took` in the first bucket whose bound it does not pass.
    pub(crate) fn observe(&self, took: Duration) {
        let nanos = as_nanos(took);
        let inner = &*self.inner;
        let bucket = inner.bounds_nanos.partition_point(|bound| *bound < nanos);
        let slot = my_slot();
        let counts = &inner.slots[slot.index];
        add(slot, &counts.count, 1);
        add(slot, &counts.sum_nanos, nanos);
        add(slot, &counts.buckets[bucket], 1);
    }

    /// Sum in seconds, count, and (upper bound, count) per bucket, over
    /// every thread.
    fn totals(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let inner = &*self.inner;
        let mut count = 0;
        let mut sum_nanos: u128 = 0;
        let mut buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .map(|bound| (bound, 0))
            .collect();
        for slot in inner.slots.iter() {
            count += slot.count.load(Ordering::Relaxed);
            sum_nanos += u128::from(slot.sum_nanos.load(Ordering::Relaxed));
            for (total, mine) in buckets.iter_mut().zip(slot.buckets.iter()) {
                total.1 += mine.load(Ordering::Relaxed);
            }
        }
        (sum_nanos as f64 / 1e9, count, buckets)
    }
}

fn as_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl TypedMetric for ThreadHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for ThreadHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.totals();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
    use prometheus_client::registry::{Registry, Unit};

    fn text(register: impl FnOnce(&mut Registry)) -> String {
        let mut registry = Registry::with_prefix("t");
        register(&mut registry);
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn encodes_as_prometheus_clients_own_types_do() {
        // Durations exact in binary, so both sums print the same.
        let took = [0.0005, 0.001, 0.0015, 0.25, 0.5, 1.0, 64.0, 0.0];
        let ours = ThreadHistogram::new(exponential_buckets(0.001, 2.0, 16));
        let theirs = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let our_count = ThreadCounter::default();
        let their_count = Counter::<u64>::default();
        // From several threads, as the serving threads count.
        std::thread::scope(|s| {
            for chunk in took.chunks(3) {
                let (ours, our_count) = (&ours, &our_count);
                s.spawn(move || {
                    for t in chunk {
                        ours.observe(Duration::from_secs_f64(*t));
                        our_count.inc();
                    }
                });
            }
        });
        for t in took {
            theirs.observe(t);
            their_count.inc();
        }
        let ours_text = text(|r| {
            r.register_with_unit("d", "h", Unit::Seconds, ours.clone());
            r.register("c", "h", our_count.clone());
        });
        let theirs_text = text(|r| {
            r.register_with_unit("d", "h", Unit::Seconds, theirs.clone());
            r.register("c", "h", their_count.clone());
        });
        assert_eq!(ours_text, theirs_text);
        assert!(ours_text.contains("t_c_total 8\n"), "{ours_text}");
        assert!(ours_text.contains("t_d_seconds_bucket{le=\"+Inf\"} 8\n"));
    }

    #[test]
    fn a_thread_counts_in_its_own_slot_only() {
        let counter = ThreadCounter::default();
        let used: Vec<usize> = std::thread::scope(|s| {
            let count_twice = || {
                counter.inc();
                counter.inc();
                let slot = my_slot().index;
                assert_eq!(slot, my_slot().index, "a thread keeps its slot");
                slot
            };
            let a = s.spawn(count_twice);
            let b = s.spawn(count_twice);
            vec![a.join().unwrap(), b.join().unwrap()]
        });
        // Other tests' threads take slots meanwhile, so the two may rarely
        // share one; either way each count is where its thread's slot is.
        if used[0] == used[1] {
            assert_eq!(counter.slots[used[0]].0.load(Ordering::Relaxed), 4);
        } else {
            for slot in &used {
                assert_eq!(counter.slots[*slot].0.load(Ordering::Relaxed), 2);
            }
        }
        assert_eq!(counter.get(), 4);
        assert!(std::mem::align_of::<PaddedCount>() >= 128);
        assert!(std::mem::align_of::<HistogramSlot>() >= 128);
    }

    /// A slot a thread has to itself is written with a plain load and store:
    /// no other thread may ever be given it.
    #[test]
    fn a_slot_of_its_own_is_no_one_elses() {
        let shared = slot_count() - 1;
        let slots: Vec<Slot> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..3 * slot_count()).map(|_| s.spawn(my_slot)).collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let mut owned: Vec<usize> = slots.iter().filter(|s| s.own).map(|s| s.index).collect();
        let owned_count = owned.len();
        owned.sort_unstable();
        owned.dedup();
        assert_eq!(owned.len(), owned_count, "a slot owned by two threads");
        assert!(owned.iter().all(|&i| i < shared));
        assert!(slots.iter().filter(|s| !s.own).all(|s| s.index == shared));
        // More threads than slots: some had to share.
        assert!(slots.iter().any(|s| !s.own));
    }

    /// Threads past the slots share the last one; none of their counts is lost.
    #[test]
    fn threads_sharing_a_slot_lose_no_count() {
        let counter = ThreadCounter::default();
        let histogram = ThreadHistogram::new([0.001].into_iter());
        let threads = 2 * slot_count() + 4;
        let each = 20_000u64;
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..each {
                        counter.inc();
                        histogram.observe(Duration::from_nanos(1));
                    }
                });
            }
        });
        let total = threads as u64 * each;
        assert_eq!(counter.get(), total);
        let (sum, count, buckets) = histogram.totals();
        assert_eq!(count, total);
        assert_eq!(buckets[0].1, total);
        assert!((sum - total as f64 * 1e-9).abs() < 1e-9);
    }
}
