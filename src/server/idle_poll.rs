//! Idle polling: a serving thread that has just worked keeps polling its
//! sockets for a short window (`--idle-poll`, 50 µs) before it sleeps.
//!
//! Why: a thread that sleeps in `epoll_wait` leaves its CPU idle, and a CPU
//! that idles halts; the answer php-fpm sends a few tens of µs later must
//! then wake it. On a virtual machine that wake goes through the hypervisor
//! and costs more than a small request itself (measured on a 2-vCPU VM:
//! hello.php at one client 0.93× and 1.01× nginx's rate sleeping, 1.57×
//! and 1.43× polling, over unix and tcp). While it polls, the thread yields its CPU at every empty poll,
//! and it stops polling for a while (`PAUSE_AFTER_GIVING_WAY`) as soon as
//! a CPU is wanted by another task: the kernel switched this thread out, or
//! more tasks are runnable than there are CPUs. Then no CPU would have
//! halted (php-fpm and the clients have work), and polling only takes time
//! from those. So under load the thread sleeps as before, and an idle
//! gateway uses no CPU: polling only follows work.
//!
//! The switch count alone misses most of that: with autogroup scheduling
//! (Debian's default) each session is one entity to the scheduler, and
//! `sched_yield` gives the CPU only to runnable threads of the gateway's
//! own session, so the clients and php-fpm, in theirs, never show up as a
//! switch at a yield. Measured at 1 worker, wrk -c32 over tcp, each server
//! in its own session: 0.65–5 empty polls per request, 16–23 µs of CPU per
//! request, against 15–18 µs with `--idle-poll off`.
//!
//! While polling is paused, the thread may also nap (`NAP_WHEN_CROWDED`)
//! each time it runs out of work, before it waits for events: on a crowded
//! machine each event would otherwise wake it alone, and every wake costs
//! the task that causes it (php-fpm writing an answer, a client writing a
//! request) a wake-up of another CPU's thread and this thread a switch.
//! After the nap it takes, in one wait, what arrived meanwhile. Whether it
//! naps is measured per thread (`nap_trial`: while naps save it sleeps):
//! with 1 worker, wrk -c32, front controller over tcp, napping cut the
//! gateway's CPU per request from 20-23 µs to 16-18 and the clients' from
//! 12-13 to 8-10 (woken once per batch of answers); with 2 workers the
//! naps saved few sleeps, and only delayed answers.
//!
//! From the wake-up that starts a stretch of polling until it ends, the
//! thread runs at SCHED_IDLE (`poll_priority`): the tasks its work wakes
//! on its CPU (php-fpm's worker, the client) then preempt it at once,
//! instead of waiting behind it while it polls, and it finds their answer
//! without having slept. While it polls low, being switched out is no
//! reason to stop; the crowding count (not counting itself) is taken every
//! `COUNT_WHILE_LOW`, and a poll that finds it was kept off its CPU for
//! `KEPT_OFF` ends the stretch.
//!
//! Work is what the client connections read and write (`note_work`, called
//! by `idle::Watched`): a request read, a response written. The poller is a
//! task on the thread's runtime; tokio wakes it (`wake_on_unpark`) whenever
//! the thread wakes from a sleep.

use std::cell::{Cell, RefCell};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::nap_trial::NapTrial;
use super::poll_priority;
use crate::metrics::IdlePollStats;

/// How long after work the runnable tasks are counted: by then the tasks
/// the work itself woke or left running (php-fpm's worker given a request,
/// a client that sent one and is going back to sleep) have settled, so a
/// count past the CPUs is tasks that want one. Counted at once, they made
/// the machine look crowded at one client: hello.php at c=1 over tcp, 2
/// threads, 11.2-12.1k req/s (nginx 11.3-11.8k) against 16.0-16.6k counted
/// 10 µs after work; under load the same (wrk -c32, 1 thread: 17.0-17.7
/// µs per request against 16.1-19.4; -c256, 2 threads: 13.0-13.5 against
/// 12.9-13.0).
const COUNT_AFTER: Duration = Duration::from_micros(10);

/// How often a thread that polls at SCHED_IDLE counts the tasks waiting for
/// a CPU: under load its work does not stop, and it must not stay at
/// SCHED_IDLE through it, preempted by every task woken on its CPU (wrk
/// -c32, 2 threads, hello.php: p99 1.6 ms at its own policy, 3.9-12 ms at
/// SCHED_IDLE counted only after work). A count is a read of
/// /proc/loadavg: at one client, one per one to two requests.
const COUNT_WHILE_LOW: Duration = Duration::from_micros(100);

/// How long a thread that polls at SCHED_IDLE may go between two polls
/// before it stops polling low, as kept off its CPU: above a small
/// request's time in php-fpm and the client's turn (tens of µs each, the
/// tasks that preempt it at one client), far below how long a SCHED_IDLE
/// thread can wait for a turn behind a busy task of its own task group (up
/// to 9 ms measured on this machine's kernel). A longer page, or more tasks
/// queued on its CPU, is load: polling does not pay then. Also ends it
/// after that much work between two polls.
const KEPT_OFF: Duration = Duration::from_micros(200);

