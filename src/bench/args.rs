//! The `bench` command line and its validation into a [`Plan`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::config::parse_duration;
use crate::upstream::UpstreamAddr;

/// `fcgi-gateway bench`: measure php-fpm over FastCGI on each upstream.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[arg(
        long,
        value_name = "ADDR",
        value_parser = parse_upstream,
        help = "FastCGI server to measure: unix:/path/to.sock or tcp:host:port; repeat to \
                compare (ratios are the first upstream over each other one). Without it, the \
                bench starts its own php-fpm with a unix and a tcp pool and measures both"
    )]
    pub upstream: Vec<UpstreamAddr>,

    #[arg(
        long,
        value_name = "PATH",
        help = "Absolute path of the script as php-fpm sees it (SCRIPT_FILENAME); required \
                with --upstream, else a built-in hello-world script"
    )]
    pub script: Option<String>,

    #[arg(
        long = "link-delay",
        value_name = "DUR",
        value_parser = parse_duration,
        help = "Without --upstream, as root: also measure tcp to a php-fpm in a network \
                namespace behind a link that adds DUR of round-trip time (DUR/2 each way), \
                e.g. 0.2ms, 200us or 1ms; repeat for more links (0ms shows the link's own cost)"
    )]
    pub link_delay: Vec<Duration>,

    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=1024),
        help = "Without --upstream: workers of each php-fpm pool (pm = static) [default: 4]"
    )]
    pub fpm_children: Option<u32>,

    #[arg(
        long,
        value_name = "BIN",
        help = "Without --upstream: the php-fpm to start [default: php-fpm, php-fpm8.x or \
                php-fpm7.x on PATH, then /usr/sbin/php-fpm*]"
    )]
    pub php_fpm: Option<PathBuf>,

    #[arg(
        long,
        value_name = "QUERY",
        default_value = "",
        help = "QUERY_STRING sent with every request"
    )]
    pub query: String,

    #[arg(
        long,
        value_name = "LIST",
        default_value = "1,8,64",
        value_parser = parse_concurrency,
        help = "Comma-separated numbers of concurrent clients; each is its own cell"
    )]
    pub concurrency: ConcurrencyList,

    #[arg(
        long,
        value_name = "DUR",
        value_parser = parse_duration,
        conflicts_with = "requests",
        help = "How long each cell runs per round, e.g. 2s or 500ms [default: 2s]"
    )]
    pub duration: Option<Duration>,

    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..),
        help = "Instead of --duration: finished requests (ok or failed) per cell and round"
    )]
    pub requests: Option<u64>,

    #[arg(
        long,
        value_name = "MODE",
        value_enum,
        default_value = "both",
        help = "FCGI_KEEP_CONN: on = one connection per client, off = a new connection per \
                request, both = measure each"
    )]
    pub keepalive: KeepAliveArg,

    #[arg(
        long,
        value_name = "N",
        default_value = "3",
        value_parser = clap::value_parser!(u32).range(1..),
        help = "Rounds; every cell runs once per round, interleaved"
    )]
    pub rounds: u32,

    #[arg(
        long,
        value_name = "DUR",
        default_value = "1s",
        value_parser = parse_duration,
        help = "Load each upstream this long before measuring (0s to skip)"
    )]
    pub warmup: Duration,

    #[arg(
        long,
        value_name = "PATH",
        help = "php-fpm's pm.status_path (e.g. /status): read its listen queue and \
                max children reached before and after each cell"
    )]
    pub fpm_status_path: Option<String>,

    #[arg(long, value_name = "FILE", help = "Write the results as JSON")]
    pub json: Option<PathBuf>,

    #[arg(
        long,
        value_name = "FILE",
        help = "Write an SVG of latency percentile curves, one panel per concurrency"
    )]
    pub plot: Option<PathBuf>,

    #[arg(
        long,
        value_name = "DUR",
        default_value = "5s",
        value_parser = parse_duration,
        help = "Time allowed for one connect"
    )]
    pub connect_timeout: Duration,

    #[arg(
        long,
        value_name = "DUR",
        default_value = "10s",
        value_parser = parse_duration,
        help = "A request that gets no data for this long counts as a timeout"
    )]
    pub timeout: Duration,
}

/// Which FCGI_KEEP_CONN settings to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeepAliveArg {
    On,
    Off,
    Both,
}

/// Concurrency levels in the order given, duplicates removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcurrencyList(pub Vec<usize>);

/// When a cell stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    After(Duration),
    Requests(u64),
}

/// Validated settings for one bench run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Empty until the self-started php-fpm (`fpm`) is up.
    pub upstreams: Vec<UpstreamAddr>,
    /// Table and plot names, one per upstream; empty = derived from the
    /// addresses (see `report::labels`).
    pub labels: Vec<String>,
    /// Empty until the self-started php-fpm has written its built-in script.
    pub script: String,
    pub query: String,
    pub concurrency: Vec<usize>,
    pub keepalive: Vec<bool>,
    pub stop: Stop,
    pub rounds: u32,
    pub warmup: Duration,
    pub fpm_status_path: Option<String>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// `Some` without `--upstream`: the bench starts php-fpm itself.
    pub fpm: Option<FpmPlan>,
}

