//! The checks that compare answers instead of judging one: each step's
//! requests, and why its verdict follows from them. All GET, except the
//! one TRACE (`--no-trace` skips it).

use http::Method;

use super::checks::{or_none, phpinfo_version, Check, Evidence, Severity, Verdict};
use super::client::{Answer, ProbeError};
use super::target::{dir_of, extension_of, path_of, Scheme};
use super::Ctx;

/// Query padding of the CVE-2019-11043 probe: the bug's buffer underflow
/// depends on where the query ends, and exploits pad it to ~1500–2000
/// bytes; one request at a typical length, not a search.
const CVE_PADDING: usize = 1700;

/// PHP-FPM's own bodies for a script that does not exist (php-fpm, and
/// php-cgi / older php-fpm).
const MISSING_SCRIPT_BODIES: &[&str] = &["File not found.", "No input file specified."];

#[derive(Debug, Clone, Copy)]
pub enum Step {
    Cve201911043,
    UncheckedScript,
    FixPathinfo,
    Httpoxy,
    SecurityHeaders,
    Trace,
    VersionDisclosure,
}

impl Step {
    #[cfg(test)]
    pub fn max_requests(self) -> usize {
        match self {
            Step::Cve201911043 | Step::UncheckedScript | Step::Httpoxy | Step::Trace => 1,
            // Up to 3 static files fetched, 2 probed, 1 control.
            Step::FixPathinfo => 6,
            Step::SecurityHeaders | Step::VersionDisclosure => 0,
        }
    }

    pub async fn run(self, check: &Check, ctx: &mut Ctx<'_>) -> Verdict {
        match self {
            Step::Cve201911043 => cve_2019_11043(check, ctx).await,
            Step::UncheckedScript => unchecked_script(check, ctx).await,
            Step::FixPathinfo => fix_pathinfo(check, ctx).await,
            Step::Httpoxy => httpoxy(check, ctx).await,
            Step::SecurityHeaders => security_headers(check, ctx),
            Step::Trace => trace(check, ctx).await,
            Step::VersionDisclosure => version_disclosure(check, ctx),
        }
    }
}

fn found(severity: Severity, evidence: Vec<Evidence>) -> Verdict {
    Verdict::Found { severity, evidence }
}

/// The script answered; the same script with `/x%0a.php` as PATH_INFO and
/// a long query is asked. Nothing is written into PHP's settings (the
/// exploit's PHP_VALUE lines are never sent): the verdict comes from the
/// status and from PHP's version where the site shows it.
///
/// - 5xx where the script alone was fine: a worker failed on the line
///   feed, what the vulnerable code does (high).
/// - 2xx: the path reached PHP, the configuration the CVE needs. High when
///   the shown PHP is older than the fixes, low when it has them, medium
///   when PHP's version is not shown.
/// - anything else (400, 404): the path never reached PHP.
async fn cve_2019_11043(check: &Check, ctx: &mut Ctx<'_>) -> Verdict {
    let Some(script) = ctx.site.script.clone() else {
        return Verdict::CannotTell(
            "no PHP script that runs was found to test with (the start page's links, index.php)"
                .into(),
        );
    };
    let path = path_of(&script.target).to_owned();
    let probe = format!(
        "{path}/doctor-{}%0a.php?{}",
        ctx.marker,
        "Q".repeat(CVE_PADDING)
    );
    let answer = match ctx.client.get(&probe, &[]).await {
        Ok(a) => a,
        Err(e) => return Verdict::CannotTell(format!("{path}/…%0a.php: {e}")),
    };
    if answer.status >= 500 && script.status < 500 {
        let detail = format!(
            "{path} answers {}, the same script with %0a in PATH_INFO answers {}: a PHP \
             worker failed on it, as CVE-2019-11043's does",
            script.status, answer.status
        );
        return found(
            check.severity,
            vec![Evidence::of(ctx.client, &answer, detail)],
        );
    }
    if answer.ok() && !ctx.site.is_catch_all(&answer) {
        let version = php_version_of(&answer)
            .or_else(|| php_version_of(&script))
            .or_else(|| seen_php_version(ctx));
        let (severity, about) = match &version {
            Some(v) if php_has_cve_fix(v) == Some(false) => (
                Severity::High,
                format!("PHP {v} predates the fixes (7.1.33, 7.2.24, 7.3.11)"),
            ),
            Some(v) => (
                Severity::Low,
                format!("PHP {v} has the fix; the server's config is still the one the CVE needs"),
            ),
            None => (
                Severity::Medium,
                "PHP's version is not shown, so whether it has the fix (7.1.33, 7.2.24, \
                 7.3.11 or later) cannot be seen"
                    .into(),
            ),
        };
        let detail = format!(
            "a path with %0a in PATH_INFO reached PHP ({}); {about}",
            or_none(&answer.media_type())
        );
        return found(severity, vec![Evidence::of(ctx.client, &answer, detail)]);
    }
    Verdict::Clean(format!(
        "{path}/…%0a.php answered {}: the path does not reach PHP",
        answer.status
    ))
}

