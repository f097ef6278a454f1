//! `fcgi-gateway doctor URL`: probes a live PHP site (served by us or by
//! any other server) for the known PHP/FastCGI misconfigurations and
//! reports each finding with its severity, evidence and fix. Not on the
//! serving path: nothing outside this module depends on it.
//!
//! What it may do to a site, and why that is safe to point at production:
//! - GET requests only, plus one TRACE (RFC 9110's safe methods; the
//!   TRACE goes away with `--no-trace`). No body is ever sent, and no
//!   probe carries a payload: the CVE-2019-11043 check sends a line feed
//!   in PATH_INFO, never the PHP_VALUE lines that would change PHP's
//!   settings.
//! - At most [`client::MAX_REQUESTS`] requests, one at a time, each on its
//!   own connection and bounded by `--timeout`.
//! - Only the URL's host and port, only paths under the URL's directory;
//!   links and redirects to anywhere else are not followed.
//!
//! The parts: `target` (the URL and paths under it), `client` (HTTP/1.1
//! over hyper, TLS by rustls), `site` (what the start page shows), `checks`
//! (the table of checks and their judges), `steps` (the checks that
//! compare answers), `report` (text, JSON, exit code).

mod args;
mod checks;
mod client;
mod report;
mod site;
mod steps;
mod target;

use std::process::ExitCode;

pub use args::DoctorArgs;
use checks::{Check, Evidence, How, Judge, Verdict, CHECKS};
use client::{Client, Trust};
use report::{Outcome, Report};
use site::Site;
use target::Target;

/// What the checks share while they run.
pub(crate) struct Ctx<'a> {
    client: &'a mut Client,
    site: &'a mut Site,
    /// A token unique to this run, in every invented name, so no answer
    /// can be mistaken for one to an earlier run's probe.
    marker: &'a str,
    send_trace: bool,
    /// Findings so far, by check id: httpoxy reads phpinfo's.
    found: Vec<(&'static str, Vec<Evidence>)>,
}

/// Runs the doctor: the report on stdout, exit 0 when nothing of high
/// severity was found, 1 when something was, 2 when the URL is unusable or
/// its start page cannot be fetched.
pub fn run(args: DoctorArgs) -> ExitCode {
    let fail = |e: String| {
        eprintln!("fcgi-gateway doctor: {e}");
        ExitCode::from(2)
    };
    let target = match Target::parse(&args.url) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let trust = match (&args.ca_file, args.insecure) {
        (_, true) => Trust::Insecure,
        (Some(file), false) => Trust::CaFile(file.clone()),
        (None, false) => Trust::System,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    let report = runtime.block_on(examine(target, trust, &args));
    match report {
        Ok(report) => {
            if args.json {
                println!("{}", report.json());
            } else {
                print!("{}", report.text());
            }
            ExitCode::from(report.exit_code())
        }
        Err(e) => fail(e),
    }
}

async fn examine(target: Target, trust: Trust, args: &DoctorArgs) -> Result<Report, String> {
    let start_url = target.url(&target.start);
    let mut client = Client::new(target, &trust, args.timeout).await?;
    let marker = marker();
    let mut site = site::discover(&mut client, &marker)
        .await
        .map_err(|e| format!("{start_url}: {e}"))?;
    let target = client.target().url(&site.start.target);
    let redirects = site.redirects.clone();
    let mut ctx = Ctx {
        client: &mut client,
        site: &mut site,
        marker: &marker,
        send_trace: !args.no_trace,
        found: Vec::new(),
    };
    let mut outcomes = Vec::with_capacity(CHECKS.len());
    for check in CHECKS {
        let verdict = run_check(check, &mut ctx).await;
        if let Verdict::Found { evidence, .. } = &verdict {
            ctx.found.push((check.id, evidence.clone()));
        }
        outcomes.push(Outcome { check, verdict });
    }
    Ok(Report {
        target,
        requests: client.sent(),
        redirects,
        outcomes,
    })
}

async fn run_check(check: &'static Check, ctx: &mut Ctx<'_>) -> Verdict {
    match &check.how {
        How::Paths(list) => {
            let paths = list
                .iter()
                .map(|(rel, judge)| (format!("{}{rel}", ctx.site.base), *judge))
                .collect();
            judge_paths(check, ctx, paths, false).await
        }
        How::FromSite {
            paths,
            most,
            judge,
            learn,
        } => {
            let paths = paths(ctx.site)
                .into_iter()
                .take(*most)
                .map(|p| (p, *judge))
                .collect();
            judge_paths(check, ctx, paths, *learn).await
        }
        How::Steps(step) => step.run(check, ctx).await,
    }
}

/// Requests each path and judges its answer on its own; any match is a
/// finding. The start page is judged from discovery's answer, not asked again.
async fn judge_paths(
    check: &Check,
    ctx: &mut Ctx<'_>,
    paths: Vec<(String, Judge)>,
    learn: bool,
) -> Verdict {
    let mut evidence = Vec::new();
    let mut answered = Vec::new();
    let mut failed = Vec::new();
    for (path, judge) in paths {
        let answer = if path == ctx.site.start.target {
            ctx.site.start.clone()
        } else {
            match ctx.client.get(&path, &[]).await {
                Ok(a) => a,
                Err(e) => {
                    failed.push(format!("{path}: {e}"));
                    continue;
                }
            }
        };
        let seen = (!ctx.site.is_catch_all(&answer))
            .then(|| judge(&answer))
            .flatten();
        match seen {
            Some(detail) => {
                if learn {
                    ctx.site.learn_links(ctx.client, &answer);
                }
                evidence.push(Evidence::of(ctx.client, &answer, detail));
            }
            None => answered.push(format!("{path} {}", answer.status)),
        }
    }
    if !evidence.is_empty() {
        Verdict::Found {
            severity: check.severity,
            evidence,
        }
    } else if answered.is_empty() {
        Verdict::CannotTell(if failed.is_empty() {
            "nothing to ask".into()
        } else {
            failed.join("; ")
        })
    } else {
        let mut note = format!("nothing exposed: {}", answered.join(", "));
        if !failed.is_empty() {
            note.push_str(&format!("; failed: {}", failed.join("; ")));
        }
        Verdict::Clean(note)
    }
}

/// Eight hex digits from the standard library's per-process random hash
/// keys (no RNG crate for one token), mixed with the time and PID.
fn marker() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(now);
    h.write_u32(std::process::id());
    format!("{:08x}", h.finish() as u32)
}
