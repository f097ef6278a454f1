//! Routing: decides what answers a request path — a PHP script, a static
//! file, a redirect to the directory's slash form, 404 or 400 — the way
//! nginx's usual PHP server block does (`try_files $uri $uri/ /index.php`).
//! Looks at the file system (stat) but does no network I/O and serves no bytes.

mod found_scripts;
mod internal;
pub(crate) mod path;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_internal;
#[cfg(test)]
mod tests_safety;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use internal::{accel_redirect_target, sendfile_target};

/// The pure path functions `resolve` starts with, for the fuzz targets
/// (`fuzz/`) to check on their own; not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::path::{normalise, percent_decode, slash_location};
}
use path::{
    first_php_segment_end, has_extension, has_hidden_segment, is_php_name, is_plain_segment,
    normalise, percent_decode, slash_location, WELL_KNOWN,
};

/// What `route` needs to know; built once from the config.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Canonical document root (absolute, symlinks resolved).
    pub root: PathBuf,
    /// Index file names tried for a directory, in order (default `["index.php", "index.html"]`).
    pub index: Vec<String>,
    /// URI path of the front controller, e.g. `/index.php`.
    pub front_controller: Option<String>,
    /// Only the front controller may run; any other `.php` is 404.
    pub php_only_front_controller: bool,
    /// Extensions (lowercase, without the dot) never sent as static files;
    /// `php` is refused whether listed or not.
    pub never_serve_ext: Vec<String>,
    /// Serve and run files whose real location is outside the root (through a symlink).
    pub follow_symlinks_outside_root: bool,
    /// Normalised URI paths without a trailing slash (`/protected`): 404 for
    /// clients, reachable only through `X-Accel-Redirect`.
    pub internal_locations: Vec<String>,
    /// How long a script once found on disk (a regular file with no
    /// symlink below the root) is taken as still there without another
    /// stat; zero stats on every request (`script-stat-cache`).
    pub script_stat_cache: Duration,
}

/// A PHP script chosen for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Absolute file name under the root (SCRIPT_FILENAME).
    pub script_filename: PathBuf,
    /// URI path of the script, decoded and normalised, e.g. `/app/index.php` (SCRIPT_NAME).
    pub script_name: String,
    /// Decoded path after the script name, e.g. `/extra/path` (PATH_INFO), if any.
    pub path_info: Option<String>,
    /// Decoded, normalised request path (DOCUMENT_URI): script_name + path_info,
    /// or for a front-controller fallback the front controller's path.
    pub document_uri: String,
}

/// A static file's metadata as routing found it. Equal when it names the
/// same state of the same file.
#[derive(Debug, Clone)]
pub struct Seen(pub fs::Metadata);

impl PartialEq for Seen {
    fn eq(&self, other: &Seen) -> bool {
        use std::os::unix::fs::MetadataExt;
        let key = |m: &fs::Metadata| (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec());
        key(&self.0) == key(&other.0)
    }
}

impl Eq for Seen {}

/// The routing decision for one request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Script(Script),
    /// An existing regular file, not PHP, allowed to be sent as it is.
    Static {
        /// The file under the root (as named by the request, not symlink-resolved).
        path: PathBuf,
        /// The file's metadata as routing saw it, when no symlink lay on the
        /// way (so its lstat is its stat): serving it needs no stat of its own.
        seen: Option<Seen>,
    },
    /// 301 to this `Location` (path and query): a directory asked for without its slash.
    Redirect(String),
    /// Nothing to serve: 404 without contacting the upstream.
    NotFound,
    /// The path is malformed or dangerous (NUL, CR/LF, bad escapes, escapes the root): 400.
    BadRequest(&'static str),
}

/// Decides what serves `raw_path` (the request-target's path as sent:
/// percent-encoded) with `query` (as sent, without the '?').
///
/// Order: normalise (or `BadRequest`); hidden segments → `NotFound`; the first
/// `.php` segment splits SCRIPT_NAME / PATH_INFO and must be an existing
/// script (else `NotFound`, never a later segment); an existing file is
/// static; a directory redirects to its slash form or tries the index names;
/// anything that names nothing falls back to the front controller.
pub fn resolve(cfg: &RouteConfig, raw_path: &str, query: Option<&str>) -> Route {
    resolve_at(cfg, raw_path, query, Instant::now())
}

