//! `fcgi-gateway doctor` as a user runs it, on three sites:
//! - the gateway serving `fixtures/demo` at its defaults (it starts its own
//!   php-fpm): clean, exit 0;
//! - a deliberately misconfigured nginx + php-fpm serving a bait site
//!   (`cgi.fix_pathinfo = 1`, `location ~ \.php$` without a file check,
//!   `autoindex on`, a readable `.env`, a backup of a script, a phpinfo()
//!   page, php-fpm's status and ping pages routed to the public): every
//!   planted problem reported, exit 1;
//! - the gateway serving that same bait site on the same php-fpm: only
//!   what the gateway really lets through.

use crate::support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::binary::Binary;
use support::gateway::Gateway;
use support::nginx::Nginx;
use support::php_fpm::{PhpFpm, PhpFpmOptions};

/// Values planted in the bait site that must never be printed.
const SECRETS: [&str; 2] = ["hunter2", "c2VjcmV0LWtleQ"];

async fn doctor(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fcgi-gateway"))
        .arg("doctor")
        .args(args)
        .output()
        .await
        .expect("run fcgi-gateway doctor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn doctor_json(url: &str) -> (i32, Value, String) {
    let (code, stdout, stderr) = doctor(&[url, "--json"]).await;
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"));
    for secret in SECRETS {
        assert!(!stdout.contains(secret), "the report prints {secret:?}");
    }
    (code, report, stdout)
}

/// Finding id → severity.
fn findings(report: &Value) -> BTreeMap<String, String> {
    report["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .map(|f| {
            (
                f["id"].as_str().expect("id").to_owned(),
                f["severity"].as_str().expect("severity").to_owned(),
            )
        })
        .collect()
}

/// A check's result: found, clean, cannot-tell or skipped.
fn result<'a>(report: &'a Value, id: &str) -> &'a str {
    report["checks"]
        .as_array()
        .expect("checks array")
        .iter()
        .find(|c| c["id"] == id)
        .and_then(|c| c["result"].as_str())
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

