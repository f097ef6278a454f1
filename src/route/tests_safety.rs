//! Unit tests of the refusals: traversal, control bytes, dotfiles, PHP
//! source, Unicode look-alikes and symlinks out of the root.

use super::tests::{cfg, file, is_bad, script, tree};
use super::*;

#[test]
fn php_source_is_never_static() {
    let t = tree();
    for fc in [None, Some("/index.php")] {
        let c = cfg(&t, fc);
        for path in [
            "/secret.inc",
            "/SECRET.INC",
            "/view.PHTML",
            "/tool.phar",
            "/missing.inc",
            "/source.txt",
        ] {
            assert_eq!(resolve(&c, path, None), Route::NotFound, "{path}");
        }
    }
    // The list is configurable; `.php` stays refused as a static file regardless.
    let mut c = cfg(&t, None);
    c.never_serve_ext = vec!["txt".to_owned()];
    assert_eq!(resolve(&c, "/readme.txt", None), Route::NotFound);
    assert_eq!(resolve(&c, "/secret.inc", None), file(&t, "secret.inc"));
    assert_eq!(resolve(&c, "/source.txt", None), Route::NotFound);
}

#[test]
fn dotfiles_are_not_found_except_well_known() {
    let t = tree();
    for fc in [None, Some("/index.php")] {
        let c = cfg(&t, fc);
        for path in [
            "/.env",
            "/.git/config",
            "/.git/",
            "/.git",
            "/.htaccess",
            "/%2eenv",
            "/sub/.hidden.php",
            "/...",
            "/env.txt",
        ] {
            assert_eq!(resolve(&c, path, None), Route::NotFound, "{path}");
        }
        assert_eq!(
            resolve(&c, "/.well-known/x.txt", None),
            file(&t, ".well-known/x.txt")
        );
    }
}

#[test]
fn fullwidth_php_is_not_php() {
    let t = tree();
    let fw = "/fw.%EF%BD%90%EF%BD%88%EF%BD%90";
    for fc in [None, Some("/index.php")] {
        // Not a PHP extension, so the existing file is plain bytes: never executed.
        assert_eq!(
            resolve(&cfg(&t, fc), fw, None),
            file(&t, "fw.\u{ff50}\u{ff48}\u{ff50}")
        );
    }
    // Not a script split either: only the front controller can answer.
    assert_eq!(
        resolve(&cfg(&t, Some("/index.php")), &format!("{fw}/x"), None),
        script(&t, "index.php", "/index.php", None, "/index.php")
    );
    assert_eq!(
        resolve(&cfg(&t, None), "/nope.%EF%BD%90%EF%BD%88%EF%BD%90", None),
        Route::NotFound
    );
}

#[test]
fn symlinks_out_of_the_root_are_not_found() {
    let t = tree();
    assert!(t.outside.join("secret.php").is_file());
    for fc in [None, Some("/index.php")] {
        let c = cfg(&t, fc);
        for path in [
            "/link.php",
            "/link.php/x",
            "/escape/secret.php",
            "/out.txt",
            "/escape/notes.txt",
            "/escape",
            "/escape/",
        ] {
            assert_eq!(resolve(&c, path, None), Route::NotFound, "{path}");
        }
    }
}

#[test]
fn symlinks_out_of_the_root_when_allowed() {
    let t = tree();
    let mut c = cfg(&t, None);
    c.follow_symlinks_outside_root = true;
    assert_eq!(resolve(&c, "/out.txt", None), file(&t, "out.txt"));
    assert_eq!(
        resolve(&c, "/escape/notes.txt", None),
        file(&t, "escape/notes.txt")
    );
    assert_eq!(
        resolve(&c, "/link.php", None),
        script(&t, "link.php", "/link.php", None, "/link.php")
    );
    assert_eq!(
        resolve(&c, "/escape", None),
        Route::Redirect("/escape/".into())
    );
    // Following links never relaxes the source and dotfile rules.
    assert_eq!(resolve(&c, "/source.txt", None), Route::NotFound);
    assert_eq!(resolve(&c, "/env.txt", None), Route::NotFound);
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
        assert!(is_bad(&resolve(&c, path, None)), "{path:?}");
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
        assert!(is_bad(&resolve(&c, path, None)), "{path:?}");
    }
    assert_eq!(
        resolve(&c, "/a/../index.php", None),
        script(&t, "index.php", "/index.php", None, "/index.php")
    );
    assert_eq!(
        resolve(&c, "/sub/./../sub/page.php", None),
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
        assert!(is_bad(&resolve(&c, path, None)), "{path:?}");
    }
}

mod props {
    use super::super::path::{is_plain_segment, normalise, percent_decode};
    use super::super::tests::{cfg, tree};
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

    /// Against a real tree (with symlinks out of it), any chosen script or
    /// static file is a regular file whose real location is under the root,
    /// and no static file is PHP source or hidden.
    #[test]
    fn scripts_stay_under_root() {
        let t = tree();
        let cfg = cfg(&t, Some("/index.php"));
        let strategy = "(/(\\.\\.|%2e%2e|%2E|\\.|sub|index\\.php|link\\.php|escape|secret\\.php|%2f|x|\\.env|source\\.txt|secret\\.inc|out\\.txt|notes\\.txt|env\\.txt|readme\\.txt)){0,6}/?";
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(&strategy, |raw| {
                if let Route::Script(s) = resolve(&cfg, &raw, None) {
                    prop_assert!(s.script_filename.is_file());
                    let real = fs::canonicalize(&s.script_filename).unwrap();
                    prop_assert!(real.starts_with(&cfg.root), "{raw:?} -> {real:?}");
                }
                if let Route::Static { path, .. } = resolve(&cfg, &raw, None) {
                    let real = fs::canonicalize(&path).unwrap();
                    prop_assert!(
                        real.is_file() && real.starts_with(&cfg.root),
                        "{raw:?} -> {real:?}"
                    );
                    let name = real.file_name().unwrap().to_str().unwrap();
                    prop_assert!(
                        !name.starts_with('.')
                            && !name.ends_with(".php")
                            && !name.ends_with(".inc"),
                        "{raw:?} -> {real:?}"
                    );
                }
                Ok(())
            })
            .unwrap();
    }
}