/// `resolve` for a request that began at `now`: the server passes the
/// clock reading it took when the request came, against which a script
/// found lately (`script-stat-cache`) is judged, rather than read it again.
pub fn resolve_at(cfg: &RouteConfig, raw_path: &str, query: Option<&str>, now: Instant) -> Route {
    let path = match percent_decode(raw_path).and_then(|decoded| normalise(&decoded)) {
        Ok(path) => path,
        Err(why) => return Route::BadRequest(why),
    };
    if has_hidden_segment(&path) || internal::is_internal(cfg, &path) {
        return Route::NotFound;
    }
    if let Some(end) = first_php_segment_end(&path) {
        return php_script(cfg, path, end, now);
    }

    let trailing_slash = path.ends_with('/');
    let rel = path[1..].trim_end_matches('/');
    // Refused by name, existing or not, so no spelling of a source file is served.
    if !trailing_slash && is_never_served(cfg, rel.rsplit('/').next().unwrap_or(rel)) {
        return Route::NotFound;
    }
    let target = under_root(&cfg.root, rel);
    // With no symlink on the way, the lstat chain is the file's own metadata
    // and the only stat a static file costs here.
    let (found, plain) = match walk_plain(&cfg.root, &target) {
        Walk::Plain(meta) => (Ok(meta), true),
        Walk::Missing(e) => (Err(e), false),
        Walk::NotPlain => (fs::metadata(&target), false),
    };
    match found {
        Ok(meta) if meta.is_dir() => {
            if !is_allowed_location(cfg, &target) {
                return Route::NotFound;
            }
            if !trailing_slash {
                return Route::Redirect(slash_location(&path, query));
            }
            if let Some(route) = index_route(cfg, &target, rel, now) {
                return route;
            }
        }
        // The walk above already told whether `target` is its own real path.
        Ok(meta) if meta.is_file() && !trailing_slash => {
            let seen = plain.then_some(Seen(meta));
            return static_file_if_allowed(cfg, target, seen, false);
        }
        // Sockets, FIFOs and devices are never served (reading a FIFO would block).
        Ok(_) if !trailing_slash => return Route::NotFound,
        // Missing, ENOTDIR (a file with a trailing slash), EACCES...: the path
        // names nothing we may serve.
        _ => {}
    }
    front_controller(cfg, now)
}

/// Route for a path whose segment ending at `end` is the script.
fn php_script(cfg: &RouteConfig, path: String, end: usize, now: Instant) -> Route {
    let script_name = &path[..end];
    if cfg.php_only_front_controller && cfg.front_controller.as_deref() != Some(script_name) {
        return Route::NotFound;
    }
    let file = under_root(&cfg.root, &path[1..end]);
    // nginx's `try_files $fastcgi_script_name =404`: a missing script is a 404
    // even with a front controller, so `/uploads/evil.jpg/x.php` cannot run anything.
    if !is_script_file(cfg, &file, now) {
        return Route::NotFound;
    }
    let script_name = script_name.to_owned();
    let path_info = (end < path.len()).then(|| path[end..].to_owned());
    Route::Script(Script {
        script_filename: file,
        script_name,
        path_info,
        document_uri: path,
    })
}

/// The first usable index file of the directory `dir` (URI path `/` + `rel`):
/// a PHP one runs, any other is static.
fn index_route(cfg: &RouteConfig, dir: &Path, rel: &str, now: Instant) -> Option<Route> {
    for name in &cfg.index {
        // A name with a separator or dot segment would escape the directory.
        if !is_plain_segment(name) || name.starts_with('.') {
            continue;
        }
        let file = dir.join(name);
        if !is_php_name(name) {
            if is_never_served(cfg, name) || !fs::metadata(&file).is_ok_and(|m| m.is_file()) {
                continue;
            }
            match static_file(cfg, file) {
                route @ Route::Static { .. } => return Some(route),
                _ => continue,
            }
        }
        let mut script_name = String::with_capacity(rel.len() + name.len() + 2);
        script_name.push('/');
        if !rel.is_empty() {
            script_name.push_str(rel);
            script_name.push('/');
        }
        script_name.push_str(name);
        let allowed = !cfg.php_only_front_controller
            || cfg.front_controller.as_deref() == Some(script_name.as_str());
        if allowed && is_script_file(cfg, &file, now) {
            return Some(Route::Script(Script {
                script_filename: file,
                document_uri: script_name.clone(),
                script_name,
                path_info: None,
            }));
        }
    }
    None
}

