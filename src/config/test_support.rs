//! Helpers shared by the config test files.

use std::fs;
use std::path::PathBuf;

use clap::Parser;

use super::{load, Config, ConfigError, ServeArgs};
use crate::cli::{Cli, Command};

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

/// `serve --upstream unix:/x --root <a temp dir>` plus `extra`, loaded.
pub(super) fn flags(extra: &[&str]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_owned();
    let mut argv = vec!["--upstream", "unix:/x", "--root", root.as_str()];
    argv.extend_from_slice(extra);
    load(&serve_args(&argv))
}

/// The error's message, checked to be the promised single line.
pub(super) fn message(result: Result<Config, ConfigError>) -> String {
    let text = result.unwrap_err().to_string();
    assert!(!text.contains('\n'), "multi-line error: {text}");
    text
}
