//! Finding the php-fpm binary and writing the pool config: pure enough to
//! unit-test, no processes.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Printed when no php-fpm can be found; one message, every common system.
pub const INSTALL_HINTS: &str = "php-fpm not found: without --upstream, fcgi-gateway starts \
php-fpm itself. Install it (Debian/Ubuntu: `apt-get install php-fpm`; Alpine: `apk add php83-fpm`; \
Fedora: `dnf install php-fpm`; Homebrew: `brew install php`), name it with --php-fpm BIN, \
or give --upstream unix:/path/to/php-fpm.sock";

/// `explicit` if it is an executable file; else `php-fpm` on `path_dirs`;
/// else the highest `php-fpm8.x`/`php-fpm7.x` on `path_dirs` or in `sbin`.
pub fn find_php_fpm(
    explicit: Option<&Path>,
    path_dirs: &[PathBuf],
    sbin: &Path,
) -> Option<PathBuf> {
    if let Some(bin) = explicit {
        return is_executable(bin).then(|| bin.to_owned());
    }
    if let Some(bin) = path_dirs
        .iter()
        .map(|d| d.join("php-fpm"))
        .find(|p| is_executable(p))
    {
        return Some(bin);
    }
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = Vec::new();
    for dir in path_dirs.iter().map(PathBuf::as_path).chain([sbin]) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if let Some(version) = fpm_version(&entry.file_name()) {
                if is_executable(&path) {
                    versioned.push((version, path));
                }
            }
        }
    }
    // Highest version first; earlier directories win ties (stable sort).
    versioned.sort_by(|a, b| b.0.cmp(&a.0));
    versioned.into_iter().next().map(|(_, bin)| bin)
}

/// `php-fpm8.2` → `[8, 2]`; only majors 7 and 8 (others are not php-fpm builds we know).
fn fpm_version(name: &OsStr) -> Option<Vec<u32>> {
    let rest = name.to_str()?.strip_prefix("php-fpm")?;
    let version: Vec<u32> = rest
        .split('.')
        .map(|part| part.parse().ok())
        .collect::<Option<_>>()?;
    matches!(version.first(), Some(7 | 8)).then_some(version)
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What the pool config depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolPlan {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub children: usize,
    pub status_path: String,
    pub as_root: bool,
}

/// Workers when `--fpm-children` is not given: one per CPU, at least 2 so
/// one slow request does not stall the site.
pub fn default_children(cpus: usize) -> usize {
    cpus.max(2)
}

/// The php-fpm config. `pm = static` because the pool sizes itself from
/// the status page's `max children`, which php-fpm reports usefully only
/// for static pools.
pub fn render_config(plan: &PoolPlan) -> String {
    let mut c = String::new();
    // writeln! into a String cannot fail.
    let _ = writeln!(c, "; written by fcgi-gateway for its embedded php-fpm");
    let _ = writeln!(c, "[global]");
    let _ = writeln!(c, "pid = {}", plan.dir.join("php-fpm.pid").display());
    // Our child's stderr is a pipe we read and log line by line.
    let _ = writeln!(c, "error_log = /proc/self/fd/2");
    let _ = writeln!(c, "log_level = notice");
    let _ = writeln!(c, "daemonize = no");
    let _ = writeln!(c, "\n[app]");
    let _ = writeln!(c, "listen = {}", plan.socket.display());
    // Only we (the same user) may speak FastCGI to it: FastCGI access is code execution.
    let _ = writeln!(c, "listen.mode = 0600");
    if plan.as_root {
        let _ = writeln!(c, "user = root");
        let _ = writeln!(c, "group = root");
    }
    let _ = writeln!(c, "pm = static");
    let _ = writeln!(c, "pm.max_children = {}", plan.children);
    let _ = writeln!(c, "pm.status_path = {}", plan.status_path);
    let _ = writeln!(c, "catch_workers_output = yes");
    let _ = writeln!(c, "decorate_workers_output = no");
    let _ = writeln!(c, "clear_env = yes");
    let _ = writeln!(c, "security.limit_extensions = .php");
    // flush() in PHP must reach the client at once (streaming, SSE).
    let _ = writeln!(c, "php_admin_value[output_buffering] = 0");
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn exe(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn explicit_binary_must_be_executable() {
        let dir = tempfile::tempdir().unwrap();
        let bin = exe(dir.path(), "my-fpm");
        assert_eq!(find_php_fpm(Some(&bin), &[], dir.path()), Some(bin));
        let plain = dir.path().join("plain");
        fs::write(&plain, "").unwrap();
        assert_eq!(find_php_fpm(Some(&plain), &[], dir.path()), None);
        let missing = Path::new("/nonexistent/php-fpm");
        // An explicit choice is never replaced by a search.
        exe(dir.path(), "php-fpm");
        assert_eq!(
            find_php_fpm(Some(missing), &[dir.path().into()], dir.path()),
            None
        );
    }

    #[test]
    fn plain_name_on_path_first_then_highest_version() {
        let path_dir = tempfile::tempdir().unwrap();
        let sbin = tempfile::tempdir().unwrap();
        let empty = tempfile::tempdir().unwrap();
        exe(path_dir.path(), "php-fpm7.4");
        let newest = exe(sbin.path(), "php-fpm8.3");
        exe(sbin.path(), "php-fpm8.1");
        exe(sbin.path(), "php-fpm9.0");
        let dirs = vec![path_dir.path().to_owned()];
        assert_eq!(find_php_fpm(None, &dirs, sbin.path()), Some(newest));
        let plain = exe(path_dir.path(), "php-fpm");
        assert_eq!(find_php_fpm(None, &dirs, sbin.path()), Some(plain));
        assert_eq!(find_php_fpm(None, &[], empty.path()), None);
    }

    #[test]
    fn config_has_the_promised_settings() {
        let plan = PoolPlan {
            dir: "/run/x".into(),
            socket: "/run/x/php-fpm.sock".into(),
            children: 3,
            status_path: "/fpm-status".into(),
            as_root: false,
        };
        let conf = render_config(&plan);
        for line in [
            "listen = /run/x/php-fpm.sock",
            "listen.mode = 0600",
            "pm = static",
            "pm.max_children = 3",
            "pm.status_path = /fpm-status",
            "clear_env = yes",
            "security.limit_extensions = .php",
            "catch_workers_output = yes",
            "daemonize = no",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line} missing:\n{conf}");
        }
        assert!(!conf.contains("user = root"));
        let root = render_config(&PoolPlan {
            as_root: true,
            ..plan
        });
        assert!(root.contains("user = root\ngroup = root\n"), "{root}");
    }

    #[test]
    fn children_default_to_cpus_but_at_least_two() {
        assert_eq!(default_children(1), 2);
        assert_eq!(default_children(8), 8);
    }

    #[test]
    fn hints_name_every_installer() {
        for cmd in [
            "apt-get install php-fpm",
            "apk add php83-fpm",
            "dnf install php-fpm",
            "brew install php",
        ] {
            assert!(INSTALL_HINTS.contains(cmd), "{cmd}");
        }
    }
}
