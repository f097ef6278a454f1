//! The scheduling policy a serving thread polls at (`idle_poll`): from the
//! wake-up that starts a stretch of polling until the stretch ends, the
//! thread runs at SCHED_IDLE, and it takes its own policy back before it
//! sleeps.
//!
//! Why: at one client the kernel wakes php-fpm's worker (given the request
//! the thread just wrote) and then the client (given the answer) on the
//! waker's CPU, the polling thread's. A normal task woken there waits until
//! the thread gives that CPU up: `sched_yield` does not reach tasks of other
//! sessions (autogroups) or cgroups, and sleeping is what polling avoids. A
//! SCHED_IDLE thread is preempted at once by any normal task woken on its
//! CPU, whatever group either is in; that task runs, and the thread, still
//! runnable, finds the answer at its next poll without having slept.
//! Measured at one client (2 vCPUs, both servers at their defaults, 3
//! rounds): hello.php over unix 0.97× nginx's rate polling at the normal
//! policy, 1.58× at SCHED_IDLE; the front controller 1.02× and 1.67×.
//!
//! Within one task group a SCHED_IDLE thread gets only slivers of a CPU
//! that a busy normal task also wants (measured here: turns up to 9 ms
//! apart). The gateway's other serving threads are such tasks (one
//! process, one group): so a thread polls low only while it is the only
//! serving thread awake, and a thread that wakes gives the one polling low
//! its own policy back at once (with 2 threads at wrk -c32, not doing so
//! took the p99 from 1.7-2.7 ms to 7-9 ms). Others, such as php-fpm started
//! in the gateway's own session or both in one container's cgroup, the
//! poller notices afterwards: it ends its stretch at the first poll that
//! finds it was kept off its CPU (`idle_poll`). With more busy tasks in its
//! group than CPUs it may get no turn to notice for seconds: a watchdog
//! thread gives it its own policy back once it has not polled for
//! `WATCH_EVERY`.
//!
//! Only where it can be undone: leaving SCHED_IDLE takes CAP_SYS_NICE (root
//! has it) or a RLIMIT_NICE of 20, so it is tried once on a scratch thread;
//! and a thread that starts at another policy than SCHED_OTHER (`chrt`, a
//! unit's `CPUSchedulingPolicy=`) keeps it.

use std::cell::Cell;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Serving threads allowed to poll low that are not asleep.
static AWAKE: AtomicUsize = AtomicUsize::new(0);

/// The serving thread polling low now, by thread id (0: none). At most one:
/// a thread polls low only while no other is awake.
static LOW_THREAD: AtomicI32 = AtomicI32::new(0);

/// When the thread polling low last polled, in ns since `epoch()`.
static LOW_POLLED_AT: AtomicU64 = AtomicU64::new(0);

/// How often the watchdog looks at a thread polling low: one that has not
/// polled for this long is given its own policy back. Where the thread
/// shares a task group with more busy tasks than CPUs, SCHED_IDLE gets no
/// turn for seconds (a test here: 2 polls in 20 s against 4 spinning
/// threads of its process on 2 CPUs); the poller's own checks run only
/// when it does. Rare enough to cost nothing measurable at one client
/// (the watchdog wakes 20 times a second while a thread polls low; every
/// 2 ms it cost a fifth of the rate), and it sleeps while none does.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// Where a serving thread stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Not a thread that may poll low.
    NotAllowed,
    /// At its own policy (SCHED_OTHER).
    Normal,
    /// At SCHED_IDLE.
    Low,
}

thread_local! {
    static STANDING: Cell<Standing> = const { Cell::new(Standing::NotAllowed) };
    /// Whether this thread counts itself in `AWAKE` now.
    static COUNTED_AWAKE: Cell<bool> = const { Cell::new(false) };
    /// Takes the thread out of `AWAKE` and `LOW_THREAD` when it ends.
    static LEAVES: Leaving = const { Leaving };
}

/// Dropped when a serving thread ends.
struct Leaving;

