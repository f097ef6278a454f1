//! GET/HEAD of the files `route` chose: content type, precompressed
//! siblings, ETag/Last-Modified and 304, single byte ranges, per-extension
//! Cache-Control, and a body streamed from disk. Decides nothing about what
//! may be served; that is `route`'s job.

mod contents;
mod file_body;
mod negotiate;
mod range;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use headers::{ContentRange, HeaderMapExt};
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use quick_cache::sync::Cache;
use std::io::{Read, Seek};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use tokio::fs::File;

/// Files up to this size are read whole and sent as one buffer.
const SMALL_FILE: u64 = 256 * 1024;

use crate::body::GatewayBody;
use file_body::FileBody;
use negotiate::Validators;
pub(crate) use negotiate::{accepted_weight, Encoding};
use range::RangeRequest;

/// Static-file settings, built once from the config.
#[derive(Debug, Clone, Default)]
pub struct StaticConfig {
    /// Lowercase extension (no dot) → Cache-Control value.
    cache_control: HashMap<String, HeaderValue>,
}

impl StaticConfig {
    /// `cache_control`: (extension, Cache-Control value) pairs, as validated by
    /// the config; an extension may carry a leading dot.
    pub fn new(cache_control: &[(String, String)]) -> Self {
        let cache_control = cache_control
            .iter()
            .filter_map(|(ext, value)| {
                let ext = ext.trim_start_matches('.').to_ascii_lowercase();
                match HeaderValue::from_str(value) {
                    Ok(v) => Some((ext, v)),
                    Err(_) => {
                        tracing::warn!(%ext, "ignoring a Cache-Control value that is not a valid header value");
                        None
                    }
                }
            })
            .collect();
        StaticConfig { cache_control }
    }

    fn cache_control_for(&self, path: &Path) -> Option<&HeaderValue> {
        if self.cache_control.is_empty() {
            return None;
        }
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        self.cache_control.get(&ext)
    }
}

/// Why a static file could not be sent; `server::respond` turns it into a status.
#[derive(Debug, thiserror::Error)]
pub enum StaticError {
    /// Only GET and HEAD read a file: 405 with `Allow: GET, HEAD`.
    #[error("method not allowed for a static file")]
    MethodNotAllowed,
    /// Gone or no longer a regular file since routing: 404.
    #[error("{} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Answers a GET or HEAD for `path`, a regular file that routing allowed.
/// `seen`: its metadata as routing found it (a stat of `path`), if it did.
pub async fn serve(
    cfg: &StaticConfig,
    path: &Path,
    seen: Option<&std::fs::Metadata>,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response<GatewayBody>, StaticError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(StaticError::MethodNotAllowed);
    }
    // File system calls here are synchronous: stat/open/read of a cached
    // file take microseconds, far less than a hop to the blocking pool.
    let (variant, has_variants) = choose_variant(path, headers);
    let (source, meta, encoding, read_from) = match &variant {
        Some((enc, sibling)) => match source_of(sibling, None) {
            Ok((source, meta)) => (source, meta, Some(*enc), sibling.as_path()),
            // Vanished since the check: fall back to the file itself.
            Err(_) => {
                let (source, meta) = source_of(path, seen)?;
                (source, meta, None, path)
            }
        },
        None => {
            let (source, meta) = source_of(path, seen)?;
            (source, meta, None, path)
        }
    };
    let len = meta.len();
    let validators = Validators::new(len, meta.modified().ok(), encoding);

