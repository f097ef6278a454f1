//! Unit tests of internal locations, `X-Accel-Redirect` and `X-Sendfile` targets.

use std::os::unix::fs::symlink;

use super::tests::{cfg, file, tree};
use super::*;

fn with_internal(t: &super::tests::Tree) -> RouteConfig {
    let mut c = cfg(t, Some("/index.php"));
    c.internal_locations = vec!["/protected".to_owned()];
    c
}

#[test]
fn internal_locations_are_404_for_clients_whatever_the_spelling() {
    let t = tree();
    fs::create_dir_all(t.root.join("protected/sub")).unwrap();
    fs::write(t.root.join("protected/file.zip"), b"zip").unwrap();
    fs::write(t.root.join("protected/run.php"), b"<?php").unwrap();
    fs::create_dir_all(t.root.join("protectedx")).unwrap();
    fs::write(t.root.join("protectedx/a.txt"), b"a").unwrap();
    symlink(t.root.join("protected/file.zip"), t.root.join("alias.zip")).unwrap();
    symlink(t.root.join("protected"), t.root.join("aliasdir")).unwrap();
    let c = with_internal(&t);
    for path in [
        "/protected",
        "/protected/",
        "/protected/file.zip",
        "/protected/run.php",
        "/protected/missing",
        "/protected/sub/",
        "/x/../protected/file.zip",
        "/%70rotected/file.zip",
        "//protected//file.zip",
        "/alias.zip",
        "/aliasdir/file.zip",
        "/aliasdir/run.php",
    ] {
        assert_eq!(resolve(&c, path, None), Route::NotFound, "{path}");
    }
    // Only whole segments match.
    assert_eq!(
        resolve(&c, "/protectedx/a.txt", None),
        file(&t, "protectedx/a.txt")
    );
    // Without the setting the directory is an ordinary one.
    let open = cfg(&t, None);
    assert_eq!(
        resolve(&open, "/protected/file.zip", None),
        file(&t, "protected/file.zip")
    );
}

#[test]
fn accel_redirect_reaches_internal_files_under_the_usual_rules() {
    let t = tree();
    fs::create_dir_all(t.root.join("protected")).unwrap();
    fs::write(t.root.join("protected/file.zip"), b"zip").unwrap();
    fs::write(t.root.join("protected/.hidden"), b"h").unwrap();
    fs::write(t.root.join("protected/a b.txt"), b"ab").unwrap();
    let c = with_internal(&t);
    let target = |v: &str| accel_redirect_target(&c, v);
    assert_eq!(
        target("/protected/file.zip"),
        file(&t, "protected/file.zip")
    );
    assert_eq!(
        target("/protected/file.zip?x=1"),
        file(&t, "protected/file.zip")
    );
    assert_eq!(
        target("/protected/a%20b.txt"),
        file(&t, "protected/a b.txt")
    );
    assert_eq!(target("/readme.txt"), file(&t, "readme.txt"));
    for refused in [
        "/protected/.hidden",
        "/.env",
        "/.git/config",
        "/secret.inc",
        "/index.php",
        "/protected/",
        "/protected",
        "/missing.txt",
        "/escape/notes.txt",
    ] {
        assert_eq!(target(refused), Route::NotFound, "{refused}");
    }
    for bad in ["/../outside/notes.txt", "/a%0ab", "relative.txt", "/%zz"] {
        assert!(matches!(target(bad), Route::BadRequest(_)), "{bad}");
    }
}

#[test]
fn sendfile_only_inside_its_directory() {
    let t = tree();
    let dir = t.outside.clone();
    fs::write(dir.join(".secret"), b"s").unwrap();
    fs::write(dir.join("config.inc"), b"s").unwrap();
    symlink(t.root.join("readme.txt"), dir.join("to-root.txt")).unwrap();
    let c = cfg(&t, None);
    let target = |v: &str| sendfile_target(&c, &dir, v);
    let notes = dir.join("notes.txt");
    let seen = Some(Seen(fs::metadata(&notes).unwrap()));
    assert_eq!(
        target(notes.to_str().unwrap()),
        Route::Static {
            path: notes.clone(),
            seen: seen.clone(),
        }
    );
    let dotted = format!("{}/../outside/notes.txt", t.root.display());
    assert_eq!(target(&dotted), Route::Static { path: notes, seen });
    for refused in [
        format!("{}/readme.txt", t.root.display()),
        format!("{}/to-root.txt", dir.display()),
        format!("{}/.secret", dir.display()),
        format!("{}/config.inc", dir.display()),
        format!("{}/secret.php", dir.display()),
        format!("{}/missing", dir.display()),
        dir.display().to_string(),
        "/etc/passwd".to_owned(),
    ] {
        assert_eq!(target(&refused), Route::NotFound, "{refused}");
    }
    assert!(matches!(target("notes.txt"), Route::BadRequest(_)));
}