impl Drop for Leaving {
    fn drop(&mut self) {
        let _ = LOW_THREAD.compare_exchange(this_tid(), 0, SeqCst, SeqCst);
        if COUNTED_AWAKE.try_with(Cell::get).unwrap_or(false) {
            AWAKE.fetch_sub(1, SeqCst);
        }
    }
}

/// Lets the calling serving thread poll low: if it runs at SCHED_OTHER and
/// SCHED_IDLE can be left again. Returns whether it may. From here on the
/// thread is counted awake until `asleep`.
pub(crate) fn allow_on_this_thread() -> bool {
    if STANDING.with(Cell::get) != Standing::NotAllowed {
        return true;
    }
    if current_policy() != libc::SCHED_OTHER || !idle_policy_can_be_left() {
        return false;
    }
    STANDING.with(|s| s.set(Standing::Normal));
    LEAVES.with(|_| {});
    awake();
    true
}

/// The calling thread (if allowed to poll low) woke: it counts as awake,
/// and a thread that polls low meanwhile takes its own policy back, so
/// that this one, at its own, never keeps it off a CPU they share.
pub(crate) fn awake() {
    if STANDING.with(Cell::get) == Standing::NotAllowed || COUNTED_AWAKE.with(Cell::get) {
        return;
    }
    COUNTED_AWAKE.with(|c| c.set(true));
    if AWAKE.fetch_add(1, SeqCst) > 0 {
        let low = LOW_THREAD.load(SeqCst);
        if low != 0 {
            // A thread id of this process: a serving thread clears it
            // before it ends (`Leaving`). Best effort: the low thread
            // also sees the count at its next poll.
            set_policy_of(low, libc::SCHED_OTHER);
        }
    }
}

/// The calling thread (if allowed to poll low) is about to sleep.
pub(crate) fn asleep() {
    if COUNTED_AWAKE.with(Cell::get) {
        COUNTED_AWAKE.with(|c| c.set(false));
        AWAKE.fetch_sub(1, SeqCst);
    }
}

/// Whether another serving thread is awake: then one polling low stops.
pub(crate) fn others_awake() -> bool {
    AWAKE.load(SeqCst) > 1
}

/// Whether the calling thread polls low now.
pub(crate) fn is_low() -> bool {
    STANDING.with(Cell::get) == Standing::Low
}

/// The calling thread polls low from now on, if it may and no other
/// serving thread is awake: SCHED_IDLE. Returns whether it does.
pub(crate) fn lower() -> bool {
    match STANDING.with(Cell::get) {
        Standing::NotAllowed => false,
        Standing::Low => true,
        Standing::Normal => {
            let tid = this_tid();
            if others_awake() || LOW_THREAD.compare_exchange(0, tid, SeqCst, SeqCst).is_err() {
                return false;
            }
            LOW_POLLED_AT.store(since_epoch(Instant::now()), SeqCst);
            if !set_policy(libc::SCHED_IDLE) {
                LOW_THREAD.store(0, SeqCst);
                return false;
            }
            // A thread that woke since: either it saw `LOW_THREAD` (and
            // raised this one, perhaps before the line above), or this sees
            // it awake (both SeqCst): back to normal then.
            if others_awake() {
                set_policy(libc::SCHED_OTHER);
                LOW_THREAD.store(0, SeqCst);
                return false;
            }
            STANDING.with(|s| s.set(Standing::Low));
            #[cfg(test)]
            TIMES_LOWERED.with(|n| n.set(n.get() + 1));
            if let Some(watchdog) = watchdog() {
                watchdog.unpark();
            }
            true
        }
    }
}

