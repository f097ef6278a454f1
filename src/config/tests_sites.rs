//! Tests for `[[site]]` tables and the site-level keys: error pages,
//! headers, redirects, deny rules, HTTP → HTTPS.

use std::fs;

use super::test_support::{file_with, flags, message};
use super::*;
use crate::sites::{ErrorTarget, PathMatch, ServerName};

/// A temp dir with `www`, `a` and `b` roots and `gateway.toml` = `body`.
fn file(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for root in ["www", "a", "b"] {
        fs::create_dir(dir.path().join(root)).unwrap();
    }
    let path = dir.path().join("gateway.toml");
    fs::write(&path, body).unwrap();
    (dir, path)
}

#[test]
fn sites_take_their_own_values_and_inherit_the_rest() {
    let (dir, path) = file(
        r#"
upstream = "unix:/run/php/fpm.sock"
root = "www"
index = ["index.php"]
max-body-size = "1M"

[[site]]
server-names = ["Example.COM", "*.example.com"]
root = "a"
front-controller = "/index.php"
upstream = ["tcp:127.0.0.1:9001", "tcp:127.0.0.1:9002 weight=2"]

[[site]]
server-names = [".example.org"]
default = true
root = "b"
max-body-size = "5M"
"#,
    );
    let config = check_file(&path).unwrap();
    assert!(config.top_level_site);
    assert_eq!(config.site.len(), 2);
    let a = &config.site[0];
    assert_eq!(
        a.server_names,
        [
            ServerName::Exact("example.com".into()),
            ServerName::Subdomains(".example.com".into())
        ]
    );
    assert!(!a.default);
    assert_eq!(
        a.config.root,
        fs::canonicalize(dir.path().join("a")).unwrap()
    );
    assert_eq!(a.config.front_controller.as_deref(), Some("/index.php"));
    assert_eq!(a.config.upstream.len(), 2);
    // Not set in the site: the top level's.
    assert_eq!(a.config.index, ["index.php"]);
    assert_eq!(a.config.max_body_size, 1024 * 1024);
    let b = &config.site[1];
    assert!(b.default);
    assert_eq!(b.config.max_body_size, 5 * 1024 * 1024);
    assert_eq!(b.config.upstream, config.upstream);
    assert_eq!(b.config.front_controller, None);
}

#[test]
fn without_a_top_level_root_only_the_sites_serve() {
    let (dir, path) = file(
        r#"
upstream = "unix:/run/php/fpm.sock"
[[site]]
server-names = ["a.test"]
root = "a"
[[site]]
server-names = ["b.test"]
root = "b"
default = true
"#,
    );
    let config = check_file(&path).unwrap();
    assert!(!config.top_level_site);
    // The top level carries the default site's root (for log lines).
    assert_eq!(config.root, fs::canonicalize(dir.path().join("b")).unwrap());
}

#[test]
fn site_errors_name_the_site_key_and_file() {
    let cases = [
        (
            "[[site]]\nserver-names = [\"a.test\"]\nlisten = \"127.0.0.1:1\"\n",
            "key `site[0].listen`: not a per-site setting",
        ),
        (
            "[[site]]\nserver-names = [\"bad name\"]\n",
            "key `site[0].server-names`: `bad name` is not a server name",
        ),
        (
            "[[site]]\nroot = \"www\"\n",
            "key `site[0].server-names`: a site needs server-names",
        ),
        (
            "[[site]]\nserver-names = [\"a.test\"]\ndeny = [\"(\"]\n",
            "key `site[0].deny`: `(` is not a regular expression",
        ),
        (
            "[[site]]\nserver-names = [\"a.test\"]\n[[site.redirect]]\nto = \"https://$hots/\"\n",
            "key `site[0].redirect[0]`: `https://$hots/`: unknown variable",
        ),
    ];
    for (extra, expected) in cases {
        let (_dir, path) = file_with(extra);
        let text = message(check_file(&path));
        assert!(
            text.starts_with(&path.display().to_string()) && text.contains(expected),
            "{extra:?}: {text}"
        );
    }
}

