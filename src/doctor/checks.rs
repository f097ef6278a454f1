//! The checks, as data: each names the requests it makes, how their
//! answers are judged, its severity and the fix. Most are paths whose
//! answers are judged one by one against a content signature (`Paths`,
//! `FromSite`); the rest need answers compared with each other (`Steps`),
//! and their steps are in `steps.rs`.
//!
//! A judge never trusts a status alone: many sites answer 200 to anything
//! (a front controller), so a finding needs content that only the exposed
//! thing produces, and an answer identical to the site's answer for a
//! missing path ([`Site::catch_all`]) is never one.

use serde::Serialize;

use super::client::{Answer, Client};
use super::site::Site;
use super::steps::Step;
use super::target::{extension_of, path_of};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// One request and what its answer showed.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub method: String,
    pub url: String,
    /// The request target (origin form), for checks that go back to it.
    #[serde(skip)]
    pub target: String,
    /// `None` when there was no answer.
    pub status: Option<u16>,
    pub detail: String,
}

impl Evidence {
    pub fn of(client: &Client, answer: &Answer, detail: String) -> Evidence {
        Evidence {
            method: answer.method.to_string(),
            url: client.target().url(&answer.target),
            target: answer.target.clone(),
            status: Some(answer.status),
            detail,
        }
    }
}

/// What a check concluded.
#[derive(Debug, Clone)]
pub enum Verdict {
    Found {
        severity: Severity,
        evidence: Vec<Evidence>,
    },
    /// Looked, found nothing; says what was seen.
    Clean(String),
    /// The answers cannot settle it either way; says why.
    CannotTell(String),
    /// Not run; says why.
    Skipped(String),
}

/// Judges one answer: `Some(what was seen)` when it shows the problem.
pub type Judge = fn(&Answer) -> Option<String>;

pub enum How {
    /// Fixed paths under the base directory, each with its judge.
    Paths(&'static [(&'static str, Judge)]),
    /// Paths made from what discovery saw, at most `most`, all judged
    /// alike; with `learn`, the links on a matching answer (a directory
    /// listing) join what is known of the site for the checks after it.
    FromSite {
        paths: fn(&Site) -> Vec<String>,
        most: usize,
        judge: Judge,
        learn: bool,
    },
    /// Requests whose meaning is in comparing answers.
    Steps(Step),
}

pub struct Check {
    pub id: &'static str,
    pub title: &'static str,
    /// The severity of a finding; a few steps lower it when the evidence
    /// shows only part of the problem (see `steps.rs`).
    pub severity: Severity,
    pub fix: &'static str,
    pub how: How,
}

impl Check {
    /// The most requests this check can make (the budget test adds them up).
    #[cfg(test)]
    pub fn max_requests(&self) -> usize {
        match &self.how {
            How::Paths(paths) => paths.len(),
            How::FromSite { most, .. } => *most,
            How::Steps(step) => step.max_requests(),
        }
    }
}

