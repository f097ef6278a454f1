//! The PHP scripts routing found on disk lately, remembered per thread so
//! a busy script costs one stat per `script-stat-cache` interval instead of
//! one per request (a stat was ~5 % of the gateway's CPU for hello.php).
//!
//! Only what is safe to trust for a moment is remembered: a regular file
//! reached with no symlink below the root. A missing path is never
//! remembered, so a new script (or a new static file that a path used to
//! fall back to the front controller for) is seen at once; a script removed
//! within the interval still goes to php-fpm, which answers 404 itself, and
//! one replaced within it (by a symlink, say) is taken as it was until the
//! interval ends.
//! php-fpm trusts what it found for longer: opcache re-checks a script
//! every 2 s, its realpath cache keeps paths for 120 s.
//!
//! Entries are bounded by the files that exist, and by `MAX_ENTRIES`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// When the table is full, expired entries go; if none has expired, all do
/// (a new interval of stats, no worse than no cache at all).
const MAX_ENTRIES: usize = 1024;

thread_local! {
    /// Full script path → when a stat last found it a plain regular file.
    static FOUND: RefCell<HashMap<Box<[u8]>, Instant>> = RefCell::new(HashMap::new());
}

/// Whether `path` was found a plain regular file less than `valid_for` ago.
pub(super) fn recently_found(path: &Path, valid_for: Duration, now: Instant) -> bool {
    FOUND.with(|found| {
        found
            .borrow()
            .get(path.as_os_str().as_bytes())
            .is_some_and(|at| now.saturating_duration_since(*at) < valid_for)
    })
}

/// Remembers that a stat at `now` found `path` a plain regular file.
pub(super) fn remember(path: &Path, valid_for: Duration, now: Instant) {
    FOUND.with(|found| {
        let mut found = found.borrow_mut();
        if found.len() >= MAX_ENTRIES {
            found.retain(|_, at| now.saturating_duration_since(*at) < valid_for);
            if found.len() >= MAX_ENTRIES {
                found.clear();
            }
        }
        found.insert(path.as_os_str().as_bytes().into(), now);
    });
}

/// Entries held by this thread, for tests.
#[cfg(test)]
pub(super) fn len() -> usize {
    FOUND.with(|found| found.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_holds_for_its_interval_only() {
        let path = Path::new("/srv/found-scripts-test/a.php");
        let second = Duration::from_secs(1);
        let at = Instant::now();
        assert!(!recently_found(path, second, at));
        remember(path, second, at);
        assert!(recently_found(path, second, at));
        assert!(recently_found(
            path,
            second,
            at + Duration::from_millis(999)
        ));
        assert!(!recently_found(path, second, at + second));
        // Another path, or a zero interval, is never taken as found.
        assert!(!recently_found(
            Path::new("/srv/found-scripts-test/b.php"),
            second,
            at
        ));
        assert!(!recently_found(path, Duration::ZERO, at));
    }

    #[test]
    fn the_table_stays_bounded() {
        let second = Duration::from_secs(1);
        let at = Instant::now();
        for i in 0..MAX_ENTRIES {
            remember(Path::new(&format!("/srv/bounded/{i}.php")), second, at);
        }
        assert_eq!(len(), MAX_ENTRIES);
        // Full of live entries: all go, the new one stays.
        remember(Path::new("/srv/bounded/new.php"), second, at);
        assert_eq!(len(), 1);
        assert!(recently_found(
            Path::new("/srv/bounded/new.php"),
            second,
            at
        ));
        assert!(!recently_found(Path::new("/srv/bounded/0.php"), second, at));

        // Full again, the old half expired: only the expired ones go.
        for i in 0..MAX_ENTRIES / 2 {
            remember(Path::new(&format!("/srv/bounded/old{i}.php")), second, at);
        }
        let later = at + Duration::from_millis(1500);
        for i in 0..MAX_ENTRIES - len() {
            remember(
                Path::new(&format!("/srv/bounded/late{i}.php")),
                second,
                later,
            );
        }
        assert_eq!(len(), MAX_ENTRIES);
        remember(Path::new("/srv/bounded/last.php"), second, later);
        assert_eq!(len(), MAX_ENTRIES / 2);
        assert!(recently_found(
            Path::new("/srv/bounded/late0.php"),
            second,
            later
        ));
        assert!(!recently_found(
            Path::new("/srv/bounded/old0.php"),
            second,
            later
        ));
    }
}
