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

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// Files larger than this are read each time.
pub(super) const MAX_FILE: u64 = 64 * 1024;
/// Remembered bytes at most; past it, the memory is dropped and filled again.
const MAX_TOTAL: usize = 16 * 1024 * 1024;
/// Remembered files at most.
const MAX_ENTRIES: usize = 4096;
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

#[derive(Default)]
struct Remembered {
    files: HashMap<PathBuf, (Identity, Bytes)>,
    total: usize,
}

fn remembered() -> &'static Mutex<Remembered> {
    static CACHE: OnceLock<Mutex<Remembered>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The remembered contents of `path` and its metadata, if it was read
/// before and is still the same file. Paths never remembered cost no stat;
/// nor does a path whose stat the caller just took (`seen`).
pub(super) fn lookup(path: &Path, seen: Option<&Metadata>) -> Option<(Bytes, Metadata)> {
    let (identity, data) = {
        let cache = remembered().lock().ok()?;
        cache.files.get(path)?.clone()
    };
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
    let Ok(mut cache) = remembered().lock() else {
        return;
    };
    if cache.files.len() >= MAX_ENTRIES || cache.total + data.len() > MAX_TOTAL {
        cache.files.clear();
        cache.total = 0;
    }
    let entry = (Identity::of(meta), data.clone());
    if let Some((_, old)) = cache.files.insert(path.to_owned(), entry) {
        cache.total -= old.len();
    }
    cache.total += data.len();
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
