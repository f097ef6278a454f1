//! What a site's config adds around routing, as nginx server blocks do it:
//! error pages (`error_page`), response headers (`add_header`), redirects
//! (`return 3xx`) and deny patterns (`location ~ … { deny all; }`). Pure:
//! parsing the config's text and deciding; the handler applies them.

use http::{HeaderName, HeaderValue};

/// One `error-page` entry: these statuses get that page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPage {
    pub statuses: Vec<u16>,
    pub target: ErrorTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorTarget {
    /// A URI path under the root, served or run as a GET for it would be.
    /// `keep_status`: the answer keeps the error's status (nginx without `=`).
    Page { path: String, keep_status: bool },
    /// An absolute URL: 302 to it.
    Url(String),
}

impl ErrorPage {
    /// `statuses` as the key (`"500 502 503"`, commas also taken), `target`
    /// as the value (`/50x.html`, `=/index.php`, `https://…`).
    pub fn parse(statuses: &str, target: &str) -> Result<ErrorPage, String> {
        let statuses = statuses
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u16>()
                    .ok()
                    .filter(|n| (300..=599).contains(n))
                    .ok_or_else(|| format!("`{s}` is not a status from 300 to 599"))
            })
            .collect::<Result<Vec<u16>, String>>()?;
        if statuses.is_empty() {
            return Err("no status given".to_owned());
        }
        let target = target.trim();
        let target = if target.starts_with("http://") || target.starts_with("https://") {
            HeaderValue::from_str(target).map_err(|_| format!("`{target}` is not a valid URL"))?;
            ErrorTarget::Url(target.to_owned())
        } else {
            let (path, keep_status) = match target.strip_prefix('=') {
                Some(path) => (path.trim(), false),
                None => (target, true),
            };
            if !path.starts_with('/') || path.contains(char::is_control) {
                return Err(format!(
                    "`{target}`: expected a path starting with /, `=/path` or an http(s) URL"
                ));
            }
            ErrorTarget::Page {
                path: path.to_owned(),
                keep_status,
            }
        };
        Ok(ErrorPage { statuses, target })
    }

    /// From a flag: `CODES=TARGET`, e.g. `404=/index.php`, `500 502=/50x.html`,
    /// `404==/index.php`.
    pub fn parse_flag(text: &str) -> Result<ErrorPage, String> {
        let (codes, target) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}`: expected CODES=TARGET, e.g. 404=/index.php"))?;
        ErrorPage::parse(codes, target)
    }
}

/// The page for `status`, if one is configured.
pub fn error_page_for(pages: &[ErrorPage], status: u16) -> Option<&ErrorTarget> {
    pages
        .iter()
        .find(|p| p.statuses.contains(&status))
        .map(|p| &p.target)
}

/// One `add-header` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRule {
    pub name: HeaderName,
    pub value: HeaderValue,
    /// Only for paths under this prefix; `None`: the whole site.
    pub prefix: Option<String>,
    /// Also on answers other than nginx's "success" statuses.
    pub always: bool,
}

/// The statuses nginx's `add_header` (without `always`) applies to.
const ADD_HEADER_STATUSES: [u16; 10] = [200, 201, 204, 206, 301, 302, 303, 304, 307, 308];

impl HeaderRule {
    /// `Name: value`.
    pub fn parse_line(text: &str) -> Result<HeaderRule, String> {
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| format!("`{text}`: expected `Name: value`"))?;
        HeaderRule::new(name.trim(), value.trim(), None, false)
    }

    pub fn new(
        name: &str,
        value: &str,
        prefix: Option<&str>,
        always: bool,
    ) -> Result<HeaderRule, String> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a header name"))?;
        let value =
            HeaderValue::from_str(value).map_err(|_| format!("`{value}` is not a header value"))?;
        if let Some(prefix) = prefix {
            if !prefix.starts_with('/') {
                return Err(format!("prefix `{prefix}` must start with /"));
            }
        }
        Ok(HeaderRule {
            name,
            value,
            prefix: prefix.map(str::to_owned),
            always,
        })
    }
}

/// The headers to add to an answer with `status` for `path`: those of the
/// longest matching prefix if any matches (they replace the site's own, as
/// an `add_header` in a `location` does), else the site's own.
pub fn headers_for<'a>(
    rules: &'a [HeaderRule],
    path: &str,
    status: u16,
) -> impl Iterator<Item = &'a HeaderRule> {
    let level = rules
        .iter()
        .filter_map(|r| r.prefix.as_deref())
        .filter(|p| path.starts_with(p))
        .max_by_key(|p| p.len());
    let success = ADD_HEADER_STATUSES.contains(&status);
    rules
        .iter()
        .filter(move |r| r.prefix.as_deref() == level)
        .filter(move |r| r.always || success)
}

/// Which requests a redirect takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    All,
    Exact(String),
    Prefix(String),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::All => true,
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

/// One `redirect` entry (nginx `return 3xx URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub when: PathMatch,
    /// With `$variables` (see [`RequestVars`]).
    pub to: String,
    pub status: u16,
}

