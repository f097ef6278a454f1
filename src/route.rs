//! Routing: path normalisation, refusal of dangerous paths, index files,
//! safe PATH_INFO splitting and the front-controller fallback. Looks at the
//! file system (stat) but does no network I/O and serves no bytes.

use std::borrow::Cow;
use std::fs;
use std::path::{Path, PathBuf};

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

/// Decides what serves `raw_path` (the request-target's path as sent:
/// percent-encoded, without the query string).
///
/// Order: normalise (or `BadRequest`); the first `.php` segment splits
/// SCRIPT_NAME / PATH_INFO and must be an existing file (else `NotFound`, never
/// a later segment); a directory tries the PHP index names; anything that names
/// nothing falls back to the front controller.
pub fn resolve(cfg: &RouteConfig, raw_path: &str) -> Route {
    let path = match percent_decode(raw_path).and_then(|decoded| normalise(&decoded)) {
        Ok(path) => path,
        Err(why) => return Route::BadRequest(why),
    };

    if let Some(end) = first_php_segment_end(&path) {
        return php_script(cfg, path, end);
    }

    let trailing_slash = path.len() > 1 && path.ends_with('/');
    let rel = path[1..].trim_end_matches('/');
    let target = under_root(&cfg.root, rel);
    match fs::metadata(&target) {
        Ok(meta) if meta.is_dir() => {
            if let Some(script) = index_script(cfg, &target, rel) {
                return Route::Script(script);
            }
        }
        // An existing non-PHP file is not PHP's business: 404 for now, and not
        // the front controller, because a later issue serves it as a static file
        // and routing it to PHP in the meantime would change what the URL means.
        // With a trailing slash a file names nothing (ENOTDIR, like nginx).
        Ok(_) if !trailing_slash => return Route::NotFound,
        // Missing, ENOTDIR, EACCES...: the path names nothing we may serve.
        _ => {}
    }
    front_controller(cfg)
}

/// Percent-decodes `raw`; borrows when there is nothing to decode (the common
/// case), so a plain path costs no allocation here.
fn percent_decode(raw: &str) -> Result<Cow<'_, str>, &'static str> {
    let bytes = raw.as_bytes();
    let Some(first) = bytes.iter().position(|&b| b == b'%') else {
        return Ok(Cow::Borrowed(raw));
    };
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..first]);
    let mut i = first;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err("malformed percent-encoding in path");
            };
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    // Strict UTF-8 validation also refuses overlong forms such as %c0%ae ('.'),
    // which would otherwise smuggle a dot segment past the normaliser.
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| "path is not valid UTF-8")
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Resolves `.`/`..`, collapses repeated slashes and refuses dangerous bytes.
///
/// The result starts with '/', has no empty, `.` or `..` segment, and keeps a
/// trailing '/' when the decoded path ended in a directory-ish way (`/`, `/.`,
/// `/..`) — the only state later steps need about the original form.
fn normalise(decoded: &str) -> Result<String, &'static str> {
    for b in decoded.bytes() {
        match b {
            // NUL truncates C strings in php-fpm; CR/LF in PATH_INFO is the
            // CVE-2019-11043 trigger and would also split CGI params.
            b'\0' | b'\r' | b'\n' => return Err("control character in path"),
            // Windows-style separators would mean something else to some filesystems.
            b'\\' => return Err("backslash in path"),
            _ => {}
        }
    }
    if !decoded.starts_with('/') {
        return Err("path does not start with '/'");
    }

    let mut out = String::with_capacity(decoded.len());
    let mut trailing_slash = false;
    // `%2f` was decoded already, so it separates segments here (as in nginx).
    for segment in decoded.split('/') {
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                if out.is_empty() {
                    return Err("path escapes the document root");
                }
                // `out` is "" or "/a/b…", so a '/' is always there; 0 as a fallback is harmless.
                let parent = out.rfind('/').unwrap_or(0);
                out.truncate(parent);
            }
            _ => {
                out.push('/');
                out.push_str(segment);
            }
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// Byte offset just past the first segment ending in `.php` (ASCII,
/// case-insensitive), if any. Only the first counts: a later `.php` segment is
/// PATH_INFO, never a fallback script.
fn first_php_segment_end(path: &str) -> Option<usize> {
    let mut start = 1;
    while start < path.len() {
        let end = path[start..].find('/').map_or(path.len(), |i| start + i);
        if is_php_name(&path[start..end]) {
            return Some(end);
        }
        start = end + 1;
    }
    None
}