/// The php-fpm the bench starts when no `--upstream` is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FpmPlan {
    /// Workers per pool (`pm = static`).
    pub children: u32,
    pub bin: Option<PathBuf>,
    /// Round-trip delays of the emulated links, in the order given, without duplicates.
    pub links: Vec<Duration>,
    /// `--script` was not given: serve the built-in one.
    pub builtin_script: bool,
}

const DEFAULT_DURATION: Duration = Duration::from_secs(2);
/// Each client is a task with its own connection; beyond this a typo is likelier than intent.
const MAX_CONCURRENCY: usize = 10_000;
/// Workers per pool of the self-started php-fpm, as in the docs' measurements.
const DEFAULT_FPM_CHILDREN: u32 = 4;
/// Links get their addresses from blocks of this many /30 subnets (see `link`).
pub const MAX_LINKS: usize = 8;
/// Longer than any link worth emulating; the relay holds every packet this long.
const MAX_LINK_DELAY: Duration = Duration::from_secs(10);

impl BenchArgs {
    /// Checks what clap cannot and fills defaults.
    pub fn plan(&self) -> Result<Plan, String> {
        if let Some(script) = &self.script {
            if !script.starts_with('/') {
                return Err(format!(
                    "--script {script:?}: give the absolute path php-fpm should run \
                     (SCRIPT_FILENAME)"
                ));
            }
        }
        let fpm = self.fpm_plan()?;
        if let Some(path) = &self.fpm_status_path {
            if !path.starts_with('/') {
                return Err(format!(
                    "--fpm-status-path {path:?}: must start with / (it is pm.status_path)"
                ));
            }
        }
        if self.connect_timeout.is_zero() || self.timeout.is_zero() {
            return Err("--connect-timeout and --timeout must be longer than 0".to_owned());
        }
        let stop = match (self.requests, self.duration) {
            (Some(n), _) => Stop::Requests(n),
            (None, Some(d)) if d.is_zero() => {
                return Err("--duration must be longer than 0".to_owned())
            }
            (None, Some(d)) => Stop::After(d),
            (None, None) => Stop::After(DEFAULT_DURATION),
        };
        let mut upstreams = Vec::new();
        for u in &self.upstream {
            if !upstreams.contains(u) {
                upstreams.push(u.clone());
            }
        }
        let keepalive = match self.keepalive {
            KeepAliveArg::On => vec![true],
            KeepAliveArg::Off => vec![false],
            KeepAliveArg::Both => vec![true, false],
        };
        Ok(Plan {
            upstreams,
            labels: Vec::new(),
            script: self.script.clone().unwrap_or_default(),
            query: self.query.clone(),
            concurrency: self.concurrency.0.clone(),
            keepalive,
            stop,
            rounds: self.rounds,
            warmup: self.warmup,
            fpm_status_path: self.fpm_status_path.clone(),
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
            fpm,
        })
    }

    /// `None` with `--upstream`; the flags that need the self-started
    /// php-fpm are refused there.
    fn fpm_plan(&self) -> Result<Option<FpmPlan>, String> {
        if !self.upstream.is_empty() {
            if self.script.is_none() {
                return Err(
                    "--script is required with --upstream (the path php-fpm should \
                            run); without --upstream the bench starts php-fpm and brings a \
                            script"
                        .to_owned(),
                );
            }
            let only_self_started = [
                ("--link-delay", !self.link_delay.is_empty()),
                ("--fpm-children", self.fpm_children.is_some()),
                ("--php-fpm", self.php_fpm.is_some()),
            ];
            if let Some((flag, _)) = only_self_started.iter().find(|(_, given)| *given) {
                return Err(format!(
                    "{flag} applies to the php-fpm the bench starts itself: leave out --upstream"
                ));
            }
            return Ok(None);
        }
        let mut links = Vec::new();
        for &delay in &self.link_delay {
            if delay > MAX_LINK_DELAY {
                return Err(format!(
                    "--link-delay {delay:?}: at most {MAX_LINK_DELAY:?}"
                ));
            }
            if !links.contains(&delay) {
                links.push(delay);
            }
        }
        if links.len() > MAX_LINKS {
            return Err(format!("--link-delay: at most {MAX_LINKS} different links"));
        }
        Ok(Some(FpmPlan {
            children: self.fpm_children.unwrap_or(DEFAULT_FPM_CHILDREN),
            bin: self.php_fpm.clone(),
            links,
            builtin_script: self.script.is_none(),
        }))
    }
}

fn parse_upstream(s: &str) -> Result<UpstreamAddr, String> {
    s.parse::<UpstreamAddr>().map_err(|e| e.to_string())
}

