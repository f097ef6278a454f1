//! The directive tree → sites and gateway-wide settings. Pure: works on
//! what `include.rs` read. Locations are judged in `location.rs`.

use std::collections::HashMap;

use super::known::{is_built_in, is_standard_param};
use super::parse::Directive;
use super::site::{Header, Redirect, Site};
use super::values::{self, parse_listen};

/// A directive the gateway cannot do as nginx would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Index into the files read.
    pub file: usize,
    pub line: usize,
    /// The directive as written: name and arguments.
    pub directive: String,
    pub why: String,
}

/// A gateway-wide setting with where it was first set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub value: String,
    pub file: usize,
    pub line: usize,
}

/// Everything mapped.
#[derive(Debug, Default)]
pub struct Mapped {
    /// The `http` level (inherited by every site, already merged into them).
    pub http: Site,
    pub sites: Vec<Site>,
    /// Gateway-wide keys (`read-timeout`, `connect-timeout`, …) in the order first set.
    pub settings: Vec<(&'static str, Setting)>,
    pub findings: Vec<Finding>,
}

/// Where a directive stands, for what it may mean there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Http,
    Server,
    Location,
}

pub struct Mapper {
    pub out: Mapped,
    /// `upstream NAME { … }` blocks as the gateway's upstream lists.
    upstreams: HashMap<String, Vec<String>>,
}

/// Maps a whole config (main or http context at the top).
pub fn map(directives: &[Directive]) -> Mapped {
    let mut mapper = Mapper {
        out: Mapped::default(),
        upstreams: HashMap::new(),
    };
    mapper.collect_upstreams(directives);
    let mut servers = Vec::new();
    let mut http = Site::default();
    mapper.context(directives, &mut http, &mut servers);
    for server in servers {
        let mut site = mapper.server(server);
        site.inherit(&http);
        mapper.out.sites.push(site);
    }
    mapper.out.http = http;
    mapper.fold_https_redirects();
    mapper.out
}

impl Mapper {
    pub fn unmapped(&mut self, d: &Directive, why: impl Into<String>) {
        let mut directive = d.name.clone();
        for arg in &d.args {
            directive.push(' ');
            directive.push_str(arg);
        }
        self.out.findings.push(Finding {
            file: d.file,
            line: d.line,
            directive,
            why: why.into(),
        });
    }

    fn collect_upstreams(&mut self, directives: &[Directive]) {
        for d in directives {
            match (d.name.as_str(), &d.block) {
                ("http", Some(block)) => self.collect_upstreams(block),
                ("upstream", Some(block)) => {
                    let servers = self.upstream_block(block);
                    self.upstreams.insert(d.arg(0).to_string(), servers);
                }
                _ => {}
            }
        }
    }

    fn upstream_block(&mut self, block: &[Directive]) -> Vec<String> {
        let mut servers = Vec::new();
        for d in block {
            match d.name.as_str() {
                "server" => {
                    let args = self.failure_settings(d);
                    match upstream_server(&args) {
                        Ok(server) => servers.push(server),
                        Err(why) => self.unmapped(d, why),
                    }
                }
                // The gateway keeps connections and picks the least busy
                // per weight by itself; a zone is nginx's shared memory.
                "keepalive" | "keepalive_timeout" | "keepalive_requests" | "least_conn"
                | "zone" => {}
                _ => self.unmapped(
                    d,
                    "the gateway balances by fewest outstanding requests per weight only",
                ),
            }
        }
        servers
    }

    /// `max_fails=N` and `fail_timeout=T` of an upstream `server` become the
    /// gateway-wide `max-fails` and `fail-timeout`; the other arguments are
    /// returned.
    fn failure_settings(&mut self, d: &Directive) -> Vec<String> {
        let mut rest = Vec::with_capacity(d.args.len());
        for arg in &d.args {
            match arg.split_once('=') {
                Some(("max_fails", n)) if n.parse::<u32>().is_ok() => {
                    self.setting(d, "max-fails", n.to_string());
                }
                Some(("fail_timeout", t)) if values::duration(t).is_ok() => {
                    let duration = values::duration(t).unwrap_or_default();
                    self.setting(d, "fail-timeout", duration);
                }
                _ => rest.push(arg.clone()),
            }
        }
        rest
    }

