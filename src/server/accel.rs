//! Response headers meant for the gateway, not the client:
//! `X-Accel-Redirect` / `X-Sendfile` (send this file instead of my body) and
//! `X-Accel-Buffering` (stream me as I come). They are taken out of the
//! head here, so they never reach the client.

use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};

use super::respond;
use super::site::SiteState;
use crate::body::GatewayBody;
use crate::cgi::response::CgiHead;
use crate::route::{self, Route};
use crate::static_files;

const X_ACCEL_REDIRECT: &str = "x-accel-redirect";
const X_SENDFILE: &str = "x-sendfile";
const X_ACCEL_BUFFERING: &str = "x-accel-buffering";

/// What the application asked of the gateway.
#[derive(Debug, Default)]
pub(crate) struct Directives {
    /// Send this file instead of the body.
    pub file: Option<FileRequest>,
    /// `X-Accel-Buffering: no`: never hold back or compress this response.
    pub unbuffered: bool,
}

#[derive(Debug)]
pub(crate) enum FileRequest {
    /// A URI path under the root (internal locations allowed).
    AccelRedirect(String),
    /// An absolute file system path inside `--sendfile-dir`.
    Sendfile(String),
}

/// Removes the gateway's headers from `head` and says what they asked.
/// X-Accel-Redirect wins over X-Sendfile when a script sends both.
pub(crate) fn take_directives(head: &mut CgiHead) -> Directives {
    let mut d = Directives::default();
    let mut sendfile = None;
    head.headers.retain(|(name, value)| {
        let text = || String::from_utf8_lossy(value.as_bytes()).trim().to_owned();
        match name.as_str() {
            X_ACCEL_REDIRECT => {
                d.file = Some(FileRequest::AccelRedirect(text()));
                false
            }
            X_SENDFILE => {
                sendfile = Some(FileRequest::Sendfile(text()));
                false
            }
            X_ACCEL_BUFFERING => {
                d.unbuffered = value.as_bytes().eq_ignore_ascii_case(b"no");
                false
            }
            _ => true,
        }
    });
    if d.file.is_none() {
        d.file = sendfile;
    }
    d
}

/// PHP's own Content-Type when a script set none: it says nothing about the file.
const PHP_DEFAULT_CONTENT_TYPE: &[u8] = b"text/html; charset=UTF-8";

/// Headers that describe the file's bytes, so the file's own values stand.
fn describes_body(name: &HeaderName) -> bool {
    *name == header::CONTENT_LENGTH
        || *name == header::CONTENT_ENCODING
        || *name == header::CONTENT_RANGE
        || *name == header::ETAG
        || *name == header::LAST_MODIFIED
        || *name == header::ACCEPT_RANGES
}

/// Whether `request` names a file the gateway will send; `None` means the
/// application's own body goes out (X-Sendfile without `--sendfile-dir`).
pub(crate) fn resolve(
    state: &SiteState,
    routing: &route::RouteConfig,
    request: &FileRequest,
) -> Option<Route> {
    match request {
        FileRequest::AccelRedirect(uri) => Some(route::accel_redirect_target(routing, uri)),
        FileRequest::Sendfile(path) => match &state.sendfile_dir {
            Some(dir) => Some(route::sendfile_target(routing, dir, path)),
            None => {
                tracing::warn!(path = %path, "X-Sendfile ignored: no --sendfile-dir is configured");
                None
            }
        },
    }
}

/// Sends the file `target` chose as the answer, as a GET (or HEAD) of a
/// static file: conditional requests and ranges work. The application's
/// headers are kept, except those describing its body; its Content-Type and
/// Content-Disposition win over the file's when it set them.
pub(crate) async fn serve(
    state: &SiteState,
    target: Route,
    app_headers: Vec<(HeaderName, HeaderValue)>,
    method: &Method,
    req_headers: &HeaderMap,
) -> Response<GatewayBody> {
    let (path, seen) = match target {
        Route::Static { path, seen } => (path, seen),
        other => {
            tracing::warn!(target = ?other, "the file named by X-Accel-Redirect/X-Sendfile cannot be sent");
            return respond::not_found();
        }
    };
    // As nginx does: the file is fetched with GET whatever the script answered.
    let method = if method == Method::HEAD {
        Method::HEAD
    } else {
        Method::GET
    };
    let mut resp = match static_files::serve(
        &state.static_files,
        &path,
        seen.as_ref().map(|s| &s.0),
        &method,
        req_headers,
    )
    .await
    {
        Ok(resp) => resp,
        Err(e) => {
            tracing::warn!(error = %e, "X-Accel-Redirect/X-Sendfile file not served");
            return respond::static_error(&e);
        }
    };
    let success = resp.status().is_success();
    let headers = resp.headers_mut();
    let mut replaced: Vec<HeaderName> = Vec::new();
    for (name, value) in app_headers {
        if describes_body(&name) {
            continue;
        }
        if name == header::CONTENT_TYPE
            && (!success || value.as_bytes() == PHP_DEFAULT_CONTENT_TYPE)
        {
            continue;
        }
        // The application's value replaces the file's (repeats stay: Set-Cookie).
        if !replaced.contains(&name) {
            headers.remove(&name);
            replaced.push(name.clone());
        }
        headers.append(name, value);
    }
    if resp.status() == StatusCode::NOT_MODIFIED {
        resp.headers_mut().remove(header::CONTENT_DISPOSITION);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(pairs: &[(&'static str, &'static str)]) -> CgiHead {
        CgiHead {
            status: StatusCode::OK,
            headers: pairs
                .iter()
                .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
                .collect(),
        }
    }

    #[test]
    fn gateway_headers_are_taken_out() {
        let mut h = head(&[
            ("x-accel-redirect", " /protected/a.zip "),
            ("x-sendfile", "/srv/files/a.zip"),
            ("x-accel-buffering", "No"),
            ("content-type", "application/zip"),
        ]);
        let d = take_directives(&mut h);
        assert!(
            matches!(d.file, Some(FileRequest::AccelRedirect(ref p)) if p == "/protected/a.zip")
        );
        assert!(d.unbuffered);
        assert_eq!(h.headers.len(), 1);
        let mut h = head(&[("x-sendfile", "/srv/a"), ("x-accel-buffering", "yes")]);
        let d = take_directives(&mut h);
        assert!(matches!(d.file, Some(FileRequest::Sendfile(ref p)) if p == "/srv/a"));
        assert!(!d.unbuffered);
        assert!(h.headers.is_empty());
        let d = take_directives(&mut head(&[("content-type", "text/plain")]));
        assert!(d.file.is_none() && !d.unbuffered);
    }
}