/// The evidence URLs and details of one finding, joined, for `contains`.
fn evidence(report: &Value, id: &str) -> String {
    report["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .filter(|f| f["id"] == id)
        .flat_map(|f| f["evidence"].as_array().cloned().unwrap_or_default())
        .map(|e| format!("{} {} {}", e["url"], e["status"], e["detail"]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn bounded(report: &Value) {
    let requests = report["requests"].as_u64().expect("requests");
    assert!(requests > 10 && requests <= 60, "{requests} requests");
    assert_eq!(report["max_requests"], 60);
    assert_eq!(report["schema"], "fcgi-gateway-doctor/1");
}

/// The bait: a small shop whose front page shows an uploaded "photo"
/// that is really PHP, next to the leftovers of a careless deploy.
fn bait_site(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    fs::create_dir_all(root.join("uploads")).expect("uploads dir");
    fs::create_dir_all(root.join(".git")).expect(".git dir");
    let index =
        "<?php $title = 'Shop'; ?><!doctype html>\n<html><head><title><?= $title ?></title>\
                 </head><body><h1>Shop</h1>\n<img src=\"/uploads/photo.jpg\" alt=\"avatar\">\n\
                 </body></html>\n";
    let files: [(&str, &[u8]); 7] = [
        ("index.php", index.as_bytes()),
        // An editor's backup of it, left behind.
        ("index.php~", index.as_bytes()),
        // A JPEG header, then PHP: what an attacker uploads as an avatar.
        (
            "uploads/photo.jpg",
            b"\xff\xd8\xff\xe0\x00\x10JFIF\x00<?php echo 'doctor-bait-upload-ran'; ?>\xff\xd9",
        ),
        (
            ".env",
            b"APP_KEY=base64:c2VjcmV0LWtleQ==\nDB_PASSWORD=hunter2\n",
        ),
        (".git/config", b"[core]\n\trepositoryformatversion = 0\n"),
        (
            ".htaccess",
            b"RewriteEngine On\nRewriteRule ^ index.php [L]\n",
        ),
        ("phpinfo.php", b"<?php phpinfo();\n"),
    ];
    for (name, bytes) in files {
        fs::write(root.join(name), bytes).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }
    root
}

/// php-fpm as the misconfigured sites have it (both of its pools alike).
fn lax_php_fpm() -> PhpFpm {
    PhpFpm::start_with(PhpFpmOptions {
        status_path: Some("/fpm-status".into()),
        extra_pool_lines: vec![
            // php-fpm refuses to run anything but .php by default
            // (security.limit_extensions), which stops the classic
            // /uploads/x.jpg/y.php attack by itself; sites that widened it
            // (or run a PHP older than 5.3.9) are the ones that fall. The
            // harness sets `.php`; this later line overrides it.
            "security.limit_extensions = .php .jpg".into(),
            // PHP's own default, spelled out: the other half of the attack.
            "php_admin_value[cgi.fix_pathinfo] = 1".into(),
            // Shows PHP's version (X-Powered-By), as php.ini-production does.
            "php_admin_flag[expose_php] = on".into(),
        ],
        ..Default::default()
    })
}

/// The `server { }` body of the misconfigured nginx.
fn lax_nginx_server(root: &Path, fpm: &PhpFpm) -> String {
    let tcp = fpm.tcp_addr;
    let root = root.display();
    format!(
        "root {root};\n\
         index index.php;\n\
         autoindex on;\n\
         # No `try_files $uri =404;`: any path ending in .php goes to php-fpm.\n\
         location ~ \\.php$ {{\n\
         \x20   include fastcgi_params;\n\
         \x20   fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n\
         \x20   fastcgi_pass {tcp};\n\
         }}\n\
         # php-fpm's own pages, with no allow/deny.\n\
         location ~ ^/(fpm-status|ping)$ {{\n\
         \x20   include fastcgi_params;\n\
         \x20   fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n\
         \x20   fastcgi_pass {tcp};\n\
         }}\n"
    )
}

#[tokio::test]
async fn the_gateway_serving_the_demo_at_its_defaults_is_clean() {
    let root = support::demo_dir().display().to_string();
    // No --upstream: the gateway runs php-fpm itself, as a user starts it.
    let mut gateway = Binary::start(&["serve", "--root", &root, "--listen", "127.0.0.1:0"]);
    let addr = gateway.listen_addr("http");
    let (code, report, stdout) = doctor_json(&format!("http://{addr}/")).await;
    assert_eq!(code, 0, "{stdout}");
    bounded(&report);
    for (id, severity) in findings(&report) {
        assert_eq!(severity, "low", "{id} found on the demo:\n{stdout}");
    }
    // What a PHP gateway must get right is all tested and clean.
    for id in [
        "cve-2019-11043",
        "unchecked-script",
        "directory-listing",
        "source-leak",
        "secret-files",
        "server-config-files",
        "phpinfo",
        "fpm-status",
        "fpm-ping",
        "trace",
    ] {
        assert_eq!(result(&report, id), "clean", "{id}:\n{stdout}");
    }
    // The demo has no static file to test with, and no page that shows
    // PHP's environment: these two say so rather than guess.
    assert_eq!(result(&report, "fix-pathinfo"), "cannot-tell");
    assert_eq!(result(&report, "httpoxy"), "cannot-tell");
    // PHP's pages carry no nosniff / frame header of the gateway's own.
    assert_eq!(result(&report, "security-headers"), "found");
    assert_eq!(report["summary"]["exit_code"], 0);
}

#[tokio::test]
async fn a_misconfigured_nginx_and_php_fpm_gets_every_finding() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = bait_site(dir.path());
    let fpm = lax_php_fpm();
    let nginx = Nginx::start(&lax_nginx_server(&root, &fpm));
    let url = nginx.url("/");
    let (code, report, stdout) = doctor_json(&url).await;
    let context = || format!("{stdout}\n--- nginx error log ---\n{}", nginx.error_log());
    assert_eq!(code, 1, "{}", context());
    bounded(&report);
    let expected: BTreeMap<String, String> = [
        // The upload runs as PHP: fix_pathinfo + no file check + .jpg allowed.
        ("fix-pathinfo", "high"),
        // index.php~ is sent as text.
        ("source-leak", "high"),
        // .env and .git/config are readable.
        ("secret-files", "high"),
        // A missing .php reaches php-fpm ("File not found.").
        ("unchecked-script", "medium"),
        // autoindex on: /uploads/ is listed.
        ("directory-listing", "medium"),
        ("phpinfo", "medium"),
        ("fpm-status", "medium"),
        // A path with %0a reaches PHP; PHP 8.2 (shown) has the fix: low.
        ("cve-2019-11043", "low"),
        (".htaccess", "low"),
        ("fpm-ping", "low"),
        ("security-headers", "low"),
        // Server: nginx/1.22.1, X-Powered-By: PHP/8.2.x.
        ("version-disclosure", "low"),
    ]
    .into_iter()
    .map(|(id, s)| {
        let id = if id == ".htaccess" {
            "server-config-files"
        } else {
            id
        };
        (id.to_owned(), s.to_owned())
    })
    .collect();
    assert_eq!(findings(&report), expected, "{}", context());
    // nginx never echoes TRACE.
    assert_eq!(result(&report, "trace"), "clean");
    // nginx hands PHP the Proxy header (every request header goes as
    // HTTP_*), but PHP 8 leaves HTTP_PROXY out of $_SERVER and getenv()
    // itself: phpinfo() shows none, and the note says why that proves
    // nothing about nginx.
    assert_eq!(result(&report, "httpoxy"), "clean");
    let note = report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == "httpoxy"))
        .map(|c| c["note"].to_string())
        .unwrap_or_default();
    assert!(note.contains("leaves it out itself"), "{note}");

    // The evidence names what was planted.
    let upload = evidence(&report, "fix-pathinfo");
    assert!(upload.contains("/uploads/photo.jpg/doctor-"), "{upload}");
    assert!(upload.contains("PHP ran /uploads/photo.jpg"), "{upload}");
    let secrets = evidence(&report, "secret-files");
    assert!(
        secrets.contains("/.env") && secrets.contains("APP_KEY, DB_PASSWORD"),
        "{secrets}"
    );
    assert!(secrets.contains("/.git/config"), "{secrets}");
    assert!(evidence(&report, "source-leak").contains("/index.php~"));
    assert!(evidence(&report, "directory-listing").contains("/uploads/"));
    assert!(evidence(&report, "phpinfo").contains("/phpinfo.php"));
    assert!(evidence(&report, "fpm-status").contains("/fpm-status"));
    assert!(evidence(&report, "unchecked-script").contains("File not found."));
    let versions = evidence(&report, "version-disclosure");
    assert!(
        versions.contains("Server: nginx/") && versions.contains("X-Powered-By: PHP/"),
        "{versions}"
    );

    // The same run for a person: severities, evidence, fixes, exit code.
    let (code, text, stderr) = doctor(&[&url, "--no-trace"]).await;
    assert_eq!(code, 1, "{text}\n{stderr}");
    for line in [
        "HIGH    fix-pathinfo: ",
        "MEDIUM  directory-listing: ",
        "LOW     version-disclosure: ",
        "        fix: ",
        "skipped      trace ",
        "3 high, 4 medium, 5 low; 1 clean, 0 cannot tell, 1 skipped; exit 1",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    assert!(text.find("HIGH") < text.find("MEDIUM") && text.find("MEDIUM") < text.find("LOW"));
}

#[tokio::test]
async fn the_gateway_on_the_same_bait_site_lets_through_only_what_it_serves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = bait_site(dir.path());
    let fpm = lax_php_fpm();
    let upstream = format!("tcp:{}", fpm.tcp_addr);
    let gw = Gateway::serve(&upstream, &root.display().to_string(), &[]).await;
    let (code, report, stdout) = doctor_json(&gw.url("/")).await;
    bounded(&report);
    // Refused or never reaching PHP, whatever php-fpm would allow:
    for id in [
        "cve-2019-11043",
        "unchecked-script",
        "fix-pathinfo",
        "directory-listing",
        "secret-files",
        "server-config-files",
        "fpm-status",
        "fpm-ping",
        "trace",
        // `index.php~` is a backup name, refused like the script itself.
        "source-leak",
    ] {
        assert_eq!(result(&report, id), "clean", "{id}:\n{stdout}");
    }
    // phpinfo() is there and shows no HTTP_PROXY. The gateway does drop
    // `Proxy` (tests/suite/php_fpm_http.rs), but PHP 8 would leave it out
    // anyway, which the note says rather than crediting the gateway.
    assert_eq!(result(&report, "httpoxy"), "clean", "{stdout}");
    let expected: BTreeMap<String, String> = [
        // Really on the site; a gateway cannot know it should not be.
        ("phpinfo", "medium"),
        // PHP's own X-Powered-By (expose_php on), passed through as it is.
        ("version-disclosure", "low"),
        ("security-headers", "low"),
    ]
    .into_iter()
    .map(|(id, s)| (id.to_owned(), s.to_owned()))
    .collect();
    assert_eq!(findings(&report), expected, "{stdout}");
    // Nothing of high severity: exit 0.
    assert_eq!(code, 0, "{stdout}");
    gw.shutdown().await;
}

#[tokio::test]
async fn unusable_urls_and_unreachable_sites_exit_2() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let (code, stdout, stderr) = doctor(&[&format!("http://{closed}/")]).await;
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("connect"), "{stderr}");
    let (code, _, stderr) = doctor(&["ftp://127.0.0.1/"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("scheme"), "{stderr}");
    // A usage error is clap's exit 2.
    let (code, _, _) = doctor(&[]).await;
    assert_eq!(code, 2);
}