/// In the order they run: the directory listing before fix-pathinfo (a
/// listing shows files to test with), phpinfo before httpoxy (which reads
/// it), version disclosure last (it reads every answer).
pub const CHECKS: &[Check] = &[
    Check {
        id: "cve-2019-11043",
        title: "CVE-2019-11043: a path with %0a in PATH_INFO reaches PHP-FPM",
        severity: Severity::High,
        fix: "Upgrade PHP (7.1.33, 7.2.24, 7.3.11 or any later release). In nginx, \
              check that the script exists before passing it on: `try_files \
              $fastcgi_script_name =404;` after `fastcgi_split_path_info`, so a path \
              with a line feed never reaches php-fpm (fcgi-gateway refuses such paths \
              with 400).",
        how: How::Steps(Step::Cve201911043),
    },
    Check {
        id: "unchecked-script",
        title: "Requests for missing .php files are passed to php-fpm",
        severity: Severity::Medium,
        fix: "Answer missing scripts in the web server, not in php-fpm: `try_files $uri \
              =404;` inside nginx's `location ~ \\.php$`. Without it, cgi.fix_pathinfo \
              turns /uploads/x.jpg/y.php into a request that runs x.jpg (fcgi-gateway \
              always checks the script exists).",
        how: How::Steps(Step::UncheckedScript),
    },
    Check {
        id: "directory-listing",
        title: "Directory listings are on",
        severity: Severity::Medium,
        fix: "Turn listings off (nginx: `autoindex off;`, Apache: `Options -Indexes`), \
              or give the directory an index file.",
        how: How::FromSite {
            paths: listing_paths,
            most: 5,
            judge: directory_listing,
            learn: true,
        },
    },
    Check {
        id: "fix-pathinfo",
        title: "PHP runs non-PHP files (cgi.fix_pathinfo): /uploads/x.jpg/y.php runs x.jpg",
        severity: Severity::High,
        fix: "Only pass existing .php files to php-fpm (`try_files $uri =404;` in nginx's \
              `location ~ \\.php$`), set `cgi.fix_pathinfo = 0` in php.ini, keep \
              `security.limit_extensions = .php` in the php-fpm pool, and never run PHP \
              in upload directories.",
        how: How::Steps(Step::FixPathinfo),
    },
    Check {
        id: "source-leak",
        title: "PHP source is served as text (backups, .phps, .inc)",
        severity: Severity::High,
        fix: "Delete editor backups and copies (*.php~, *.bak, *.orig, *.phps) from the \
              document root, keep include files outside it (or name them .php), and \
              refuse these names in the server (nginx: `location ~ (~|\\.bak|\\.orig|\\.inc|\\.phps)$ \
              { deny all; }`; fcgi-gateway: --never-serve-ext).",
        how: How::FromSite {
            paths: source_paths,
            most: 11,
            judge: php_source,
            learn: false,
        },
    },
    Check {
        id: "secret-files",
        title: "Secret files are readable (.env, .git, .htpasswd)",
        severity: Severity::High,
        fix: "Keep .env, .git and password files out of the document root (serve the \
              application's public/ directory only) and refuse dotfiles in the server \
              (nginx: `location ~ /\\.(?!well-known/) { deny all; }`; fcgi-gateway hides \
              them always). Change every secret that was readable.",
        how: How::Paths(&[
            (".env", env_file),
            (".git/config", git_config),
            (".htpasswd", htpasswd),
        ]),
    },
    Check {
        id: "server-config-files",
        title: "Server config files are readable (.htaccess, .user.ini)",
        severity: Severity::Low,
        fix: "Refuse dotfiles in the server (nginx: `location ~ /\\.(?!well-known/) { deny \
              all; }`; fcgi-gateway hides them always); they show rewrite rules, access \
              rules and PHP settings.",
        how: How::Paths(&[(".htaccess", htaccess), (".user.ini", user_ini)]),
    },
    Check {
        id: "phpinfo",
        title: "A phpinfo() page is public",
        severity: Severity::Medium,
        fix: "Delete phpinfo() pages from the site: they show PHP's version, settings, \
              paths and every environment variable, often with secrets.",
        how: How::Paths(&[
            ("phpinfo.php", phpinfo),
            ("info.php", phpinfo),
            ("php_info.php", phpinfo),
            ("test.php", phpinfo),
            ("i.php", phpinfo),
        ]),
    },
    Check {
        id: "fpm-status",
        title: "php-fpm's status page is public",
        severity: Severity::Medium,
        fix: "Do not route php-fpm's pm.status_path to the public: allow it to the \
              monitoring hosts only (nginx: `allow 127.0.0.1; deny all;`), or read it on \
              another listener (fcgi-gateway reads it itself: --fpm-status-path, with \
              metrics on the admin listener).",
        how: How::Paths(&[
            ("status", fpm_status),
            ("fpm-status", fpm_status),
            ("php-fpm-status", fpm_status),
        ]),
    },
    Check {
        id: "fpm-ping",
        title: "php-fpm's ping page is public",
        severity: Severity::Low,
        fix: "Allow php-fpm's ping.path to the health checker only (nginx: `allow \
              127.0.0.1; deny all;`; fcgi-gateway asks it itself behind /readyz on the \
              admin listener).",
        how: How::Paths(&[("ping", fpm_ping), ("fpm-ping", fpm_ping)]),
    },
    Check {
        id: "httpoxy",
        title: "httpoxy: a Proxy request header reaches PHP as HTTP_PROXY",
        severity: Severity::High,
        fix: "Drop the Proxy request header before PHP (nginx: `fastcgi_param HTTP_PROXY \
              \"\";`, Apache: `RequestHeader unset Proxy early`; fcgi-gateway drops it \
              always).",
        how: How::Steps(Step::Httpoxy),
    },
    Check {
        id: "security-headers",
        title: "Security headers are missing",
        severity: Severity::Low,
        fix: "Send `X-Content-Type-Options: nosniff` and `X-Frame-Options: SAMEORIGIN` (or \
              a Content-Security-Policy with frame-ancestors), and over https \
              `Strict-Transport-Security`, from the application or the server (nginx: \
              `add_header ... always;`).",
        how: How::Steps(Step::SecurityHeaders),
    },
    Check {
        id: "trace",
        title: "TRACE is enabled: the server echoes requests",
        severity: Severity::Low,
        fix: "Turn TRACE off (Apache: `TraceEnable off`; nginx and fcgi-gateway never \
              echo it).",
        how: How::Steps(Step::Trace),
    },
    Check {
        id: "version-disclosure",
        title: "Server software versions are disclosed",
        severity: Severity::Low,
        fix: "Hide versions: nginx `server_tokens off;`, Apache `ServerTokens Prod`, \
              php.ini `expose_php = Off`.",
        how: How::Steps(Step::VersionDisclosure),
    },
];

