//! `fcgi-gateway import-nginx` on the corpus (`tests/nginx-corpus/`): the
//! TOML it prints for each config, its exit code, and the exact
//! `file:line: directive — why` lines for what does not map.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::corpus::{self, check_config, fixture_site, Imported, Placeholders};

fn placeholders(root: PathBuf) -> Placeholders {
    Placeholders {
        root,
        fpm_unix: "/run/php/php8.2-fpm.sock".into(),
        fpm_tcp: "127.0.0.1:9000".into(),
        port: 8080,
    }
}

/// The corpus config `name` copied to a temp dir; `file` imported from it.
fn import(name: &str, file: &str, root: PathBuf) -> (tempfile::TempDir, Imported) {
    let dir = tempfile::tempdir().unwrap();
    corpus::copy_config(name, dir.path(), &placeholders(root));
    let imported = corpus::import(&[&dir.path().join(file)]);
    (dir, imported)
}

fn str_at<'a>(table: &'a toml::Table, key: &str) -> &'a str {
    table
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("no string {key} in {table:#?}"))
}

fn strings_at(table: &toml::Table, key: &str) -> Vec<String> {
    match table.get(key) {
        Some(toml::Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().expect("a string").to_string())
            .collect(),
        other => panic!("no array {key}: {other:?}"),
    }
}

fn sub<'a>(table: &'a toml::Table, key: &str) -> &'a toml::Table {
    table
        .get(key)
        .and_then(|v| v.as_table())
        .unwrap_or_else(|| panic!("no table {key} in {table:#?}"))
}

/// The expected stderr: one `file:line: directive — why` line each.
fn lines(file: &Path, expected: &[(usize, &str, &str)]) -> String {
    expected
        .iter()
        .map(|(line, directive, why)| format!("{}:{line}: {directive} — {why}\n", file.display()))
        .collect()
}

#[test]
fn laravel_maps_but_for_per_path_logging_and_a_hidden_header() {
    let (dir, out) = import("laravel", "site.conf", fixture_site("app"));
    let file = dir.path().join("site.conf");
    assert_eq!(
        out.stderr,
        lines(
            &file,
            &[
                (
                    19,
                    "access_log off",
                    "the gateway logs every request to stderr (access-log-format)"
                ),
                (
                    20,
                    "access_log off",
                    "the gateway logs every request to stderr (access-log-format)"
                ),
                (
                    28,
                    "fastcgi_hide_header X-Powered-By",
                    "the gateway passes every header PHP sends"
                ),
            ]
        )
    );
    assert_eq!(out.code, Some(3));
    let t = out.table();
    // `listen 8080; listen [::]:8080;`: the dual-stack socket takes both.
    assert_eq!(strings_at(&t, "listen"), ["[::]:8080"]);
    // One server: every Host is its; the name is PHP's SERVER_NAME.
    assert_eq!(str_at(&t, "server-name"), "laravel.test");
    assert_eq!(str_at(&t, "front-controller"), "/index.php");
    assert_eq!(
        t.get("php-only-front-controller").and_then(|v| v.as_bool()),
        Some(true)
    );
    assert_eq!(str_at(&t, "upstream"), "unix:/run/php/php8.2-fpm.sock");
    assert_eq!(strings_at(&t, "index"), ["index.php"]);
    assert_eq!(
        strings_at(&t, "add-header"),
        [
            "X-Frame-Options: SAMEORIGIN",
            "X-Content-Type-Options: nosniff"
        ]
    );
    assert_eq!(str_at(sub(&t, "error-page"), "404"), "/index.php");
    assert!(t.get("deny").is_none(), "the dotfile rule is built in");
}

#[test]
fn symfony_maps_fully() {
    let (_dir, out) = import("symfony", "site.conf", fixture_site("app"));
    assert_eq!((out.code, out.stderr.as_str()), (Some(0), ""));
    let t = out.table();
    assert_eq!(str_at(&t, "server-name"), "symfony.test");
    assert_eq!(str_at(&t, "front-controller"), "/index.php");
    assert_eq!(
        t.get("php-only-front-controller").and_then(|v| v.as_bool()),
        Some(true)
    );
    assert_eq!(str_at(&t, "upstream"), "tcp:127.0.0.1:9000");
    assert_eq!(str_at(&t, "max-body-size"), "20M");
    assert_eq!(str_at(&t, "read-timeout"), "120s");
    assert_eq!(str_at(sub(&t, "params"), "APP_ENV"), "prod");
}

