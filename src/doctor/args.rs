//! The `doctor` command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::config::parse_duration;

/// `fcgi-gateway doctor URL`: probe a PHP site for known misconfigurations.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    #[arg(
        value_name = "URL",
        help = "The site to examine (http:// or https://); every request goes to this host and \
                port, under the URL's directory"
    )]
    pub url: String,

    #[arg(long, help = "Print the report as JSON (schema fcgi-gateway-doctor/1)")]
    pub json: bool,

    #[arg(
        long,
        value_name = "DUR",
        default_value = "5s",
        value_parser = parse_duration,
        help = "How long one request may take, connect to last byte"
    )]
    pub timeout: Duration,

    #[arg(
        long,
        help = "Send no TRACE request (the only non-GET one); the TRACE check is then skipped"
    )]
    pub no_trace: bool,

    #[arg(
        long,
        conflicts_with = "ca_file",
        help = "https: accept any certificate (self-signed, expired, another name)"
    )]
    pub insecure: bool,

    #[arg(
        long,
        value_name = "FILE",
        help = "https: trust the CA certificates of this PEM file instead of the system's"
    )]
    pub ca_file: Option<PathBuf>,
}