/// The variables a redirect's target may use.
const VARIABLES: [&str; 7] = [
    "request_uri",
    "query_string",
    "server_name",
    "scheme",
    "host",
    "args",
    "uri",
];

impl Redirect {
    pub fn new(when: PathMatch, to: &str, status: u16) -> Result<Redirect, String> {
        if ![301, 302, 303, 307, 308].contains(&status) {
            return Err(format!(
                "status {status}: expected 301, 302, 303, 307 or 308"
            ));
        }
        if to.is_empty() || to.contains(char::is_control) {
            return Err(format!("`{to}` is not a redirect target"));
        }
        // Every `$name` must be one we know, so a typo is an error, not a
        // literal dollar in a Location.
        let mut rest = to;
        while let Some(at) = rest.find('$') {
            rest = &rest[at + 1..];
            let Some(name) = VARIABLES.iter().find(|v| rest.starts_with(*v)) else {
                return Err(format!(
                    "`{to}`: unknown variable; known: ${}",
                    VARIABLES.join(", $")
                ));
            };
            rest = &rest[name.len()..];
        }
        Ok(Redirect {
            when,
            to: to.to_owned(),
            status,
        })
    }

    /// The Location for a request.
    pub fn location(&self, vars: &RequestVars<'_>) -> String {
        let mut out = String::with_capacity(self.to.len() + 64);
        let mut rest = self.to.as_str();
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            // Longest names first in VARIABLES, so `$args` is not `$a`+…
            match VARIABLES.iter().find(|v| rest.starts_with(*v)) {
                Some(name) => {
                    out.push_str(vars.get(name));
                    rest = &rest[name.len()..];
                }
                None => out.push('$'),
            }
        }
        out.push_str(rest);
        out
    }
}

/// The first redirect that takes `path`.
pub fn redirect_for<'a>(redirects: &'a [Redirect], path: &str) -> Option<&'a Redirect> {
    redirects.iter().find(|r| r.when.matches(path))
}

/// A request as redirect targets see it.
#[derive(Debug, Clone, Copy)]
pub struct RequestVars<'a> {
    pub scheme: &'a str,
    /// Without port.
    pub host: &'a str,
    pub server_name: &'a str,
    /// Path and query as sent.
    pub request_uri: &'a str,
    /// Decoded and normalised path.
    pub uri: &'a str,
    pub args: &'a str,
}

impl RequestVars<'_> {
    fn get(&self, name: &str) -> &str {
        match name {
            "scheme" => self.scheme,
            "host" => self.host,
            "server_name" => self.server_name,
            "request_uri" => self.request_uri,
            "uri" => self.uri,
            _ => self.args,
        }
    }
}

/// One `deny` pattern: a path it matches gets 403.
#[derive(Debug, Clone)]
pub struct DenyRule {
    source: String,
    regex: regex::Regex,
}

impl DenyRule {
    pub fn new(pattern: &str) -> Result<DenyRule, String> {
        let regex = regex::Regex::new(pattern).map_err(|e| {
            // The regex crate's message spans lines; keep its last, which says why.
            let why = e.to_string();
            let why = why.lines().last().unwrap_or("invalid").trim().to_owned();
            format!("`{pattern}` is not a regular expression: {why}")
        })?;
        Ok(DenyRule {
            source: pattern.to_owned(),
            regex,
        })
    }

