//! `fcgi-gateway bench`: latency and throughput of php-fpm itself over each
//! upstream (typically unix vs tcp), speaking FastCGI through the same
//! `upstream::conn` code that serves traffic, so HTTP is not measured.
//! Not on the serving path: nothing outside this module depends on it.
//!
//! A cell is upstream × concurrency × keep-alive. After a warm-up of each
//! upstream, every cell runs once per round; within a round the upstreams of
//! one concurrency/keep-alive group run back to back (A B, then B A in the
//! next round), so drift on a busy machine hits both sides. Ratios of req/s
//! are computed per round and reported as median and min–max.
//!
//! # JSON (`--json FILE`), schema `fcgi-gateway-bench/1`
//! Times are milliseconds, rates per second.
//! ```text
//! {
//!   "schema": "fcgi-gateway-bench/1",
//!   "settings": { "upstreams": ["unix:/…", "tcp:…"], "script": "/…/hello.php", "query": "",
//!                 "concurrency": [1, 8, 64], "keepalive": [true, false],
//!                 "duration_ms": 2000 | null, "requests": null | N, "rounds": 3,
//!                 "warmup_ms": 1000, "fpm_status_path": "/status" | null,
//!                 "php_fpm": null | { "children": 4, "builtin_script": true,   // no --upstream
//!                                     "link_delays_ms": [0.2, 1.0] } },
//!   "cells": [ {                       // one per upstream × concurrency × keep-alive
//!     "upstream": "unix:/…", "label": "unix", "concurrency": 8, "keepalive": true,
//!     "requests": 123456,              // successful, all rounds
//!     "errors": { "refused": 0, "eagain": 0, "reset": 0, "timeout": 0, "status": 0, "other": 0 },
//!     "error_total": 0, "first_error": null | "message",
//!     "unfinished": 8,                 // in flight when a round's cell stopped
//!     "workers_served_min": 8,         // fewest clients that finished any request in a round
//!     "connects": 8, "stdout_bytes": 1234567,
//!     "rps": { "median": 0.0, "min": 0.0, "max": 0.0, "rounds": [0.0, …] },
//!     "latency_ms": { "total" | "ttfb" | "connect":
//!                     { "count": N, "mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0,
//!                       "p99_9": 0.0, "max": 0.0 } },
//!     "fpm_status": [ { "round": 0, "error": null | "message",
//!                       "after": null | { "listen_queue": 0, "max_listen_queue": 0,
//!                                         "listen_queue_len": 511,
//!                                         "max_children_reached": 0 },
//!                       "max_children_reached_delta": null | 0 } ]   // [] without the flag
//!   } ],
//!   "ratios": [ { "concurrency": 8, "keepalive": true, "numerator": "unix",
//!                 "denominator": "tcp",
//!                 "ratio": { "median": 1.1, "min": 1.0, "max": 1.2, "rounds": [ … ] } } ],
//!   "links": [ {                       // one per --link-delay; [] without
//!     "label": "tcp+1ms", "upstream": "tcp:10.203.…:9000", "namespace": "fcgi-bench-…",
//!     "rtt_ms": 1.0, "one_way_ms": 0.5, "emulation": "…", "packets": N, "bytes": N,
//!     "dropped": 0, "write_errors": 0,
//!     "held_ms": { "count": N, "mean": 0.0, "p50": 0.0, … }   // time each packet was held
//!   } ]
//! }
//! ```

mod args;
mod fpm;
pub mod link;
mod link_command;
pub mod load;
mod plot;
pub mod report;
pub mod request;
pub mod stats;
pub mod status;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub use args::{BenchArgs, ConcurrencyList, FpmPlan, KeepAliveArg, Plan, Stop};
use fpm::SelfStarted;
pub use link_command::{run as run_link, LinkArgs};
use load::{run_cell, CellSpec};
use report::{CellRecord, Report, StatusSample};

/// Pause between cells so php-fpm finishes requests abandoned at the stop
/// before the next cell starts timing.
const SETTLE: Duration = Duration::from_millis(100);

