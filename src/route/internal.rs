//! Files the application hands back instead of a body: an
//! `X-Accel-Redirect` URI path under the root (which may lie in an
//! `--internal-location` clients cannot reach), or an `X-Sendfile` absolute
//! path inside the `--sendfile-dir`. The same refusals as for client paths
//! apply: dot segments, never-served extensions, symlinks out of bounds.

use std::fs;
use std::path::Path;

use super::path::{has_hidden_segment, normalise, percent_decode};
use super::{
    below, has_hidden_name, is_never_served, segments, static_file_at, under_root, Route,
    RouteConfig, Seen,
};

/// Whether a normalised client path lies in an internal location
/// (segment-wise: `/protected` covers `/protected/x`, not `/protectedx`).
pub(super) fn is_internal(cfg: &RouteConfig, path: &str) -> bool {
    cfg.internal_locations.iter().any(|prefix| {
        path.strip_prefix(prefix.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Whether a real (canonical) path lies in an internal location under the
/// root, so symlinks cannot make one reachable under another name.
pub(super) fn holds_real_path(cfg: &RouteConfig, real: &Path) -> bool {
    if cfg.internal_locations.is_empty() {
        return false;
    }
    let Some(inside) = below(&cfg.root, real) else {
        return false;
    };
    let mut path = String::new();
    for name in segments(inside) {
        path.push('/');
        path.push_str(&String::from_utf8_lossy(name));
    }
    is_internal(cfg, &path)
}

/// The file an `X-Accel-Redirect` value names: a URI path (percent-encoded
/// as in a request; a query is ignored) of a regular file under the root.
pub fn accel_redirect_target(cfg: &RouteConfig, value: &str) -> Route {
    let raw = value.split_once('?').map_or(value, |(path, _)| path);
    let path = match percent_decode(raw).and_then(|decoded| normalise(&decoded)) {
        Ok(path) => path,
        Err(why) => return Route::BadRequest(why),
    };
    if has_hidden_segment(&path) || path.ends_with('/') {
        return Route::NotFound;
    }
    let rel = &path[1..];
    if is_never_served(cfg, rel.rsplit('/').next().unwrap_or(rel)) {
        return Route::NotFound;
    }
    let file = under_root(&cfg.root, rel);
    if !fs::metadata(&file).is_ok_and(|m| m.is_file()) {
        return Route::NotFound;
    }
    static_file_at(cfg, file, true)
}

/// The file an `X-Sendfile` value names: an absolute path whose real
/// location (symlinks resolved) is a regular file inside `dir` (canonical),
/// with no dot segment below `dir` and an extension that may be sent.
pub fn sendfile_target(cfg: &RouteConfig, dir: &Path, value: &str) -> Route {
    if !value.starts_with('/') || value.contains(['\0', '\r', '\n']) {
        return Route::BadRequest("X-Sendfile needs an absolute path");
    }
    let Ok(real) = fs::canonicalize(value) else {
        return Route::NotFound;
    };
    let Some(inside) = below(dir, &real) else {
        return Route::NotFound;
    };
    let hidden = has_hidden_name(inside);
    let name = real.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if hidden || name.is_empty() || is_never_served(cfg, name) {
        return Route::NotFound;
    }
    // Canonical, so no symlink: its stat is what serving it would find.
    let meta = match fs::metadata(&real) {
        Ok(meta) if meta.is_file() => meta,
        _ => return Route::NotFound,
    };
    Route::Static {
        path: real,
        seen: Some(Seen(meta)),
    }
}
