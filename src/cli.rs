//! The command line: the subcommands. `serve`'s flags are derived from the
//! settings (`config::ServeArgs`); `bench` and `doctor` have their own
//! (`bench::BenchArgs`, `doctor::DoctorArgs`). Above them all, so none
//! reaches into another.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::ServeArgs;

#[derive(Debug, Parser)]
#[command(
    name = "fcgi-gateway",
    version,
    about = "An HTTP server that serves PHP (and any FastCGI app) through php-fpm"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at startup, so the unboxed `ServeArgs` costs nothing and keeps
// `Command::Serve(args)` plain to match on.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP, forwarding script requests to the FastCGI upstream.
    Serve(ServeArgs),
    /// Read and fully validate a config file, then exit (0 if valid).
    CheckConfig {
        #[arg(value_name = "FILE", help = "The TOML config file to check")]
        file: PathBuf,
    },
    /// Measure php-fpm over FastCGI on each upstream (e.g. unix vs tcp).
    Bench(crate::bench::BenchArgs),
    /// Run a command (php-fpm) in a network namespace behind an emulated
    /// link with a round-trip delay, until SIGTERM (for bench/run.py).
    #[command(hide = true)]
    BenchLink(crate::bench::LinkArgs),
    /// Probe a PHP site (ours or any server's) for known PHP/FastCGI
    /// misconfigurations; exit 1 on a finding of high severity.
    Doctor(crate::doctor::DoctorArgs),
    /// Translate nginx config files (includes followed) into the gateway's
    /// TOML on stdout; what cannot be mapped goes to stderr as
    /// `file:line: directive — why` (exit 3; 2 for unreadable files).
    ImportNginx {
        #[arg(
            value_name = "FILE",
            required = true,
            help = "nginx config files (nginx.conf or site files)"
        )]
        files: Vec<PathBuf>,
    },
}