/// Runs the bench described by `args`: table on stdout, files as asked.
/// Exit code 2 when the arguments are bad, php-fpm cannot be started or an
/// upstream does not answer the first request; errors during the
/// measurement are reported, not fatal. SIGINT and SIGTERM stop the run,
/// and the php-fpm and links it started, with 130 and 143.
pub fn run(args: BenchArgs) -> ExitCode {
    let fail = |e: String| {
        eprintln!("fcgi-gateway bench: {e}");
        ExitCode::from(2)
    };
    let mut plan = match args.plan() {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let report = match runtime.block_on(start_and_measure(&mut plan)) {
        Ok(Finished::Measured(r)) => r,
        Ok(Finished::Interrupted(code)) => {
            let started = if plan.fpm.is_some() {
                "; its php-fpm and links are stopped"
            } else {
                ""
            };
            eprintln!("fcgi-gateway bench: interrupted{started}");
            return ExitCode::from(code);
        }
        Err(e) => return fail(e),
    };
    print!("{}", report::table(&report));
    print!("{}", report::link_notes(&report));
    for cell in report.cells.iter().filter(|c| c.error_total > 0) {
        if let Some(e) = &cell.first_error {
            println!(
                "first error ({} concurrency {} keep-alive {}): {e}",
                cell.label,
                cell.concurrency,
                if cell.keepalive { "on" } else { "off" }
            );
        }
    }
    if let Some(path) = &args.json {
        let written = serde_json::to_string_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|text| std::fs::write(path, text + "\n").map_err(|e| e.to_string()));
        if let Err(e) = written {
            return fail(format!("cannot write {}: {e}", path.display()));
        }
    }
    if let Some(path) = &args.plot {
        let written =
            plot::svg(&report).and_then(|svg| std::fs::write(path, svg).map_err(|e| e.to_string()));
        if let Err(e) = written {
            return fail(format!("cannot write {}: {e}", path.display()));
        }
    }
    ExitCode::SUCCESS
}

enum Finished {
    Measured(Box<Report>),
    /// By a signal; the exit code (128 + its number).
    Interrupted(u8),
}

/// Starts php-fpm when the plan says so (filling in its upstreams, labels
/// and script), measures, and stops what it started on every way out.
async fn start_and_measure(plan: &mut Plan) -> Result<Finished, String> {
    use tokio::signal::unix::{signal, SignalKind};
    // From here on SIGINT and SIGTERM no longer end the process outright:
    // they end the measurement, and the php-fpm and namespaces started
    // below are removed before we exit.
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let started = match &plan.fpm {
        Some(fpm) => {
            let script = (!fpm.builtin_script).then_some(plan.script.as_str());
            // Blocks this (the main) thread for a moment; a signal that
            // arrives meanwhile is seen below.
            let started = SelfStarted::start(fpm, script, plan.fpm_status_path.as_deref())?;
            plan.upstreams.clone_from(&started.upstreams);
            plan.labels.clone_from(&started.labels);
            plan.script.clone_from(&started.script);
            Some(started)
        }
        None => None,
    };
    let outcome = tokio::select! {
        biased;
        _ = interrupt.recv() => Err(130),
        _ = terminate.recv() => Err(143),
        measured = measure(plan) => Ok(measured),
    };
    let links = started.map(SelfStarted::finish).unwrap_or_default();
    match outcome {
        Ok(Ok(mut report)) => {
            report.links = links;
            Ok(Finished::Measured(Box::new(report)))
        }
        Ok(Err(e)) => Err(e),
        Err(code) => Ok(Finished::Interrupted(code)),
    }
}

