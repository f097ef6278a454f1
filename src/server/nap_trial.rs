//! Whether a serving thread naps before its waits while polling is paused
//! (`idle_poll`): measured per thread, not assumed. A nap pays when what
//! arrives meanwhile is then taken after one sleep instead of several,
//! which saves the wake-ups of a crowded machine; a nap that gathers no
//! more than a plain wait only delays what arrives first. Which happens
//! depends on the load. Front controller over tcp, wrk -c32: with
//! 1 serving thread, napping cut its sleeps per request from 0.18 to
//! 0.05-0.11 and its CPU per request from 20-23 µs to 16-18; with 2 (one
//! per CPU), its sleeps stayed (0.21 to 0.19), and the rate fell by 13 %.
//!
//! So each thread spends its pauses waiting at once and napping by turns
//! until it has measured both, then naps only while napping takes clearly
//! fewer sleeps (voluntary context switches, the naps included) per unit
//! of work (a client read or write), and tries the other mode every
//! `RETRY_EVERY` pauses in case the load has changed. Pure: the caller
//! counts the sleeps and the work.

/// One pause in this many tries the mode that measured worse.
const RETRY_EVERY: u64 = 8;

/// A pause with less work than this says little: dropped.
const MIN_WORK: u64 = 32;

/// Each new measurement counts this much (1/n) in a mode's estimate.
const WEIGHT: f64 = 4.0;

/// Napping is kept only if it takes this many times fewer sleeps per unit
/// of work than waiting at once: a nap also delays what arrives first.
const NAPS_MUST_GATHER: f64 = 1.5;

/// One thread's record of how often its pauses slept, napping or not.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NapTrial {
    pauses: u64,
    napping: bool,
    /// The thread's sleep and work counts when the current pause began.
    began: Option<(u64, u64)>,
    /// Sleeps per unit of work, waiting at once and napping.
    sleeps_waiting: Option<f64>,
    sleeps_napping: Option<f64>,
}

impl NapTrial {
    pub(crate) const fn new() -> NapTrial {
        NapTrial {
            pauses: 0,
            napping: false,
            began: None,
            sleeps_waiting: None,
            sleeps_napping: None,
        }
    }

    /// A pause begins, the thread having slept `sleeps` times and done
    /// `work` so far: decides whether it naps before its waits during this
    /// pause (`napping`).
    pub(crate) fn begin(&mut self, sleeps: u64, work: u64) {
        self.pauses = self.pauses.wrapping_add(1);
        self.napping = match (self.sleeps_waiting, self.sleeps_napping) {
            (Some(waiting), Some(napping)) => {
                let naps_pay = napping * NAPS_MUST_GATHER < waiting;
                if self.pauses.is_multiple_of(RETRY_EVERY) {
                    !naps_pay
                } else {
                    naps_pay
                }
            }
            // By turns until both are measured, waiting at once first.
            _ => self.pauses.is_multiple_of(2),
        };
        self.began = Some((sleeps, work));
    }

    /// Whether the current (or last) pause naps.
    pub(crate) fn napping(&self) -> bool {
        self.napping
    }

    /// The pause ended: its sleeps per unit of work go to the estimate of
    /// its mode.
    pub(crate) fn end(&mut self, sleeps: u64, work: u64) {
        let Some((sleeps_then, work_then)) = self.began.take() else {
            return;
        };
        let work_done = work.wrapping_sub(work_then);
        if work_done < MIN_WORK {
            return;
        }
        let per_work = sleeps.wrapping_sub(sleeps_then) as f64 / work_done as f64;
        let estimate = if self.napping {
            &mut self.sleeps_napping
        } else {
            &mut self.sleeps_waiting
        };
        *estimate = Some(match *estimate {
            Some(old) => old + (per_work - old) / WEIGHT,
            None => per_work,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one pause of `work` units that take `sleeps.0` sleeps per 100
    /// units waiting at once or `sleeps.1` napping; returns whether it
    /// napped.
    fn pause(trial: &mut NapTrial, counts: &mut (u64, u64), work: u64, sleeps: (u64, u64)) -> bool {
        trial.begin(counts.0, counts.1);
        let napped = trial.napping();
        let per_100 = if napped { sleeps.1 } else { sleeps.0 };
        counts.0 += per_100 * work / 100;
        counts.1 += work;
        trial.end(counts.0, counts.1);
        napped
    }

    #[test]
    fn both_modes_are_measured_by_turns_waiting_first() {
        let mut trial = NapTrial::new();
        let mut counts = (0, 0);
        let modes: Vec<bool> = (0..2)
            .map(|_| pause(&mut trial, &mut counts, 100, (20, 10)))
            .collect();
        assert_eq!(modes, [false, true]);
        assert_eq!(trial.sleeps_waiting, Some(0.2));
        assert_eq!(trial.sleeps_napping, Some(0.1));
    }

    #[test]
    fn naps_are_kept_only_if_they_clearly_save_sleeps_and_the_other_mode_is_retried() {
        // Halved sleeps: napping kept; 20 % fewer: not worth the delay.
        for (sleeps, naps_pay) in [((20, 10), true), ((20, 16), false), ((20, 30), false)] {
            let mut trial = NapTrial::new();
            let mut counts = (0, 0);
            pause(&mut trial, &mut counts, 100, sleeps);
            pause(&mut trial, &mut counts, 100, sleeps);
            let modes: Vec<bool> = (0..2 * RETRY_EVERY)
                .map(|_| pause(&mut trial, &mut counts, 100, sleeps))
                .collect();
            let retries = modes.iter().filter(|&&napped| napped != naps_pay).count();
            // The retries move the other mode's estimate, never past.
            assert_eq!(retries, 2, "{sleeps:?}: {modes:?}");
        }
    }

    #[test]
    fn a_change_of_load_flips_the_choice() {
        let mut trial = NapTrial::new();
        let mut counts = (0, 0);
        let modes: Vec<bool> = (0..RETRY_EVERY + 2)
            .map(|_| pause(&mut trial, &mut counts, 100, (20, 10)))
            .collect();
        assert!(
            modes[RETRY_EVERY as usize..].iter().all(|&napped| napped),
            "{modes:?}"
        );
        // Now napping gathers nothing: it is dropped, and only retried.
        let modes: Vec<bool> = (0..6 * RETRY_EVERY)
            .map(|_| pause(&mut trial, &mut counts, 100, (20, 20)))
            .collect();
        let last = &modes[modes.len() - (RETRY_EVERY as usize - 1)..];
        assert!(
            last.iter().filter(|&&napped| napped).count() <= 1,
            "{modes:?}"
        );
    }

    #[test]
    fn a_pause_with_little_work_is_not_counted() {
        let mut trial = NapTrial::new();
        let mut counts = (0, 0);
        pause(&mut trial, &mut counts, MIN_WORK - 1, (100, 10));
        assert_eq!(trial.sleeps_waiting, None);
        pause(&mut trial, &mut counts, 100, (20, 10));
        assert_eq!(trial.sleeps_napping, Some(0.1));
        // An end without a beginning changes nothing.
        trial.end(counts.0 + 1_000, counts.1 + 100);
        assert_eq!(trial.sleeps_napping, Some(0.1));
    }
}