/// How many polls in a row may find work while a thread polls at
/// SCHED_IDLE: more is load, and under load a thread preempted by every
/// task its work wakes on its CPU keeps its other clients waiting (wrk
/// -c32, 2 threads: p99 1.8-3.1 ms polling at its own policy, 4.8-13.5 ms
/// polling low with no such limit). At one client a poll finds the
/// request, the next php-fpm's answer, and then nothing for a while.
const BUSY_POLLS: u32 = 4;

/// How long polling stays off once the thread gave way to another task.
const PAUSE_AFTER_GIVING_WAY: Duration = Duration::from_millis(5);

/// The longest pause after polling low ended with the thread kept off its
/// CPU. Each such end doubles the thread's pause, each stretch that ends
/// with its window (idle at last) resets it: under lasting load from tasks
/// of the thread's own task group (clients or php-fpm started in the
/// gateway's session), where SCHED_IDLE waits for turns, the thread soon
/// stops trying (wrk -c32 in the gateway's session, 2 threads: p99 39 ms
/// against 8 ms at its own policy, with 5 ms pauses alone).
const LONGEST_PAUSE_AFTER_KEPT_OFF: Duration = Duration::from_millis(640);

/// How long a thread naps before it waits for events while polling is
/// paused. Long enough for a few answers and requests to gather, short
/// against a request's time in the queue under such load (about 1 ms at
/// wrk -c32). 1 worker, wrk -c32, front controller over tcp, 3 rounds
/// each: 20 µs gave 35-36k req/s at 18.1-20.5 µs of CPU per request, 40
/// µs 36-39k at 16.3-18.2, 80 µs 34-36k at 16.6-17.5, and 150 µs or more
/// cut the rate (22k at 270 µs): the clients then wait for the naps.
const NAP_WHEN_CROWDED: Duration = Duration::from_micros(40);

/// A serving thread's timer slack: how late the kernel may end its sleeps,
/// to batch timer interrupts. The default, 50 µs, would more than double
/// `NAP_WHEN_CROWDED`; the runtime's own timers are in milliseconds.
const TIMER_SLACK_NS: u64 = 1_000;

thread_local! {
    /// Bumped by every client read and write on this thread.
    static WORK: Cell<u64> = const { Cell::new(0) };
    /// The poller's waker while it waits for the thread's next wake-up.
    static WAITING_POLLER: RefCell<Option<Waker>> = const { RefCell::new(None) };
    /// Until when polling is off after giving way.
    static PAUSED_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Whether naps pay on this thread, and whether this pause naps.
    static NAP_TRIAL: Cell<NapTrial> = const { Cell::new(NapTrial::new()) };
    /// How long the next pause after a low stretch kept off its CPU lasts.
    static PAUSE_AFTER_KEPT_OFF: Cell<Duration> = const { Cell::new(PAUSE_AFTER_GIVING_WAY) };
}

/// This thread did work for a client: polling goes on for a window from now.
pub(crate) fn note_work() {
    WORK.with(|w| w.set(w.get().wrapping_add(1)));
}

/// The runtime's unpark hook: the thread woke from a sleep, so it has work;
/// the poller (if waiting, and not paused) starts polling after it.
pub(crate) fn wake_on_unpark() {
    poll_priority::awake();
    if let Some(until) = PAUSED_UNTIL.with(Cell::get) {
        if Instant::now() < until {
            return;
        }
        end_pause();
    }
    if let Some(waker) = WAITING_POLLER.with(|w| w.borrow_mut().take()) {
        // Before the tasks run: a task woken on this CPU by their work
        // preempts the thread at once (`poll_priority`).
        poll_priority::lower();
        waker.wake();
    }
}

/// Prepares the calling serving thread: it may poll at SCHED_IDLE
/// (`poll_priority`), and its timer slack keeps naps near
/// `NAP_WHEN_CROWDED`. Best effort: the default slack only lengthens the
/// naps.
pub(crate) fn prepare_thread() {
    poll_priority::allow_on_this_thread();
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and changes only the
    // calling thread's timer slack; no memory is passed to the kernel.
    unsafe {
        libc::prctl(
            libc::PR_SET_TIMERSLACK,
            TIMER_SLACK_NS as libc::c_ulong,
            0,
            0,
            0,
        );
    }
}

/// The runtime's park hook: the thread has run out of work and is about
/// to wait for events. Writes the held access lines if they fill a write,
/// and naps first while polling is paused (the machine is crowded).
pub(crate) fn before_wait(stats: &IdlePollStats) {
    poll_priority::asleep();
    super::access_log::write_held_lines_if_full();
    let napping = with_nap_trial(|trial| trial.napping());
    if napping && paused_at(PAUSED_UNTIL.with(Cell::get), Instant::now()) {
        stats.napped();
        std::thread::sleep(NAP_WHEN_CROWDED);
    }
}