/// Compares bytes, not chars, so look-alikes such as fullwidth `.ｐｈｐ` never match.
fn is_php_name(name: &str) -> bool {
    name.len()
        .checked_sub(4)
        .and_then(|i| name.as_bytes().get(i..))
        .is_some_and(|ext| ext.eq_ignore_ascii_case(b".php"))
}

/// Route for a path whose segment ending at `end` is the script.
fn php_script(cfg: &RouteConfig, path: String, end: usize) -> Route {
    let file = under_root(&cfg.root, &path[1..end]);
    // nginx's `try_files $fastcgi_script_name =404`: a missing script is a 404
    // even with a front controller, so `/uploads/evil.jpg/x.php` cannot run anything.
    if !is_script_file(&cfg.root, &file) {
        return Route::NotFound;
    }
    let script_name = path[..end].to_owned();
    let path_info = (end < path.len()).then(|| path[end..].to_owned());
    Route::Script(Script {
        script_filename: file,
        script_name,
        path_info,
        document_uri: path,
    })
}

/// The first PHP index file in the directory `dir` (URI path `/` + `rel`).
fn index_script(cfg: &RouteConfig, dir: &Path, rel: &str) -> Option<Script> {
    for name in &cfg.index {
        // Non-PHP index names belong to static serving (later); a name with a
        // separator or dot segment would escape the directory, so skip it too.
        if !is_php_name(name) || !is_plain_segment(name) {
            continue;
        }
        let file = dir.join(name);
        if !is_script_file(&cfg.root, &file) {
            continue;
        }
        let mut script_name = String::with_capacity(rel.len() + name.len() + 2);
        script_name.push('/');
        if !rel.is_empty() {
            script_name.push_str(rel);
            script_name.push('/');
        }
        script_name.push_str(name);
        return Some(Script {
            script_filename: file,
            document_uri: script_name.clone(),
            script_name,
            path_info: None,
        });
    }
    None
}

/// The front-controller fallback, or `NotFound` without one (or if it is missing).
fn front_controller(cfg: &RouteConfig) -> Route {
    let Some(fc) = cfg.front_controller.as_deref() else {
        return Route::NotFound;
    };
    // The config should have validated it; re-check cheaply so a bad value can
    // never point outside the root.
    let Some(rel) = fc.strip_prefix('/') else {
        return Route::NotFound;
    };
    if !rel.split('/').all(is_plain_segment) {
        return Route::NotFound;
    }
    let file = under_root(&cfg.root, rel);
    if !is_script_file(&cfg.root, &file) {
        return Route::NotFound;
    }
    Route::Script(Script {
        script_filename: file,
        script_name: fc.to_owned(),
        path_info: None,
        document_uri: fc.to_owned(),
    })
}

/// A single, non-empty path segment that cannot move up or across directories.
fn is_plain_segment(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| matches!(b, b'/' | b'\\' | b'\0'))
}

/// `root` + `rel` in one allocation. `rel` is relative (no leading '/'),
/// otherwise `push` would replace the root.
fn under_root(root: &Path, rel: &str) -> PathBuf {
    debug_assert!(!rel.starts_with('/'));
    let mut path = PathBuf::with_capacity(root.as_os_str().len() + 1 + rel.len());
    path.push(root);
    if !rel.is_empty() {
        path.push(rel);
    }
    path
}