#[test]
fn error_pages_headers_redirects_and_deny_from_the_file() {
    let (_dir, path) = file_with(
        r#"
add-header = ["X-Frame-Options: SAMEORIGIN", { name = "Access-Control-Allow-Origin", value = "*", prefix = "/api/", always = true }]
deny = ['/\.ht', '^/vendor/']
redirect-to-https = true
intercept-errors = true

[error-page]
"404" = "=/index.php"
"500 502 503 504" = "/50x.html"

[[redirect]]
path = "/old"
to = "/new"
status = 302

[[redirect]]
prefix = "/blog/"
to = "https://blog.example.com$request_uri"
"#,
    );
    let config = check_file(&path).unwrap();
    assert_eq!(config.add_header.len(), 2);
    assert_eq!(config.add_header[1].prefix.as_deref(), Some("/api/"));
    assert!(config.add_header[1].always);
    assert_eq!(config.deny.len(), 2);
    assert!(config.redirect_to_https && config.intercept_errors);
    assert_eq!(config.error_page.len(), 2);
    assert_eq!(config.error_page[1].statuses, [500, 502, 503, 504]);
    assert_eq!(
        config.error_page[0].target,
        ErrorTarget::Page {
            path: "/index.php".into(),
            keep_status: false
        }
    );
    assert_eq!(config.redirect[0].when, PathMatch::Exact("/old".into()));
    assert_eq!(config.redirect[0].status, 302);
    assert_eq!(config.redirect[1].when, PathMatch::Prefix("/blog/".into()));
    assert_eq!(config.redirect[1].status, 301);
}

#[test]
fn site_level_flags() {
    let config = flags(&[
        "--error-page",
        "500 502=/50x.html",
        "--add-header",
        "X-Frame-Options: DENY",
        "--deny",
        "^/vendor/",
        "--redirect-to-https",
    ])
    .unwrap();
    assert_eq!(config.error_page[0].statuses, [500, 502]);
    assert_eq!(config.add_header[0].value, "DENY");
    assert!(config.deny[0].matches("/vendor/autoload.php"));
    assert!(config.redirect_to_https);
    let text = message(flags(&["--error-page", "404"]));
    assert!(text.starts_with("--error-page: "), "{text}");
}

#[test]
fn certificates_are_chosen_by_site_names() {
    let (_dir, path) = file(
        r#"
upstream = "unix:/run/php/fpm.sock"
listen = ["https://127.0.0.1:8443", "http://127.0.0.1:8080"]
[[site]]
server-names = ["a.test"]
root = "a"
tls-cert = "a.pem"
tls-key = "a.key"
[[site]]
server-names = ["b.test"]
root = "b"
default = true
tls-cert = "b.pem"
tls-key = "b.key"
"#,
    );
    let config = check_file(&path).unwrap();
    let set = config.tls_set().expect("certificates");
    assert_eq!(set.entries.len(), 2);
    assert!(set.entries[0].1.cert.ends_with("a.pem"));
    assert_eq!(set.entries[0].0, [ServerName::Exact("a.test".into())]);
    assert_eq!(set.default, 1);
    assert!(set.default_files().cert.ends_with("b.pem"));
    // No certificate anywhere: an https listener is refused.
    let (_dir, path) = file(
        "upstream = \"unix:/x\"\nlisten = \"https://127.0.0.1:1\"\n[[site]]\nserver-names = [\"a.test\"]\nroot = \"a\"\n",
    );
    assert!(message(check_file(&path)).contains("https needs a certificate"));
}

#[test]
fn a_site_that_redirects_everything_needs_no_root() {
    let (_dir, path) = file(
        r#"
upstream = "unix:/run/php/fpm.sock"
[[site]]
server-names = ["example.com"]
root = "a"
[[site]]
server-names = ["www.example.com"]
[[site.redirect]]
to = "https://example.com$request_uri"
"#,
    );
    let config = check_file(&path).unwrap();
    assert_eq!(config.site[1].config.redirect[0].when, PathMatch::All);
    // Only a catch-all redirect spares the root.
    let (_dir, path) = file(
        "upstream = \"unix:/x\"\n[[site]]\nserver-names = [\"a.test\"]\n[[site.redirect]]\npath = \"/x\"\nto = \"/y\"\n",
    );
    assert!(message(check_file(&path)).contains("site[0]: no root"));
}