    pub fn matches(&self, path: &str) -> bool {
        self.regex.is_match(path)
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

impl PartialEq for DenyRule {
    fn eq(&self, other: &DenyRule) -> bool {
        self.source == other.source
    }
}

impl Eq for DenyRule {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_pages_parse_as_nginx_writes_them() {
        let page = ErrorPage::parse("500 502,503", "/50x.html").unwrap();
        assert_eq!(page.statuses, [500, 502, 503]);
        assert_eq!(
            page.target,
            ErrorTarget::Page {
                path: "/50x.html".into(),
                keep_status: true
            }
        );
        let own = ErrorPage::parse_flag("404==/index.php").unwrap();
        assert_eq!(
            own.target,
            ErrorTarget::Page {
                path: "/index.php".into(),
                keep_status: false
            }
        );
        assert!(matches!(
            ErrorPage::parse("410", "https://example.com/")
                .unwrap()
                .target,
            ErrorTarget::Url(_)
        ));
        assert!(ErrorPage::parse("200", "/x").is_err());
        assert!(ErrorPage::parse("404", "x.html").is_err());
        assert!(ErrorPage::parse("", "/x").is_err());
        assert_eq!(
            error_page_for(&[page], 502),
            Some(&ErrorTarget::Page {
                path: "/50x.html".into(),
                keep_status: true
            })
        );
    }

    #[test]
    fn headers_follow_nginx_status_rule_and_location_inheritance() {
        let rules = vec![
            HeaderRule::parse_line("X-Frame-Options: SAMEORIGIN").unwrap(),
            HeaderRule::new("X-Always", "1", None, true).unwrap(),
            HeaderRule::new("Access-Control-Allow-Origin", "*", Some("/api/"), false).unwrap(),
        ];
        let names = |path, status| -> Vec<String> {
            headers_for(&rules, path, status)
                .map(|r| r.name.to_string())
                .collect()
        };
        assert_eq!(names("/", 200), ["x-frame-options", "x-always"]);
        assert_eq!(names("/", 404), ["x-always"]);
        // A prefix level replaces the site's own headers.
        assert_eq!(names("/api/x", 200), ["access-control-allow-origin"]);
        assert!(names("/api/x", 500).is_empty());
        assert!(HeaderRule::parse_line("no colon").is_err());
        assert!(HeaderRule::parse_line("Bad Name: x").is_err());
    }

    #[test]
    fn redirects_expand_variables_and_refuse_unknown_ones() {
        let r = Redirect::new(PathMatch::All, "https://$host$request_uri", 301).unwrap();
        let vars = RequestVars {
            scheme: "http",
            host: "example.com",
            server_name: "example.com",
            request_uri: "/a?b=1",
            uri: "/a",
            args: "b=1",
        };
        assert_eq!(r.location(&vars), "https://example.com/a?b=1");
        let q = Redirect::new(
            PathMatch::Exact("/old".into()),
            "$scheme://x$uri?$args",
            302,
        )
        .unwrap();
        assert_eq!(q.location(&vars), "http://x/a?b=1");
        assert!(Redirect::new(PathMatch::All, "https://$hots/", 301).is_err());
        assert!(Redirect::new(PathMatch::All, "/x", 200).is_err());
        let list = [q, r];
        assert_eq!(redirect_for(&list, "/old").map(|r| r.status), Some(302));
        assert_eq!(redirect_for(&list, "/other").map(|r| r.status), Some(301));
    }

    #[test]
    fn deny_patterns_are_regular_expressions() {
        let ht = DenyRule::new(r"/\.ht").unwrap();
        assert!(ht.matches("/a/.htaccess"));
        assert!(!ht.matches("/a/htaccess"));
        let vendor = DenyRule::new("^/vendor/").unwrap();
        assert!(vendor.matches("/vendor/x.php"));
        assert!(!vendor.matches("/app/vendor/x.php"));
        let err = DenyRule::new("(").unwrap_err();
        assert!(!err.contains('\n'), "{err}");
    }
}
