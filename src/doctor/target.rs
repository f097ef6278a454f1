//! The URL `doctor` was given, and the string work on paths below it: the
//! one origin every probe goes to, the directory probes go under, and links
//! found on pages turned into paths of that origin (or dropped).

use http::Uri;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub scheme: Scheme,
    /// The host as written, without the brackets of an IPv6 literal: what is
    /// resolved and what TLS names.
    pub host: String,
    pub port: u16,
    /// The `Host` header: the URL's authority as written (port included
    /// only when it was).
    pub authority: String,
    /// The start page, in origin form (path and query).
    pub start: String,
}

impl Target {
    /// Accepts `http://` and `https://` URLs with a host; no user info,
    /// since doctor never sends credentials.
    pub fn parse(url: &str) -> Result<Target, String> {
        let bad = |why: &str| format!("{url:?} is not a usable URL: {why}");
        // A fragment is the browser's business; http::Uri would refuse it.
        let without_fragment = url.split('#').next().unwrap_or(url);
        let uri: Uri = without_fragment.parse().map_err(|e| bad(&format!("{e}")))?;
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            Some(other) => return Err(bad(&format!("scheme {other:?} (want http or https)"))),
            None => return Err(bad("no scheme (want http:// or https://)")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user info in the URL is not supported"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = authority.port_u16().unwrap_or(match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        });
        let start = match uri.path_and_query() {
            Some(pq) if !pq.as_str().is_empty() && pq.as_str() != "/" => {
                if pq.as_str().starts_with('/') {
                    pq.as_str().to_owned()
                } else {
                    // "http://h?x" has an empty path.
                    format!("/{}", pq.as_str())
                }
            }
            _ => "/".to_owned(),
        };
        Ok(Target {
            scheme,
            host,
            port,
            authority: authority.as_str().to_owned(),
            start,
        })
    }

    /// The full URL of an origin-form target, for reports.
    pub fn url(&self, target: &str) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{scheme}://{}{target}", self.authority)
    }

    /// Whether `scheme://authority` names this same origin (host compared
    /// without case, the port by its effective value).
    fn same_origin(&self, uri: &Uri) -> bool {
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            _ => return false,
        };
        let Some(authority) = uri.authority() else {
            return false;
        };
        let port = authority.port_u16().unwrap_or(match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        });
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        scheme == self.scheme
            && port == self.port
            && host.eq_ignore_ascii_case(&self.host)
            && !authority.as_str().contains('@')
    }

    /// A link (an `href`/`src` value or a `Location`) as seen on the page at
    /// `page`, turned into an origin-form target of this origin; `None` for
    /// other hosts, other schemes and fragments. The query is kept.
    pub fn resolve(&self, page: &str, link: &str) -> Option<String> {
        let link = decode_entities(link.trim());
        let link = link.split('#').next().unwrap_or("");
        if link.is_empty() {
            return None;
        }
        let absolute = if link.starts_with("//") {
            let scheme = match self.scheme {
                Scheme::Http => "http:",
                Scheme::Https => "https:",
            };
            Some(format!("{scheme}{link}"))
        } else if has_scheme(link) {
            Some(link.to_owned())
        } else {
            None
        };
        let joined = match absolute {
            Some(abs) => {
                let uri: Uri = abs.parse().ok()?;
                if !self.same_origin(&uri) {
                    return None;
                }
                match uri.path_and_query() {
                    Some(pq) if pq.as_str().starts_with('/') => pq.as_str().to_owned(),
                    Some(pq) => format!("/{}", pq.as_str()),
                    None => "/".to_owned(),
                }
            }
            None if link.starts_with('/') => link.to_owned(),
            None if link.starts_with('?') => format!("{}{link}", path_of(page)),
            None => format!("{}{link}", dir_of(page)),
        };
        let (path, query) = match joined.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (joined.as_str(), None),
        };
        let path = remove_dot_segments(path);
        // Only what a request line can carry as it is.
        let out = match query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        (out.parse::<Uri>().is_ok() && !out.contains(' ')).then_some(out)
    }
}