/// Polling is off until `until`; the nap trial learns whether this pause
/// naps.
fn begin_pause(until: Instant) {
    PAUSED_UNTIL.with(|p| p.set(Some(until)));
    let (sleeps, work) = sleeps_and_work();
    with_nap_trial(|trial| trial.begin(sleeps, work));
}

/// The pause is over: polling may start again; the nap trial counts what
/// the pause cost.
fn end_pause() {
    PAUSED_UNTIL.with(|p| p.set(None));
    let (sleeps, work) = sleeps_and_work();
    with_nap_trial(|trial| trial.end(sleeps, work));
}

/// What the nap trial counts at either end of a pause: this thread's
/// sleeps and its work so far.
fn sleeps_and_work() -> (u64, u64) {
    (times_slept(), WORK.with(Cell::get))
}

/// This thread's record of what naps cost it.
fn with_nap_trial<T>(f: impl FnOnce(&mut NapTrial) -> T) -> T {
    NAP_TRIAL.with(|cell| {
        let mut trial = cell.get();
        let out = f(&mut trial);
        cell.set(trial);
        out
    })
}

/// Whether polling is paused at `now` (it stays off, and a thread about to
/// wait whose pauses nap naps first).
fn paused_at(paused_until: Option<Instant>, now: Instant) -> bool {
    paused_until.is_some_and(|until| now < until)
}

/// The poller of one serving thread: runs on that thread's runtime until it
/// is dropped with it.
pub(crate) async fn poll_while_idle(window: Duration, stats: std::sync::Arc<IdlePollStats>) {
    loop {
        wait_for_wake_up().await;
        let mut episode = Episode::new(
            window,
            WORK.with(Cell::get),
            Instant::now(),
            poll_priority::is_low(),
        );
        loop {
            // Back after tokio has polled the sockets (without blocking) and
            // run every task that became ready.
            tokio::task::yield_now().await;
            let now = Instant::now();
            poll_priority::note_poll(now);
            let next = episode.after_poll(
                WORK.with(Cell::get),
                now,
                times_switched_out,
                more_runnable_than_cpus,
                poll_priority::others_awake,
            );
            if next != Next::Worked {
                stats.empty_poll();
                // What the runtime's park hook does before it sleeps (the
                // runtime never parks while the poller polls).
                super::access_log::write_held_lines_if_full();
            }
            match next {
                Next::Worked => {}
                // Anyone else waiting for this CPU runs now; the next poll
                // sees it as a switch.
                Next::PollAgain => std::thread::yield_now(),
                Next::WindowPassed => {
                    if episode.low {
                        idle_at_last();
                    }
                    poll_priority::raise();
                    stats.window_ended();
                    break;
                }
                Next::GiveWay => {
                    poll_priority::raise();
                    begin_pause(Instant::now() + pause_after_giving_way(episode.kept_off));
                    stats.gave_way_once();
                    break;
                }
            }
        }
    }
}

/// One stretch of polling, from a wake-up to the thread's next sleep.
#[derive(Debug)]
struct Episode {
    window: Duration,
    work_seen: u64,
    worked_at: Instant,
    /// `times_switched_out` when it began (read at the first empty poll).
    switched_out: Option<Option<i64>>,
    /// Whether the tasks waiting for a CPU were counted since the last work.
    counted_since_work: bool,
    /// Whether the thread polls at SCHED_IDLE (`poll_priority`); then when
    /// it last polled, and when it last counted the tasks waiting for a CPU.
    low: bool,
    polled_at: Instant,
    counted_at: Instant,
    /// Polls in a row that found work, while low.
    busy_polls: u32,
    /// Whether it gave way because it was kept off its CPU while low.
    kept_off: bool,
}

/// What the poller does after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The thread did work since the last poll: poll again.
    Worked,
    /// Nothing new, within the window: yield the CPU, then poll again.
    PollAgain,
    /// Nothing new for the whole window: sleep.
    WindowPassed,
    /// Another task wants a CPU (the kernel switched the thread out, or
    /// more tasks are runnable than there are CPUs, or a thread polling low
    /// was kept off its CPU): sleep, and pause polling.
    GiveWay,
}

impl Episode {
    /// `low`: the thread polls at SCHED_IDLE in this episode.
    fn new(window: Duration, work: u64, now: Instant, low: bool) -> Episode {
        Episode {
            window,
            work_seen: work,
            worked_at: now,
            switched_out: None,
            counted_since_work: false,
            low,
            polled_at: now,
            counted_at: now,
            busy_polls: 0,
            kept_off: false,
        }
    }