#[tokio::test]
async fn https_checks_the_certificate_unless_told_not_to() {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])
        .expect("rcgen makes a certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    fs::write(&cert, made.cert.pem()).expect("write cert");
    fs::write(&key, made.signing_key.serialize_pem()).expect("write key");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let upstream = format!("tcp:{}", support::shared_fpm().tcp_addr);
    let root = support::demo_dir().display().to_string();
    let mut gateway = Binary::start(&[
        "serve",
        "--upstream",
        &upstream,
        "--root",
        &root,
        "--listen",
        "https://127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    let url = format!("https://{}/", gateway.listen_addr("https"));

    // Trusted as its own CA: the whole run goes over TLS.
    let (code, stdout, stderr) = doctor(&[&url, "--json", "--ca-file", &cert]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(result(&report, "cve-2019-11043"), "clean", "{stdout}");
    // Over https, HSTS is one of the headers looked for.
    assert!(evidence(&report, "security-headers").contains("Strict-Transport-Security"));

    // Not trusted: the handshake fails and so does the run.
    let (code, _, stderr) = doctor(&[&url]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("certificate") || stderr.contains("CA bundle"),
        "{stderr}"
    );

    // --insecure accepts it.
    let (code, stdout, stderr) = doctor(&[&url, "--insecure", "--no-trace"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("skipped      trace"), "{stdout}");
}
