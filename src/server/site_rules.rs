//! A site's rules around routing, applied to one request: HTTP → HTTPS,
//! redirects and deny patterns before routing; response headers after.
//! Error pages, which run a request of their own, are in `handler`.

use http::request::Parts;
use http::{header, HeaderMap, Response, StatusCode, Uri};

use super::respond;
use super::site::SiteState;
use crate::body::GatewayBody;
use crate::route::path;
use crate::sites::{self, RequestVars};

/// The request path decoded and normalised, as rules match it; `None`
/// when it is not a valid path (routing answers those).
pub(crate) fn normalised_path(raw: &str) -> Option<String> {
    path::percent_decode(raw)
        .ok()
        .and_then(|decoded| path::normalise(&decoded).ok())
}

/// Whether the site has rules that look at the path.
pub(crate) fn has_path_rules(site: &SiteState) -> bool {
    !site.redirects.is_empty() || !site.deny.is_empty() || !site.headers.is_empty()
}

/// The host a request names: the target's authority (absolute form) or
/// its Host header.
pub(crate) fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    uri.host()
        .or_else(|| headers.get(header::HOST)?.to_str().ok())
        .filter(|h| !h.is_empty())
}

/// The answer a site's rules give before routing, if they do; `host` is
/// [`request_host`]'s.
pub(crate) fn before_routing(
    site: &SiteState,
    req: &Parts,
    host: Option<&str>,
    path: Option<&str>,
    https: bool,
) -> Option<Response<GatewayBody>> {
    let want_https = site.https_redirect_port.filter(|_| !https);
    if site.redirects.is_empty() && site.deny.is_empty() && want_https.is_none() {
        return None;
    }
    let host = host
        .map(sites::normalise_host)
        .or_else(|| site.server_name.clone())
        .unwrap_or_default();
    let request_uri = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if let Some(port) = want_https {
        let authority = if port == 443 {
            host
        } else {
            format!("{host}:{port}")
        };
        return Some(respond::redirect_with(
            StatusCode::MOVED_PERMANENTLY,
            &format!("https://{authority}{request_uri}"),
        ));
    }
    // A path that does not normalise still meets a whole-site redirect
    // (a redirect-only site has no root to route it in).
    let path_or_none = path.unwrap_or("");
    if let Some(redirect) = sites::redirect_for(&site.redirects, path_or_none) {
        let vars = RequestVars {
            scheme: if https { "https" } else { "http" },
            host: &host,
            server_name: site.server_name.as_deref().unwrap_or(&host),
            request_uri,
            uri: path_or_none,
            args: req.uri.query().unwrap_or(""),
        };
        let status = StatusCode::from_u16(redirect.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
        return Some(respond::redirect_with(status, &redirect.location(&vars)));
    }
    let path = path?;
    if site.deny.iter().any(|rule| rule.matches(path)) {
        return Some(respond::forbidden());
    }
    None
}

/// Adds the site's `add-header` headers that apply to this answer.
pub(crate) fn add_headers(site: &SiteState, path: Option<&str>, resp: &mut Response<GatewayBody>) {
    if site.headers.is_empty() {
        return;
    }
    let status = resp.status().as_u16();
    let path = path.unwrap_or("/");
    let headers = resp.headers_mut();
    for rule in sites::headers_for(&site.headers, path, status) {
        headers.append(rule.name.clone(), rule.value.clone());
    }
}