    /// `work` is the thread's work count now; `crowded` says whether more
    /// tasks are runnable than there are CPUs (not counting this thread
    /// when it polls low: it keeps no task waiting).
    ///
    /// At its own policy, `switched_out` is read only after a poll that
    /// found nothing (a syscall), `crowded` only at the first such poll
    /// `COUNT_AFTER` or more after work: under load that is once before
    /// polling pauses, and while the thread waits alone, once per wait.
    ///
    /// At SCHED_IDLE, being switched out is what is meant (a task woken on
    /// its CPU runs at once) and says nothing, but being kept off the CPU
    /// for `KEPT_OFF` (by a busy task of its own task group, where
    /// SCHED_IDLE gets only slivers) ends the episode; `crowded` is read
    /// every `COUNT_WHILE_LOW`, work or not, since under load the work
    /// never stops; and another serving thread awake (`others_awake`)
    /// ends it, since at SCHED_IDLE this one would wait behind it.
    fn after_poll(
        &mut self,
        work: u64,
        now: Instant,
        switched_out: impl FnOnce() -> Option<i64>,
        crowded: impl FnOnce(bool) -> bool,
        others_awake: impl FnOnce() -> bool,
    ) -> Next {
        if self.low {
            return self.after_poll_low(work, now, crowded, others_awake);
        }
        if work != self.work_seen {
            self.work_seen = work;
            self.worked_at = now;
            self.counted_since_work = false;
            return Next::Worked;
        }
        let since_work = now.saturating_duration_since(self.worked_at);
        if since_work >= self.window {
            return Next::WindowPassed;
        }
        if !self.counted_since_work && since_work >= COUNT_AFTER {
            self.counted_since_work = true;
            if crowded(false) {
                return Next::GiveWay;
            }
        }
        let current = switched_out();
        match self.switched_out {
            None => {
                self.switched_out = Some(current);
                Next::PollAgain
            }
            Some(Some(before)) if current == Some(before) => Next::PollAgain,
            // Switched out since, or the count cannot be read.
            Some(_) => Next::GiveWay,
        }
    }

    fn after_poll_low(
        &mut self,
        work: u64,
        now: Instant,
        crowded: impl FnOnce(bool) -> bool,
        others_awake: impl FnOnce() -> bool,
    ) -> Next {
        let since_poll = now.saturating_duration_since(self.polled_at);
        self.polled_at = now;
        if since_poll >= KEPT_OFF {
            self.kept_off = true;
            return Next::GiveWay;
        }
        if others_awake() {
            return Next::GiveWay;
        }
        if now.saturating_duration_since(self.counted_at) >= COUNT_WHILE_LOW {
            self.counted_at = now;
            if crowded(true) {
                return Next::GiveWay;
            }
        }
        if work != self.work_seen {
            self.work_seen = work;
            self.worked_at = now;
            self.busy_polls += 1;
            if self.busy_polls >= BUSY_POLLS {
                return Next::GiveWay;
            }
            return Next::Worked;
        }
        self.busy_polls = 0;
        if now.saturating_duration_since(self.worked_at) >= self.window {
            return Next::WindowPassed;
        }
        Next::PollAgain
    }
}

/// How long polling stays off after this give-way: `PAUSE_AFTER_GIVING_WAY`,
/// or after a low stretch kept off its CPU, twice the last such pause (up
/// to `LONGEST_PAUSE_AFTER_KEPT_OFF`) until `idle_at_last`.
fn pause_after_giving_way(kept_off: bool) -> Duration {
    if !kept_off {
        return PAUSE_AFTER_GIVING_WAY;
    }
    PAUSE_AFTER_KEPT_OFF.with(|p| {
        let pause = p.get();
        p.set((pause * 2).min(LONGEST_PAUSE_AFTER_KEPT_OFF));
        pause
    })
}

/// A low stretch ended with its window: the thread was idle at last, and
/// the next pause after being kept off is the shortest again.
fn idle_at_last() {
    PAUSE_AFTER_KEPT_OFF.with(|p| p.set(PAUSE_AFTER_GIVING_WAY));
}

/// Pending until `wake_on_unpark` takes the waker it leaves.
async fn wait_for_wake_up() {
    let mut left_waker = false;
    std::future::poll_fn(|cx| {
        if left_waker && WAITING_POLLER.with(|w| w.borrow().is_none()) {
            return Poll::Ready(());
        }
        WAITING_POLLER.with(|w| *w.borrow_mut() = Some(cx.waker().clone()));
        left_waker = true;
        Poll::Pending
    })
    .await;
}

/// How often the kernel has switched this thread out while it could run
/// (preempted, or given way at a `sched_yield`); None if it cannot say.
fn times_switched_out() -> Option<i64> {
    this_thread_usage().map(|usage| usage.ru_nivcsw)
}

thread_local! {
    /// This thread's handle on /proc/loadavg, opened at its first use
    /// (None when it could not be opened: then nothing is counted).
    static LOADAVG: Option<std::fs::File> = std::fs::File::open("/proc/loadavg").ok();
}

