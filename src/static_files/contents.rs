//! The contents of small static files, remembered with the identity of the
//! file they were read from. A hit costs one stat instead of open, fstat,
//! read and close: four of a small file's seven syscalls.
//!
//! The identity is device, inode, size, mtime and ctime. Any write to the
//! file, a rename over it or a chmod changes its ctime (which no user can
//! set). File times tick coarsely (a few ms on many kernels), so two writes
//! in one tick can leave the same ctime: a file is only remembered once its
//! ctime is `QUIET` old, so any later write gets a later ctime. A remembered
//! copy is thus only ever served for the very file state it was read from.

use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use quick_cache::sync::Cache;
use quick_cache::Weighter;

/// Files larger than this are read each time.
pub(super) const MAX_FILE: u64 = 64 * 1024;
/// Remembered bytes at most (contents and names, roughly); past it, the
/// files used least lately make room.
const MAX_TOTAL: u64 = 16 * 1024 * 1024;
/// About how many files are remembered (sizes the cache's tables).
const EXPECTED_ENTRIES: usize = 4096;
/// What an entry costs beside its contents and name: the key, the
/// identity, the cache's own bookkeeping.
const ENTRY_OVERHEAD: u64 = 128;
/// How long a file must have been left alone before it is remembered.
const QUIET: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    fn of(meta: &Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// An entry weighs what it holds in memory.
#[derive(Debug, Clone, Copy)]
struct ByMemory;

impl Weighter<Box<[u8]>, (Identity, Bytes)> for ByMemory {
    fn weight(&self, path: &Box<[u8]>, (_, data): &(Identity, Bytes)) -> u64 {
        data.len() as u64 + path.len() as u64 + ENTRY_OVERHEAD
    }
}

/// Bounded by memory; evicts what was used least lately. Sharded, so the
/// serving threads rarely contend for it. Keyed by the path's bytes:
/// `Path` hashes component by component, several times the cost, and
/// routing's paths are normalised, so equal files have equal bytes.
type Remembered = Cache<Box<[u8]>, (Identity, Bytes), ByMemory>;

fn remembered() -> &'static Remembered {
    static CACHE: OnceLock<Remembered> = OnceLock::new();
    CACHE.get_or_init(|| Cache::with_weighter(EXPECTED_ENTRIES, MAX_TOTAL, ByMemory))
}

/// The remembered contents of `path` and its metadata, if it was read
/// before and is still the same file. Paths never remembered cost no stat;
/// nor does a path whose stat the caller just took (`seen`).
pub(super) fn lookup(path: &Path, seen: Option<&Metadata>) -> Option<(Bytes, Metadata)> {
    let (identity, data) = remembered().get(path.as_os_str().as_bytes())?;
    let meta = match seen {
        Some(meta) => meta.clone(),
        // Follows symlinks, as opening the file would.
        None => std::fs::metadata(path).ok()?,
    };
    if !meta.is_file() || Identity::of(&meta) != identity {
        return None;
    }
    Some((data, meta))
}

/// Remembers `data`, the whole contents of `path` as read through a
/// descriptor whose metadata is `meta`.
pub(super) fn remember(path: &Path, meta: &Metadata, data: &Bytes) {
    if meta.len() > MAX_FILE || data.len() as u64 != meta.len() || !is_quiet(meta) {
        return;
    }
    let key = Box::from(path.as_os_str().as_bytes());
    remembered().insert(key, (Identity::of(meta), data.clone()));
}

/// Whether the file's last change (ctime) is at least `QUIET` ago.
fn is_quiet(meta: &Metadata) -> bool {
    let (Ok(secs), Ok(nanos)) = (
        u64::try_from(meta.ctime()),
        u32::try_from(meta.ctime_nsec()),
    ) else {
        return false;
    };
    let changed = UNIX_EPOCH + Duration::new(secs, nanos);
    SystemTime::now()
        .duration_since(changed)
        .is_ok_and(|age| age >= QUIET)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Past its memory bound the cache lets go of what was used least
    /// lately, not of everything: a file read all along stays remembered,
    /// and what is held stays within the bound.
    #[test]
    fn a_full_cache_keeps_what_is_used_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![b'x'; MAX_FILE as usize]).unwrap();
            path
        };
        let hot = write("hot.css");
        // Twice the bound in files of the largest size remembered.
        let count = 2 * (MAX_TOTAL / MAX_FILE) as usize;
        let cold: Vec<PathBuf> = (0..count).map(|i| write(&format!("{i}.css"))).collect();
        // Only files left alone for QUIET are remembered.
        std::thread::sleep(QUIET + Duration::from_millis(100));
        let data = Bytes::from(vec![b'x'; MAX_FILE as usize]);
        let meta = |path: &Path| std::fs::metadata(path).unwrap();
        let hot_meta = meta(&hot);
        remember(&hot, &hot_meta, &data);
        for path in &cold {
            remember(path, &meta(path), &data);
            assert!(
                lookup(&hot, Some(&hot_meta)).is_some(),
                "the file in use was dropped at {}",
                path.display()
            );
        }
        assert!(remembered().weight() <= MAX_TOTAL);
        let kept = cold.iter().filter(|p| lookup(p, None).is_some()).count();
        assert!(kept > 0 && kept < count, "{kept} of {count} kept");
    }
}
