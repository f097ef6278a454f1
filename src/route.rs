//! Routing: path normalisation, refusal of dangerous paths, index files,
//! safe PATH_INFO splitting and the front-controller fallback. Looks at the
//! file system (stat) but does no network I/O and serves no bytes.

use std::path::PathBuf;

/// What `route` needs to know; built once from the config.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Canonical document root (absolute, symlinks resolved).
    pub root: PathBuf,
    /// Index file names tried for a directory, in order (default `["index.php"]`).
    pub index: Vec<String>,
    /// URI path of the front controller, e.g. `/index.php`.
    pub front_controller: Option<String>,
}

/// A PHP script chosen for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Absolute file name under the root (SCRIPT_FILENAME).
    pub script_filename: PathBuf,
    /// URI path of the script, decoded and normalised, e.g. `/app/index.php` (SCRIPT_NAME).
    pub script_name: String,
    /// Decoded path after the script name, e.g. `/extra/path` (PATH_INFO), if any.
    pub path_info: Option<String>,
    /// Decoded, normalised request path (DOCUMENT_URI): script_name + path_info,
    /// or for a front-controller fallback the front controller's path.
    pub document_uri: String,
}

/// The routing decision for one request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Script(Script),
    /// Nothing to serve: 404 without contacting the upstream.
    NotFound,
    /// The path is malformed or dangerous (NUL, CR/LF, bad escapes, escapes the root): 400.
    BadRequest(&'static str),
}