    let not_modified = validators.not_modified(headers);
    // Ranges belong to GET; a HEAD answers as the plain GET would.
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(value)
            if method == Method::GET && !not_modified && validators.range_applies(headers) =>
        {
            range::parse(value, len)
        }
        _ => RangeRequest::Full,
    };

    let mut resp = Response::new(GatewayBody::empty());
    let h = resp.headers_mut();
    validators.insert_into(h);
    if let Some(value) = cfg.cache_control_for(path) {
        h.insert(header::CACHE_CONTROL, value.clone());
    }
    if has_variants {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if not_modified {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(resp);
    }

    h.insert(header::CONTENT_TYPE, cached_content_type(path));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(enc) = encoding {
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(enc.token()),
        );
    }

    let (start, count) = match range {
        RangeRequest::Full => (0, len),
        RangeRequest::Part { start, end } => {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            // Only an open end makes `bytes` fail, and this one is closed.
            if let Ok(content_range) = ContentRange::bytes(start..=end, len) {
                resp.headers_mut().typed_insert(content_range);
            }
            (start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => {
            *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            let h = resp.headers_mut();
            h.typed_insert(ContentRange::unsatisfied_bytes(len));
            h.remove(header::CONTENT_TYPE);
            h.remove(header::CONTENT_ENCODING);
            return Ok(resp);
        }
    };
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if method == Method::HEAD || count == 0 {
        return Ok(resp);
    }
    let io_err = |source| StaticError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = match source {
        // Its identity matched the file's, so its length is `len`.
        Source::Remembered(data) => {
            let part = data.slice(start as usize..(start + count) as usize);
            *resp.body_mut() = GatewayBody::full(part);
            return Ok(resp);
        }
        Source::File(file) => file,
    };
    if start > 0 {
        file.seek(io::SeekFrom::Start(start)).map_err(io_err)?;
    }
    if count <= SMALL_FILE {
        // Small files go out as one buffer: no per-chunk reads, no extra task hops.
        let mut data = vec![0u8; count as usize];
        file.read_exact(&mut data).map_err(io_err)?;
        let data = bytes::Bytes::from(data);
        if count == len {
            contents::remember(read_from, &meta, &data);
        }
        *resp.body_mut() = GatewayBody::full(data);
    } else {
        *resp.body_mut() = GatewayBody::boxed(FileBody::new(File::from_std(file), count));
    }
    Ok(resp)
}

/// Where a file's bytes come from.
enum Source {
    /// Read before, and the file is still the same (`contents`).
    Remembered(bytes::Bytes),
    File(std::fs::File),
}

/// The remembered contents of `path` if still current, else the file opened.
/// `seen`: a stat of `path` just taken, which spares taking another.
fn source_of(
    path: &Path,
    seen: Option<&std::fs::Metadata>,
) -> Result<(Source, std::fs::Metadata), StaticError> {
    if let Some((data, meta)) = contents::lookup(path, seen) {
        return Ok((Source::Remembered(data), meta));
    }
    let (file, meta) = open_file(path)?;
    Ok((Source::File(file), meta))
}

/// The precompressed sibling to send, if the client accepts one that exists,
/// and whether any exists at all (then responses vary by Accept-Encoding).
///
/// A sibling must be a plain regular file: a symlink is ignored, so a link
/// cannot route around what `route` allowed for the file itself.
fn choose_variant(path: &Path, headers: &HeaderMap) -> (Option<(Encoding, PathBuf)>, bool) {
    let existing = existing_siblings(path);
    let mut best: Option<(u16, Encoding)> = None;
    for (enc, exists) in Encoding::ALL.into_iter().zip(existing) {
        if !exists {
            continue;
        }
        let weight = accepted_weight(headers, enc);
        // Strictly greater: on a tie the earlier (preferred) encoding stays.
        if weight > 0 && best.is_none_or(|(w, _)| weight > w) {
            best = Some((weight, enc));
        }
    }
    let any = existing.contains(&true);
    (best.map(|(_, enc)| (enc, sibling_path(path, enc))), any)
}

/// How long what was seen of a file's siblings is trusted. Looking costs a
/// stat per encoding on every request, two of a small file's seven syscalls;
/// a sibling added or removed shows within this time (a removed one that is
/// still chosen falls back to the file itself).
const SIBLINGS_FRESH_FOR: Duration = Duration::from_secs(1);

/// Files whose siblings are remembered; past this many, those used least
/// lately make room.
const SIBLINGS_CACHE_MAX: usize = 4096;

/// Keyed by the path's bytes (cheaper to hash than a `Path`).
type SiblingCache = Cache<Box<[u8]>, (Instant, [bool; Encoding::ALL.len()])>;

/// Which of `path`'s precompressed siblings exist as regular files, as seen
/// within the last `SIBLINGS_FRESH_FOR`.
fn existing_siblings(path: &Path) -> [bool; Encoding::ALL.len()] {
    static CACHE: OnceLock<SiblingCache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Cache::new(SIBLINGS_CACHE_MAX));
    let now = Instant::now();
    let key = path.as_os_str().as_bytes();
    if let Some((seen, existing)) = cache.get(key) {
        if now.duration_since(seen) < SIBLINGS_FRESH_FOR {
            return existing;
        }
    }
    let existing = Encoding::ALL.map(|enc| {
        std::fs::symlink_metadata(sibling_path(path, enc)).is_ok_and(|m| m.file_type().is_file())
    });
    cache.insert(Box::from(key), (now, existing));
    existing
}

fn sibling_path(path: &Path, enc: Encoding) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(enc.suffix());
    PathBuf::from(name)
}

/// Opens and checks the file through its descriptor, so what is sent is
/// what was checked even if the name changes meanwhile.
fn open_file(path: &Path) -> Result<(std::fs::File, std::fs::Metadata), StaticError> {
    let io_err = |source: io::Error| match source.kind() {
        io::ErrorKind::NotFound => StaticError::NotAFile {
            path: path.to_owned(),
        },
        _ => StaticError::Io {
            path: path.to_owned(),
            source,
        },
    };
    // O_NONBLOCK: opening a FIFO swapped in after routing must not hang.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(StaticError::NotAFile {
            path: path.to_owned(),
        });
    }
    Ok((file, meta))
}

/// Extensions remembered, far more than a site's handful; past this many,
/// those used least lately make room.
const CONTENT_TYPE_CACHE_MAX: usize = 1024;

/// `content_type`, remembered per lowercase extension: guessing parses a MIME
/// type and formats a string on every request, ~3k instructions of a static
/// request's ~32k (callgrind).
fn cached_content_type(path: &Path) -> HeaderValue {
    static CACHE: OnceLock<Cache<Box<str>, HeaderValue>> = OnceLock::new();
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
        return content_type(path);
    };
    let cache = CACHE.get_or_init(|| Cache::new(CONTENT_TYPE_CACHE_MAX));
    // Most extensions are lowercase already: no String for those.
    let lowered;
    let ext = if ext.bytes().any(|b| b.is_ascii_uppercase()) {
        lowered = ext.to_ascii_lowercase();
        lowered.as_str()
    } else {
        ext
    };
    if let Some(value) = cache.get(ext) {
        return value;
    }
    let value = content_type(path);
    cache.insert(Box::from(ext), value.clone());
    value
}

/// From the extension; text types are declared UTF-8 (browsers would
/// otherwise guess, and the usual web tooling writes UTF-8).
fn content_type(path: &Path) -> HeaderValue {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let textual = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            mime.essence_str(),
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        )
        || mime
            .suffix()
            .is_some_and(|s| s == mime_guess::mime::JSON || s == mime_guess::mime::XML);
    let value = if textual && mime.get_param("charset").is_none() {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.to_string()
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

#[cfg(test)]
mod tests;