/// The base directory itself (a listing there shows on the start page),
/// the directories of files seen, then the usual upload directories.
fn listing_paths(site: &Site) -> Vec<String> {
    let mut out = vec![site.base.clone()];
    out.extend(site.dirs());
    for usual in ["uploads/", "files/", "images/"] {
        let dir = format!("{}{usual}", site.base);
        if !out.contains(&dir) {
            out.push(dir);
        }
    }
    out
}

/// Backup names of the scripts seen (the one known to run first), then
/// the usual config leftovers.
fn source_paths(site: &Site) -> Vec<String> {
    let mut scripts: Vec<String> = Vec::new();
    if let Some(running) = &site.script {
        scripts.push(path_of(&running.target).to_owned());
    }
    for s in &site.scripts {
        if !scripts.contains(s) {
            scripts.push(s.clone());
        }
    }
    if scripts.is_empty() {
        scripts.push(format!("{}index.php", site.base));
    }
    let mut out = Vec::new();
    for script in scripts.iter().take(2) {
        let stem = script.strip_suffix(".php").unwrap_or(script);
        out.push(format!("{script}~"));
        out.push(format!("{script}.bak"));
        out.push(format!("{script}.orig"));
        out.push(format!("{stem}.phps"));
    }
    for usual in ["config.inc", "config.php.bak", "config.php~"] {
        let path = format!("{}{usual}", site.base);
        if !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// Whether a body starts like an HTML page (where a dotfile's text is not).
fn looks_html(answer: &Answer) -> bool {
    let head: String = answer
        .text()
        .chars()
        .take(512)
        .collect::<String>()
        .to_ascii_lowercase();
    ["<!doctype", "<html", "<head", "<body"]
        .iter()
        .any(|tag| head.contains(tag))
}

fn php_source(a: &Answer) -> Option<String> {
    if !a.ok() {
        return None;
    }
    let text = a.text();
    // `&lt;?php` is PHP's own highlighting of a .phps file.
    let tag = ["<?php", "&lt;?php"]
        .into_iter()
        .find(|tag| text.contains(tag))?;
    let kind = match extension_of(&a.target).as_deref() {
        Some("phps") => "highlighted PHP source",
        _ => "PHP source",
    };
    Some(format!(
        "{kind} ({} bytes, {}, contains {tag})",
        a.body.len(),
        or_none(&a.media_type())
    ))
}

/// `NAME=value` lines; only the names are reported, never a value.
fn env_file(a: &Answer) -> Option<String> {
    if !a.ok() || looks_html(a) {
        return None;
    }
    let names: Vec<String> = a
        .text()
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (name, _) = line.split_once('=')?;
            let name = name.trim();
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            valid.then(|| name.to_owned())
        })
        .collect();
    (!names.is_empty()).then(|| {
        let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
        format!(
            "an environment file with {} variable(s): {}{}",
            names.len(),
            shown.join(", "),
            if names.len() > 5 { ", …" } else { "" }
        )
    })
}