/// The front-controller fallback, or `NotFound` without one (or if it is missing).
fn front_controller(cfg: &RouteConfig, now: Instant) -> Route {
    let Some(fc) = cfg.front_controller.as_deref() else {
        return Route::NotFound;
    };
    // The config should have validated it; re-check cheaply so a bad value can
    // never point outside the root.
    let Some(rel) = fc.strip_prefix('/') else {
        return Route::NotFound;
    };
    if !rel.split('/').all(is_plain_segment) {
        return Route::NotFound;
    }
    let file = under_root(&cfg.root, rel);
    if !is_script_file(cfg, &file, now) {
        return Route::NotFound;
    }
    Route::Script(Script {
        script_filename: file,
        script_name: fc.to_owned(),
        path_info: None,
        document_uri: fc.to_owned(),
    })
}

/// A regular file the request named, if nothing about where it really lives
/// forbids sending it: a symlink may not lead out of the root (unless
/// allowed), nor to a hidden or never-served file (`notes.txt` → `config.php`).
fn static_file(cfg: &RouteConfig, file: PathBuf) -> Route {
    static_file_at(cfg, file, false)
}

/// `static_file`, where `allow_internal` lets the real file lie in an
/// internal location (for `X-Accel-Redirect`, never for a client's path).
fn static_file_at(cfg: &RouteConfig, file: PathBuf, allow_internal: bool) -> Route {
    let seen = plain_path_metadata(&cfg.root, &file)
        .filter(|meta| meta.is_file())
        .map(Seen);
    static_file_if_allowed(cfg, file, seen, allow_internal)
}

/// `file` as a static file, unless where it really lives forbids it.
/// `seen` (metadata found with no symlink on the way below the root) says
/// the file is its own real path and needs no canonicalizing.
fn static_file_if_allowed(
    cfg: &RouteConfig,
    file: PathBuf,
    seen: Option<Seen>,
    allow_internal: bool,
) -> Route {
    let canonical;
    let real: &Path = if seen.is_some() {
        &file
    } else {
        match fs::canonicalize(&file) {
            Ok(path) => {
                canonical = path;
                &canonical
            }
            Err(_) => return Route::NotFound,
        }
    };
    if !allow_internal && internal::holds_real_path(cfg, real) {
        return Route::NotFound;
    }
    let real_name = real.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let hidden = match below(&cfg.root, real) {
        Some(inside) => has_hidden_name(inside),
        None if cfg.follow_symlinks_outside_root => real_name.starts_with('.'),
        None => return Route::NotFound,
    };
    if hidden || real_name.is_empty() || is_never_served(cfg, real_name) {
        return Route::NotFound;
    }
    Route::Static { path: file, seen }
}

/// Whether a file name's extension forbids sending it as a static file.
fn is_never_served(cfg: &RouteConfig, name: &str) -> bool {
    // An editor's backup (`index.php~`) holds source as surely as the file.
    is_php_name(name)
        || name.ends_with('~')
        || cfg
            .never_serve_ext
            .iter()
            .any(|ext| has_extension(name, ext))
}

/// `root` + `rel` in one allocation. `rel` is relative (no leading '/'),
/// otherwise `push` would replace the root.
fn under_root(root: &Path, rel: &str) -> PathBuf {
    debug_assert!(!rel.starts_with('/'));
    let mut path = PathBuf::with_capacity(root.as_os_str().len() + 1 + rel.len());
    path.push(root);
    if !rel.is_empty() {
        path.push(rel);
    }
    path
}

/// A regular file whose real location is allowed (see `is_allowed_location`).
///
/// A plain one found within `script-stat-cache` of `now` is taken as still
/// there (`found_scripts`); else `metadata` first: it is one stat and
/// settles the common 404 cheaply.
fn is_script_file(cfg: &RouteConfig, file: &Path, now: Instant) -> bool {
    let valid_for = cfg.script_stat_cache;
    let caching = !valid_for.is_zero();
    if caching && found_scripts::recently_found(file, valid_for, now) {
        return true;
    }
    if let Some(meta) = plain_path_metadata(&cfg.root, file) {
        let found = meta.is_file();
        if caching && found {
            found_scripts::remember(file, valid_for, now);
        }
        return found;
    }
    fs::metadata(file).is_ok_and(|meta| meta.is_file()) && is_allowed_location(cfg, file)
}