/// A script name nobody has. php-fpm answers a missing script with its own
/// short body; a server that checks first answers with its own 404.
async fn unchecked_script(check: &Check, ctx: &mut Ctx<'_>) -> Verdict {
    let path = format!("{}doctor-{}.php", ctx.site.base, ctx.marker);
    match ctx.client.get(&path, &[]).await {
        Ok(a) => {
            let text = a.text();
            match MISSING_SCRIPT_BODIES.iter().find(|b| text.trim() == **b) {
                Some(body) => {
                    let detail = format!(
                        "php-fpm's own {body:?}: the server passed a script that does not \
                         exist to php-fpm"
                    );
                    found(check.severity, vec![Evidence::of(ctx.client, &a, detail)])
                }
                None => Verdict::Clean(format!("{path} answered {}, not by php-fpm", a.status)),
            }
        }
        Err(e) => Verdict::CannotTell(format!("{path}: {e}")),
    }
}

/// A static file the site serves (linked, listed, or /favicon.ico,
/// /robots.txt), then the same path with `/doctor-….php` after it.
///
/// - the file's own bytes come back with another type (PHP's text/html)
///   or with PHP's X-Powered-By: PHP ran it and passed its text through;
/// - something else comes back with 2xx, while the same name for a file
///   that does not exist is not 2xx: the file's presence made PHP answer,
///   so PHP ran it (a file with PHP code in it, as an attacker uploads);
/// - not 2xx: nothing ran.
///
/// If the missing-file control is 2xx too, every such path answers (a
/// catch-all) and a changed answer proves nothing: cannot tell.
async fn fix_pathinfo(check: &Check, ctx: &mut Ctx<'_>) -> Verdict {
    let mut candidates: Vec<String> = ctx.site.statics.clone();
    for usual in ["favicon.ico", "robots.txt"] {
        let path = format!("{}{usual}", ctx.site.base);
        if !candidates.contains(&path) {
            candidates.push(path);
        }
    }
    let mut files: Vec<Answer> = Vec::new();
    let mut tried = Vec::new();
    for path in candidates {
        if files.len() == 2 || tried.len() == 3 {
            break;
        }
        match ctx.client.get(&path, &[]).await {
            Ok(a) if a.ok() && !ctx.site.is_catch_all(&a) => {
                tried.push(format!("{path} {}", a.status));
                files.push(a);
            }
            Ok(a) => tried.push(format!("{path} {}", a.status)),
            Err(e) => tried.push(format!("{path}: {e}")),
        }
    }
    if files.is_empty() {
        return Verdict::CannotTell(format!(
            "no static file found to test with ({})",
            tried.join(", ")
        ));
    }
    let mut evidence = Vec::new();
    let mut clean = Vec::new();
    let mut unsure = Vec::new();
    let mut control: Option<Result<Answer, ProbeError>> = None;
    for file in files {
        let probe = format!("{}/doctor-{}.php", path_of(&file.target), ctx.marker);
        let answer = match ctx.client.get(&probe, &[]).await {
            Ok(a) => a,
            Err(e) => {
                unsure.push(format!("{probe}: {e}"));
                continue;
            }
        };
        if !answer.ok() {
            clean.push(format!("{probe} {}", answer.status));
            continue;
        }
        let php_header = is_php_powered(&answer) && !is_php_powered(&file);
        if answer.body == file.body {
            if answer.media_type() != file.media_type() || php_header {
                let detail = format!(
                    "the bytes of {} ({}) came back as {}{}: PHP ran the file, passing \
                     its text through",
                    file.target,
                    or_none(&file.media_type()),
                    or_none(&answer.media_type()),
                    if php_header {
                        " with X-Powered-By: PHP"
                    } else {
                        ""
                    },
                );
                evidence.push(Evidence::of(ctx.client, &answer, detail));
            } else {
                clean.push(format!("{probe} {} (the file itself)", answer.status));
            }
            continue;
        }
        // Another answer: the file's doing, or does any such path answer 2xx?
        if control.is_none() {
            let ext = extension_of(&file.target).unwrap_or_else(|| "txt".into());
            let missing = format!(
                "{}doctor-{m}-missing.{ext}/doctor-{m}.php",
                dir_of(&file.target),
                m = ctx.marker
            );
            control = Some(ctx.client.get(&missing, &[]).await);
        }
        match &control {
            Some(Ok(c)) if !c.ok() => {
                let detail = format!(
                    "{} ({} bytes) where {} is {} ({} bytes), while a missing file in its \
                     place answers {}: PHP ran {}",
                    or_none(&answer.media_type()),
                    answer.body.len(),
                    file.target,
                    or_none(&file.media_type()),
                    file.body.len(),
                    c.status,
                    file.target,
                );
                evidence.push(Evidence::of(ctx.client, &answer, detail));
            }
            Some(Ok(c)) => unsure.push(format!(
                "{probe} answered {} but so does {} (any such path answers)",
                answer.status, c.target
            )),
            Some(Err(e)) => unsure.push(format!("the control request: {e}")),
            None => {}
        }
    }
    if !evidence.is_empty() {
        found(check.severity, evidence)
    } else if !clean.is_empty() {
        Verdict::Clean(format!("no PHP ran: {}", clean.join(", ")))
    } else {
        Verdict::CannotTell(unsure.join("; "))
    }
}

