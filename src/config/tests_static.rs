//! Tests for the routing and static-file settings: `php-only-front-controller`,
//! `never-serve-ext`, `follow-symlinks-outside-root`, `script-stat-cache` and
//! `cache-control`.

use super::test_support::{file_with, message, serve_args};
use super::*;

#[test]
fn routing_and_static_keys_are_read() {
    let (_dir, path) = file_with(
        r#"front-controller = "/index.php"
php-only-front-controller = true
never-serve-ext = [".INC", "bak"]
follow-symlinks-outside-root = true
script-stat-cache = "250ms"

[cache-control]
css = "max-age=3600"
".JS" = "public, max-age=60"
"#,
    );
    let config = check_file(&path).unwrap();
    assert!(config.php_only_front_controller);
    assert_eq!(config.never_serve_ext, ["inc", "bak"]);
    assert!(config.follow_symlinks_outside_root);
    assert_eq!(config.script_stat_cache, Duration::from_millis(250));
    assert_eq!(
        config.cache_control,
        vec![
            ("css".to_owned(), "max-age=3600".to_owned()),
            ("js".to_owned(), "public, max-age=60".to_owned()),
        ]
    );
}

#[test]
fn routing_and_static_flags() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let config = load(&serve_args(&[
        "--upstream",
        "unix:/x",
        "--root",
        root,
        "--front-controller",
        "/index.php",
        "--php-only-front-controller",
        "--never-serve-ext",
        "inc",
        "--never-serve-ext",
        ".Sql",
        "--follow-symlinks-outside-root",
        "--script-stat-cache",
        "0s",
        "--cache-control",
        "css=max-age=3600",
        "--cache-control",
        "woff2=public, max-age=31536000, immutable",
    ]))
    .unwrap();
    assert!(config.php_only_front_controller);
    assert_eq!(config.never_serve_ext, ["inc", "sql"]);
    assert!(config.follow_symlinks_outside_root);
    assert_eq!(config.script_stat_cache, Duration::ZERO);
    assert_eq!(
        config.cache_control,
        vec![
            ("css".to_owned(), "max-age=3600".to_owned()),
            (
                "woff2".to_owned(),
                "public, max-age=31536000, immutable".to_owned()
            ),
        ]
    );
}

#[test]
fn flags_override_the_file_lists_and_leave_its_booleans() {
    let (dir, path) = file_with(
        "front-controller = \"/index.php\"\nphp-only-front-controller = true\n\
         never-serve-ext = [\"inc\"]\n[cache-control]\ncss = \"no-cache\"\n",
    );
    let mut args = serve_args(&[
        "--never-serve-ext",
        "sql",
        "--cache-control",
        "js=max-age=1",
    ]);
    args.config = Some(path);
    let config = load(&args).unwrap();
    assert_eq!(config.never_serve_ext, ["sql"]);
    assert_eq!(
        config.cache_control,
        vec![("js".to_owned(), "max-age=1".to_owned())]
    );
    // An absent boolean flag does not switch the file's `true` off.
    assert!(config.php_only_front_controller);
    drop(dir);
}

#[test]
fn php_only_needs_a_front_controller() {
    let expected = "php-only-front-controller needs a front controller: give \
                    --front-controller or `front-controller` in the config file";
    let (_dir, path) = file_with("php-only-front-controller = true\n");
    assert_eq!(message(check_file(&path)), expected);
    let dir = tempfile::tempdir().unwrap();
    let args = serve_args(&[
        "--upstream",
        "unix:/x",
        "--root",
        dir.path().to_str().unwrap(),
        "--php-only-front-controller",
    ]);
    assert_eq!(message(load(&args)), expected);
}

#[test]
fn bad_routing_and_static_values() {
    let cases = [
        (
            "php-only-front-controller = \"yes\"",
            "php-only-front-controller",
            "expected true or false, found string",
        ),
        (
            "follow-symlinks-outside-root = 1",
            "follow-symlinks-outside-root",
            "expected true or false, found integer",
        ),
        (
            "never-serve-ext = [\"tar.gz\"]",
            "never-serve-ext",
            "must be a file extension",
        ),
        (
            "never-serve-ext = [\"\"]",
            "never-serve-ext",
            "must be a file extension",
        ),
        (
            "never-serve-ext = 3",
            "never-serve-ext",
            "expected a string or an array of strings",
        ),
        (
            "cache-control = \"max-age=1\"",
            "cache-control",
            "expected a table, found string",
        ),
        (
            "script-stat-cache = \"1 fortnight\"",
            "script-stat-cache",
            "is not a duration",
        ),
        (
            "script-stat-cache = 1",
            "script-stat-cache",
            "expected a string",
        ),
        (
            "[cache-control]\ncss = 3600",
            "cache-control.css",
            "expected a string, found integer",
        ),
        (
            "[cache-control]\ncss = \"\"",
            "cache-control.css",
            "is not a Cache-Control value",
        ),
        (
            "[cache-control]\n\"a/b\" = \"no-cache\"",
            "cache-control.a/b",
            "must be a file extension",
        ),
    ];
    for (extra, key, needle) in cases {
        let (_dir, path) = file_with(&format!("{extra}\n"));
        let text = message(check_file(&path));
        let prefix = format!("{}: key `{key}`: ", path.display());
        assert!(text.starts_with(&prefix), "{extra}: {text}");
        assert!(text.contains(needle), "{extra}: {text}");
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    for (argv, needle) in [
        (
            ["--never-serve-ext", "a/b"],
            "--never-serve-ext: `a/b` must be a file extension",
        ),
        (
            ["--script-stat-cache", "1"],
            "--script-stat-cache: \"1\": missing unit",
        ),
        (
            ["--cache-control", "css"],
            "--cache-control: `css`: expected EXT=VALUE",
        ),
        (
            ["--cache-control", "=max-age=1"],
            "--cache-control: `` must be a file extension",
        ),
    ] {
        let mut full = vec!["--upstream", "unix:/x", "--root", root];
        full.extend_from_slice(&argv);
        let text = message(load(&serve_args(&full)));
        assert!(text.starts_with(needle), "{argv:?}: {text}");
    }
}
