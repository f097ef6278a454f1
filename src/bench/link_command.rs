//! `fcgi-gateway bench-link --delay DUR -- COMMAND…` (hidden): runs one
//! command (a php-fpm) in a network namespace behind an emulated link (see
//! `link`), for `bench/run.py`, which cannot emulate a link itself.
//!
//! Once the link is up and the command started, one line goes to stdout:
//! `link <our address> <namespace address> <namespace>`; the command
//! should listen on the namespace's address, or on 0.0.0.0 (nothing else
//! reaches into the namespace). On SIGTERM or SIGINT the command is
//! stopped by PID, the link removed, and a last line reports the relay:
//! `stats {json}` (a `LinkReport`). Exit code 0 then; when the command
//! exits on its own, the link is removed and the exit code is 1.

use std::ffi::OsString;
use std::io::Write;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use clap::Args;

use super::fpm::{spawn_tied, stop_child};
use super::link::{self, Link, LinkReport};
use crate::config::parse_duration;

#[derive(Debug, Clone, Args)]
pub struct LinkArgs {
    #[arg(
        long,
        value_name = "DUR",
        value_parser = parse_duration,
        help = "Round-trip delay the link adds (DUR/2 each way), e.g. 0.2ms or 1ms"
    )]
    pub delay: Duration,

    #[arg(
        required = true,
        last = true,
        value_name = "COMMAND",
        help = "What to run in the namespace, after --"
    )]
    pub command: Vec<OsString>,
}

/// Runs `args.command` behind the link until a signal or its exit.
pub fn run(args: LinkArgs) -> ExitCode {
    let fail = |e: String| {
        eprintln!("fcgi-gateway bench-link: {e}");
        ExitCode::from(2)
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(serve(&args)) {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

async fn serve(args: &LinkArgs) -> Result<ExitCode, String> {
    use tokio::signal::unix::{signal, SignalKind};
    // Before anything is created: from here on a signal ends us through
    // the cleanup below.
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    if args.delay > Duration::from_secs(10) {
        return Err(format!("--delay {:?}: at most 10s", args.delay));
    }
    let ip = link::prerequisites()?;
    let block = link::choose_block(&ip)?;
    let mut link = Link::create(&ip, 0, block * super::args::MAX_LINKS as u32, args.delay)?;
    let namespace = link
        .namespace_file()
        .map_err(|e| format!("cannot open the namespace {}: {e}", link.namespace))?;
    let mut cmd = Command::new(&args.command[0]);
    // Our stdout carries only our two lines; the command's goes to stderr.
    cmd.args(&args.command[1..])
        .stdin(Stdio::null())
        .stdout(std::io::stderr());
    let mut child = spawn_tied(&mut cmd, Some(&namespace))
        .map_err(|e| format!("cannot start {}: {e}", args.command[0].to_string_lossy()))?;
    drop(namespace);
    announce(&format!(
        "link {} {} {}",
        link.host_addr, link.ns_addr, link.namespace
    ));
    let exited_alone = loop {
        tokio::select! {
            _ = interrupt.recv() => break false,
            _ = terminate.recv() => break false,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                if !matches!(child.try_wait(), Ok(None)) {
                    break true;
                }
            }
        }
    };
    stop_child(child, &args.command[0].to_string_lossy());
    if let Some(stats) = link.stop_relay() {
        let label = format!("tcp+{}", link::delay_label(args.delay));
        let report = LinkReport::new(label, link.ns_addr.to_string(), &link, &stats);
        if let Ok(json) = serde_json::to_string(&report) {
            announce(&format!("stats {json}"));
        }
    }
    drop(link);
    Ok(if exited_alone {
        eprintln!("fcgi-gateway bench-link: the command exited");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One line to stdout, flushed (a pipe is block-buffered otherwise).
fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