/// From outside, httpoxy shows only where a page prints PHP's environment:
/// the phpinfo() page the `phpinfo` check found is asked again with a
/// `Proxy` header naming a dead local address (port 9, discard), so even
/// a script that uses the variable only fails to connect. Without such a
/// page the answer is "cannot tell", never a guess. PHP itself has left
/// HTTP_PROXY out of `$_SERVER` and `getenv()` since 5.5.38, 5.6.24 and
/// 7.0.9, so on those a missing HTTP_PROXY says nothing of the server; the
/// note says which of the two it was.
async fn httpoxy(check: &Check, ctx: &mut Ctx<'_>) -> Verdict {
    let page = ctx
        .found
        .iter()
        .find(|(id, _)| *id == "phpinfo")
        .and_then(|(_, evidence)| evidence.first())
        .map(|e| e.target.clone());
    let Some(page) = page else {
        return Verdict::CannotTell(
            "no page here shows PHP's environment (no phpinfo() found); from outside, \
             httpoxy shows only on such a page"
                .into(),
        );
    };
    let token = format!("doctor-{}-proxy", ctx.marker);
    let proxy = format!("http://127.0.0.1:9/{token}");
    match ctx.client.get(&page, &[("proxy", proxy.clone())]).await {
        Ok(a) => judge_httpoxy(check, ctx.client, &a, &token, &proxy),
        Err(e) => Verdict::CannotTell(format!("{page}: {e}")),
    }
}

/// The phpinfo() page asked with `Proxy: {proxy}` (`token` in it).
fn judge_httpoxy(
    check: &Check,
    client: &super::client::Client,
    a: &Answer,
    token: &str,
    proxy: &str,
) -> Verdict {
    let text = a.text();
    if !a.ok() {
        return Verdict::CannotTell(format!("{} answered {} this time", a.target, a.status));
    }
    if text.contains(token) {
        let detail = format!(
            "phpinfo() shows HTTP_PROXY = {proxy}, the Proxy header sent: PHP code that \
             reads getenv('HTTP_PROXY') would send its requests there"
        );
        return found(check.severity, vec![Evidence::of(client, a, detail)]);
    }
    match phpinfo_version(&text) {
        Some(v) if php_has_httpoxy_fix(&v) == Some(true) => Verdict::Clean(format!(
            "phpinfo() at {} shows no HTTP_PROXY; PHP {v} leaves it out itself (since \
             5.5.38, 5.6.24, 7.0.9), so whether the server drops Proxy cannot be seen",
            a.target
        )),
        _ => Verdict::Clean(format!(
            "phpinfo() at {} shows no HTTP_PROXY: the Proxy header sent does not reach PHP",
            a.target
        )),
    }
}

