//! Unit tests of `resolve` against a real temporary tree.

use super::*;
use std::os::unix::fs::{symlink, MetadataExt};
use tempfile::TempDir;

/// A temp dir holding `root/` (the document root) and `outside/`
/// (a sibling the routes must never reach).
pub(super) struct Tree {
    _tmp: TempDir,
    pub(super) root: PathBuf,
    pub(super) outside: PathBuf,
}

fn touch(path: &Path) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, b"<?php\n").unwrap();
}

pub(super) fn tree() -> Tree {
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
        "both/index.php",
        "both/index.html",
        "html/index.html",
        "...",
        ".env",
        ".git/config",
        ".well-known/x.txt",
        "secret.inc",
        "view.PHTML",
        "tool.phar",
        "css/app.css",
    ] {
        touch(&root.join(file));
    }
    fs::create_dir_all(root.join("d.php")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    touch(&outside.join("secret.php"));
    touch(&outside.join("index.php"));
    touch(&outside.join("notes.txt"));
    symlink(outside.join("secret.php"), root.join("link.php")).unwrap();
    symlink(&outside, root.join("escape")).unwrap();
    symlink(root.join("info.php"), root.join("alias.php")).unwrap();
    symlink(outside.join("notes.txt"), root.join("out.txt")).unwrap();
    symlink(root.join("info.php"), root.join("source.txt")).unwrap();
    symlink(root.join(".env"), root.join("env.txt")).unwrap();
    symlink(root.join("css/app.css"), root.join("style.css")).unwrap();
    Tree {
        _tmp: tmp,
        root,
        outside,
    }
}

pub(super) fn cfg(t: &Tree, fc: Option<&str>) -> RouteConfig {
    RouteConfig {
        root: t.root.clone(),
        index: vec!["index.php".to_owned(), "index.html".to_owned()],
        front_controller: fc.map(str::to_owned),
        php_only_front_controller: false,
        // The default of `never-serve-ext`: PHP source in its usual spellings.
        never_serve_ext: ["php", "phtml", "phar", "inc"].map(str::to_owned).to_vec(),
        follow_symlinks_outside_root: false,
        internal_locations: Vec::new(),
        // Every check stats; the script-stat-cache tests at the end turn it on.
        script_stat_cache: Duration::ZERO,
    }
}

pub(super) fn script(t: &Tree, file: &str, name: &str, info: Option<&str>, uri: &str) -> Route {
    Route::Script(Script {
        script_filename: t.root.join(file),
        script_name: name.to_owned(),
        path_info: info.map(str::to_owned),
        document_uri: uri.to_owned(),
    })
}

/// A static file as routing answers it: with its metadata when the path
/// is its own real path (no symlink on the way), which spares a stat.
pub(super) fn file(t: &Tree, rel: &str) -> Route {
    let path = t.root.join(rel);
    let plain = fs::canonicalize(&path).is_ok_and(|real| real == path);
    let seen = plain.then(|| Seen(fs::metadata(&path).unwrap()));
    Route::Static { path, seen }
}

pub(super) fn is_bad(route: &Route) -> bool {
    matches!(route, Route::BadRequest(_))
}

