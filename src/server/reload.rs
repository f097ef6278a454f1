//! Config reload (SIGHUP): re-read the config the way it was read at start,
//! and if it is valid, swap it in without dropping a connection.
//!
//! A reload has two halves. *Prepare* does everything that can fail (read
//! and validate the file, bind the added listen addresses, and any future
//! per-reload resource such as TLS certificates) without changing what is
//! served; any failure rejects the reload with one error line and the
//! running config stays. *Commit* cannot fail: it swaps the per-request
//! state (new requests see the new routing, limits and pool; requests in
//! flight finish on the old state, whose pool closes when its last request
//! ends), starts the added listeners and stops the removed ones. Listeners
//! whose address is unchanged are never touched.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use super::listeners::ListenerSet;
use super::tls::{ReloadableTls, TlsError};
use super::{
    admin_state, balance_settings, bind_beside, start_upstreams, AppState, BindError, Listener,
};
use crate::admin::AdminState;
use crate::config::{settings, Config, ConfigError, ListenAddr};
use crate::metrics::Metrics;
use crate::upstream::{UpstreamAddr, UpstreamSpec, Upstreams};

type LoadFn = dyn Fn() -> Result<Config, ConfigError> + Send + Sync;

/// Where a reload gets its config, and what asks for one.
pub struct Reload {
    load: Box<LoadFn>,
    file: Option<PathBuf>,
    trigger: mpsc::Receiver<()>,
    embedded_upstream: Option<UpstreamAddr>,
}

impl fmt::Debug for Reload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reload")
            .field("file", &self.file)
            .field("embedded_upstream", &self.embedded_upstream)
            .finish_non_exhaustive()
    }
}

impl Reload {
    /// `load` builds the config as at start (the file re-read, the original
    /// flags over it); `file` is that file, for messages; every message on
    /// `trigger` reloads once.
    pub fn new(
        load: impl Fn() -> Result<Config, ConfigError> + Send + Sync + 'static,
        file: Option<PathBuf>,
        trigger: mpsc::Receiver<()>,
    ) -> Reload {
        Reload {
            load: Box::new(load),
            file,
            trigger,
            embedded_upstream: None,
        }
    }

    /// The embedded php-fpm's socket: a reloaded config without `upstream`
    /// still means it.
    pub fn with_embedded_upstream(mut self, addr: UpstreamAddr) -> Reload {
        self.embedded_upstream = Some(addr);
        self
    }
}

/// What a running server can change on reload.
pub(super) struct Live {
    /// The config in force (with the embedded php-fpm's upstream filled in).
    pub config: Config,
    pub shared: Arc<ArcSwap<AppState>>,
    pub admin: Option<Arc<ArcSwap<AdminState>>>,
    pub listeners: ListenerSet,
    pub metrics: Arc<Metrics>,
    /// The upstreams in force (their background work runs until a reload
    /// replaces them).
    pub upstreams: Upstreams,
}