/// The start page's headers; no request of its own.
fn security_headers(check: &Check, ctx: &mut Ctx<'_>) -> Verdict {
    let start = &ctx.site.start;
    if !start.ok() {
        return Verdict::CannotTell(format!(
            "the start page answered {}, not a page to judge",
            start.status
        ));
    }
    let mut missing = Vec::new();
    let nosniff = start
        .header("x-content-type-options")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("nosniff"));
    if !nosniff {
        missing.push("X-Content-Type-Options: nosniff");
    }
    let frame_ancestors = start
        .headers
        .get_all("content-security-policy")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("frame-ancestors"));
    if start.header("x-frame-options").is_none() && !frame_ancestors {
        missing.push("X-Frame-Options (or CSP frame-ancestors)");
    }
    if ctx.client.target().scheme == Scheme::Https
        && start.header("strict-transport-security").is_none()
    {
        missing.push("Strict-Transport-Security");
    }
    if missing.is_empty() {
        return Verdict::Clean(format!("{} sends them", start.target));
    }
    let detail = format!("missing: {}", missing.join("; "));
    found(
        check.severity,
        vec![Evidence::of(ctx.client, start, detail)],
    )
}

/// One TRACE with a marker header: an echo of the request in the body is
/// TRACE enabled. RFC 9110 counts TRACE among the safe methods (it changes
/// nothing on the server), which is why doctor sends it despite its
/// GET-only rule; `--no-trace` leaves it out.
async fn trace(check: &Check, ctx: &mut Ctx<'_>) -> Verdict {
    if !ctx.send_trace {
        return Verdict::Skipped("--no-trace: no TRACE request was sent".into());
    }
    let target = ctx.site.base.clone();
    let token = format!("doctor-{}-trace", ctx.marker);
    match ctx
        .client
        .request(Method::TRACE, &target, &[("x-doctor-trace", token.clone())])
        .await
    {
        Ok(a) if a.ok() && a.text().contains(&token) => {
            let detail = format!(
                "the request came back in the body ({})",
                or_none(&a.media_type())
            );
            found(check.severity, vec![Evidence::of(ctx.client, &a, detail)])
        }
        Ok(a) => Verdict::Clean(format!("TRACE {target} answered {}, no echo", a.status)),
        Err(e) => Verdict::CannotTell(format!("TRACE {target}: {e}")),
    }
}

/// Every answer of the run so far: a `Server` or `X-Powered-By` value with
/// a version number in it (`nginx/1.22.1`, `PHP/8.2.7`).
fn version_disclosure(check: &Check, ctx: &mut Ctx<'_>) -> Verdict {
    let mut evidence: Vec<Evidence> = Vec::new();
    let mut shown: Vec<String> = Vec::new();
    for seen in ctx.client.seen() {
        let headers = [("Server", &seen.server), ("X-Powered-By", &seen.powered_by)];
        for (name, value) in headers {
            let Some(value) = value else { continue };
            let line = format!("{name}: {value}");
            if has_version(value) && !shown.contains(&line) {
                evidence.push(Evidence {
                    method: seen.method.to_string(),
                    url: ctx.client.target().url(&seen.target),
                    target: seen.target.clone(),
                    status: Some(seen.status),
                    detail: line.clone(),
                });
                shown.push(line);
            }
        }
    }
    if evidence.is_empty() {
        Verdict::Clean(format!(
            "no Server or X-Powered-By header with a version in {} answers",
            ctx.client.seen().len()
        ))
    } else {
        found(check.severity, evidence)
    }
}

/// `product/1.2…`: a slash followed by a digit.
fn has_version(value: &str) -> bool {
    value
        .as_bytes()
        .windows(2)
        .any(|w| w[0] == b'/' && w[1].is_ascii_digit())
}

fn is_php_powered(a: &Answer) -> bool {
    a.header("x-powered-by")
        .is_some_and(|v| v.trim_start().starts_with("PHP"))
}

/// `X-Powered-By: PHP/7.3.5` → "7.3.5".
fn php_version_of(a: &Answer) -> Option<String> {
    php_version_in(a.header("x-powered-by")?)
}

fn seen_php_version(ctx: &Ctx<'_>) -> Option<String> {
    ctx.client
        .seen()
        .iter()
        .find_map(|s| s.powered_by.as_deref().and_then(php_version_in))
}

fn php_version_in(value: &str) -> Option<String> {
    let at = value.find("PHP/")? + 4;
    let version: String = value[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!version.is_empty()).then_some(version)
}

