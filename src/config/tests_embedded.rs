//! Config for the embedded php-fpm: no upstream, `php-fpm`, `fpm-children`.

use std::path::PathBuf;

use super::*;

fn args(argv: &[&str]) -> ServeArgs {
    super::test_support::serve_args(argv)
}

#[test]
fn no_upstream_means_embedded_with_its_status_path() {
    let config = load(&args(&["--root", "src"])).unwrap();
    assert!(config.upstream.is_empty());
    assert_eq!(
        config.fpm_status_path.as_deref(),
        Some(EMBEDDED_FPM_STATUS_PATH)
    );
    assert!(config.size_from_fpm_status);
    assert_eq!(config.php_fpm, None);
    assert_eq!(config.fpm_children, None);
}

#[test]
fn an_explicit_upstream_gets_no_status_path() {
    let config = load(&args(&["--root", "src", "--upstream", "unix:/x"])).unwrap();
    assert_eq!(config.upstream.len(), 1);
    assert_eq!(config.fpm_status_path, None);
    assert!(!config.size_from_fpm_status);
}

#[test]
fn embedded_flags() {
    let config = load(&args(&[
        "--root",
        "src",
        "--php-fpm",
        "/opt/php/sbin/php-fpm",
        "--fpm-children",
        "3",
        "--max-upstream-conns",
        "2",
    ]))
    .unwrap();
    assert_eq!(config.php_fpm, Some(PathBuf::from("/opt/php/sbin/php-fpm")));
    assert_eq!(config.fpm_children, Some(3));
    // An explicit pool size wins over the status page.
    assert!(!config.size_from_fpm_status);
    let err = load(&args(&["--root", "src", "--fpm-children", "0"])).unwrap_err();
    assert!(err.to_string().contains("--fpm-children"), "{err}");
}

#[test]
fn embedded_keys_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    let file = dir.path().join("gw.toml");
    std::fs::write(
        &file,
        "root = \"www\"\nphp-fpm = \"bin/php-fpm\"\nfpm-children = 5\n",
    )
    .unwrap();
    let config = check_file(&file).unwrap();
    assert_eq!(config.php_fpm, Some(dir.path().join("bin/php-fpm")));
    assert_eq!(config.fpm_children, Some(5));
    std::fs::write(&file, "root = \"www\"\nfpm-children = 0\n").unwrap();
    let err = check_file(&file).unwrap_err().to_string();
    assert!(err.contains("fpm-children"), "{err}");
}
