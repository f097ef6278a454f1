//! The sites requests are served for: each one's routing, upstreams,
//! limits and rules, built from the config (the top level and its
//! `[[site]]` tables), and which one a request's Host picks.

use std::path::PathBuf;

use super::docroot::DocRoot;
use crate::config::{Config, ListenAddr};
use crate::route::RouteConfig;
use crate::sites::{self, DenyRule, ErrorPage, HeaderRule, Redirect, ServerName};
use crate::static_files::StaticConfig;
use crate::upstream::{UpstreamSpec, Upstreams};

/// One site as requests meet it.
#[derive(Debug)]
pub(crate) struct SiteState {
    pub names: Vec<ServerName>,
    /// Routing, with the root resolved again each second (`docroot`).
    pub docroot: DocRoot,
    /// The upstreams this site's PHP goes to.
    pub upstreams: Upstreams,
    pub extra_params: Vec<(String, String)>,
    /// SERVER_NAME: configured, or the site's first exact name.
    pub server_name: Option<String>,
    pub max_body_size: u64,
    pub static_files: StaticConfig,
    pub sendfile_dir: Option<PathBuf>,
    /// gzip/brotli for PHP responses that qualify.
    pub compress: bool,
    pub error_pages: Vec<ErrorPage>,
    pub intercept_errors: bool,
    pub headers: Vec<HeaderRule>,
    pub redirects: Vec<Redirect>,
    pub deny: Vec<DenyRule>,
    /// Plain-HTTP requests are sent to this https port.
    pub https_redirect_port: Option<u16>,
}

impl SiteState {
    fn new(
        config: &Config,
        names: Vec<ServerName>,
        upstreams: Upstreams,
        https: Option<u16>,
    ) -> SiteState {
        SiteState {
            server_name: config
                .server_name
                .clone()
                .or_else(|| names.iter().find_map(|n| n.exact().map(str::to_owned))),
            names,
            docroot: DocRoot::new(
                config.root_as_given.clone(),
                RouteConfig {
                    root: config.root.clone(),
                    index: config.index.clone(),
                    front_controller: config.front_controller.clone(),
                    php_only_front_controller: config.php_only_front_controller,
                    never_serve_ext: config.never_serve_ext.clone(),
                    follow_symlinks_outside_root: config.follow_symlinks_outside_root,
                    internal_locations: config.internal_locations.clone(),
                    script_stat_cache: config.script_stat_cache,
                },
            ),
            upstreams,
            extra_params: config.params.clone(),
            max_body_size: config.max_body_size,
            static_files: StaticConfig::new(&config.cache_control),
            sendfile_dir: config.sendfile_dir.clone(),
            compress: config.compress,
            error_pages: config.error_page.clone(),
            intercept_errors: config.intercept_errors,
            headers: config.add_header.clone(),
            redirects: config.redirect.clone(),
            deny: config.deny.clone(),
            https_redirect_port: if config.redirect_to_https {
                https
            } else {
                None
            },
        }
    }
}

/// Every site, and the one for requests no site's names fit.
#[derive(Debug)]
pub(crate) struct Sites {
    list: Vec<SiteState>,
    default: usize,
}

impl Sites {
    /// `upstreams` holds every site's (`all_upstream_specs` order).
    pub(crate) fn new(config: &Config, upstreams: &Upstreams) -> Sites {
        let all = all_upstream_specs(config);
        let group = |specs: &[UpstreamSpec]| -> Upstreams {
            let own = specs_of(config, specs);
            let indices: Vec<usize> = own
                .iter()
                .filter_map(|s| all.iter().position(|a| a == s))
                .collect();
            upstreams.for_specs(&indices)
        };
        let https = config.listen.iter().find_map(|l| match l {
            ListenAddr::Https(addr) => Some(addr.port()),
            _ => None,
        });
        let mut list = Vec::new();
        if config.top_level_site {
            list.push(SiteState::new(
                config,
                Vec::new(),
                group(&config.upstream),
                https,
            ));
        }
        for site in &config.site {
            list.push(SiteState::new(
                &site.config,
                site.server_names.clone(),
                group(&site.config.upstream),
                https,
            ));
        }
        let offset = usize::from(config.top_level_site);
        let default = config
            .site
            .iter()
            .position(|s| s.default)
            .map_or(0, |i| i + offset);
        Sites { list, default }
    }

    /// The site for a request to `host` (`Host` or the target's authority).
    pub(crate) fn for_host(&self, host: Option<&str>) -> &SiteState {
        if self.list.len() == 1 {
            return &self.list[0];
        }
        let chosen = sites::choose(self.list.iter().map(|s| s.names.as_slice()), host);
        &self.list[chosen.unwrap_or(self.default)]
    }

    /// The default site (the one log lines describe).
    pub(crate) fn default_site(&self) -> &SiteState {
        &self.list[self.default]
    }
}

/// A site's upstreams; none configured means the embedded php-fpm's.
fn specs_of(config: &Config, specs: &[UpstreamSpec]) -> Vec<UpstreamSpec> {
    if specs.is_empty() {
        vec![UpstreamSpec::new(super::upstream_of(config))]
    } else {
        specs.to_vec()
    }
}

/// Every upstream of every site, each once: the top level's first.
pub(crate) fn all_upstream_specs(config: &Config) -> Vec<UpstreamSpec> {
    let mut all = specs_of(config, &config.upstream);
    for site in &config.site {
        for spec in specs_of(config, &site.config.upstream) {
            if !all.contains(&spec) {
                all.push(spec);
            }
        }
    }
    all
}