    /// The main or `http` context: process settings, `http`, `server`s.
    fn context<'a>(
        &mut self,
        directives: &'a [Directive],
        http: &mut Site,
        servers: &mut Vec<&'a Directive>,
    ) {
        for d in directives {
            match (d.name.as_str(), &d.block) {
                ("http", Some(block)) => self.context(block, http, servers),
                ("server", Some(_)) => servers.push(d),
                ("upstream", Some(_)) => {}
                ("events", Some(block)) => {
                    for inner in block {
                        self.unmapped(
                            inner,
                            "connections are limited by max-connections, for the whole gateway",
                        );
                    }
                }
                ("worker_processes", None) => match d.arg(0) {
                    "auto" => {}
                    n if n.parse::<u32>().is_ok_and(|n| n > 0) => {
                        self.setting(d, "workers", n.to_string())
                    }
                    _ => self.unmapped(d, "not a number of workers"),
                },
                ("user", None) => self.unmapped(
                    d,
                    "the gateway runs as the user that starts it (systemd's User=)",
                ),
                ("pid", None) => {
                    self.unmapped(d, "the gateway writes no pid file (run it under systemd)")
                }
                ("load_module", None) => self.unmapped(d, "the gateway has no modules"),
                _ => {
                    if !self.common(d, http, Level::Http) {
                        self.unmapped(d, "no equivalent in the gateway");
                    }
                }
            }
        }
    }

    /// One `server` block.
    fn server(&mut self, d: &Directive) -> Site {
        let mut site = Site {
            origin: (d.file, d.line),
            ..Site::default()
        };
        let block = d.block.as_deref().unwrap_or_default();
        let certbot = is_certbot_redirect(block);
        if certbot {
            site.https_redirect_only = true;
            site.redirects.push(Redirect {
                path: None,
                prefix: None,
                to: "https://$host$request_uri".into(),
                status: 301,
            });
        }
        for inner in block {
            match inner.name.as_str() {
                // Certbot's redirect server, taken whole above.
                "if" | "return" if certbot => {}
                "listen" => match parse_listen(&inner.args) {
                    Ok(listen) => {
                        site.default |= listen.default_server;
                        site.listens.push(listen);
                    }
                    Err(why) => self.unmapped(inner, why),
                },
                "server_name" => self.server_names(inner, &mut site),
                "ssl" if inner.arg(0) == "on" => site.ssl_on = true,
                "location" => self.location(inner, &mut site),
                "try_files" => self.try_files(inner, &mut site),
                "return" => self.server_return(inner, block, &mut site),
                "if" => self.unmapped(inner, "if blocks have no equivalent in the gateway"),
                "rewrite" => self.unmapped(
                    inner,
                    "rewrites have no equivalent (only redirects and the front controller)",
                ),
                _ => {
                    if !self.common(inner, &mut site, Level::Server) {
                        self.unmapped(inner, "no equivalent in the gateway");
                    }
                }
            }
        }
        self.check_php_only(d, &mut site);
        site
    }

    fn server_names(&mut self, d: &Directive, site: &mut Site) {
        for name in &d.args {
            let name = name.to_ascii_lowercase();
            if name.starts_with('~') {
                self.unmapped(
                    d,
                    format!(
                        "regex server name {name}: the gateway matches exact and wildcard names"
                    ),
                );
            } else if name.ends_with(".*") {
                self.unmapped(
                    d,
                    format!("{name}: a wildcard at the end has no equivalent"),
                );
            } else if name == "_" || name.is_empty() {
                // nginx's catch-all spelling: a name no request has.
            } else if name.contains('$') {
                self.unmapped(d, "server names made of variables have no equivalent");
            } else {
                site.names.push(name);
            }
        }
    }

    /// A server-level `return`: a whole-site redirect.
    fn server_return(&mut self, d: &Directive, block: &[Directive], site: &mut Site) {
        match redirect_of(d) {
            Ok(redirect) => {
                let to_https = matches!(
                    redirect.to.as_str(),
                    "https://$host$request_uri" | "https://$server_name$request_uri"
                ) && redirect.status == 301;
                let only_that = block
                    .iter()
                    .all(|x| matches!(x.name.as_str(), "listen" | "server_name" | "return"));
                site.https_redirect_only = to_https && only_that;
                site.redirects.push(redirect);
            }
            Err(why) => self.unmapped(d, why),
        }
    }

    /// `try_files` at server level or in `location /`.
    pub fn try_files(&mut self, d: &Directive, site: &mut Site) {
        let args: Vec<&str> = d.args.iter().map(String::as_str).collect();
        let Some((last, firsts)) = args.split_last() else {
            return self.unmapped(d, "try_files needs a fallback");
        };
        if !matches!(firsts, ["$uri"] | ["$uri", "$uri/"]) {
            return self.unmapped(
                d,
                "the gateway tries the file, then the directory, then the front controller",
            );
        }
        if *last == "=404" {
            return;
        }
        let script = ["?$query_string", "?$args", "$is_args$args", ""]
            .iter()
            .find_map(|suffix| {
                last.strip_suffix(suffix)
                    .filter(|s| !s.contains(['$', '?']))
            });
        match script {
            Some(script)
                if script.starts_with('/') && script.to_ascii_lowercase().ends_with(".php") =>
            {
                site.front_controller = Some(script.to_string());
            }
            _ => self.unmapped(
                d,
                "the fallback is not a PHP front controller with the request's query",
            ),
        }
    }

    /// `php-only-front-controller` needs the front controller it allows.
    fn check_php_only(&mut self, d: &Directive, site: &mut Site) {
        if site.php_only_front_controller && site.front_controller.is_none() {
            self.unmapped(
                d,
                "only one script may run but no try_files names it as the front controller",
            );
            site.php_only_front_controller = false;
        }
    }

    /// A gateway-wide key; a second, different value is a finding.
    pub fn setting(&mut self, d: &Directive, key: &'static str, value: String) {
        if let Some((_, first)) = self.out.settings.iter().find(|(k, _)| *k == key) {
            if first.value != value {
                let why = format!(
                    "differs from {} set at line {} of file {}; the gateway has one {key} for all sites (the first is kept)",
                    first.value, first.line, first.file
                );
                self.unmapped(d, why);
            }
            return;
        }
        self.out.settings.push((
            key,
            Setting {
                value,
                file: d.file,
                line: d.line,
            },
        ));
    }

    /// Directives valid at `http`, `server` and location level alike;
    /// false when `d` is none of them.
    pub fn common(&mut self, d: &Directive, site: &mut Site, level: Level) -> bool {
        let value = d.arg(0);
        let has_var = d.args.iter().any(|a| a.contains('$'));
        match d.name.as_str() {
            "root" if level != Level::Location => match has_var {
                true => self.unmapped(d, "a root made of variables has no equivalent"),
                false => site.root = Some(value.to_string()),
            },
            "index" if level != Level::Location => match has_var {
                true => self.unmapped(d, "index names made of variables have no equivalent"),
                false => site.index = Some(d.args.clone()),
            },
            "client_max_body_size" => match values::size(value) {
                Ok(size) => site.max_body_size = Some(size),
                Err(why) => self.unmapped(d, why),
            },
            "error_page" if level != Level::Location => self.error_page(d, site),
            "error_page" => self.unmapped(d, "error pages are per site; none for one location"),
            "add_header" => match header_of(d) {
                Ok(header) => site.headers.push(header),
                Err(why) => self.unmapped(d, why),
            },
            "fastcgi_intercept_errors" => site.intercept_errors = Some(value == "on"),
            "fastcgi_read_timeout" => self.timeout(d, "read-timeout"),
            "fastcgi_connect_timeout" => self.timeout(d, "connect-timeout"),
            "keepalive_timeout" if level != Level::Location => self.timeout(d, "keepalive-timeout"),
            "client_header_timeout" if level != Level::Location => self.timeout(d, "header-timeout"),
            "ssl_certificate" | "ssl_certificate_key" if level != Level::Location => {
                let slot = match d.name.as_str() {
                    "ssl_certificate" => &mut site.tls_cert,
                    _ => &mut site.tls_key,
                };
                match has_var {
                    true => self.unmapped(d, "certificates named by variables have no equivalent"),
                    false => *slot = Some(value.to_string()),
                }
            }
            "ssl_protocols"
                if d.args.iter().all(|p| p == "TLSv1.2" || p == "TLSv1.3") => {}
            name if name.starts_with("ssl_") => {
                self.unmapped(d, "the gateway's TLS (rustls) has its own protocols (1.2, 1.3), ciphers and session cache")
            }
            "gzip" => site.compress = Some(value == "on"),
            "fastcgi_param" => self.fastcgi_param(d, site),
            "fastcgi_pass" => self.fastcgi_pass(d, site),
            "access_log" => self.unmapped(d, "the gateway logs every request to stderr (access-log-format)"),
            "error_log" => self.unmapped(d, "the gateway logs to stderr (log-level)"),
            name if is_built_in(name, value) => {}
            _ => return false,
        }
        true
    }

    fn timeout(&mut self, d: &Directive, key: &'static str) {
        match values::duration(d.arg(0)) {
            Ok(duration) if d.args.len() == 1 => self.setting(d, key, duration),
            Ok(_) => self.unmapped(d, "only one timeout value maps"),
            Err(why) => self.unmapped(d, why),
        }
    }

    fn error_page(&mut self, d: &Directive, site: &mut Site) {
        let Some((target, codes)) = d.args.split_last() else {
            return self.unmapped(d, "error_page needs codes and a page");
        };
        let (codes, equals) = match codes.split_last() {
            Some((last, rest)) if last.starts_with('=') => (rest, Some(last.as_str())),
            _ => (codes, None),
        };
        let statuses_ok = !codes.is_empty()
            && codes
                .iter()
                .all(|c| c.parse::<u16>().is_ok_and(|s| (300..=599).contains(&s)));
        let page =
            match equals {
                _ if !statuses_ok => return self.unmapped(d, "statuses must be 300–599"),
                _ if target.contains('$') => {
                    return self.unmapped(d, "a page made of variables has no equivalent")
                }
                _ if target.starts_with('@') => {
                    return self.unmapped(d, "named locations have no equivalent")
                }
                Some("=") => format!("={target}"),
                Some(_) => return self.unmapped(
                    d,
                    "a fixed replacement status (=NNN) has no equivalent; only = (the page's own)",
                ),
                None => target.clone(),
            };
        let key = codes.join(" ");
        // As nginx, the first page given for a status is the one used.
        if !site.error_pages.iter().any(|(k, _)| *k == key) {
            site.error_pages.push((key, page));
        }
    }

    fn fastcgi_pass(&mut self, d: &Directive, site: &mut Site) {
        let target = d.arg(0);
        let list = match self.upstreams.get(target) {
            Some(list) => Ok(list.clone()),
            None => values::upstream_address(target).map(|a| vec![a]),
        };
        match list {
            Ok(list) if list.is_empty() => {
                self.unmapped(d, "its upstream block has no usable server")
            }
            Ok(list) => match &site.upstream {
                Some(existing) if *existing != list => self.unmapped(
                    d,
                    "a second, different upstream in one server has no equivalent (one per site)",
                ),
                _ => site.upstream = Some(list),
            },
            Err(why) => self.unmapped(d, why),
        }
    }

    fn fastcgi_param(&mut self, d: &Directive, site: &mut Site) {
        let (name, value) = (d.arg(0), d.arg(1));
        let if_not_empty = d.args.get(2).is_some_and(|a| a == "if_not_empty");
        if d.args.len() < 2 || (d.args.len() == 3 && !if_not_empty) || d.args.len() > 3 {
            return self.unmapped(d, "fastcgi_param takes a name and a value");
        }
        if is_standard_param(name, value) {
            return;
        }
        if value.contains('$') {
            return self.unmapped(
                d,
                "a param made of nginx variables has no equivalent ([params] are constants)",
            );
        }
        if let Some(slot) = site.params.iter_mut().find(|(n, _)| n == name) {
            slot.1 = value.to_string();
        } else {
            site.params.push((name.to_string(), value.to_string()));
        }
    }

    /// A plain-HTTP server that only redirects to https for names a TLS
    /// site serves: `redirect-to-https` on that site instead.
    fn fold_https_redirects(&mut self) {
        let mut index = 0;
        while index < self.out.sites.len() {
            let site = &self.out.sites[index];
            let candidate =
                site.https_redirect_only && !site.serves_tls() && !site.names.is_empty();
            let names = site.names.clone();
            let targets: Vec<usize> = self
                .out
                .sites
                .iter()
                .enumerate()
                .filter(|(_, s)| s.serves_tls() && s.tls_cert.is_some())
                .filter(|(_, s)| names.iter().any(|n| s.names.contains(n)))
                .map(|(i, _)| i)
                .collect();
            let covered = names
                .iter()
                .all(|n| targets.iter().any(|&t| self.out.sites[t].names.contains(n)));
            if candidate && covered {
                let listens = self.out.sites[index].listens.clone();
                for &t in &targets {
                    self.out.sites[t].redirect_to_https = true;
                    // Its plain listeners now serve the TLS site's redirect.
                    self.out.sites[t].listens.extend(listens.iter().cloned());
                }
                self.out.sites.remove(index);
                continue;
            }
            index += 1;
        }
    }
}

