//! Helpers shared by the config test files.

use std::fs;
use std::path::PathBuf;

use clap::Parser;

use super::{Cli, Command, ServeArgs};

/// `fcgi-gateway serve ARGV...` parsed into its arguments.
pub(super) fn serve_args(argv: &[&str]) -> ServeArgs {
    let mut full = vec!["fcgi-gateway", "serve"];
    full.extend_from_slice(argv);
    match Cli::try_parse_from(full).unwrap().command {
        Command::Serve(args) => args,
        other => panic!("parsed as {other:?}"),
    }
}

/// A temp dir with `gateway.toml` = a minimal config plus `extra`.
pub(super) fn file_with(extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("www")).unwrap();
    let path = dir.path().join("gateway.toml");
    fs::write(
        &path,
        format!("upstream = \"unix:/run/php/fpm.sock\"\nroot = \"www\"\n{extra}"),
    )
    .unwrap();
    (dir, path)
}