fn git_config(a: &Answer) -> Option<String> {
    (a.ok() && !looks_html(a) && a.text().contains("[core]"))
        .then(|| "a git repository's config: the whole history may be downloadable".into())
}

fn htpasswd(a: &Answer) -> Option<String> {
    if !a.ok() || looks_html(a) {
        return None;
    }
    let users = a
        .text()
        .lines()
        .filter(|line| match line.trim().split_once(':') {
            Some((user, hash)) => {
                !user.is_empty()
                    && !user.contains(' ')
                    && (hash.starts_with('$') || hash.starts_with("{SHA}"))
            }
            None => false,
        })
        .count();
    (users > 0).then(|| format!("password hashes of {users} user(s)"))
}

fn htaccess(a: &Answer) -> Option<String> {
    const DIRECTIVES: &[&str] = &[
        "rewriteengine",
        "rewriterule",
        "rewritecond",
        "deny from",
        "allow from",
        "require ",
        "options ",
        "authtype",
        "authuserfile",
        "order ",
        "<files",
        "<ifmodule",
        "setenv",
        "php_value",
        "php_flag",
        "addhandler",
        "addtype",
        "header ",
        "errordocument",
        "directoryindex",
        "redirect",
    ];
    if !a.ok() || looks_html(a) {
        return None;
    }
    let text = a.text();
    let first = text.lines().map(str::trim).find_map(|line| {
        let lower = line.to_ascii_lowercase();
        DIRECTIVES
            .iter()
            .any(|d| lower.starts_with(d))
            .then(|| line.split_whitespace().next().unwrap_or(line).to_owned())
    })?;
    Some(format!("Apache directives (e.g. {first})"))
}

fn user_ini(a: &Answer) -> Option<String> {
    if !a.ok() || looks_html(a) {
        return None;
    }
    let settings = a
        .text()
        .lines()
        .filter(|line| {
            let line = line.trim();
            !line.starts_with(';')
                && line.split_once('=').is_some_and(|(k, _)| {
                    let k = k.trim();
                    !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
                })
        })
        .count();
    (settings > 0).then(|| format!("{settings} PHP setting(s)"))
}

fn directory_listing(a: &Answer) -> Option<String> {
    // nginx and Apache, Python's http.server, IIS.
    const SIGNS: &[&str] = &[
        "<title>Index of /",
        "<h1>Index of /",
        "Directory listing for /",
        "[To Parent Directory]",
    ];
    if !a.ok() {
        return None;
    }
    let text = a.text();
    SIGNS.iter().find(|s| text.contains(*s))?;
    // Every entry is a link, and so is the parent directory's.
    let entries = text.matches("<a href=").count().saturating_sub(1);
    Some(format!(
        "a directory listing, about {entries} entr{}",
        if entries == 1 { "y" } else { "ies" }
    ))
}

fn phpinfo(a: &Answer) -> Option<String> {
    if !a.ok() {
        return None;
    }
    let text = a.text();
    let is_info = text.contains("phpinfo()</title>")
        || (text.contains("PHP Version") && text.contains("PHP License"));
    is_info.then(|| match phpinfo_version(&text) {
        Some(v) => format!("phpinfo() output (PHP {v})"),
        None => "phpinfo() output".into(),
    })
}

/// The version in phpinfo's `<h1 class="p">PHP Version 8.2.7</h1>`.
pub fn phpinfo_version(text: &str) -> Option<String> {
    let at = text.find("PHP Version ")? + "PHP Version ".len();
    let version: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
        .collect();
    (!version.is_empty()).then_some(version)
}

fn fpm_status(a: &Answer) -> Option<String> {
    if !a.ok() {
        return None;
    }
    let text = a.text();
    if !(text.contains("process manager") && text.contains("accepted conn")) {
        return None;
    }
    // "pool:                 www" in the plain format.
    let pool = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("pool:"))
        .map(str::trim);
    Some(match pool {
        Some(p) => format!("php-fpm status of pool {p:?}"),
        None => "php-fpm status".into(),
    })
}

fn fpm_ping(a: &Answer) -> Option<String> {
    (a.ok() && a.text().trim() == "pong").then(|| "php-fpm's ping answer \"pong\"".into())
}

