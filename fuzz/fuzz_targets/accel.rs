//! `X-Accel-Redirect` and `X-Sendfile` target resolution
//! (`route::accel_redirect_target`, `route::sendfile_target`) against the
//! same tree and configurations as the `route` target, with `files/` as the
//! `--sendfile-dir`.
//!
//! Input: a header value as a script would send it. It must be a valid
//! header value (others never get past the head parser) and is taken as
//! the gateway does: lossy UTF-8, trimmed. For `X-Sendfile`, whose values
//! are absolute paths of a random temp dir, a first character `@`, `~` or
//! `^` stands for the sendfile dir, the root or the temp dir holding both
//! (`@/a.bin`, `^/outside/notes.txt`).
//!
//! Checked: no panic; the answer is a static file, 404 or 400, never a
//! script or a redirect. `X-Accel-Redirect`: 400 exactly when the path
//! does not normalise; a file is a regular file under the root (really, or
//! through an allowed symlink), not hidden, not PHP source, internal
//! locations allowed. `X-Sendfile`: 400 for anything not absolute; a file
//! is its own canonical path, inside the sendfile dir, not hidden below
//! it, not PHP source, with the metadata routing saw.
#![no_main]

use std::fs;

use fcgi_gateway::route::fuzzing::{normalise, percent_decode};
use fcgi_gateway::route::{accel_redirect_target, sendfile_target, Route};
use fuzz_support::{check_file, names_below, never_served, route_configs, tree};
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if HeaderValue::from_bytes(data).is_err() {
        return;
    }
    // As `server::accel::take_directives` reads the value.
    let value = String::from_utf8_lossy(data).trim().to_owned();
    let t = tree();
    let sendfile_value = match value.chars().next() {
        Some('@') => format!("{}{}", t.files.display(), &value[1..]),
        Some('~') => format!("{}{}", t.root.display(), &value[1..]),
        Some('^') => format!("{}{}", t.base.display(), &value[1..]),
        _ => value.clone(),
    };

    let raw = value.split_once('?').map_or(&*value, |(path, _)| path);
    let normalised = percent_decode(raw).and_then(|d| normalise(&d));

    for cfg in route_configs() {
        match accel_redirect_target(cfg, &value) {
            Route::Static { path, seen } => {
                assert!(normalised.is_ok());
                check_file(cfg, &path, "X-Accel-Redirect", true, true);
                if seen.is_some() {
                    assert_eq!(fs::canonicalize(&path).ok().as_ref(), Some(&path));
                }
            }
            Route::BadRequest(why) => assert_eq!(normalised, Err(why)),
            Route::NotFound => {}
            other => panic!("X-Accel-Redirect {value:?} gave {other:?}"),
        }

        match sendfile_target(cfg, &t.files, &sendfile_value) {
            Route::Static { path, seen } => {
                let real = fs::canonicalize(&path).expect("a sendfile target exists");
                assert_eq!(real, path, "X-Sendfile target is not canonical");
                assert!(
                    path.starts_with(&t.files),
                    "X-Sendfile {path:?} outside the dir"
                );
                let names = names_below(&path, &t.files);
                assert!(!names.iter().any(|n| n.starts_with('.')), "hidden {path:?}");
                let name = names.last().copied().unwrap_or("");
                assert!(
                    !never_served(cfg, name),
                    "X-Sendfile {path:?} is never served"
                );
                let meta = fs::metadata(&path).expect("a sendfile target exists");
                assert!(meta.is_file());
                assert!(seen.is_some(), "X-Sendfile without metadata");
            }
            Route::BadRequest(_) => assert!(
                !sendfile_value.starts_with('/') || sendfile_value.contains(['\0', '\r', '\n'])
            ),
            Route::NotFound => {}
            other => panic!("X-Sendfile {sendfile_value:?} gave {other:?}"),
        }
    }
});