/// Checks every upstream, warms up, then runs all rounds.
pub async fn measure(plan: &Plan) -> Result<Report, String> {
    for addr in &plan.upstreams {
        preflight(plan, addr).await?;
    }
    let groups = plan.keepalive.len() * plan.concurrency.len();
    let steps = plan.upstreams.len() * (1 + groups * plan.rounds as usize);
    let progress = progress_bar(steps as u64);

    let top = plan.concurrency.iter().copied().max().unwrap_or(1);
    for addr in &plan.upstreams {
        progress.set_message(format!("warm-up {addr}"));
        if !plan.warmup.is_zero() {
            // No keep-alive: every php-fpm worker gets requests, none is pinned.
            let mut spec = cell_spec(plan, addr, top, false);
            spec.stop = Stop::After(plan.warmup);
            run_cell(&spec).await;
            tokio::time::sleep(SETTLE).await;
        }
        progress.inc(1);
    }

    // records[upstream][keepalive][concurrency]
    let mut records =
        vec![
            vec![vec![CellRecord::default(); plan.concurrency.len()]; plan.keepalive.len()];
            plan.upstreams.len()
        ];
    for round in 0..plan.rounds {
        for (k, &keepalive) in plan.keepalive.iter().enumerate() {
            for (c, &concurrency) in plan.concurrency.iter().enumerate() {
                let mut order: Vec<usize> = (0..plan.upstreams.len()).collect();
                if round % 2 == 1 {
                    order.reverse();
                }
                for u in order {
                    let addr = &plan.upstreams[u];
                    progress.set_message(format!(
                        "round {}/{}: {addr} concurrency {concurrency} keep-alive {}",
                        round + 1,
                        plan.rounds,
                        if keepalive { "on" } else { "off" }
                    ));
                    let spec = cell_spec(plan, addr, concurrency, keepalive);
                    let before = fpm_status(plan, addr).await;
                    let run = run_cell(&spec).await;
                    tokio::time::sleep(SETTLE).await;
                    let after = fpm_status(plan, addr).await;
                    let record = &mut records[u][k][c];
                    record.runs.push(run);
                    if let Some(sample) = status_sample(round, before, after) {
                        record.statuses.push(sample);
                    }
                    progress.inc(1);
                }
            }
        }
    }
    progress.finish_and_clear();
    Ok(report::build(plan, &records))
}

fn cell_spec(
    plan: &Plan,
    addr: &crate::upstream::UpstreamAddr,
    concurrency: usize,
    keepalive: bool,
) -> CellSpec {
    CellSpec {
        addr: addr.clone(),
        concurrency,
        keepalive,
        request: request::script_request(&plan.script, &plan.query, keepalive),
        stop: plan.stop,
        connect_timeout: plan.connect_timeout,
        timeout: plan.timeout,
    }
}

/// One request to each upstream before anything is timed, so a wrong socket
/// path or a script php-fpm cannot find stops the run with a clear message.
async fn preflight(plan: &Plan, addr: &crate::upstream::UpstreamAddr) -> Result<(), String> {
    let mut spec = cell_spec(plan, addr, 1, false);
    spec.stop = Stop::Requests(1);
    let run = run_cell(&spec).await;
    if run.ok == 0 {
        let why = run.first_error.unwrap_or_else(|| "no answer".to_owned());
        let hint = if run.errors.status > 0 {
            format!(" (does {} exist where php-fpm runs?)", plan.script)
        } else {
            String::new()
        };
        return Err(format!("{addr}: the first request failed: {why}{hint}"));
    }
    if let Some(path) = &plan.fpm_status_path {
        status::fetch(addr, path, plan.connect_timeout, plan.timeout)
            .await
            .map_err(|e| format!("{addr}: status page {path}: {e}"))?;
    }
    Ok(())
}

async fn fpm_status(
    plan: &Plan,
    addr: &crate::upstream::UpstreamAddr,
) -> Option<Result<status::FpmStatus, String>> {
    let path = plan.fpm_status_path.as_deref()?;
    Some(status::fetch(addr, path, plan.connect_timeout, plan.timeout).await)
}

fn status_sample(
    round: u32,
    before: Option<Result<status::FpmStatus, String>>,
    after: Option<Result<status::FpmStatus, String>>,
) -> Option<StatusSample> {
    let after = after?;
    let before = before.and_then(Result::ok);
    Some(match after {
        Ok(a) => StatusSample {
            round,
            after: Some(a),
            max_children_reached_delta: before.map(|b| {
                a.max_children_reached
                    .saturating_sub(b.max_children_reached)
            }),
            error: None,
        },
        Err(e) => StatusSample {
            round,
            after: None,
            max_children_reached_delta: None,
            error: Some(e),
        },
    })
}

/// A bar on stderr while stdout is a terminal; nothing when output is piped.
fn progress_bar(steps: u64) -> ProgressBar {
    let target = if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(steps), target);
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
