//! Path normalisation and routing: `route::resolve` against a small tree
//! (made once per process: scripts, static files, dotfiles, PHP source,
//! an internal location, symlinks in and out of the root, a FIFO), under
//! four configurations.
//!
//! Input: a request target, `path[?query]` (invalid UTF-8 replaced).
//!
//! Checked: no panic; normalisation gives a clean absolute path and is
//! idempotent; `resolve` answers 400 exactly when the path does not
//! normalise, and otherwise depends only on the normalised path; a script
//! or static file is a regular file whose real location is under the root
//! (unless symlinks out are allowed), not hidden, not PHP source, not in an
//! internal location; a script's names add up; a redirect is a same-site,
//! header-safe `Location` that does not redirect again.
#![no_main]

use std::fs;

use fcgi_gateway::route::fuzzing::{normalise, percent_decode, slash_location};
use fcgi_gateway::route::{resolve, Route, RouteConfig};
use fuzz_support::{check_file, encode_path, has_ext, route_configs};
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;

fn check_route(cfg: &RouteConfig, route: &Route, query: Option<&str>) {
    match route {
        Route::Script(s) => {
            check_file(cfg, &s.script_filename, "script", false, false);
            assert!(s.script_name.starts_with('/'));
            let name = s.script_name.rsplit('/').next().unwrap_or("");
            assert!(
                has_ext(name, "php"),
                "script {:?} is not .php",
                s.script_name
            );
            assert_eq!(s.script_filename, cfg.root.join(&s.script_name[1..]));
            let mut uri = s.script_name.clone();
            if let Some(info) = &s.path_info {
                assert!(info.starts_with('/'), "PATH_INFO {info:?}");
                assert!(!info.contains(['\0', '\r', '\n']), "PATH_INFO {info:?}");
                uri.push_str(info);
            }
            assert_eq!(s.document_uri, uri, "DOCUMENT_URI");
            let hidden = s
                .script_name
                .split('/')
                .enumerate()
                .any(|(i, seg)| seg.starts_with('.') && !(i == 1 && seg == ".well-known"));
            assert!(!hidden, "hidden script {:?}", s.script_name);
            if cfg.php_only_front_controller {
                assert_eq!(cfg.front_controller.as_ref(), Some(&s.script_name));
            }
        }
        Route::Static { path, seen } => {
            check_file(cfg, path, "static file", true, false);
            if seen.is_some() {
                let real = fs::canonicalize(path).unwrap_or_default();
                assert_eq!(&real, path, "seen metadata for a path not its own");
            }
        }
        Route::Redirect(location) => {
            assert!(location.starts_with('/') && !location.starts_with("//"));
            let (path, q) = location.split_once('?').unwrap_or((location, ""));
            assert!(path.ends_with('/'));
            if query.is_some_and(|q| q.bytes().all(|b| b.is_ascii_graphic())) {
                assert!(
                    HeaderValue::from_str(location).is_ok(),
                    "Location {location:?}"
                );
            }
            assert_eq!(
                Some(q).filter(|q| !q.is_empty()),
                query.filter(|q| !q.is_empty())
            );
            // Following it must not redirect again.
            let next = resolve(cfg, path, None);
            assert!(
                !matches!(next, Route::Redirect(_)),
                "{location:?} → {next:?}"
            );
        }
        Route::NotFound | Route::BadRequest(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let target = String::from_utf8_lossy(data);
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (&*target, None),
    };

    let normalised = percent_decode(raw_path).and_then(|d| normalise(&d));
    if let Ok(n) = &normalised {
        assert!(n.starts_with('/'));
        assert!(!n.contains("//"), "{n:?}");
        assert!(!n.contains(['\0', '\r', '\n', '\\']), "{n:?}");
        assert!(n.split('/').all(|s| s != "." && s != ".."), "{n:?}");
        assert_eq!(normalise(n).as_ref(), Ok(n), "normalise is not idempotent");
        // The Location of a directory decodes back to it (with its slash).
        let location = slash_location(n, None);
        let back = percent_decode(&location).and_then(|d| normalise(&d));
        let with_slash = if n.ends_with('/') {
            n.clone()
        } else {
            format!("{n}/")
        };
        assert_eq!(back, Ok(with_slash), "Location {location:?} of {n:?}");
    }

    for cfg in route_configs() {
        let route = resolve(cfg, raw_path, query);
        match &normalised {
            Err(why) => assert_eq!(route, Route::BadRequest(why)),
            Ok(n) => {
                assert!(!matches!(route, Route::BadRequest(_)), "{route:?}");
                // Only the normalised path counts, however it was spelled.
                let same = resolve(cfg, &encode_path(n), query);
                assert_eq!(route, same, "{raw_path:?} and {n:?} route differently");
            }
        }
        check_route(cfg, &route, query);
    }
});