pub fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "no Content-Type"
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::client::MAX_REQUESTS;
    use crate::doctor::site::DISCOVERY_REQUESTS;

    fn answer(target: &str, status: u16, body: &str) -> Answer {
        Answer {
            method: http::Method::GET,
            target: target.into(),
            status,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn the_table_stays_within_the_request_budget() {
        let total: usize =
            DISCOVERY_REQUESTS + CHECKS.iter().map(Check::max_requests).sum::<usize>();
        assert!(total <= MAX_REQUESTS, "{total} requests possible");
        let mut ids: Vec<_> = CHECKS.iter().map(|c| c.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), CHECKS.len(), "check ids are unique");
        let pos = |id| CHECKS.iter().position(|c| c.id == id);
        assert!(pos("phpinfo") < pos("httpoxy"));
        assert!(pos("directory-listing") < pos("fix-pathinfo"));
        assert_eq!(pos("version-disclosure"), Some(CHECKS.len() - 1));
    }

    #[test]
    fn env_files_are_named_not_quoted() {
        let a = answer(
            "/.env",
            200,
            "# app\nAPP_KEY=base64:s3cr3t\nexport DB_PASSWORD=hunter2\n",
        );
        let seen = env_file(&a).unwrap_or_default();
        assert!(seen.contains("APP_KEY, DB_PASSWORD"), "{seen}");
        assert!(!seen.contains("hunter2") && !seen.contains("s3cr3t"));
        assert_eq!(
            env_file(&answer("/.env", 200, "<!doctype html><p>a=b</p>")),
            None
        );
        assert_eq!(env_file(&answer("/.env", 404, "A=b")), None);
        assert_eq!(env_file(&answer("/.env", 200, "just text")), None);
    }

    #[test]
    fn signatures_match_only_their_own_content() {
        let info = "<title>PHP 8.2.7 - phpinfo()</title><h1 class=\"p\">PHP Version 8.2.7</h1>";
        assert_eq!(
            phpinfo(&answer("/info.php", 200, info)).as_deref(),
            Some("phpinfo() output (PHP 8.2.7)")
        );
        assert_eq!(
            phpinfo(&answer("/info.php", 200, "<h1>Request info</h1>")),
            None
        );
        let status =
            "pool:                 www\nprocess manager:      static\naccepted conn:        3\n";
        assert!(fpm_status(&answer("/status", 200, status)).is_some_and(|s| s.contains("\"www\"")));
        assert!(fpm_ping(&answer("/ping", 200, "pong\n")).is_some());
        assert_eq!(fpm_ping(&answer("/ping", 200, "<p>pong</p>")), None);
        assert!(git_config(&answer("/.git/config", 200, "[core]\n\tbare = false\n")).is_some());
        assert!(htpasswd(&answer("/.htpasswd", 200, "admin:$apr1$x$y\n")).is_some());
        assert!(htaccess(&answer("/.htaccess", 200, "RewriteEngine On\n")).is_some());
        assert!(user_ini(&answer(
            "/.user.ini",
            200,
            "; x\nupload_max_filesize = 1M\n"
        ))
        .is_some());
        let nginx = "<html><head><title>Index of /uploads/</title></head><body><h1>Index of /uploads/</h1><hr><pre><a href=\"../\">../</a>\n<a href=\"a.jpg\">a.jpg</a></pre>";
        assert!(directory_listing(&answer("/uploads/", 200, nginx))
            .is_some_and(|s| s.contains("1 entry")));
        assert_eq!(directory_listing(&answer("/uploads/", 404, nginx)), None);
    }

    #[test]
    fn php_source_in_raw_and_highlighted_form() {
        assert!(php_source(&answer("/index.php~", 200, "<?php echo 1;")).is_some());
        let phps = "<code><span style=\"color: #000000\">&lt;?php echo 1;</span></code>";
        assert!(php_source(&answer("/index.phps", 200, phps))
            .is_some_and(|s| s.starts_with("highlighted")));
        assert_eq!(
            php_source(&answer("/index.php.bak", 200, "<html>hello</html>")),
            None
        );
        assert_eq!(php_source(&answer("/index.php.bak", 403, "<?php")), None);
    }
}