#[test]
fn wordpress_maps_fully() {
    let (_dir, out) = import("wordpress", "site.conf", fixture_site("wordpress"));
    assert_eq!((out.code, out.stderr.as_str()), (Some(0), ""));
    let t = out.table();
    assert_eq!(str_at(&t, "server-name"), "wordpress.test");
    assert_eq!(str_at(&t, "front-controller"), "/index.php");
    assert!(t.get("php-only-front-controller").is_none());
    assert_eq!(str_at(&t, "upstream"), "unix:/run/php/php8.2-fpm.sock");
    assert_eq!(
        t.get("intercept-errors").and_then(|v| v.as_bool()),
        Some(true)
    );
    assert_eq!(
        strings_at(&t, "deny"),
        [r"/\.ht", r"(?i)/(?:uploads|files)/.*\.php$"]
    );
    let cache = sub(&t, "cache-control");
    for ext in ["js", "css", "png", "jpg", "jpeg", "gif", "ico"] {
        assert_eq!(str_at(cache, ext), "max-age=315360000", "{ext}");
    }
}

#[test]
fn debian_default_site_maps_fully_with_its_snippets() {
    let (_dir, out) = import(
        "debian-default",
        "sites-enabled/default",
        fixture_site("app"),
    );
    assert_eq!((out.code, out.stderr.as_str()), (Some(0), ""));
    let t = out.table();
    assert!(t.get("server-name").is_none(), "server_name _ is no name");
    assert!(t.get("front-controller").is_none(), "try_files … =404");
    assert_eq!(
        strings_at(&t, "index"),
        [
            "index.html",
            "index.htm",
            "index.nginx-debian.html",
            "index.php"
        ]
    );
    assert_eq!(strings_at(&t, "deny"), [r"/\.ht"]);
}

#[test]
fn debian_main_file_lists_the_process_settings_it_cannot_map() {
    let (dir, out) = import("debian-default", "nginx.conf", fixture_site("app"));
    let file = dir.path().join("nginx.conf");
    let tls =
        "the gateway's TLS (rustls) has its own protocols (1.2, 1.3), ciphers and session cache";
    assert_eq!(
        out.stderr,
        lines(
            &file,
            &[
                (
                    3,
                    "user www-data",
                    "the gateway runs as the user that starts it (systemd's User=)"
                ),
                (
                    5,
                    "pid /run/nginx.pid",
                    "the gateway writes no pid file (run it under systemd)"
                ),
                (
                    9,
                    "worker_connections 768",
                    "connections are limited by max-connections, for the whole gateway"
                ),
                (20, "ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3", tls),
                (21, "ssl_prefer_server_ciphers on", tls),
                (
                    23,
                    "access_log /var/log/nginx/access.log",
                    "the gateway logs every request to stderr (access-log-format)"
                ),
                (
                    24,
                    "error_log /var/log/nginx/error.log",
                    "the gateway logs to stderr (log-level)"
                ),
            ]
        )
    );
    assert_eq!(out.code, Some(3));
    let t = out.table();
    // The site came in through `include sites-enabled/*;`.
    assert_eq!(strings_at(&t, "deny"), [r"/\.ht"]);
    assert_eq!(t.get("compress").and_then(|v| v.as_bool()), Some(true));
}

