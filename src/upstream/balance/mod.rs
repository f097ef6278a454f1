//! Several upstreams: which one a request goes to (least outstanding
//! requests, weighted; ties by smooth weighted round robin), which are in
//! service (`health`), and names that stand for several hosts (`resolve`).
//! Each upstream (`Member`) has its own pool, so its own learned size,
//! pipelining and metrics. With one upstream, picking costs nothing.

mod health;
mod resolve;
mod spec;

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::{Pool, PoolSettings, UpstreamAddr};

pub use health::HealthPolicy;
pub use resolve::{Lookup, Resolve, SystemResolver};
pub use spec::UpstreamSpec;

/// How the set of upstreams is set up; built from the config. A reload
/// keeps the set (and its warm connections) when these are equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceSettings {
    pub upstreams: Vec<UpstreamSpec>,
    /// Each upstream's pool: `addr` and `max_conns` come from its spec.
    pub pool: PoolSettings,
    pub health: HealthPolicy,
    /// How often names with several addresses are looked up again.
    pub resolve_interval: Duration,
}

/// Starts an upstream's background work (idle reaper, status follower,
/// metrics); what it returns is stopped when the upstream goes.
pub type MemberStarter = Arc<dyn Fn(&Arc<Member>) -> Vec<AbortHandle> + Send + Sync>;

/// The upstreams requests are spread over; cheap to clone.
#[derive(Clone)]
pub struct Upstreams {
    inner: Arc<Inner>,
    /// The configured upstreams (indices into the settings' list) this
    /// handle picks from: a site's own (`for_specs`); `None`: all.
    group: Option<Arc<[usize]>>,
}