/// The metadata of `path` when no component below the (canonical) root is a
/// symlink: then `path` is its own real path, found with one lstat per level
/// below the root instead of realpath's readlink for every component of the
/// whole path. None when something is a symlink or missing (callers fall
/// back to the full check).
fn plain_path_metadata(root: &Path, path: &Path) -> Option<fs::Metadata> {
    match walk_plain(root, path) {
        Walk::Plain(meta) => Some(meta),
        Walk::Missing(_) | Walk::NotPlain => None,
    }
}

/// What the lstat chain below the root found.
enum Walk {
    /// No symlink on the way: the path's own metadata.
    Plain(fs::Metadata),
    /// A level is missing or unreadable, so the whole path is too (the
    /// levels above it are no symlinks): the error a stat of it would give.
    Missing(std::io::Error),
    /// A symlink on the way, the root itself, or a path not below the
    /// root: stat it the usual way.
    NotPlain,
}

fn walk_plain(root: &Path, path: &Path) -> Walk {
    let Some(rel) = below(root, path) else {
        return Walk::NotPlain;
    };
    // Each level is a prefix of `path` itself (`rel` is its tail): no copy
    // to build. A prefix may keep a `.` or an empty segment that
    // `named_levels` skips; the kernel resolves it the same.
    let bytes = path.as_os_str().as_bytes();
    let rel_start = bytes.len() - rel.len();
    let mut last = None;
    for (_, end) in named_levels(rel) {
        let level = &bytes[..rel_start + end];
        let meta = match fs::symlink_metadata(OsStr::from_bytes(level)) {
            Ok(meta) => meta,
            Err(e) => return Walk::Missing(e),
        };
        if meta.file_type().is_symlink() {
            return Walk::NotPlain;
        }
        last = Some(meta);
    }
    match last {
        Some(meta) => Walk::Plain(meta),
        None => Walk::NotPlain,
    }
}

/// `path` below `root` (a canonical directory), as bytes after the
/// separator; None when `path` is neither `root` nor below it. Compared as
/// bytes: `Path::strip_prefix` walks both paths component by component and
/// took ~9 % of a static request's instructions (callgrind).
fn below<'a>(root: &Path, path: &'a Path) -> Option<&'a [u8]> {
    let root = root.as_os_str().as_bytes();
    let rest = path.as_os_str().as_bytes().strip_prefix(root)?;
    if rest.is_empty() || root.ends_with(b"/") {
        Some(rest)
    } else {
        rest.strip_prefix(b"/")
    }
}

/// Whether a real path below the root or the sendfile dir (`rel`, from
/// `below`) has a dot name, `/.well-known` at its top excepted.
fn has_hidden_name(rel: &[u8]) -> bool {
    segments(rel)
        .enumerate()
        .any(|(i, name)| name.starts_with(b".") && !(i == 0 && name == WELL_KNOWN.as_bytes()))
}

/// The names in a relative path, as `Path::components` yields them for the
/// paths built here (no empty names, no `.`).
fn segments(rel: &[u8]) -> impl Iterator<Item = &[u8]> {
    named_levels(rel).map(|(name, _)| name)
}

/// `segments`, each with where it ends in `rel`.
fn named_levels(rel: &[u8]) -> impl Iterator<Item = (&[u8], usize)> {
    rel.split(|b| *b == b'/')
        .scan(0, |start, name| {
            let end = *start + name.len();
            *start = end + 1;
            Some((name, end))
        })
        .filter(|(name, _)| !name.is_empty() && *name != b".")
}

/// Inside the root once symlinks (of the file or any parent) are resolved,
/// unless following them out of it is allowed.
///
/// A symlink into an internal location never makes it reachable.
fn is_allowed_location(cfg: &RouteConfig, path: &Path) -> bool {
    let Ok(real) = fs::canonicalize(path) else {
        return false;
    };
    (cfg.follow_symlinks_outside_root || real.starts_with(&cfg.root))
        && !internal::holds_real_path(cfg, &real)
}