/// Whether more tasks are runnable right now, this thread included, than
/// the machine has CPUs online: then some task waits for a CPU. The count
/// is the whole machine's (/proc/loadavg's fourth field), so it is compared
/// with the whole machine's CPUs; false when it cannot be read. A thread
/// that polls low (at SCHED_IDLE) keeps no task waiting: it is not counted.
fn more_runnable_than_cpus(polling_low: bool) -> bool {
    use std::os::unix::fs::FileExt;
    LOADAVG.with(|file| {
        let Some(file) = file else {
            return false;
        };
        let mut text = [0u8; 128];
        // The file is generated at each read from offset 0: no seek, no reopen.
        let Ok(len) = file.read_at(&mut text, 0) else {
            return false;
        };
        let runnable = std::str::from_utf8(&text[..len])
            .ok()
            .and_then(runnable_tasks);
        runnable.is_some_and(|tasks| tasks > cpus_online() + u64::from(polling_low))
    })
}

/// The runnable tasks in a /proc/loadavg line ("0.52 0.58 0.59 3/250
/// 12345": the 3).
fn runnable_tasks(loadavg: &str) -> Option<u64> {
    let (runnable, _) = loadavg.split_whitespace().nth(3)?.split_once('/')?;
    runnable.parse().ok()
}

/// The CPUs online, read once per thread (0 if it cannot be read, so that
/// any count is "more").
fn cpus_online() -> u64 {
    thread_local! {
        static CPUS: u64 = {
            // SAFETY: sysconf only reads the configuration value it is asked for.
            let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
            u64::try_from(cpus).unwrap_or(0)
        };
    }
    CPUS.with(|cpus| *cpus)
}

/// How often this thread has slept (its voluntary context switches: waits
/// that blocked, and naps); 0 if it cannot say.
fn times_slept() -> u64 {
    this_thread_usage().map_or(0, |usage| u64::try_from(usage.ru_nvcsw).unwrap_or(0))
}

