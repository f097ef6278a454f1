//! What the importer learns of one nginx `server` (or the `http` level it
//! inherits from), in the gateway's terms (docs/sites.md).

use super::values::Listen;

/// One `add_header`, as a `[[add-header]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
    pub always: bool,
    /// The prefix location it was written in, if any.
    pub prefix: Option<String>,
}

/// One `return 3xx`, as a `[[redirect]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `location = /x`: exactly this path.
    pub path: Option<String>,
    /// `location /x`: paths under it.
    pub prefix: Option<String>,
    pub to: String,
    pub status: u16,
}

/// A site's settings; `None`/empty means "not set here" (so the level
/// above's applies, as nginx inherits from `http` into `server`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Site {
    pub names: Vec<String>,
    pub default: bool,
    pub root: Option<String>,
    pub index: Option<Vec<String>>,
    pub front_controller: Option<String>,
    pub php_only_front_controller: bool,
    pub upstream: Option<Vec<String>>,
    pub params: Vec<(String, String)>,
    pub max_body_size: Option<String>,
    pub intercept_errors: Option<bool>,
    pub error_pages: Vec<(String, String)>,
    pub headers: Vec<Header>,
    pub redirects: Vec<Redirect>,
    pub deny: Vec<String>,
    pub cache_control: Vec<(String, String)>,
    pub internal_locations: Vec<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub redirect_to_https: bool,
    pub compress: Option<bool>,
    /// Bookkeeping, not written out: the server's `listen`s.
    pub listens: Vec<Listen>,
    /// `ssl on;` (the old spelling of `listen … ssl`).
    pub ssl_on: bool,
    /// The server only answers `return 301 https://$host$request_uri`.
    pub https_redirect_only: bool,
    /// Where the server block starts: (file index, line).
    pub origin: (usize, usize),
}

impl Site {
    /// Fills what this server leaves unset from the `http` level, as nginx
    /// does: a list directive (`add_header`, `error_page`, `fastcgi_param`)
    /// is inherited only when the server has none of its own.
    pub fn inherit(&mut self, http: &Site) {
        fn fill<T: Clone>(own: &mut Option<T>, above: &Option<T>) {
            if own.is_none() {
                own.clone_from(above);
            }
        }
        fn fill_list<T: Clone>(own: &mut Vec<T>, above: &[T]) {
            if own.is_empty() {
                own.extend_from_slice(above);
            }
        }
        fill(&mut self.root, &http.root);
        fill(&mut self.index, &http.index);
        fill(&mut self.max_body_size, &http.max_body_size);
        fill(&mut self.intercept_errors, &http.intercept_errors);
        fill(&mut self.tls_cert, &http.tls_cert);
        fill(&mut self.tls_key, &http.tls_key);
        fill(&mut self.compress, &http.compress);
        fill_list(&mut self.params, &http.params);
        fill_list(&mut self.error_pages, &http.error_pages);
        // Only the server-level ones: a prefix location's headers replace them anyway.
        if !self.headers.iter().any(|h| h.prefix.is_none()) {
            let above: Vec<Header> = http.headers.clone();
            self.headers.splice(0..0, above);
        }
    }

    /// Whether the server serves TLS (a `listen … ssl`, or `ssl on`).
    pub fn serves_tls(&self) -> bool {
        self.ssl_on || self.listens.iter().any(|l| l.ssl)
    }
}