#[test]
fn multi_site_gives_one_site_per_server() {
    let (_dir, out) = import("multi-site", "site.conf", fixture_site(""));
    assert_eq!((out.code, out.stderr.as_str()), (Some(0), ""));
    let t = out.table();
    assert_eq!(strings_at(&t, "listen"), ["127.0.0.1:8080"]);
    assert_eq!(
        strings_at(&t, "upstream"),
        [
            "unix:/run/php/php8.2-fpm.sock weight=2",
            "tcp:127.0.0.1:9000"
        ]
    );
    assert_eq!(str_at(&t, "read-timeout"), "90s");
    let sites = t.get("site").and_then(|v| v.as_array()).expect("[[site]]");
    assert_eq!(sites.len(), 3);
    let app = sites[0].as_table().unwrap();
    assert_eq!(strings_at(app, "server-names"), ["app.test"]);
    assert_eq!(app.get("default").and_then(|v| v.as_bool()), Some(true));
    assert_eq!(str_at(app, "max-body-size"), "8M");
    assert_eq!(strings_at(app, "deny"), ["^/(vendor|storage)/"]);
    assert_eq!(
        str_at(sub(app, "error-page"), "500 502 503 504"),
        "/50x.html"
    );
    assert_eq!(str_at(sub(app, "params"), "APP_ENV"), "production");
    assert_eq!(str_at(sub(app, "cache-control"), "css"), "max-age=2592000");
    let headers = app.get("add-header").and_then(|v| v.as_array()).unwrap();
    assert_eq!(headers.len(), 2);
    assert_eq!(str_at(headers[1].as_table().unwrap(), "prefix"), "/api/");
    let redirect = &app.get("redirect").and_then(|v| v.as_array()).unwrap()[0];
    assert_eq!(str_at(redirect.as_table().unwrap(), "path"), "/old-page");
    let www = sites[1].as_table().unwrap();
    let to_apex = &www.get("redirect").and_then(|v| v.as_array()).unwrap()[0];
    assert_eq!(
        str_at(to_apex.as_table().unwrap(), "to"),
        "$scheme://app.test$request_uri"
    );
    assert_eq!(
        strings_at(sites[2].as_table().unwrap(), "server-names"),
        ["blog.test"]
    );
}

/// A self-signed certificate and key as `cert.pem` / `key.pem` in `dir`
/// (what the `https` corpus config names).
fn write_certificate(dir: &Path) {
    let made = rcgen::generate_simple_self_signed(vec!["secure.test".into()]).unwrap();
    fs::write(dir.join("cert.pem"), made.cert.pem()).unwrap();
    fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).unwrap();
}

#[test]
fn certbot_site_becomes_one_tls_site_that_redirects_plain_http() {
    let (dir, out) = import("https", "site.conf", fixture_site("app"));
    assert_eq!((out.code, out.stderr.as_str()), (Some(0), ""));
    let t = out.table();
    // With TLS anywhere, every TCP listener says its scheme.
    assert_eq!(
        strings_at(&t, "listen"),
        ["https://[::]:443", "http://[::]:80"]
    );
    assert_eq!(str_at(&t, "server-name"), "secure.test");
    assert_eq!(
        t.get("redirect-to-https").and_then(|v| v.as_bool()),
        Some(true)
    );
    assert_eq!(
        str_at(&t, "tls-cert"),
        dir.path().join("cert.pem").display().to_string()
    );
    assert_eq!(
        str_at(&t, "tls-key"),
        dir.path().join("key.pem").display().to_string()
    );
    assert!(
        t.get("site").is_none() && t.get("redirect").is_none(),
        "{}",
        out.toml
    );
}

#[test]
fn syntax_errors_and_missing_files_exit_2_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.conf");
    fs::write(&bad, "server {\n    listen 80\n}\n").unwrap();
    let out = corpus::import(&[&bad]);
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains(&format!("{}:2: ", bad.display())),
        "{}",
        out.stderr
    );
    assert!(out.toml.is_empty());
    let missing = dir.path().join("includes.conf");
    fs::write(&missing, "http {\n\n  include nowhere.conf;\n}\n").unwrap();
    let out = corpus::import(&[&missing]);
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains(&format!("{}:3: ", missing.display())),
        "{}",
        out.stderr
    );
}

/// Needs the sites/error-page/redirect/deny/add-header keys of
/// docs/sites.md in the config loader (main's bdce522 and after): without
/// them check-config refuses them as unknown keys. Passes with main merged.
#[test]
fn every_imported_config_passes_check_config() {
    let cases = [
        ("laravel", "site.conf", fixture_site("app")),
        ("symfony", "site.conf", fixture_site("app")),
        ("wordpress", "site.conf", fixture_site("wordpress")),
        (
            "debian-default",
            "sites-enabled/default",
            fixture_site("app"),
        ),
        ("debian-default", "nginx.conf", fixture_site("app")),
        ("multi-site", "site.conf", fixture_site("")),
        ("https", "site.conf", fixture_site("app")),
    ];
    let mut failures = Vec::new();
    for (name, file, root) in cases {
        let (dir, out) = import(name, file, root);
        write_certificate(dir.path());
        let toml = out.write_to(&dir.path().join("gateway.toml"));
        let (code, said) = check_config(&toml);
        if code != Some(0) {
            failures.push(format!("{name}/{file}: {said}\n{}", out.toml));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