#[test]
fn directory_index() {
    let t = tree();
    let c = cfg(&t, None);
    assert_eq!(
        resolve(&c, "/", None),
        script(&t, "index.php", "/index.php", None, "/index.php")
    );
    for path in ["/sub/", "//sub//", "/sub/.", "/sub/page.php/.."] {
        assert_eq!(
            resolve(&c, path, None),
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
    // PHP first, then the static index; a static index is served as a file.
    assert_eq!(
        resolve(&c, "/both/", None),
        script(
            &t,
            "both/index.php",
            "/both/index.php",
            None,
            "/both/index.php"
        )
    );
    assert_eq!(resolve(&c, "/html/", None), file(&t, "html/index.html"));
}

#[test]
fn directory_without_slash_redirects_keeping_the_query() {
    let t = tree();
    let c = cfg(&t, Some("/index.php"));
    assert_eq!(resolve(&c, "/sub", None), Route::Redirect("/sub/".into()));
    assert_eq!(
        resolve(&c, "/html", Some("a=1&b=%20")),
        Route::Redirect("/html/?a=1&b=%20".into())
    );
    // The Location is the normalised path: `//evil.example` cannot come out of it.
    assert_eq!(
        resolve(&c, "//empty", None),
        Route::Redirect("/empty/".into())
    );
    assert_eq!(
        resolve(&c, "/sub/../html", Some("x")),
        Route::Redirect("/html/?x".into())
    );
}

#[test]
fn index_names_in_order() {
    let t = tree();
    let mut c = cfg(&t, None);
    c.index = vec![
        "missing.php".to_owned(),
        "../index.php".to_owned(),
        ".env".to_owned(),
        "home.php".to_owned(),
        "index.html".to_owned(),
    ];
    assert_eq!(
        resolve(&c, "/multi/", None),
        script(
            &t,
            "multi/home.php",
            "/multi/home.php",
            None,
            "/multi/home.php"
        )
    );
    c.index = vec!["index.html".to_owned(), "home.php".to_owned()];
    assert_eq!(resolve(&c, "/multi/", None), file(&t, "multi/index.html"));
    // A never-served name is skipped even as an index.
    c.index = vec!["secret.inc".to_owned()];
    assert_eq!(resolve(&c, "/", None), Route::NotFound);
}

#[test]
fn directory_without_index() {
    let t = tree();
    assert_eq!(resolve(&cfg(&t, None), "/empty/", None), Route::NotFound);
    assert_eq!(
        resolve(&cfg(&t, Some("/index.php")), "/empty/", None),
        script(&t, "index.php", "/index.php", None, "/index.php")
    );
}

#[test]
fn existing_files_are_static() {
    let t = tree();
    for fc in [None, Some("/index.php")] {
        let c = cfg(&t, fc);
        assert_eq!(resolve(&c, "/readme.txt", None), file(&t, "readme.txt"));
        assert_eq!(resolve(&c, "/css/app.css", None), file(&t, "css/app.css"));
        // An uploaded "image" is bytes to send, never a script.
        assert_eq!(
            resolve(&c, "/uploads/evil.jpg", None),
            file(&t, "uploads/evil.jpg")
        );
        // A symlink inside the root keeps its own name (and content type).
        assert_eq!(resolve(&c, "/style.css", None), file(&t, "style.css"));
    }
    // A file with a trailing slash names nothing (ENOTDIR, like nginx).
    assert_eq!(
        resolve(&cfg(&t, None), "/readme.txt/", None),
        Route::NotFound
    );
}

#[test]
fn php_named_directory_is_not_found() {
    let t = tree();
    for fc in [None, Some("/index.php")] {
        let c = cfg(&t, fc);
        for path in ["/d.php", "/d.php/", "/d.php/x"] {
            assert_eq!(resolve(&c, path, None), Route::NotFound, "{path}");
        }
    }
}

#[test]
fn php_only_front_controller() {
    let t = tree();
    let mut c = cfg(&t, Some("/index.php"));
    c.php_only_front_controller = true;
    let fc = script(&t, "index.php", "/index.php", None, "/index.php");
    for path in [
        "/info.php",
        "/a.php",
        "/sub/page.php",
        "/info.php/x",
        "/nope.php",
    ] {
        assert_eq!(resolve(&c, path, None), Route::NotFound, "{path}");
    }
    assert_eq!(resolve(&c, "/index.php", None), fc);
    assert_eq!(resolve(&c, "/", None), fc);
    assert_eq!(resolve(&c, "/missing", None), fc);
    assert_eq!(
        resolve(&c, "/index.php/x", None),
        script(&t, "index.php", "/index.php", Some("/x"), "/index.php/x")
    );
    // Another directory's PHP index is skipped: its static index, or the front controller.
    assert_eq!(resolve(&c, "/both/", None), file(&t, "both/index.html"));
    assert_eq!(resolve(&c, "/sub/", None), fc);
    // Static files are unaffected.
    assert_eq!(resolve(&c, "/readme.txt", None), file(&t, "readme.txt"));
}

#[test]
fn plain_script() {
    let t = tree();
    let c = cfg(&t, None);
    assert_eq!(
        resolve(&c, "/index.php", None),
        script(&t, "index.php", "/index.php", None, "/index.php")
    );
    assert_eq!(
        resolve(&c, "/sub/page.php", None),
        script(&t, "sub/page.php", "/sub/page.php", None, "/sub/page.php")
    );
}

#[test]
fn path_info() {
    let t = tree();
    let c = cfg(&t, None);
    assert_eq!(
        resolve(&c, "/info.php/extra/path", None),
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
        resolve(&c, "/info.php//a%20b/./c/../d/", None),
        script(
            &t,
            "info.php",
            "/info.php",
            Some("/a b/d/"),
            "/info.php/a b/d/"
        )
    );
    assert_eq!(
        resolve(&c, "/info.php/", None),
        script(&t, "info.php", "/info.php", Some("/"), "/info.php/")
    );
}

#[test]
fn first_php_segment_wins() {
    let t = tree();
    let c = cfg(&t, None);
    assert_eq!(
        resolve(&c, "/a.php/b.php", None),
        script(&t, "a.php", "/a.php", Some("/b.php"), "/a.php/b.php")
    );
    // evil.jpg exists but is not a .php segment; x.php does not exist.
    for fc in [None, Some("/index.php")] {
        assert_eq!(
            resolve(&cfg(&t, fc), "/uploads/evil.jpg/x.php", None),
            Route::NotFound
        );
        assert_eq!(
            resolve(&cfg(&t, fc), "/nope.php/index.php", None),
            Route::NotFound
        );
    }
}

#[test]
fn encoded_names() {
    let t = tree();
    let c = cfg(&t, None);
    assert_eq!(
        resolve(&c, "/a%20b.php", None),
        script(&t, "a b.php", "/a b.php", None, "/a b.php")
    );
    assert_eq!(
        resolve(&c, "/%69ndex%2Ephp", None),
        script(&t, "index.php", "/index.php", None, "/index.php")
    );
    // %2f is a separator after decoding, as in nginx.
    assert_eq!(
        resolve(&c, "/sub%2fpage.php", None),
        script(&t, "sub/page.php", "/sub/page.php", None, "/sub/page.php")
    );
}

#[test]
fn missing_php_is_not_found_even_with_front_controller() {
    let t = tree();
    for fc in [None, Some("/index.php")] {
        let c = cfg(&t, fc);
        assert_eq!(resolve(&c, "/nope.php", None), Route::NotFound);
        assert_eq!(resolve(&c, "/nope.php/extra", None), Route::NotFound);
        assert_eq!(resolve(&c, "/sub/nope.php", None), Route::NotFound);
    }
}

#[test]
fn front_controller_fallback() {
    let t = tree();
    let with = cfg(&t, Some("/index.php"));
    let fc = script(&t, "index.php", "/index.php", None, "/index.php");
    for path in ["/missing/route", "/missing/route/", "/readme.txt/extra"] {
        assert_eq!(resolve(&with, path, None), fc, "{path}");
        assert_eq!(
            resolve(&cfg(&t, None), path, None),
            Route::NotFound,
            "{path}"
        );
    }
    // A front controller that does not exist (or escapes) gives 404.
    for bad in [
        "/gone.php",
        "/../outside/index.php",
        "/escape/index.php",
        "index.php",
    ] {
        assert_eq!(
            resolve(&cfg(&t, Some(bad)), "/missing", None),
            Route::NotFound,
            "{bad}"
        );
    }
}

#[test]
fn case_insensitive_extension() {
    let t = tree();
    assert_eq!(
        resolve(&cfg(&t, None), "/x.PHP", None),
        script(&t, "x.PHP", "/x.PHP", None, "/x.PHP")
    );
}

#[test]
fn symlink_inside_the_root_keeps_the_link_name() {
    let t = tree();
    // Like nginx's $document_root$fastcgi_script_name: the link, not its target.
    assert_eq!(
        resolve(&cfg(&t, None), "/alias.php/p", None),
        script(&t, "alias.php", "/alias.php", Some("/p"), "/alias.php/p")
    );
}

#[test]
fn a_static_file_carries_its_stat_only_when_no_symlink_lies_on_the_way() {
    let t = tree();
    let c = cfg(&t, None);
    let Route::Static { seen, .. } = resolve(&c, "/css/app.css", None) else {
        panic!("app.css is static");
    };
    let seen = seen.expect("a plain path's lstat is its stat");
    let real = fs::metadata(t.root.join("css/app.css")).unwrap();
    assert_eq!((seen.0.ino(), seen.0.len()), (real.ino(), real.len()));
    // The link's lstat describes the link, not the file: none is passed on.
    let Route::Static { path, seen } = resolve(&c, "/style.css", None) else {
        panic!("style.css is static");
    };
    assert_eq!((path, seen), (t.root.join("style.css"), None));
}

#[test]
fn below_compares_whole_names() {
    let root = Path::new("/srv/www");
    assert_eq!(below(root, Path::new("/srv/www")), Some(&b""[..]));
    assert_eq!(
        below(root, Path::new("/srv/www/a/b.css")),
        Some(&b"a/b.css"[..])
    );
    assert_eq!(below(root, Path::new("/srv/www2/a")), None);
    assert_eq!(below(root, Path::new("/srv/ww")), None);
    assert_eq!(
        below(Path::new("/"), Path::new("/etc/x")),
        Some(&b"etc/x"[..])
    );
    let names: Vec<&[u8]> = segments(b"a//./.git/x").collect();
    assert_eq!(names, [&b"a"[..], b".git", b"x"]);
}

#[test]
fn editor_and_backup_copies_of_scripts_are_never_sent() {
    let t = tree();
    for name in [
        "info.php~",
        "info.php.bak",
        "info.phps",
        "info.php.orig",
        ".info.php.swp",
    ] {
        fs::write(t.root.join(name), "<?php echo 1;").unwrap();
    }
    let mut c = cfg(&t, None);
    c.never_serve_ext = ["php", "phtml", "phar", "inc", "phps", "bak", "orig", "swp"]
        .map(str::to_owned)
        .to_vec();
    for path in [
        "/info.php~",
        "/info.php.bak",
        "/info.phps",
        "/info.php.orig",
        "/.info.php.swp",
    ] {
        assert_eq!(resolve(&c, path, None), Route::NotFound, "{path}");
    }
    // `~` is refused whatever the list says.
    c.never_serve_ext = vec!["php".to_owned()];
    assert_eq!(resolve(&c, "/info.php~", None), Route::NotFound);
}

/// `script-stat-cache`: a script once found is trusted for the interval
/// without a stat; what is missing, and what lies behind a symlink, is
/// looked up on every request.
#[test]
fn a_found_script_is_trusted_for_the_interval_only() {
    let t = tree();
    let mut c = cfg(&t, Some("/index.php"));
    c.script_stat_cache = Duration::from_secs(3600);
    let a = script(&t, "a.php", "/a.php", None, "/a.php");
    assert_eq!(resolve(&c, "/a.php", None), a);
    fs::remove_file(t.root.join("a.php")).unwrap();
    // Trusted: were it asked, php-fpm would answer 404 for it itself.
    assert_eq!(resolve(&c, "/a.php", None), a);
    // Off, the removal is seen at once.
    let mut off = c.clone();
    off.script_stat_cache = Duration::ZERO;
    assert_eq!(resolve(&off, "/a.php", None), Route::NotFound);

    // A missing script is never remembered: once created it runs.
    assert_eq!(resolve(&c, "/new.php", None), Route::NotFound);
    touch(&t.root.join("new.php"));
    assert_eq!(
        resolve(&c, "/new.php", None),
        script(&t, "new.php", "/new.php", None, "/new.php")
    );
    // Nor is a path the front controller answered: a file created there
    // is served at once.
    let front = script(&t, "index.php", "/index.php", None, "/index.php");
    assert_eq!(resolve(&c, "/page.css", None), front);
    touch(&t.root.join("page.css"));
    assert_eq!(resolve(&c, "/page.css", None), file(&t, "page.css"));

    // Behind a symlink (alias.php -> info.php) the check is made each time.
    let alias = script(&t, "alias.php", "/alias.php", None, "/alias.php");
    assert_eq!(resolve(&c, "/alias.php", None), alias);
    fs::remove_file(t.root.join("info.php")).unwrap();
    assert_eq!(resolve(&c, "/alias.php", None), Route::NotFound);
}

#[test]
fn a_removed_script_is_seen_once_the_interval_has_passed() {
    let t = tree();
    let mut c = cfg(&t, None);
    c.script_stat_cache = Duration::from_millis(20);
    let page = script(&t, "sub/page.php", "/sub/page.php", None, "/sub/page.php");
    assert_eq!(resolve(&c, "/sub/page.php", None), page);
    fs::remove_file(t.root.join("sub/page.php")).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(resolve(&c, "/sub/page.php", None), Route::NotFound);
}

/// The lstat walk's levels: each name with the offset where it ends in the
/// path, empty and `.` names skipped but counted.
#[test]
fn named_levels_end_where_each_name_ends() {
    let levels: Vec<_> = named_levels(b"a//./bc/d").collect();
    assert_eq!(levels, [(&b"a"[..], 1), (&b"bc"[..], 7), (&b"d"[..], 9)]);
    assert_eq!(named_levels(b"").count(), 0);
}