/// A regular file whose real location is inside `root`.
///
/// `metadata` first: it is one stat and settles the common 404 cheaply.
/// `canonicalize` runs only for the final candidate and catches a symlink
/// (the file or any parent directory) that leads out of the root.
fn is_script_file(root: &Path, file: &Path) -> bool {
    fs::metadata(file).is_ok_and(|meta| meta.is_file())
        && fs::canonicalize(file).is_ok_and(|real| real.starts_with(root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use tempfile::TempDir;

    /// A temp dir holding `root/` (the document root) and `outside/`
    /// (a sibling the routes must never reach).
    struct Tree {
        _tmp: TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    fn touch(path: &Path) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, b"<?php\n").unwrap();
    }

    fn tree() -> Tree {
        let tmp = TempDir::new().unwrap();
        let base = fs::canonicalize(tmp.path()).unwrap();
        let root = base.join("root");
        let outside = base.join("outside");
        for file in [
            "index.php",
            "info.php",
            "a.php",
            "a b.php",
            "x.PHP",
            "readme.txt",
            "fw.\u{ff50}\u{ff48}\u{ff50}",
            "sub/index.php",
            "sub/page.php",
            "uploads/evil.jpg",
            "multi/home.php",
            "multi/index.html",
            "...",
        ] {
            touch(&root.join(file));
        }
        fs::create_dir_all(root.join("d.php")).unwrap();
        fs::create_dir_all(root.join("empty")).unwrap();
        touch(&outside.join("secret.php"));
        touch(&outside.join("index.php"));
        symlink(outside.join("secret.php"), root.join("link.php")).unwrap();
        symlink(&outside, root.join("escape")).unwrap();
        symlink(root.join("info.php"), root.join("alias.php")).unwrap();
        Tree {
            _tmp: tmp,
            root,
            outside,
        }
    }

    fn cfg(t: &Tree, fc: Option<&str>) -> RouteConfig {
        RouteConfig {
            root: t.root.clone(),
            index: vec!["index.php".to_owned()],
            front_controller: fc.map(str::to_owned),
        }
    }

    fn script(t: &Tree, file: &str, name: &str, info: Option<&str>, uri: &str) -> Route {
        Route::Script(Script {
            script_filename: t.root.join(file),
            script_name: name.to_owned(),
            path_info: info.map(str::to_owned),
            document_uri: uri.to_owned(),
        })
    }

    fn is_bad(route: &Route) -> bool {
        matches!(route, Route::BadRequest(_))
    }

    #[test]
    fn plain_script() {
        let t = tree();
        let c = cfg(&t, None);
        assert_eq!(
            resolve(&c, "/index.php"),
            script(&t, "index.php", "/index.php", None, "/index.php")
        );
        assert_eq!(
            resolve(&c, "/sub/page.php"),
            script(&t, "sub/page.php", "/sub/page.php", None, "/sub/page.php")
        );
    }

    #[test]
    fn directory_index() {
        let t = tree();
        let c = cfg(&t, None);
        assert_eq!(
            resolve(&c, "/"),
            script(&t, "index.php", "/index.php", None, "/index.php")
        );
        for path in ["/sub/", "/sub", "//sub//", "/sub/.", "/sub/page.php/.."] {
            assert_eq!(
                resolve(&c, path),
                script(
                    &t,
                    "sub/index.php",
                    "/sub/index.php",
                    None,
                    "/sub/index.php"
                ),
                "{path}"
            );
        }
    }

    #[test]
    fn index_names_in_order_php_only() {
        let t = tree();
        let mut c = cfg(&t, None);
        c.index = vec![
            "index.html".to_owned(),
            "missing.php".to_owned(),
            "../index.php".to_owned(),
            "home.php".to_owned(),
        ];
        assert_eq!(
            resolve(&c, "/multi/"),
            script(
                &t,
                "multi/home.php",
                "/multi/home.php",
                None,
                "/multi/home.php"
            )
        );
    }

    #[test]
    fn directory_without_index() {
        let t = tree();
        assert_eq!(resolve(&cfg(&t, None), "/empty/"), Route::NotFound);
        assert_eq!(
            resolve(&cfg(&t, Some("/index.php")), "/empty"),
            script(&t, "index.php", "/index.php", None, "/index.php")
        );
    }

    #[test]
    fn path_info() {
        let t = tree();
        let c = cfg(&t, None);
        assert_eq!(
            resolve(&c, "/info.php/extra/path"),
            script(
                &t,
                "info.php",
                "/info.php",
                Some("/extra/path"),
                "/info.php/extra/path"
            )
        );
        // PATH_INFO is decoded and normalised like the rest of the path.
        assert_eq!(
            resolve(&c, "/info.php//a%20b/./c/../d/"),
            script(
                &t,
                "info.php",
                "/info.php",
                Some("/a b/d/"),
                "/info.php/a b/d/"
            )
        );
        assert_eq!(
            resolve(&c, "/info.php/"),
            script(&t, "info.php", "/info.php", Some("/"), "/info.php/")
        );
    }

    #[test]
    fn first_php_segment_wins() {
        let t = tree();
        let c = cfg(&t, None);
        assert_eq!(
            resolve(&c, "/a.php/b.php"),
            script(&t, "a.php", "/a.php", Some("/b.php"), "/a.php/b.php")
        );
        // evil.jpg exists but is not a .php segment; x.php does not exist.
        for fc in [None, Some("/index.php")] {
            assert_eq!(
                resolve(&cfg(&t, fc), "/uploads/evil.jpg/x.php"),
                Route::NotFound
            );
            assert_eq!(
                resolve(&cfg(&t, fc), "/nope.php/index.php"),
                Route::NotFound
            );
        }
    }

    #[test]
    fn encoded_names() {
        let t = tree();
        let c = cfg(&t, None);
        assert_eq!(
            resolve(&c, "/a%20b.php"),
            script(&t, "a b.php", "/a b.php", None, "/a b.php")
        );
        assert_eq!(
            resolve(&c, "/%69ndex%2Ephp"),
            script(&t, "index.php", "/index.php", None, "/index.php")
        );
        // %2f is a separator after decoding, as in nginx.
        assert_eq!(
            resolve(&c, "/sub%2fpage.php"),
            script(&t, "sub/page.php", "/sub/page.php", None, "/sub/page.php")
        );
    }

    #[test]
    fn missing_php_is_not_found_even_with_front_controller() {
        let t = tree();
        for fc in [None, Some("/index.php")] {
            let c = cfg(&t, fc);
            assert_eq!(resolve(&c, "/nope.php"), Route::NotFound);
            assert_eq!(resolve(&c, "/nope.php/extra"), Route::NotFound);
            assert_eq!(resolve(&c, "/sub/nope.php"), Route::NotFound);
        }
    }

    #[test]
    fn front_controller_fallback() {
        let t = tree();
        let with = cfg(&t, Some("/index.php"));
        let fc = script(&t, "index.php", "/index.php", None, "/index.php");
        for path in ["/missing/route", "/missing/route/", "/readme.txt/extra"] {
            assert_eq!(resolve(&with, path), fc, "{path}");
            assert_eq!(resolve(&cfg(&t, None), path), Route::NotFound, "{path}");
        }
        // A front controller that does not exist (or escapes) gives 404.
        for bad in [
            "/gone.php",
            "/../outside/index.php",
            "/escape/index.php",
            "index.php",
        ] {
            assert_eq!(
                resolve(&cfg(&t, Some(bad)), "/missing"),
                Route::NotFound,
                "{bad}"
            );
        }
    }

    #[test]
    fn case_insensitive_extension() {
        let t = tree();
        assert_eq!(
            resolve(&cfg(&t, None), "/x.PHP"),
            script(&t, "x.PHP", "/x.PHP", None, "/x.PHP")
        );
    }

    #[test]
    fn fullwidth_php_is_not_php() {
        let t = tree();
        let fw = "/fw.%EF%BD%90%EF%BD%88%EF%BD%90";
        for fc in [None, Some("/index.php")] {
            // Existing non-PHP file: 404, neither executed nor sent to the front controller.
            assert_eq!(resolve(&cfg(&t, fc), fw), Route::NotFound);
        }
        assert!(!is_php_name("fw.\u{ff50}\u{ff48}\u{ff50}"));
        assert!(!is_php_name(".\u{ff30}HP"));
        // Not a script split either: only the front controller can answer.
        assert_eq!(
            resolve(&cfg(&t, Some("/index.php")), &format!("{fw}/x")),
            script(&t, "index.php", "/index.php", None, "/index.php")
        );
    }

    #[test]
    fn non_php_file_and_php_directory_are_not_found() {
        let t = tree();
        for fc in [None, Some("/index.php")] {
            let c = cfg(&t, fc);
            assert_eq!(resolve(&c, "/readme.txt"), Route::NotFound);
            assert_eq!(resolve(&c, "/uploads/evil.jpg"), Route::NotFound);
            assert_eq!(resolve(&c, "/d.php"), Route::NotFound);
            assert_eq!(resolve(&c, "/d.php/"), Route::NotFound);
            assert_eq!(resolve(&c, "/d.php/x"), Route::NotFound);
        }
    }

    #[test]
    fn control_characters_are_refused() {
        let t = tree();
        let c = cfg(&t, Some("/index.php"));
        for path in [
            "/info.php/%0a",
            "/info.php/x%0Dy",
            "/index.php%00.txt",
            "/a%00",
            "/info.php/\n",
        ] {
            assert!(is_bad(&resolve(&c, path)), "{path:?}");
        }
    }

    #[test]
    fn traversal_is_refused_or_stays_inside() {
        let t = tree();
        let c = cfg(&t, Some("/index.php"));
        for path in [
            "/..",
            "/../",
            "/../etc/passwd",
            "/%2e%2e/x.php",
            "/%2E%2E/index.php",
            "/a/%2e%2e/%2e%2e/x.php",
            "/..%2fx.php",
            "/sub/../../index.php",
            "/..\\x.php",
            "/a%5cb.php",
            "/%c0%ae%c0%ae/x.php",
            "/%c0%afindex.php",
            "/%e0%80%ae/x.php",
        ] {
            assert!(is_bad(&resolve(&c, path)), "{path:?}");
        }
        assert_eq!(
            resolve(&c, "/a/../index.php"),
            script(&t, "index.php", "/index.php", None, "/index.php")
        );
        assert_eq!(
            resolve(&c, "/sub/./../sub/page.php"),
            script(&t, "sub/page.php", "/sub/page.php", None, "/sub/page.php")
        );
    }

    #[test]
    fn malformed_requests() {
        let t = tree();
        let c = cfg(&t, None);
        for path in [
            "/%zz",
            "/%4",
            "/x%",
            "/%g0.php",
            "",
            "index.php",
            "*",
            "/%ff",
        ] {
            assert!(is_bad(&resolve(&c, path)), "{path:?}");
        }
    }

    #[test]
    fn dot_names_that_are_not_dot_segments() {
        let t = tree();
        // "..." is an ordinary file name, not a parent reference; it is a
        // non-PHP file, hence 404 for now.
        assert_eq!(resolve(&cfg(&t, None), "/..."), Route::NotFound);
        assert_eq!(normalise("/a/.../b").as_deref(), Ok("/a/.../b"));
        assert_eq!(normalise("/a/..b/").as_deref(), Ok("/a/..b/"));
    }

    #[test]
    fn symlinks_out_of_the_root_are_not_found() {
        let t = tree();
        assert!(t.outside.join("secret.php").is_file());
        for fc in [None, Some("/index.php")] {
            let c = cfg(&t, fc);
            assert_eq!(resolve(&c, "/link.php"), Route::NotFound);
            assert_eq!(resolve(&c, "/link.php/x"), Route::NotFound);
            assert_eq!(resolve(&c, "/escape/secret.php"), Route::NotFound);
        }
        // The escaping directory's index is skipped as if it did not exist.
        assert_eq!(resolve(&cfg(&t, None), "/escape/"), Route::NotFound);
    }

    #[test]
    fn symlink_inside_the_root_keeps_the_link_name() {
        let t = tree();
        // Like nginx's $document_root$fastcgi_script_name: the link, not its target.
        assert_eq!(
            resolve(&cfg(&t, None), "/alias.php/p"),
            script(&t, "alias.php", "/alias.php", Some("/p"), "/alias.php/p")
        );
    }

    #[test]
    fn normalise_shapes() {
        let cases = [
            ("/", "/"),
            ("//", "/"),
            ("/.", "/"),
            ("/a/..", "/"),
            ("/a//b///c", "/a/b/c"),
            ("/a/b/", "/a/b/"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/c/..", "/a/b/"),
            ("/a/./b/../c", "/a/c"),
        ];
        for (input, want) in cases {
            assert_eq!(normalise(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn php_segment_split_points() {
        assert_eq!(first_php_segment_end("/a.php"), Some(6));
        assert_eq!(first_php_segment_end("/a.php/b.php"), Some(6));
        assert_eq!(first_php_segment_end("/dir/x.Php/"), Some(10));
        assert_eq!(first_php_segment_end("/a.phpx/b"), None);
        assert_eq!(first_php_segment_end("/php/"), None);
        assert_eq!(first_php_segment_end("/"), None);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the client sends, a normalised path is absolute,
            /// has no empty/dot segments and carries no refused bytes.
            #[test]
            fn normalised_paths_are_clean(raw in "[/a.%2eEfF0c\\\\\\x00\\n]{0,24}") {
                if let Ok(decoded) = percent_decode(&raw) {
                    if let Ok(path) = normalise(&decoded) {
                        prop_assert!(path.starts_with('/'));
                        let body = path[1..].strip_suffix('/').unwrap_or(&path[1..]);
                        if !body.is_empty() {
                            for seg in body.split('/') {
                                prop_assert!(is_plain_segment(seg), "{path:?}");
                            }
                        }
                        prop_assert!(!path.bytes().any(|b| matches!(b, 0 | b'\r' | b'\n' | b'\\')));
                    }
                }
            }
        }

        /// Against a real tree (with symlinks out of it), any chosen script is
        /// a regular file whose real location is under the root.
        #[test]
        fn scripts_stay_under_root() {
            let t = super::tree();
            let cfg = super::cfg(&t, Some("/index.php"));
            let strategy = "(/(\\.\\.|%2e%2e|%2E|\\.|sub|index\\.php|link\\.php|escape|secret\\.php|%2f|x)){0,6}/?";
            let mut runner = proptest::test_runner::TestRunner::default();
            runner
                .run(&strategy, |raw| {
                    if let Route::Script(s) = resolve(&cfg, &raw) {
                        prop_assert!(s.script_filename.is_file());
                        let real = fs::canonicalize(&s.script_filename).unwrap();
                        prop_assert!(real.starts_with(&cfg.root), "{raw:?} -> {real:?}");
                    }
                    Ok(())
                })
                .unwrap();
        }
    }
}