fn parse_concurrency(s: &str) -> Result<ConcurrencyList, String> {
    let mut levels = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let n: usize = part
            .parse()
            .map_err(|_| format!("{part:?} is not a whole number"))?;
        if n == 0 || n > MAX_CONCURRENCY {
            return Err(format!("{n}: must be between 1 and {MAX_CONCURRENCY}"));
        }
        if !levels.contains(&n) {
            levels.push(n);
        }
    }
    Ok(ConcurrencyList(levels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(extra: &[&str]) -> Result<Plan, String> {
        let mut argv = vec![
            "bench",
            "--upstream",
            "unix:/x.sock",
            "--script",
            "/a/h.php",
        ];
        argv.extend_from_slice(extra);
        Wrap::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .args
            .plan()
    }

    #[test]
    fn defaults() {
        let plan = parse(&[]).unwrap();
        assert_eq!(plan.concurrency, vec![1, 8, 64]);
        assert_eq!(plan.keepalive, vec![true, false]);
        assert_eq!(plan.stop, Stop::After(Duration::from_secs(2)));
        assert_eq!(plan.rounds, 3);
        assert_eq!(plan.warmup, Duration::from_secs(1));
    }

    #[test]
    fn lists_modes_and_stops() {
        let plan = parse(&[
            "--concurrency",
            "4, 1,4",
            "--keepalive",
            "off",
            "--requests",
            "100",
            "--upstream",
            "tcp:127.0.0.1:9000",
        ])
        .unwrap();
        assert_eq!(plan.concurrency, vec![4, 1]);
        assert_eq!(plan.keepalive, vec![false]);
        assert_eq!(plan.stop, Stop::Requests(100));
        assert_eq!(plan.upstreams.len(), 2);
        let plan = parse(&["--duration", "300ms", "--warmup", "0s"]).unwrap();
        assert_eq!(plan.stop, Stop::After(Duration::from_millis(300)));
        assert!(plan.warmup.is_zero());
    }

    fn parse_bare(argv: &[&str]) -> Result<Plan, String> {
        let argv = std::iter::once("bench").chain(argv.iter().copied());
        Wrap::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .args
            .plan()
    }

    #[test]
    fn without_upstream_the_bench_starts_php_fpm() {
        let plan = parse_bare(&[]).unwrap();
        assert!(plan.upstreams.is_empty());
        let fpm = plan.fpm.unwrap();
        assert_eq!(fpm.children, 4);
        assert!(fpm.builtin_script && fpm.links.is_empty() && fpm.bin.is_none());

        let plan = parse_bare(&[
            "--link-delay",
            "0.2ms",
            "--link-delay",
            "1ms",
            "--link-delay",
            "200us",
            "--link-delay",
            "0s",
            "--script",
            "/srv/x.php",
            "--fpm-children",
            "2",
        ])
        .unwrap();
        assert_eq!(plan.script, "/srv/x.php");
        let fpm = plan.fpm.unwrap();
        assert_eq!(
            fpm.links,
            vec![
                Duration::from_micros(200),
                Duration::from_millis(1),
                Duration::ZERO
            ],
            "in the order given, duplicates dropped"
        );
        assert_eq!(fpm.children, 2);
        assert!(!fpm.builtin_script);

        // With --upstream nothing is started.
        assert!(parse(&[]).unwrap().fpm.is_none());
    }

    #[test]
    fn self_started_flags_need_no_upstream() {
        for flag in [
            &["--link-delay", "1ms"][..],
            &["--fpm-children", "2"],
            &["--php-fpm", "/usr/sbin/php-fpm8.2"],
        ] {
            let err = parse(flag).unwrap_err();
            assert!(err.contains("leave out --upstream"), "{flag:?}: {err}");
        }
        let err = parse_bare(&["--upstream", "unix:/x.sock"]).unwrap_err();
        assert!(err.contains("--script is required"), "{err}");
        for bad in [
            &["--link-delay", "11s"][..],
            &["--link-delay", "1"],
            &["--link-delay", "-1ms"],
            &["--fpm-children", "0"],
        ] {
            assert!(parse_bare(bad).is_err(), "{bad:?} accepted");
        }
        let many: Vec<String> = (1..=9).map(|ms| format!("--link-delay={ms}ms")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(parse_bare(&many).unwrap_err().contains("at most 8"));
    }

    #[test]
    fn refusals() {
        for bad in [
            &["--concurrency", "0"][..],
            &["--concurrency", "1,x"],
            &["--duration", "1s", "--requests", "5"],
            &["--duration", "0s"],
            &["--requests", "0"],
            &["--rounds", "0"],
            &["--keepalive", "maybe"],
            &["--fpm-status-path", "status"],
            &["--timeout", "0ms"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        let relative =
            Wrap::try_parse_from(["bench", "--upstream", "unix:/x", "--script", "hello.php"])
                .unwrap()
                .args
                .plan();
        assert!(relative.unwrap_err().contains("absolute"));
        let relative = parse_bare(&["--script", "hello.php"]);
        assert!(relative.unwrap_err().contains("absolute"));
    }
}