/// Reloads on each trigger until `shutdown` completes.
pub(super) async fn until_shutdown(
    live: &mut Live,
    reload: Option<Reload>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let Some(mut reload) = reload else {
        shutdown.await;
        return;
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            got = reload.trigger.recv() => match got {
                Some(()) => live.reload(&reload).await,
                None => {
                    shutdown.await;
                    return;
                }
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("key `listen`: {0}")]
    Bind(BindError),
    #[error("{0}")]
    Tls(#[from] TlsError),
}

impl Live {
    async fn reload(&mut self, source: &Reload) {
        match self.try_reload(source).await {
            Ok(done) => tracing::info!(
                changed = %done.changed,
                listeners_added = done.added,
                listeners_removed = done.removed,
                upstream_pool = if done.new_pool { "new" } else { "kept" },
                "config reloaded"
            ),
            Err(e) => {
                let from = source.file.as_ref().map_or_else(
                    || "the command line".to_owned(),
                    |f| f.display().to_string(),
                );
                tracing::error!("config reload from {from} rejected, the running config stays: {e}")
            }
        }
    }

    async fn try_reload(&mut self, source: &Reload) -> Result<Done, ReloadError> {
        // Prepare: nothing served changes until every step here succeeded.
        let mut new = (source.load)()?;
        self.keep_restart_only(&mut new, source.embedded_upstream.as_ref());
        let added = self.bind_missing(&new).await?;
        // Certificates are read and checked here, before the commit, and go
        // in with the state below: one SIGHUP reloads both, and a bad
        // certificate rejects the whole reload.
        let tls = match &new.tls_set() {
            Some(set) => Some(Arc::new(ReloadableTls::load(set)?)),
            None => None,
        };

        // Commit.
        let changed = changed_keys(&self.config, &new);
        let new_pool = balance_settings(&new) != *self.upstreams.settings()
            || new.fpm_status_path != self.config.fpm_status_path
            || new.size_from_fpm_status != self.config.size_from_fpm_status
            || new.fpm_ping_path != self.config.fpm_ping_path
            || new.health_interval != self.config.health_interval;
        if new_pool {
            let upstreams = Upstreams::new(balance_settings(&new));
            self.upstreams.stop();
            start_upstreams(&new, &upstreams, &self.metrics);
            self.metrics.set_upstreams(upstreams.clone());
            self.upstreams = upstreams;
        }
        // Same settings: the upstreams keep their warm connections (and
        // learned sizes).
        self.shared.store(Arc::new(AppState::new(
            &new,
            self.upstreams.clone(),
            self.metrics.clone(),
            tls,
        )));
        if let Some(admin) = &self.admin {
            admin.store(Arc::new(admin_state(&new, &self.metrics, &self.upstreams)));
        }
        self.listeners.set_max_connections(new.max_connections);
        let added = added.commit();
        let added_count = added.len();
        for (addr, listener) in added {
            self.listeners.start(listener, Some(addr), false);
        }
        let before = self.listeners.len();
        self.listeners.stop_unlisted(&new).await;
        let removed = before - self.listeners.len();
        self.config = new;
        if let Some(set) = &self.config.tls_set() {
            let files = set.default_files();
            tracing::info!(cert = %files.cert.display(), key = %files.key.display(), certificates = set.entries.len(), "TLS certificate reloaded; new connections use it");
        }
        Ok(Done {
            changed,
            added: added_count,
            removed,
            new_pool,
        })
    }

    /// Settings that cannot change without a restart keep their running
    /// value, with a warning naming them.
    fn keep_restart_only(&self, new: &mut Config, embedded: Option<&UpstreamAddr>) {
        let old = &self.config;
        let warn = |key: &str| {
            tracing::warn!(
                key,
                "changing `{key}` needs a restart; the running value stays"
            );
        };
        match (embedded, new.upstream.is_empty()) {
            (Some(addr), true) => new.upstream = vec![UpstreamSpec::new(addr.clone())],
            (Some(_), false) | (None, true) => {
                warn("upstream");
                new.upstream = old.upstream.clone();
                new.fpm_status_path = old.fpm_status_path.clone();
                new.size_from_fpm_status = old.size_from_fpm_status;
            }
            (None, false) => {}
        }
        for key in settings::keep_restart_only(old, new) {
            warn(key);
        }
    }

    /// Binds the addresses `new` adds; on failure, what was bound so far
    /// is closed again and the reload is rejected.
    async fn bind_missing(&self, new: &Config) -> Result<Fresh, ReloadError> {
        let mut fresh = Fresh(Vec::new());
        for addr in self.listeners.missing(new) {
            let bound = bind_beside(std::slice::from_ref(&addr), &new.listen)
                .await
                .map_err(ReloadError::Bind)?;
            fresh.0.extend(bound.into_iter().map(|l| (addr.clone(), l)));
        }
        Ok(fresh)
    }
}

/// Listeners bound for a reload that has not committed yet. Dropped (the
/// reload failed), they close and their socket files go.
struct Fresh(Vec<(ListenAddr, Listener)>);

impl Fresh {
    fn commit(mut self) -> Vec<(ListenAddr, Listener)> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        for (_, listener) in &self.0 {
            if let Listener::Unix { path, .. } = listener {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// What a reload did, for its log line.
struct Done {
    changed: String,
    added: usize,
    removed: usize,
    new_pool: bool,
}

/// The config keys whose value differs, for the log: `root, listen` or `none`.
/// The changed settings' keys for the reload's log line; "none" if none.
fn changed_keys(old: &Config, new: &Config) -> String {
    let keys = settings::changed_keys(old, new);
    if keys.is_empty() {
        "none".to_owned()
    } else {
        keys.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::changed_keys;
    use crate::config::{self, ServeArgs};

    #[test]
    fn changed_keys_name_the_file_keys() {
        let root = env!("CARGO_MANIFEST_DIR").to_owned();
        let args = |extra: &[&str]| {
            let mut args = ServeArgs {
                root: Some(root.clone().into()),
                upstream: vec!["unix:/run/fpm.sock".to_owned()],
                ..ServeArgs::default()
            };
            args.trusted_proxies = extra.iter().map(|s| (*s).to_owned()).collect();
            config::load(&args).unwrap()
        };
        let old = args(&[]);
        assert_eq!(changed_keys(&old, &old), "none");
        let mut new = args(&["10.0.0.0/8"]);
        new.front_controller = Some("/index.php".to_owned());
        assert_eq!(changed_keys(&old, &new), "front-controller, trusted-proxy");
    }
}
