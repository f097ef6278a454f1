//! `location` blocks: which of the usual shapes each one is (the PHP
//! handler, the front controller, a deny rule, static-file caching, a
//! redirect, headers for a prefix, an internal location) and what it maps to.

use super::map::{redirect_of, Level, Mapper};
use super::parse::Directive;
use super::site::Site;
use super::values::{self, PhpPattern};

/// The location's match: `=`, `^~`, `~`, `~*` or none (a prefix).
struct Match<'a> {
    modifier: &'a str,
    pattern: &'a str,
}

impl Match<'_> {
    fn is_regex(&self) -> bool {
        self.modifier == "~" || self.modifier == "~*"
    }

    fn is_prefix(&self) -> bool {
        self.modifier.is_empty() || self.modifier == "^~"
    }

    /// The pattern as a Rust regex on the path, for `deny`.
    fn as_regex(&self) -> String {
        match self.modifier {
            "~*" => format!("(?i){}", self.pattern),
            "~" => self.pattern.to_string(),
            "=" => format!("^{}$", values::regex_escape(self.pattern)),
            _ => format!("^{}", values::regex_escape(self.pattern)),
        }
    }
}

/// Directives that only change logging or allow what is allowed anyway.
fn is_quiet(d: &Directive) -> bool {
    matches!(
        (d.name.as_str(), d.arg(0)),
        ("log_not_found", "off") | ("access_log", _) | ("allow", "all")
    )
}

impl Mapper {
    pub fn location(&mut self, d: &Directive, site: &mut Site) {
        let m = match d.args.as_slice() {
            [pattern] => Match {
                modifier: "",
                pattern,
            },
            [modifier, pattern] if matches!(modifier.as_str(), "=" | "^~" | "~" | "~*") => {
                Match { modifier, pattern }
            }
            _ => return self.unmapped(d, "cannot read this location"),
        };
        if m.pattern.starts_with('@') {
            return self.unmapped(d, "named locations have no equivalent in the gateway");
        }
        let block = d.block.as_deref().unwrap_or_default();
        let has = |name: &str| block.iter().any(|x| x.name == name);
        let only = |allowed: &[&str]| {
            block
                .iter()
                .all(|x| is_quiet(x) || allowed.contains(&x.name.as_str()))
        };
        let php = m
            .is_regex()
            .then(|| values::php_pattern(m.pattern))
            .flatten();
        if has("fastcgi_pass") {
            return self.php_location(d, &m, php, block, site);
        }
        if php == Some(PhpPattern::Any) && is_return(block, "404") {
            // Symfony's: no other script than the front controller runs.
            site.php_only_front_controller = true;
            return;
        }
        if !block.is_empty() && only(&["deny", "return"]) && denies(block) {
            return self.deny_location(d, &m, block, site);
        }
        if has("return") && only(&["return"]) && !m.is_regex() {
            return self.redirect_location(d, &m, block, site);
        }
        if m.is_regex() {
            if let Some(exts) = values::extension_pattern(m.pattern) {
                return self.static_location(d, &exts, block, site);
            }
        }
        if m.is_prefix() && m.pattern == "/" && only(&["try_files", "index"]) {
            return self.inner(block, site);
        }
        if m.is_prefix() && has("internal") && only(&["internal"]) {
            let path = m.pattern.trim_end_matches('/');
            if path.is_empty() {
                return self.unmapped(d, "the whole site cannot be internal");
            }
            site.internal_locations.push(path.to_string());
            return self.inner(block, site);
        }
        if m.is_prefix() && has("add_header") && only(&["add_header", "try_files"]) {
            return self.header_location(d, &m, block, site);
        }
        // `location = /favicon.ico { log_not_found off; }`,
        // `location ^~ /.well-known/acme-challenge/ { allow all; }`: served
        // as any path is. Not for regexes, which could catch PHP paths.
        if !m.is_regex() && only(&[]) {
            return self.inner(block, site);
        }
        self.unmapped(
            d,
            "no equivalent in the gateway for this location's contents",
        )
    }

    /// Quiet directives of a location that otherwise mapped.
    fn inner(&mut self, block: &[Directive], site: &mut Site) {
        for x in block {
            match x.name.as_str() {
                "try_files" => self.try_files(x, site),
                "index" => {
                    let _ = self.common(x, site, Level::Server);
                }
                "internal" => {}
                _ => {
                    let _ = self.common(x, site, Level::Location);
                }
            }
        }
    }