/// The calling thread polled at `now`: while it polls low, the watchdog
/// sees it is not kept off its CPU.
pub(crate) fn note_poll(now: Instant) {
    if is_low() {
        LOW_POLLED_AT.store(since_epoch(now), Relaxed);
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn since_epoch(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// The watchdog thread, started at the first lowering (None if it could
/// not be started: the poller's own checks remain).
fn watchdog() -> Option<&'static std::thread::Thread> {
    static WATCHDOG: OnceLock<Option<std::thread::Thread>> = OnceLock::new();
    WATCHDOG
        .get_or_init(|| {
            std::thread::Builder::new()
                .name("poll-watchdog".into())
                .spawn(watch)
                .ok()
                .map(|handle| handle.thread().clone())
        })
        .as_ref()
}

/// The watchdog's life: asleep while no thread polls low; otherwise looks
/// every `WATCH_EVERY` and raises the low thread if it has not polled
/// since the look before.
fn watch() {
    loop {
        if LOW_THREAD.load(SeqCst) == 0 {
            // `lower` unparks after setting LOW_THREAD: an unpark before
            // this park makes it return at once.
            std::thread::park();
            continue;
        }
        std::thread::sleep(WATCH_EVERY);
        let tid = LOW_THREAD.load(SeqCst);
        let polled_at = LOW_POLLED_AT.load(SeqCst);
        let now = since_epoch(Instant::now());
        let window = u64::try_from(WATCH_EVERY.as_nanos()).unwrap_or(u64::MAX);
        if tid != 0 && now.saturating_sub(polled_at) >= window {
            // A thread id of this process (cleared by `Leaving` before a
            // serving thread ends). The thread, still marked low, ends
            // its stretch at its next poll (a gap past KEPT_OFF).
            set_policy_of(tid, libc::SCHED_OTHER);
        }
    }
}

/// The calling thread takes its own policy back (SCHED_OTHER), if it had
/// lowered it: whenever it stops polling.
pub(crate) fn raise() {
    if STANDING.with(Cell::get) == Standing::Low {
        // The probe showed it is allowed. Should it fail all the same, the
        // thread stays at SCHED_IDLE: it is no longer counted low, so
        // every later stretch of polling ends at its first crowded count,
        // and it still runs whenever its CPU is not wanted.
        set_policy(libc::SCHED_OTHER);
        let _ = LOW_THREAD.compare_exchange(this_tid(), 0, SeqCst, SeqCst);
        STANDING.with(|s| s.set(Standing::Normal));
    }
}

/// For a thread the runtime starts (its blocking pool): a thread started
/// from a serving thread that polled low inherits SCHED_IDLE, and must not
/// keep it.
pub(crate) fn reset_inherited() {
    if current_policy() == libc::SCHED_IDLE && idle_policy_can_be_left() {
        set_policy(libc::SCHED_OTHER);
    }
}

/// Whether a thread started at SCHED_OTHER can go to SCHED_IDLE and back:
/// tried once, on a scratch thread, so that no serving thread is left at
/// SCHED_IDLE. Also false when the process runs at another policy.
fn idle_policy_can_be_left() -> bool {
    static CAN: OnceLock<bool> = OnceLock::new();
    *CAN.get_or_init(|| {
        let can = std::thread::Builder::new()
            .name("poll-probe".into())
            .spawn(|| {
                current_policy() == libc::SCHED_OTHER
                    && set_policy(libc::SCHED_IDLE)
                    && set_policy(libc::SCHED_OTHER)
            })
            .ok()
            .and_then(|probe| probe.join().ok())
            .unwrap_or(false);
        if !can {
            tracing::debug!(
                "serving threads poll at their own priority: SCHED_IDLE could not be left again"
            );
        }
        can
    })
}

/// The calling thread's scheduling policy (-1 if it cannot be read).
fn current_policy() -> libc::c_int {
    policy_of(0)
}

/// Thread `tid`'s scheduling policy (0: the caller's; -1 if it cannot be
/// read).
pub(super) fn policy_of(tid: libc::pid_t) -> libc::c_int {
    // SAFETY: sched_getscheduler takes a thread id and touches no memory.
    unsafe { libc::sched_getscheduler(tid) }
}

/// Sets the calling thread's policy (priority 0; its nice value is kept).
fn set_policy(policy: libc::c_int) -> bool {
    set_policy_of(0, policy)
}

/// Sets thread `tid`'s policy (0: the caller's).
fn set_policy_of(tid: libc::pid_t, policy: libc::c_int) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` lives across the call, which only reads it.
    unsafe { libc::sched_setscheduler(tid, policy, &param) == 0 }
}

/// The calling thread's id.
pub(super) fn this_tid() -> libc::pid_t {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

#[cfg(test)]
thread_local! {
    static TIMES_LOWERED: Cell<u64> = const { Cell::new(0) };
}

/// How often the calling thread went to SCHED_IDLE (for tests: the policy
/// itself may be back to normal by the time a test looks).
#[cfg(test)]
pub(crate) fn times_lowered() -> u64 {
    TIMES_LOWERED.with(Cell::get)
}

/// Held by the tests whose threads count in `AWAKE`: a thread polls low
/// only while no other is awake, so they take turns.
#[cfg(test)]
pub(crate) fn one_awake_thread_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Runs `f` on a fresh thread, so that no other test's thread changes.
    fn on_own_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let _turn = one_awake_thread_at_a_time();
        std::thread::spawn(f).join().expect("thread")
    }

    #[test]
    fn a_thread_polls_low_only_while_alone_awake_and_one_that_wakes_raises_it() {
        let _turn = one_awake_thread_at_a_time();
        let (low_tx, low_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let low = std::thread::spawn(move || {
            assert!(allow_on_this_thread());
            assert!(lower(), "alone awake");
            low_tx.send(this_tid()).expect("send");
            let _ = done_rx.recv();
            let others = others_awake();
            raise();
            others
        });
        let tid = low_rx.recv().expect("tid");
        assert_eq!(policy_of(tid), libc::SCHED_IDLE);
        let other = std::thread::spawn(move || {
            // Counted awake from here: the low thread is raised at once.
            assert!(allow_on_this_thread());
            let raised = policy_of(tid);
            // And this one may not poll low while the other is awake.
            let lowered = lower();
            asleep();
            (raised, lowered)
        })
        .join()
        .expect("thread");
        assert_eq!(other, (libc::SCHED_OTHER, false));
        done_tx.send(()).expect("send");
        // The other thread ended: it no longer counts.
        assert!(
            !low.join().expect("thread"),
            "an ended thread still counted"
        );
    }

    #[test]
    fn a_thread_polls_low_at_sched_idle_and_raises_itself_back() {
        let seen = on_own_thread(|| {
            assert!(allow_on_this_thread(), "the suite runs as root");
            assert!(lower());
            let low = (current_policy(), is_low());
            raise();
            (low, (current_policy(), is_low()))
        });
        assert_eq!(seen, ((libc::SCHED_IDLE, true), (libc::SCHED_OTHER, false)));
    }

    #[test]
    fn a_thread_not_allowed_does_not_change_its_policy() {
        let seen = on_own_thread(|| {
            assert!(!lower());
            raise();
            (current_policy(), is_low())
        });
        assert_eq!(seen, (libc::SCHED_OTHER, false));
    }

    #[test]
    fn a_thread_at_another_policy_keeps_it() {
        let seen = on_own_thread(|| {
            assert!(set_policy(libc::SCHED_BATCH));
            let allowed = allow_on_this_thread();
            lower();
            raise();
            (allowed, current_policy())
        });
        assert_eq!(seen, (false, libc::SCHED_BATCH));
    }

    #[test]
    fn a_thread_started_from_a_low_thread_resets_the_policy_it_inherits() {
        let (inherited, reset) = on_own_thread(|| {
            assert!(allow_on_this_thread());
            assert!(lower());
            let started = std::thread::spawn(|| {
                let inherited = current_policy();
                reset_inherited();
                (inherited, current_policy())
            })
            .join()
            .expect("thread");
            raise();
            started
        });
        assert_eq!(inherited, libc::SCHED_IDLE);
        assert_eq!(reset, libc::SCHED_OTHER);
    }
}