/// `mailto:`, `javascript:`, `https:`...: a scheme before any `/`, `?` or `#`.
fn has_scheme(link: &str) -> bool {
    match link.find(':') {
        Some(colon) => {
            let head = &link[..colon];
            !head.is_empty()
                && head
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// The path of an origin-form target, without its query.
pub fn path_of(target: &str) -> &str {
    target.split('?').next().unwrap_or(target)
}

/// The directory of a target's path, ending in `/`: `/a/b.php?x` → `/a/`.
pub fn dir_of(target: &str) -> &str {
    let path = path_of(target);
    match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "/",
    }
}

/// The lowercase extension of a path's last segment, without the dot.
pub fn extension_of(path: &str) -> Option<String> {
    let last = path_of(path).rsplit('/').next().unwrap_or("");
    let (stem, ext) = last.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

/// RFC 3986's dot-segment removal, on the path only.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// The entities that appear in URLs inside HTML attributes.
fn decode_entities(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&#38;", "&")
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(url: &str) -> Target {
        match Target::parse(url) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn parses_what_a_person_types() {
        let a = t("http://127.0.0.1:8080");
        assert_eq!(
            (a.host.as_str(), a.port, a.start.as_str()),
            ("127.0.0.1", 8080, "/")
        );
        assert_eq!(a.authority, "127.0.0.1:8080");
        let b = t("https://Example.org/app/index.php?x=1#top");
        assert_eq!(b.scheme, Scheme::Https);
        assert_eq!((b.port, b.start.as_str()), (443, "/app/index.php?x=1"));
        assert_eq!(b.authority, "Example.org");
        let c = t("http://[::1]:9000/");
        assert_eq!(
            (c.host.as_str(), c.authority.as_str()),
            ("::1", "[::1]:9000")
        );
        assert_eq!(c.url("/x"), "http://[::1]:9000/x");
    }

    #[test]
    fn refuses_what_it_cannot_probe() {
        for url in [
            "ftp://h/",
            "/just/a/path",
            "http://user:pw@h/",
            "h:80",
            "not a url",
        ] {
            assert!(Target::parse(url).is_err(), "{url} accepted");
        }
    }

    #[test]
    fn links_resolve_to_this_origin_only() {
        let s = t("http://h:8080/shop/");
        let page = "/shop/index.php";
        assert_eq!(
            s.resolve(page, "img/a.jpg").as_deref(),
            Some("/shop/img/a.jpg")
        );
        assert_eq!(
            s.resolve(page, "../robots.txt").as_deref(),
            Some("/robots.txt")
        );
        assert_eq!(
            s.resolve(page, "/a/./b/../c.css").as_deref(),
            Some("/a/c.css")
        );
        assert_eq!(
            s.resolve(page, "?p=2&amp;q=3").as_deref(),
            Some("/shop/index.php?p=2&q=3")
        );
        assert_eq!(
            s.resolve(page, "http://H:8080/x.js#f").as_deref(),
            Some("/x.js")
        );
        assert_eq!(s.resolve(page, "//h:8080/y.js").as_deref(), Some("/y.js"));
        for off in [
            "http://h/x.js",
            "https://h:8080/x.js",
            "http://other:8080/x.js",
            "mailto:a@b",
            "javascript:void(0)",
            "#top",
            "",
        ] {
            assert_eq!(s.resolve(page, off), None, "{off}");
        }
    }

    #[test]
    fn path_helpers() {
        assert_eq!(dir_of("/a/b.php?x=/y"), "/a/");
        assert_eq!(dir_of("/"), "/");
        assert_eq!(extension_of("/a/Photo.JPG"), Some("jpg".into()));
        assert_eq!(extension_of("/a/.env"), None);
        assert_eq!(extension_of("/a/b/"), None);
        assert_eq!(extension_of("/x.php?y=1.2"), Some("php".into()));
    }
}