/// The server certbot writes beside a TLS one: `if ($host = NAME) {
/// return 301 https://$host$request_uri; }` for its names, then `return
/// 404;` for any other Host, and nothing else but `listen`/`server_name`.
fn is_certbot_redirect(block: &[Directive]) -> bool {
    let names: Vec<&str> = block
        .iter()
        .filter(|d| d.name == "server_name")
        .flat_map(|d| d.args.iter().map(String::as_str))
        .collect();
    let is_host_redirect = |d: &Directive| {
        let redirects = matches!(d.block.as_deref(), Some([r])
            if r.name == "return" && r.args == ["301", "https://$host$request_uri"]);
        let host = match d.args.as_slice() {
            [var, eq, name] if var == "($host" && eq == "=" => name.strip_suffix(')'),
            _ => None,
        };
        redirects && host.is_some_and(|h| names.contains(&h))
    };
    let mut any_if = false;
    for d in block {
        match d.name.as_str() {
            "if" if is_host_redirect(d) => any_if = true,
            "return" if d.args == ["404"] => {}
            "listen" | "server_name" => {}
            _ => return false,
        }
    }
    any_if
}

/// `return CODE URL` (or `return URL`, a 302) as a redirect.
pub fn redirect_of(d: &Directive) -> Result<Redirect, String> {
    let (status, to) = match d.args.as_slice() {
        [url]
            if url.starts_with("http://")
                || url.starts_with("https://")
                || url.starts_with("$scheme") =>
        {
            (302, url)
        }
        [code, url] => match code.parse::<u16>() {
            Ok(s @ (301 | 302 | 303 | 307 | 308)) => (s, url),
            _ => {
                return Err(format!(
                    "return {code}: only redirects (301, 302, 303, 307, 308) map"
                ))
            }
        },
        _ => return Err("only redirects (return 3xx URL) map".into()),
    };
    Ok(Redirect {
        path: None,
        prefix: None,
        to: values::redirect_target(to)?,
        status,
    })
}

