//! The TOML config file, as `check-config FILE` reads it
//! (`config::check_text`: `check_file` on text already read), named
//! `gateway.toml` in the routing targets' temp dir, so `root = "root"` and
//! `sendfile-dir = "files"` resolve.
//!
//! Input: the file's text (anything not UTF-8 is skipped: reading it as a
//! string fails before parsing).
//!
//! Checked: no panic; an error is one non-empty line (the promise
//! `check-config` and the logs rely on); a config that loads keeps the
//! rules `finish` enforces (a listen address, pool and connection counts of
//! at least 1, idle ≤ pool, TLS halves together and https only with them,
//! a plain admin listener, a canonical existing root, front controller and
//! internal locations as URL paths, lowercase extensions, a trimmed log
//! level) and loads again, identical, from the table written back out by
//! the toml crate.
#![no_main]

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use fcgi_gateway::config::{check_text, Config, ListenAddr};
use fuzz_support::tree;
use libfuzzer_sys::fuzz_target;

fn config_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| tree().base.join("gateway.toml"))
}

fn check_config(c: &Config) {
    assert!(!c.listen.is_empty(), "no listen address");
    let tls = c.tls_cert.is_some();
    assert_eq!(tls, c.tls_key.is_some(), "one TLS half");
    for addr in &c.listen {
        match addr {
            ListenAddr::Https(_) => assert!(tls, "https without a certificate"),
            ListenAddr::Tcp(_) => assert!(!tls, "bare address left unresolved with TLS"),
            ListenAddr::Http(_) | ListenAddr::Unix(_) => {}
        }
    }
    assert!(!matches!(c.admin_listen, Some(ListenAddr::Https(_))));
    assert!(c.max_upstream_conns >= 1 && c.max_connections >= 1);
    assert!(c.max_idle_conns <= c.max_upstream_conns);
    assert!(c.root.is_absolute() && c.root.is_dir());
    assert_eq!(fs::canonicalize(&c.root).ok().as_ref(), Some(&c.root));
    if let Some(dir) = &c.sendfile_dir {
        assert!(dir.is_dir());
        assert_eq!(fs::canonicalize(dir).ok().as_ref(), Some(dir));
    }
    if c.php_only_front_controller {
        assert!(c.front_controller.is_some());
    }
    if let Some(fc) = &c.front_controller {
        assert!(fc.starts_with('/'), "front controller {fc:?}");
    }
    for loc in &c.internal_locations {
        assert!(
            loc.starts_with('/') && loc.len() > 1,
            "internal location {loc:?}"
        );
        assert!(!loc.ends_with('/'), "internal location {loc:?}");
    }
    for ext in c
        .never_serve_ext
        .iter()
        .chain(c.cache_control.iter().map(|(e, _)| e))
    {
        assert!(
            !ext.is_empty() && !ext.contains(['.', '/']),
            "extension {ext:?}"
        );
        assert_eq!(ext, &ext.to_ascii_lowercase(), "extension {ext:?}");
    }
    for name in &c.index {
        assert!(!name.is_empty() && !name.contains('/'), "index {name:?}");
    }
    assert!(!c.log_level.is_empty() && c.log_level.trim() == c.log_level);
    if c.size_from_fpm_status {
        assert!(c.fpm_status_path.is_some());
    }
    assert!(c.params.iter().all(|(name, _)| !name.is_empty()));
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = config_path();
    match check_text(path, text) {
        Err(e) => {
            let message = e.to_string();
            assert!(!message.is_empty(), "empty error");
            assert!(!message.contains('\n'), "multi-line error: {message}");
        }
        Ok(config) => {
            check_config(&config);
            // Written back out (other quoting, order kept), it loads the same.
            let table: toml::Table = text.parse().expect("it parsed once");
            let Ok(again) = toml::to_string(&table) else {
                return;
            };
            match check_text(path, &again) {
                Ok(reloaded) => assert_eq!(reloaded, config, "differs when rewritten:\n{again}"),
                Err(e) => panic!("rewritten config fails: {e}\n{again}"),
            }
        }
    }
});