/// Whether a PHP version keeps a request's HTTP_PROXY out of `$_SERVER`
/// and `getenv()` (5.5.38, 5.6.24, 7.0.9 and later); `None` if unreadable.
fn php_has_httpoxy_fix(version: &str) -> Option<bool> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some(match (major, minor) {
        (0..=4, _) | (5, 0..=4) => false,
        (5, 5) => patch >= 38,
        (5, 6) => patch >= 24,
        (7, 0) => patch >= 9,
        _ => true,
    })
}

/// Whether a PHP version has the CVE-2019-11043 fix (7.1.33, 7.2.24,
/// 7.3.11; 7.4 and later never had the bug); `None` if it cannot be read.
fn php_has_cve_fix(version: &str) -> Option<bool> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some(match (major, minor) {
        (0..=6, _) | (7, 0) => false,
        (7, 1) => patch >= 33,
        (7, 2) => patch >= 24,
        (7, 3) => patch >= 11,
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cve_fix_by_version() {
        for (v, fixed) in [
            ("5.6.40", Some(false)),
            ("7.0.33", Some(false)),
            ("7.1.32", Some(false)),
            ("7.1.33", Some(true)),
            ("7.2.23", Some(false)),
            ("7.2.24", Some(true)),
            ("7.3.10", Some(false)),
            ("7.3.11", Some(true)),
            ("7.4.0", Some(true)),
            ("8.2.7", Some(true)),
            ("x", None),
        ] {
            assert_eq!(php_has_cve_fix(v), fixed, "{v}");
        }
        assert_eq!(
            php_version_in("PHP/7.3.5-1+deb10u1").as_deref(),
            Some("7.3.5")
        );
        assert_eq!(php_version_in("PHP"), None);
    }

    #[test]
    fn httpoxy_fix_by_version() {
        for (v, fixed) in [
            ("5.4.45", false),
            ("5.5.37", false),
            ("5.5.38", true),
            ("5.6.23", false),
            ("5.6.24", true),
            ("7.0.8", false),
            ("7.0.9", true),
            ("7.1.0", true),
            ("8.2.7", true),
        ] {
            assert_eq!(php_has_httpoxy_fix(v), Some(fixed), "{v}");
        }
    }

    #[test]
    fn httpoxy_is_judged_on_the_phpinfo_page() {
        let check = &crate::doctor::checks::CHECKS
            .iter()
            .find(|c| c.id == "httpoxy")
            .expect("httpoxy check");
        let target = match crate::doctor::target::Target::parse("http://127.0.0.1:1/") {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let client = runtime
            .block_on(super::super::client::Client::new(
                target,
                &super::super::client::Trust::System,
                std::time::Duration::from_secs(1),
            ))
            .expect("client for an http URL");
        let page = |body: &str| Answer {
            method: Method::GET,
            target: "/phpinfo.php".into(),
            status: 200,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::from(body.to_owned()),
        };
        let proxy = "http://127.0.0.1:9/doctor-1-proxy";
        let shown = page(
            "<h1 class=\"p\">PHP Version 5.4.45</h1><tr><td class=\"e\">$_SERVER['HTTP_PROXY']</td>\
             <td class=\"v\">http://127.0.0.1:9/doctor-1-proxy</td></tr>",
        );
        assert!(matches!(
            judge_httpoxy(check, &client, &shown, "doctor-1-proxy", proxy),
            Verdict::Found {
                severity: Severity::High,
                ..
            }
        ));
        let old = page("<h1 class=\"p\">PHP Version 5.4.45</h1>");
        assert!(matches!(
            judge_httpoxy(check, &client, &old, "doctor-1-proxy", proxy),
            Verdict::Clean(n) if n.contains("does not reach PHP")
        ));
        let new = page("<h1 class=\"p\">PHP Version 8.2.7</h1>");
        assert!(matches!(
            judge_httpoxy(check, &client, &new, "doctor-1-proxy", proxy),
            Verdict::Clean(n) if n.contains("leaves it out itself")
        ));
    }

    #[test]
    fn versions_in_headers() {
        assert!(has_version("nginx/1.22.1"));
        assert!(has_version("Apache/2.4.57 (Debian)"));
        assert!(has_version("PHP/8.2.7"));
        assert!(!has_version("nginx"));
        assert!(!has_version("fcgi-gateway"));
        assert!(!has_version("PHP"));
    }
}