struct Inner {
    settings: BalanceSettings,
    members: ArcSwap<Vec<Arc<Member>>>,
    /// Serialises the round robin among equally loaded upstreams.
    round_robin: Mutex<()>,
    starter: OnceLock<MemberStarter>,
    resolver: Arc<dyn Resolve>,
    /// Requests sent to another upstream after one failed to take them.
    failovers: AtomicU64,
    /// A reload replaced this set: no more lookups.
    stopped: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let members = self.inner.members.load();
        f.debug_struct("Upstreams")
            .field(
                "members",
                &members
                    .iter()
                    .map(|m| m.addr().to_string())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// One upstream in service: its pool, its share, its health.
pub struct Member {
    /// Which configured upstream it comes from (several share one when a
    /// name has several addresses).
    spec: usize,
    pool: Pool,
    weight: u32,
    backup: bool,
    /// Requests picked for it and not finished.
    outstanding: AtomicUsize,
    /// Smooth weighted round robin's running weight.
    current: AtomicI64,
    health: health::Health,
    /// Requests picked for it.
    picked: AtomicU64,
    /// Background work, stopped when it leaves.
    tasks: Mutex<Vec<AbortHandle>>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("addr", &self.addr().to_string())
            .field("weight", &self.weight)
            .field("backup", &self.backup)
            .finish()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.get_mut() {
            for task in tasks.drain(..) {
                task.abort();
            }
        }
    }
}

impl Member {
    fn new(
        spec: usize,
        upstream: &UpstreamSpec,
        addr: UpstreamAddr,
        template: &PoolSettings,
    ) -> Member {
        let max_conns = upstream.max_conns.unwrap_or(template.max_conns);
        let settings = PoolSettings {
            addr,
            max_conns,
            max_idle: template.max_idle.min(max_conns),
            ..template.clone()
        };
        Member {
            spec,
            pool: Pool::new(settings),
            weight: upstream.weight.max(1),
            backup: upstream.backup,
            outstanding: AtomicUsize::new(0),
            current: AtomicI64::new(0),
            health: health::Health::new(),
            picked: AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn addr(&self) -> &UpstreamAddr {
        &self.pool.settings().addr
    }

    pub fn weight(&self) -> u32 {
        self.weight
    }

    pub fn is_backup(&self) -> bool {
        self.backup
    }

    /// In service now (not taken out by failures or a failed probe).
    pub fn is_up(&self) -> bool {
        self.health.is_up(Instant::now())
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub fn picked(&self) -> u64 {
        self.picked.load(Ordering::Relaxed)
    }

    /// An active probe's result (`fpm::health`); logs when it changes.
    pub fn probed(&self, ok: bool, why: &str) {
        if self.health.probed(ok) {
            if ok {
                tracing::info!(upstream = %self.addr(), "upstream back in service: its health probe passed");
            } else {
                tracing::warn!(upstream = %self.addr(), reason = why, "upstream out of service: its health probe failed");
            }
        }
    }

    fn failed(&self, policy: HealthPolicy, error: &super::UpstreamError) {
        if self.health.failed(policy, Instant::now()) {
            tracing::warn!(
                upstream = %self.addr(),
                %error,
                out_for = ?policy.fail_timeout,
                "upstream out of service: max-fails failures within fail-timeout"
            );
        }
    }

    /// Compares (outstanding + 1) / weight: the load each would carry
    /// with one more request.
    fn loaded_after_one(&self, other: &Member) -> std::cmp::Ordering {
        let mine = (self.outstanding() as u128 + 1) * u128::from(other.weight);
        let theirs = (other.outstanding() as u128 + 1) * u128::from(self.weight);
        mine.cmp(&theirs)
    }

    /// outstanding / weight is below `bar`'s (outstanding + 1) / weight.
    fn below_after_one(&self, bar: &Member) -> bool {
        let mine = self.outstanding() as u128 * u128::from(bar.weight);
        let bars = (bar.outstanding() as u128 + 1) * u128::from(self.weight);
        mine < bars
    }
}

/// Counts a request against its upstream while it runs.
pub(crate) struct InFlight(Option<Arc<Member>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(member) = &self.0 {
            member.outstanding.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Upstreams {
    pub fn new(settings: BalanceSettings) -> Upstreams {
        Upstreams::with_resolver(settings, Arc::new(SystemResolver))
    }

    /// Looks names up through `resolver` (the seam tests use).
    pub fn with_resolver(settings: BalanceSettings, resolver: Arc<dyn Resolve>) -> Upstreams {
        // Until a name is first looked up, it is one upstream that the
        // dialler resolves at each connect, as with a single upstream.
        let members = settings
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, spec)| Arc::new(Member::new(i, spec, spec.address.clone(), &settings.pool)))
            .collect();
        Upstreams {
            group: None,
            inner: Arc::new(Inner {
                settings,
                members: ArcSwap::from_pointee(members),
                round_robin: Mutex::new(()),
                starter: OnceLock::new(),
                resolver,
                failovers: AtomicU64::new(0),
                stopped: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// The same set, picking only among the configured upstreams `specs`
    /// (indices into `settings().upstreams`): a site's own. All of them
    /// (or none given): the whole set.
    pub fn for_specs(&self, specs: &[usize]) -> Upstreams {
        let all = specs.is_empty()
            || (0..self.inner.settings.upstreams.len()).all(|i| specs.contains(&i));
        Upstreams {
            inner: self.inner.clone(),
            group: (!all).then(|| specs.into()),
        }
    }

    /// The configured upstreams, for a log line.
    pub fn describe(&self) -> String {
        let specs: Vec<String> = self
            .inner
            .settings
            .upstreams
            .iter()
            .map(|s| s.to_string())
            .collect();
        specs.join(", ")
    }

    pub fn settings(&self) -> &BalanceSettings {
        &self.inner.settings
    }

    /// The upstreams in service now, in config order (for metrics, readiness,
    /// probes and tests).
    pub fn members(&self) -> Arc<Vec<Arc<Member>>> {
        self.inner.members.load_full()
    }

    /// The first upstream's pool (the only one in a single-upstream setup).
    pub fn first_pool(&self) -> Option<Pool> {
        self.inner.members.load().first().map(|m| m.pool.clone())
    }

    pub fn failovers(&self) -> u64 {
        self.inner.failovers.load(Ordering::Relaxed)
    }

    /// Starts each upstream's background work through `starter` (also for
    /// those a later lookup adds), and the lookups of names. Call once,
    /// inside the runtime.
    pub fn start(&self, starter: MemberStarter) {
        if self.inner.starter.set(starter.clone()).is_err() {
            return;
        }
        for member in self.inner.members.load().iter() {
            run_starter(&starter, member);
        }
        let named = self
            .inner
            .settings
            .upstreams
            .iter()
            .any(|spec| resolve::name_of(&spec.address).is_some());
        if named {
            let weak = Arc::downgrade(&self.inner);
            let every = self
                .inner
                .settings
                .resolve_interval
                .max(Duration::from_millis(50));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else { return };
                    if inner.stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    Upstreams { inner, group: None }.resolve_names().await;
                }
            });
        }
    }

    /// Stops the background work of every upstream and the lookups: a
    /// reload replaced this set (requests still on it finish).
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Relaxed);
        for member in self.inner.members.load().iter() {
            if let Ok(mut tasks) = member.tasks.lock() {
                for task in tasks.drain(..) {
                    task.abort();
                }
            }
        }
    }

    /// Looks every name up once and brings the upstreams in line: new
    /// addresses join, gone ones leave (their connections drain: requests
    /// on them finish, then the pool closes).
    pub async fn resolve_names(&self) {
        let specs = &self.inner.settings.upstreams;
        let mut found: Vec<Option<Vec<std::net::IpAddr>>> = vec![None; specs.len()];
        for (i, spec) in specs.iter().enumerate() {
            let Some((host, port)) = resolve::name_of(&spec.address) else {
                continue;
            };
            match self.inner.resolver.lookup(host, port).await {
                Ok(ips) if !ips.is_empty() => found[i] = Some(resolve::distinct(ips)),
                // Keep what we have: a failed lookup is no reason to drop hosts.
                Ok(_) => {
                    tracing::warn!(upstream = %spec.address, "the upstream's name has no addresses; keeping the ones known")
                }
                Err(error) => {
                    tracing::warn!(upstream = %spec.address, %error, "cannot look up the upstream's name; keeping the addresses known")
                }
            }
        }
        let old = self.inner.members.load_full();
        let mut members = Vec::with_capacity(old.len());
        let mut joined = Vec::new();
        let mut left = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let current: Vec<&Arc<Member>> = old.iter().filter(|m| m.spec == i).collect();
            let Some(ips) = &found[i] else {
                members.extend(current.into_iter().cloned());
                continue;
            };
            let port = resolve::name_of(&spec.address).map_or(0, |(_, port)| port);
            for ip in ips {
                let addr = resolve::address(*ip, port);
                match current.iter().find(|m| *m.addr() == addr) {
                    Some(m) => members.push(Arc::clone(m)),
                    None => {
                        let member =
                            Arc::new(Member::new(i, spec, addr, &self.inner.settings.pool));
                        joined.push(member.clone());
                        members.push(member);
                    }
                }
            }
            left.extend(
                current
                    .into_iter()
                    .filter(|m| !members.iter().any(|n| Arc::ptr_eq(n, m)))
                    .map(|m| m.addr().to_string()),
            );
        }
        if (joined.is_empty() && left.is_empty()) || self.inner.stopped.load(Ordering::Relaxed) {
            return;
        }
        if let Some(starter) = self.inner.starter.get() {
            for member in &joined {
                run_starter(starter, member);
            }
        }
        let joined: Vec<String> = joined.iter().map(|m| m.addr().to_string()).collect();
        tracing::info!(?joined, ?left, "upstream addresses changed");
        self.inner.members.store(Arc::new(members));
    }

    /// The upstream for a request's next attempt: not one of `tried`; in
    /// service, and not a backup unless every other one is out; of those,
    /// the least loaded (outstanding requests per weight, see below), by
    /// weighted round robin among equals. When every upstream is out, one is tried anyway (a request
    /// is better tried than refused). None when all were tried.
    pub(crate) fn pick(&self, tried: &[Arc<Member>]) -> Option<(Arc<Member>, InFlight)> {
        let members = self.inner.members.load();
        if let Some(group) = &self.group {
            return self.pick_among(
                members.iter().filter(|m| group.contains(&m.spec)).collect(),
                tried,
            );
        }
        if let [only] = members.as_slice() {
            // One upstream: no choice, no bookkeeping.
            if tried.iter().any(|t| Arc::ptr_eq(t, only)) {
                return None;
            }
            return Some((only.clone(), InFlight(None)));
        }
        self.pick_among(members.iter().collect(), tried)
    }

    fn pick_among(
        &self,
        members: Vec<&Arc<Member>>,
        tried: &[Arc<Member>],
    ) -> Option<(Arc<Member>, InFlight)> {
        let now = Instant::now();
        let untried = |m: &&Arc<Member>| !tried.iter().any(|t| Arc::ptr_eq(t, m));
        let mut candidates: Vec<&Arc<Member>> = members
            .iter()
            .copied()
            .filter(untried)
            .filter(|m| !m.backup && m.health.is_up(now))
            .collect();
        if candidates.is_empty() {
            candidates = members
                .iter()
                .copied()
                .filter(untried)
                .filter(|m| m.backup && m.health.is_up(now))
                .collect();
        }
        if candidates.is_empty() {
            candidates = members.iter().copied().filter(untried).collect();
        }
        // The one that would be least loaded with this request added sets
        // the bar; those below it share by weighted round robin. With equal
        // weights that is "the fewest outstanding"; with unequal ones it
        // keeps to the weights when a few requests are in flight, where
        // comparing loads alone hands the light ones more than their share.
        let bar = candidates
            .iter()
            .copied()
            .min_by(|a, b| a.loaded_after_one(b))?;
        candidates.retain(|m| m.below_after_one(bar));
        let chosen = match candidates.as_slice() {
            [] => bar.clone(),
            [only] => Arc::clone(only),
            several => self.round_robin(several),
        };
        chosen.picked.fetch_add(1, Ordering::Relaxed);
        chosen.outstanding.fetch_add(1, Ordering::Relaxed);
        Some((chosen.clone(), InFlight(Some(chosen))))
    }

    /// Smooth weighted round robin (each gains its weight, the highest is
    /// chosen and pays the total): over time each gets its weight's share,
    /// interleaved rather than in runs.
    fn round_robin(&self, candidates: &[&Arc<Member>]) -> Arc<Member> {
        let _turn = self.inner.round_robin.lock();
        let total: i64 = candidates.iter().map(|m| i64::from(m.weight)).sum();
        let mut best = candidates[0];
        let mut best_current = i64::MIN;
        for m in candidates {
            let current =
                m.current.fetch_add(i64::from(m.weight), Ordering::Relaxed) + i64::from(m.weight);
            if current > best_current {
                best = m;
                best_current = current;
            }
        }
        best.current.fetch_sub(total, Ordering::Relaxed);
        best.clone()
    }

    pub(crate) fn note_failover(&self) {
        self.inner.failovers.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn health_policy(&self) -> HealthPolicy {
        self.inner.settings.health
    }
}

fn run_starter(starter: &MemberStarter, member: &Arc<Member>) {
    let tasks = starter(member);
    if let Ok(mut held) = member.tasks.lock() {
        held.extend(tasks);
    }
}

/// What a request's attempt on one upstream did to that upstream's health.
pub(crate) fn judge(
    member: &Member,
    policy: HealthPolicy,
    outcome: Result<(), &super::UpstreamError>,
) {
    match outcome {
        Ok(()) => member.health.succeeded(),
        Err(error) if error.counts_against_host() => member.failed(policy, error),
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests;