    fn php_location(
        &mut self,
        d: &Directive,
        m: &Match,
        php: Option<PhpPattern>,
        block: &[Directive],
        site: &mut Site,
    ) {
        let exact_script = (m.modifier == "=" && m.pattern.to_ascii_lowercase().ends_with(".php"))
            .then(|| m.pattern.to_string());
        let only = match (php, exact_script) {
            (_, Some(script)) | (Some(PhpPattern::Only(script)), _) => Some(script),
            (Some(PhpPattern::Any), _) => None,
            (None, _) => {
                return self.unmapped(d, "a PHP location the gateway cannot tell the meaning of (it runs any existing .php)");
            }
        };
        if let Some(script) = only {
            match &site.front_controller {
                Some(fc) if *fc != script => {
                    self.unmapped(
                        d,
                        format!("runs only {script} but the front controller is {fc}"),
                    );
                }
                _ => {
                    site.front_controller = Some(script);
                    site.php_only_front_controller = true;
                }
            }
        }
        for x in block {
            match x.name.as_str() {
                "fastcgi_split_path_info" if values::is_usual_split_path_info(x.arg(0)) => {}
                "fastcgi_split_path_info" => self.unmapped(
                    x,
                    "the gateway splits PATH_INFO after the first existing .php only",
                ),
                // The gateway 404s a missing script by itself.
                "try_files" if matches!(x.args.as_slice(), [a, b] if (a == "$uri" || a == "$fastcgi_script_name") && b == "=404") =>
                    {}
                // Debian's snippet keeps PATH_INFO past try_files this way.
                "set" if x.args == ["$path_info", "$fastcgi_path_info"] => {}
                "internal" => {}
                "fastcgi_hide_header" => {
                    self.unmapped(x, "the gateway passes every header PHP sends")
                }
                _ => {
                    if !self.common(x, site, Level::Location) {
                        self.unmapped(x, "no equivalent in the gateway");
                    }
                }
            }
        }
    }

    /// The quiet directives' findings (`access_log` has no per-path equivalent).
    fn quiet(&mut self, block: &[Directive]) {
        for x in block.iter().filter(|x| x.name == "access_log") {
            self.unmapped(
                x,
                "the gateway logs every request to stderr (access-log-format)",
            );
        }
    }

    fn deny_location(&mut self, d: &Directive, m: &Match, block: &[Directive], site: &mut Site) {
        self.quiet(block);
        if m.is_regex() && values::is_dotfile_idiom(m.pattern) {
            // Built in: dotfiles other than /.well-known are 404.
            return;
        }
        if m.is_regex() {
            if let Some(why) = values::regex_unsupported(m.pattern) {
                return self.unmapped(d, format!("the pattern uses {why}"));
            }
        }
        site.deny.push(m.as_regex());
    }

    fn redirect_location(
        &mut self,
        d: &Directive,
        m: &Match,
        block: &[Directive],
        site: &mut Site,
    ) {
        self.quiet(block);
        let Some(ret) = block.iter().find(|x| x.name == "return") else {
            return;
        };
        match redirect_of(ret) {
            Ok(mut redirect) => {
                match m.modifier {
                    "=" => redirect.path = Some(m.pattern.to_string()),
                    _ => redirect.prefix = Some(m.pattern.to_string()),
                }
                site.redirects.push(redirect);
            }
            Err(why) => self.unmapped(d, why),
        }
    }

    /// `location ~* \.(css|js)$ { expires …; add_header Cache-Control …; }`.
    fn static_location(
        &mut self,
        d: &Directive,
        exts: &[String],
        block: &[Directive],
        site: &mut Site,
    ) {
        let mut parts: Vec<String> = Vec::new();
        for x in block {
            match x.name.as_str() {
                "expires" => match values::expires_cache_control(&x.args) {
                    Ok(Some(value)) => parts.push(value),
                    Ok(None) => {}
                    Err(why) => self.unmapped(x, why),
                },
                "add_header"
                    if x.arg(0).eq_ignore_ascii_case("cache-control")
                        && !x.arg(1).contains('$') =>
                {
                    parts.push(x.arg(1).to_string());
                }
                // A missing file: nginx answers 404 here, the gateway asks the
                // front controller (docs/nginx-import.md).
                "try_files" if x.args == ["$uri", "=404"] => {}
                "access_log" => self.quiet(std::slice::from_ref(x)),
                _ if is_quiet(x) => {}
                _ => self.unmapped(
                    x,
                    "static-file locations map only expires and Cache-Control",
                ),
            }
        }
        if parts.is_empty() {
            if block.is_empty() {
                self.unmapped(d, "an empty location has no equivalent");
            }
            return;
        }
        let value = parts.join(", ");
        for ext in exts {
            // As nginx: the first location to match wins.
            if !site.cache_control.iter().any(|(e, _)| e == ext) {
                site.cache_control.push((ext.clone(), value.clone()));
            }
        }
    }

    fn header_location(&mut self, d: &Directive, m: &Match, block: &[Directive], site: &mut Site) {
        for x in block {
            match x.name.as_str() {
                "add_header" => {
                    let mut scratch = Site::default();
                    if self.common(x, &mut scratch, Level::Location) {
                        for mut header in scratch.headers {
                            header.prefix = Some(m.pattern.to_string());
                            site.headers.push(header);
                        }
                    }
                }
                "try_files" => {
                    let mut scratch = site.clone();
                    self.try_files(x, &mut scratch);
                    if scratch.front_controller != site.front_controller {
                        self.unmapped(
                            d,
                            "a front controller of its own for a prefix has no equivalent",
                        );
                    }
                }
                _ => {
                    let _ = self.common(x, site, Level::Location);
                }
            }
        }
    }
}

fn is_return(block: &[Directive], code: &str) -> bool {
    matches!(block, [x] if x.name == "return" && x.args == [code])
}

/// `deny all;` or `return 403;` (with only quiet directives besides).
fn denies(block: &[Directive]) -> bool {
    block.iter().any(|x| {
        (x.name == "deny" && x.args == ["all"]) || (x.name == "return" && x.args == ["403"])
    }) && block.iter().all(|x| {
        is_quiet(x)
            || (x.name == "deny" && x.args == ["all"])
            || (x.name == "return" && x.args == ["403"])
    })
}