/// getrusage(2) of the calling thread.
fn this_thread_usage() -> Option<libc::rusage> {
    // SAFETY: `rusage` is plain integers, so all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes only into the struct it is given a pointer
    // to, which lives until the call returns; RUSAGE_THREAD asks for the
    // calling thread's counts.
    let done = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    (done == 0).then_some(usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use std::sync::Arc;

    const WINDOW: Duration = Duration::from_micros(50);

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn work_restarts_the_window_and_an_empty_window_ends_it() {
        let t0 = Instant::now();
        let mut episode = Episode::new(WINDOW, 7, t0, false);
        assert_eq!(
            episode.after_poll(7, t0 + us(10), || Some(3), |_| false, || false),
            Next::PollAgain
        );
        assert_eq!(
            episode.after_poll(8, t0 + us(40), || Some(3), |_| false, || false),
            Next::Worked
        );
        // 50 µs after the start, but only 20 after the work.
        assert_eq!(
            episode.after_poll(8, t0 + us(60), || Some(3), |_| false, || false),
            Next::PollAgain
        );
        assert_eq!(
            episode.after_poll(8, t0 + us(89), || Some(3), |_| false, || false),
            Next::PollAgain
        );
        assert_eq!(
            episode.after_poll(8, t0 + us(90), || Some(3), |_| false, || false),
            Next::WindowPassed
        );
    }

    #[test]
    fn being_switched_out_while_polling_gives_way() {
        let t0 = Instant::now();
        let mut episode = Episode::new(WINDOW, 0, t0, false);
        assert_eq!(
            episode.after_poll(0, t0 + us(1), || Some(5), |_| false, || false),
            Next::PollAgain
        );
        assert_eq!(
            episode.after_poll(0, t0 + us(2), || Some(5), |_| false, || false),
            Next::PollAgain
        );
        // Work in between does not excuse a switch.
        assert_eq!(
            episode.after_poll(1, t0 + us(3), || Some(6), |_| false, || false),
            Next::Worked
        );
        assert_eq!(
            episode.after_poll(1, t0 + us(4), || Some(6), |_| false, || false),
            Next::GiveWay
        );
    }

    #[test]
    fn an_unreadable_switch_count_gives_way() {
        let t0 = Instant::now();
        let mut episode = Episode::new(WINDOW, 0, t0, false);
        assert_eq!(
            episode.after_poll(0, t0 + us(1), || None, |_| false, || false),
            Next::PollAgain
        );
        assert_eq!(
            episode.after_poll(0, t0 + us(2), || None, |_| false, || false),
            Next::GiveWay
        );
        let mut episode = Episode::new(WINDOW, 0, t0, false);
        assert_eq!(
            episode.after_poll(0, t0 + us(1), || Some(1), |_| false, || false),
            Next::PollAgain
        );
        assert_eq!(
            episode.after_poll(0, t0 + us(2), || None, |_| false, || false),
            Next::GiveWay
        );
    }

    #[test]
    fn the_switch_count_is_read_only_after_empty_polls() {
        let t0 = Instant::now();
        let mut episode = Episode::new(WINDOW, 0, t0, false);
        let next = episode.after_poll(
            1,
            t0 + us(1),
            || panic!("read after work"),
            |_| panic!("counted after work"),
            || false,
        );
        assert_eq!(next, Next::Worked);
        let next = episode.after_poll(
            1,
            t0 + us(60),
            || panic!("read after the window"),
            |_| panic!("counted after the window"),
            || false,
        );
        assert_eq!(next, Next::WindowPassed);
    }

    #[test]
    fn a_crowded_machine_at_the_first_empty_poll_after_work_gives_way() {
        let t0 = Instant::now();
        let mut episode = Episode::new(WINDOW, 0, t0, false);
        let crowded = std::cell::Cell::new(true);
        let counted = std::cell::Cell::new(0);
        let count = |_low: bool| {
            counted.set(counted.get() + 1);
            crowded.get()
        };
        // Not counted until COUNT_AFTER has passed since the work.
        assert_eq!(
            episode.after_poll(0, t0 + us(1), || Some(2), count, || false),
            Next::PollAgain
        );
        assert_eq!(counted.get(), 0);
        // Uncrowded then: poll on; not counted again until there has been
        // work.
        crowded.set(false);
        assert_eq!(
            episode.after_poll(0, t0 + COUNT_AFTER, || Some(2), count, || false),
            Next::PollAgain
        );
        crowded.set(true);
        assert_eq!(
            episode.after_poll(0, t0 + COUNT_AFTER + us(1), || Some(2), count, || false),
            Next::PollAgain
        );
        assert_eq!(counted.get(), 1);
        // After work, the first empty poll past COUNT_AFTER counts again,
        // and now gives way though the thread was never switched out.
        let t1 = t0 + us(15);
        assert_eq!(
            episode.after_poll(1, t1, || Some(2), count, || false),
            Next::Worked
        );
        assert_eq!(
            episode.after_poll(1, t1 + us(1), || Some(2), count, || false),
            Next::PollAgain
        );
        assert_eq!(counted.get(), 1);
        assert_eq!(
            episode.after_poll(1, t1 + COUNT_AFTER, || Some(2), count, || false),
            Next::GiveWay
        );
        assert_eq!(counted.get(), 2);
    }

    /// A low episode never reads the switch count.
    fn no_switches() -> Option<i64> {
        panic!("switches read while low")
    }

    fn never_crowded(_polling_low: bool) -> bool {
        false
    }

    #[test]
    fn a_low_episode_counts_every_interval_work_or_not_and_never_reads_switches() {
        let t0 = Instant::now();
        let mut episode = Episode::new(WINDOW, 0, t0, true);
        let counted = &Cell::new(Vec::new());
        let count = |crowded: bool| {
            move |low: bool| {
                let mut seen = counted.take();
                seen.push(low);
                counted.set(seen);
                crowded
            }
        };
        // Work and empty polls by turns, 20 µs apart: no count until
        // COUNT_WHILE_LOW has passed, then one, as a low thread.
        let mut at = t0;
        let mut work = 0;
        while at + us(20) < t0 + COUNT_WHILE_LOW {
            at += us(20);
            work += 1;
            let next = episode.after_poll(work, at, no_switches, count(false), || false);
            assert_eq!(next, Next::Worked);
            at += us(20);
            if at >= t0 + COUNT_WHILE_LOW {
                break;
            }
            let next = episode.after_poll(work, at, no_switches, count(false), || false);
            assert_eq!(next, Next::PollAgain);
        }
        assert!(counted.take().is_empty());
        let at = t0 + COUNT_WHILE_LOW;
        let next = episode.after_poll(work + 1, at, no_switches, count(false), || false);
        assert_eq!(next, Next::Worked);
        assert_eq!(counted.take(), vec![true]);
        // The next count finds the machine crowded: give way, work or not.
        let next = episode.after_poll(
            work + 2,
            at + COUNT_WHILE_LOW,
            no_switches,
            count(true),
            || false,
        );
        assert_eq!(next, Next::GiveWay);
    }

    #[test]
    fn a_low_episode_ends_when_another_serving_thread_wakes() {
        let t0 = Instant::now();
        let mut episode = Episode::new(WINDOW, 0, t0, true);
        let next = episode.after_poll(0, t0 + us(1), no_switches, never_crowded, || false);
        assert_eq!(next, Next::PollAgain);
        let next = episode.after_poll(1, t0 + us(2), no_switches, never_crowded, || true);
        assert_eq!(next, Next::GiveWay);
        // At its own policy, others awake do not matter.
        let mut episode = Episode::new(WINDOW, 0, t0, false);
        let next = episode.after_poll(0, t0 + us(1), || Some(1), never_crowded, || true);
        assert_eq!(next, Next::PollAgain);
    }

    #[test]
    fn pauses_after_being_kept_off_double_until_the_thread_is_idle_at_last() {
        let pauses = std::thread::spawn(|| {
            let mut pauses = vec![pause_after_giving_way(false)];
            for _ in 0..9 {
                pauses.push(pause_after_giving_way(true));
            }
            pauses.push(pause_after_giving_way(false));
            idle_at_last();
            pauses.push(pause_after_giving_way(true));
            pauses
        })
        .join()
        .expect("thread");
        let ms = |n| Duration::from_millis(n);
        assert_eq!(
            pauses,
            [5, 5, 10, 20, 40, 80, 160, 320, 640, 640, 5, 5].map(ms),
            "longest {LONGEST_PAUSE_AFTER_KEPT_OFF:?}"
        );
    }

    #[test]
    fn a_low_episode_with_work_at_every_poll_gives_way() {
        let t0 = Instant::now();
        let mut episode = Episode::new(WINDOW, 0, t0, true);
        // An empty poll between works resets the run.
        for (work, at) in [(1, 1), (2, 2), (2, 3), (3, 4), (4, 5), (5, 6)] {
            let next = episode.after_poll(work, t0 + us(at), no_switches, never_crowded, || false);
            assert_ne!(next, Next::GiveWay, "work {work} at {at} µs");
        }
        let next = episode.after_poll(6, t0 + us(7), no_switches, never_crowded, || false);
        assert_eq!(
            next,
            Next::GiveWay,
            "{BUSY_POLLS} polls in a row found work"
        );
    }

    #[test]
    fn a_low_episode_ends_with_the_window_or_when_kept_off_its_cpu() {
        let t0 = Instant::now();
        let mut episode = Episode::new(WINDOW, 0, t0, true);
        assert_eq!(
            episode.after_poll(0, t0 + us(30), no_switches, never_crowded, || false),
            Next::PollAgain
        );
        assert_eq!(
            episode.after_poll(0, t0 + WINDOW, no_switches, never_crowded, || false),
            Next::WindowPassed
        );
        // Preempted for a while (a task woken on its CPU ran): polls on.
        let mut episode = Episode::new(WINDOW, 0, t0, true);
        let back = t0 + us(40);
        assert_eq!(
            episode.after_poll(1, back, no_switches, never_crowded, || false),
            Next::Worked
        );
        assert!(!episode.kept_off);
        // Kept off for KEPT_OFF: gives way, though there was work.
        assert_eq!(
            episode.after_poll(2, back + KEPT_OFF, no_switches, never_crowded, || false),
            Next::GiveWay
        );
        assert!(episode.kept_off);
    }

    #[test]
    fn runnable_tasks_are_the_fourth_field_of_loadavg() {
        assert_eq!(runnable_tasks("0.52 0.58 0.59 3/250 12345\n"), Some(3));
        assert_eq!(runnable_tasks("1.00 2.00 3.00 17/1024 1"), Some(17));
        assert_eq!(runnable_tasks("0.52 0.58 0.59"), None);
        assert_eq!(runnable_tasks("0.52 0.58 0.59 x/250 1"), None);
        assert_eq!(runnable_tasks(""), None);
    }

    /// Threads that always want a CPU, one more than `cpus`, until dropped.
    struct Spinners {
        stop: Arc<AtomicBool>,
        threads: Vec<std::thread::JoinHandle<()>>,
    }

    impl Spinners {
        fn more_than(cpus: usize) -> Spinners {
            let stop = Arc::new(AtomicBool::new(false));
            let threads = (0..=cpus)
                .map(|_| {
                    let stop = stop.clone();
                    std::thread::spawn(move || {
                        while !stop.load(Relaxed) {
                            std::hint::spin_loop();
                        }
                    })
                })
                .collect();
            Spinners { stop, threads }
        }
    }

    impl Drop for Spinners {
        fn drop(&mut self) {
            self.stop.store(true, Relaxed);
            for thread in self.threads.drain(..) {
                let _ = thread.join();
            }
        }
    }

    #[test]
    fn spinning_threads_beyond_the_cpus_are_counted_as_crowded() {
        let cpus = usize::try_from(cpus_online()).expect("cpus");
        assert!(cpus >= 1);
        let spinners = Spinners::more_than(cpus);
        // The count is a snapshot: some read soon sees them all runnable.
        let start = Instant::now();
        let mut seen = false;
        while !seen && start.elapsed() < Duration::from_secs(10) {
            seen = more_runnable_than_cpus(false);
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(spinners);
        assert!(seen, "never more runnable tasks than {cpus} CPUs");
    }

    /// CPU time this thread has used (user + system).
    fn this_thread_cpu() -> Duration {
        let usage = this_thread_usage().expect("getrusage");
        let of = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        of(usage.ru_utime) + of(usage.ru_stime)
    }

    /// A runtime like a serving thread's: its poller woken at each wake-up,
    /// a nap before each wait while polling is paused.
    fn serving_runtime(stats: &Arc<IdlePollStats>) -> tokio::runtime::Runtime {
        let stats = stats.clone();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(move || before_wait(&stats))
            .on_thread_unpark(wake_on_unpark)
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_thread_polls_after_work_and_then_sleeps() {
        let stats = Arc::new(IdlePollStats::default());
        serving_runtime(&stats).block_on(async {
            tokio::spawn(poll_while_idle(Duration::from_millis(20), stats.clone()));
            // Work now and then: each wake-up starts polling.
            for _ in 0..20 {
                note_work();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert!(stats.empty_polls() > 0, "{stats:?}");
            // Idle: polling ends (the window passes, or it gives way) and
            // the thread sleeps, using next to no CPU for a second.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let ended = stats.windows_ended() + stats.gave_way();
            assert!(ended >= 1, "{stats:?}");
            let cpu = this_thread_cpu();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let used = this_thread_cpu() - cpu;
            // Polling that never ended would use the whole second.
            assert!(used < Duration::from_millis(300), "{used:?} {stats:?}");
        });
    }

    #[test]
    fn a_thread_gives_way_when_its_cpu_is_wanted() {
        let stats = Arc::new(IdlePollStats::default());
        // More threads that always want a CPU than there are CPUs.
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let spinners = Spinners::more_than(cpus);
        serving_runtime(&stats).block_on(async {
            tokio::spawn(poll_while_idle(Duration::from_secs(1), stats.clone()));
            let start = Instant::now();
            // Once it gave way, it naps before its next waits.
            while (stats.gave_way() == 0 || stats.naps() == 0)
                && start.elapsed() < Duration::from_secs(20)
            {
                note_work();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        drop(spinners);
        assert!(stats.gave_way() >= 1, "{stats:?}");
        assert!(stats.naps() >= 1, "{stats:?}");
    }

    #[test]
    fn a_prepared_thread_works_at_sched_idle_after_a_wake_up_and_sleeps_at_its_own_policy() {
        let _turn = poll_priority::one_awake_thread_at_a_time();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let serving = std::thread::spawn(move || {
            prepare_thread();
            let stats = Arc::new(IdlePollStats::default());
            serving_runtime(&stats).block_on(async {
                tokio::spawn(poll_while_idle(WINDOW, stats.clone()));
                // Each wake-up from a sleep starts a stretch of polling,
                // at SCHED_IDLE from before the tasks run.
                let mut policies = Vec::new();
                for _ in 0..20 {
                    note_work();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    policies.push(poll_priority::policy_of(0));
                }
                tid_tx.send(poll_priority::this_tid()).expect("send");
                // Idle: the stretch ends and the thread sleeps.
                tokio::time::sleep(Duration::from_millis(500)).await;
                policies
            })
        });
        let tid = tid_rx.recv().expect("tid");
        std::thread::sleep(Duration::from_millis(200));
        let asleep = poll_priority::policy_of(tid);
        let policies = serving.join().expect("serving thread");
        assert!(
            policies.contains(&libc::SCHED_IDLE),
            "never low after a wake-up: {policies:?}"
        );
        assert_eq!(asleep, libc::SCHED_OTHER, "asleep at SCHED_IDLE");
    }

    #[test]
    fn a_low_thread_gives_way_when_its_cpu_is_wanted() {
        let _turn = poll_priority::one_awake_thread_at_a_time();
        let stats = Arc::new(IdlePollStats::default());
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        // One more than a low thread leaves room for.
        let spinners = Spinners::more_than(cpus + 1);
        let was_low = {
            let stats = stats.clone();
            std::thread::spawn(move || {
                prepare_thread();
                serving_runtime(&stats).block_on(async {
                    tokio::spawn(poll_while_idle(Duration::from_secs(1), stats.clone()));
                    let start = Instant::now();
                    while stats.gave_way() == 0 && start.elapsed() < Duration::from_secs(20) {
                        note_work();
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    poll_priority::times_lowered() > 0
                })
            })
            .join()
            .expect("serving thread")
        };
        drop(spinners);
        assert!(was_low, "the thread never polled low");
        assert!(stats.gave_way() >= 1, "{stats:?}");
    }

    #[test]
    fn polling_is_paused_until_the_instant_it_was_paused_to() {
        let now = Instant::now();
        assert!(!paused_at(None, now));
        assert!(paused_at(Some(now + us(1)), now));
        assert!(!paused_at(Some(now), now));
        assert!(!paused_at(Some(now), now + us(1)));
    }

    /// This thread's timer slack in nanoseconds.
    fn timer_slack() -> i32 {
        // SAFETY: PR_GET_TIMERSLACK takes no pointer; it returns the
        // calling thread's slack.
        unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) }
    }

    #[test]
    fn a_prepared_thread_naps_with_a_small_timer_slack() {
        let _turn = poll_priority::one_awake_thread_at_a_time();
        // A fresh thread, so that no other test's thread is changed.
        let (before, after) = std::thread::spawn(|| {
            let before = timer_slack();
            prepare_thread();
            (before, timer_slack())
        })
        .join()
        .expect("thread");
        assert_eq!(i64::from(after), TIMER_SLACK_NS as i64, "was {before}");
        assert!(Duration::from_nanos(TIMER_SLACK_NS) < NAP_WHEN_CROWDED / 10);
    }
}
