//! The document root as nginx's `$realpath_root` has it: the configured
//! path is resolved again (at most once a second), so a deploy that
//! switches a symlink (`current -> releases/2`) is served from the next
//! requests on, with SCRIPT_FILENAME and DOCUMENT_ROOT naming the release's
//! real path (opcache never mixes releases). A request keeps the routing it
//! began with: requests in flight finish on their release.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::route::RouteConfig;

/// How long a resolved root is trusted.
const REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct DocRoot {
    /// The root as configured (absolute; may go through symlinks).
    configured: PathBuf,
    /// The routing of the root as last resolved.
    current: ArcSwap<RouteConfig>,
    epoch: Instant,
    /// When the root is next resolved, in ms after `epoch`.
    due_ms: AtomicU64,
}

impl DocRoot {
    /// `route.root` is the root resolved at load; `configured` the path
    /// as given, resolved again from now on.
    pub(crate) fn new(configured: PathBuf, route: RouteConfig) -> DocRoot {
        DocRoot {
            configured,
            current: ArcSwap::from_pointee(route),
            epoch: Instant::now(),
            due_ms: AtomicU64::new(REFRESH.as_millis() as u64),
        }
    }

    pub(crate) fn configured(&self) -> &Path {
        &self.configured
    }

    /// The routing for a request starting `now` (the caller's clock
    /// reading). One request a second (the one that wins the stamp)
    /// resolves the root again; the rest read.
    pub(crate) fn current(&self, now: Instant) -> Arc<RouteConfig> {
        let now = u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX);
        let due = self.due_ms.load(Ordering::Relaxed);
        let next = now.saturating_add(REFRESH.as_millis() as u64);
        if now >= due
            && self
                .due_ms
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.refresh();
        }
        self.current.load_full()
    }

    fn refresh(&self) {
        let current = self.current.load();
        match std::fs::canonicalize(&self.configured) {
            Ok(real) if real == current.root => {}
            Ok(real) if real.is_dir() => {
                tracing::info!(
                    root = %self.configured.display(),
                    was = %current.root.display(),
                    now = %real.display(),
                    "the document root resolves to a new directory; new requests are served from it"
                );
                self.current.store(Arc::new(RouteConfig {
                    root: real,
                    ..RouteConfig::clone(&current)
                }));
            }
            Ok(real) => tracing::warn!(
                root = %self.configured.display(),
                now = %real.display(),
                "the document root no longer resolves to a directory; serving from the last one"
            ),
            Err(error) => tracing::warn!(
                root = %self.configured.display(),
                %error,
                "cannot resolve the document root; serving from the last one"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(root: PathBuf) -> RouteConfig {
        RouteConfig {
            root,
            index: vec!["index.php".into()],
            front_controller: None,
            php_only_front_controller: false,
            never_serve_ext: Vec::new(),
            follow_symlinks_outside_root: false,
            internal_locations: Vec::new(),
            script_stat_cache: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn a_switched_symlink_is_followed_within_a_second_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        for release in ["1", "2"] {
            std::fs::create_dir_all(base.join("releases").join(release)).unwrap();
        }
        let current = base.join("current");
        std::os::unix::fs::symlink(base.join("releases/1"), &current).unwrap();
        let root = DocRoot::new(current.clone(), route(base.join("releases/1")));
        assert_eq!(root.current(Instant::now()).root, base.join("releases/1"));
        let held = root.current(Instant::now());

        // Atomic switch, as deploy tools do it.
        let next = base.join("current.tmp");
        std::os::unix::fs::symlink(base.join("releases/2"), &next).unwrap();
        std::fs::rename(&next, &current).unwrap();
        // Trusted for a second (the first second since start here)...
        assert_eq!(root.current(Instant::now()).root, base.join("releases/1"));
        // ...then resolved again.
        root.due_ms.store(0, Ordering::Relaxed);
        let switched = root.current(Instant::now());
        assert_eq!(switched.root, base.join("releases/2"));
        assert_eq!(
            switched.index,
            ["index.php"],
            "the rest of the routing stays"
        );
        assert_eq!(
            held.root,
            base.join("releases/1"),
            "a request keeps its release"
        );

        // Broken: the last good root stays.
        std::fs::remove_file(&current).unwrap();
        root.due_ms.store(0, Ordering::Relaxed);
        assert_eq!(root.current(Instant::now()).root, base.join("releases/2"));
    }
}