fn header_of(d: &Directive) -> Result<Header, String> {
    let always = match d.args.get(2).map(String::as_str) {
        None => false,
        Some("always") if d.args.len() == 3 => true,
        _ => return Err("add_header takes a name, a value and `always`".into()),
    };
    if d.args.len() < 2 {
        return Err("add_header takes a name and a value".into());
    }
    if d.args.iter().any(|a| a.contains('$')) {
        return Err("header values made of variables have no equivalent".into());
    }
    Ok(Header {
        name: d.arg(0).to_string(),
        value: d.arg(1).to_string(),
        always,
        prefix: None,
    })
}

/// `server addr [weight=N] [max_conns=N] [backup]` → `tcp:addr weight=N backup`.
fn upstream_server(args: &[String]) -> Result<String, String> {
    let Some((address, params)) = args.split_first() else {
        return Err("server needs an address".into());
    };
    let mut out = values::upstream_address(address)?;
    for param in params {
        match param.split_once('=') {
            Some(("weight", n)) if n.parse::<u32>().is_ok() => out.push_str(&format!(" weight={n}")),
            Some(("max_conns", n)) if n.parse::<u32>().is_ok() => out.push_str(&format!(" max-conns={n}")),
            None if param == "backup" => out.push_str(" backup"),
            _ => return Err(format!("{param}: the gateway's upstreams take weight, max_conns and backup (and max_fails, fail_timeout)")),
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "map_tests.rs"]
mod tests;
