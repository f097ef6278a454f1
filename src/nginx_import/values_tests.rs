use super::*;

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn listen_forms() {
    let l = parse_listen(&strings(&["80"])).unwrap();
    assert_eq!(l.address, "0.0.0.0:80");
    let l = parse_listen(&strings(&["[::]:443", "ssl", "http2", "default_server"])).unwrap();
    assert_eq!(
        (l.address.as_str(), l.ssl, l.default_server),
        ("[::]:443", true, true)
    );
    assert_eq!(
        parse_listen(&strings(&["127.0.0.1"])).unwrap().address,
        "127.0.0.1:80"
    );
    assert_eq!(
        parse_listen(&strings(&["*:8080"])).unwrap().address,
        "0.0.0.0:8080"
    );
    assert_eq!(
        parse_listen(&strings(&["unix:/run/a.sock"]))
            .unwrap()
            .address,
        "unix:/run/a.sock"
    );
    assert!(parse_listen(&strings(&["80", "proxy_protocol"])).is_err());
    assert!(parse_listen(&strings(&["example.com:80"])).is_err());
    assert!(parse_listen(&strings(&["99999"])).is_err());
}

#[test]
fn upstream_addresses() {
    assert_eq!(
        upstream_address("unix:/run/php.sock").unwrap(),
        "unix:/run/php.sock"
    );
    assert_eq!(
        upstream_address("127.0.0.1:9000").unwrap(),
        "tcp:127.0.0.1:9000"
    );
    assert_eq!(upstream_address("php").unwrap(), "tcp:php:80");
    assert!(upstream_address("$backend").is_err());
}

#[test]
fn sizes_and_times() {
    assert_eq!(size("64m").unwrap(), "64M");
    assert_eq!(size("10K").unwrap(), "10k");
    assert_eq!(size("1024").unwrap(), "1024");
    assert!(size("0").is_err());
    assert!(size("x").is_err());
    assert_eq!(time_ms("300"), Some(300_000));
    assert_eq!(time_ms("1m30s"), Some(90_000));
    assert_eq!(time_ms("500ms"), Some(500));
    assert_eq!(time_ms("30d"), Some(2_592_000_000));
    assert_eq!(time_ms("5x"), None);
    assert_eq!(time_ms("999999999999999y"), None);
    assert_eq!(duration("300").unwrap(), "300s");
    assert_eq!(duration("1500ms").unwrap(), "1500ms");
}

#[test]
fn expires_values() {
    let e = |v: &str| expires_cache_control(&strings(&[v])).unwrap();
    assert_eq!(e("max").as_deref(), Some("max-age=315360000"));
    assert_eq!(e("30d").as_deref(), Some("max-age=2592000"));
    assert_eq!(e("1h").as_deref(), Some("max-age=3600"));
    assert_eq!(e("-1").as_deref(), Some("no-cache"));
    assert_eq!(e("off"), None);
    assert!(expires_cache_control(&strings(&["modified", "1h"])).is_err());
}

#[test]
fn redirect_variables() {
    assert_eq!(
        redirect_target("https://${host}$request_uri").unwrap(),
        "https://$host$request_uri"
    );
    assert!(redirect_target("https://$http_host$request_uri").is_err());
    assert_eq!(variables("a$b/${c}d$"), ["b", "c", ""]);
}

#[test]
fn regex_support() {
    assert!(regex_unsupported(r"/\.(?!well-known).*").is_some());
    assert!(regex_unsupported(r"(a)\1").is_some());
    assert!(regex_unsupported(r"\\1").is_none());
    assert!(regex_unsupported(r"/(?:uploads|files)/.*\.php$").is_none());
    assert!(is_dotfile_idiom(r"/\.(?!well-known).*"));
    assert!(is_dotfile_idiom(r"/\.(?!well-known\/)"));
    assert!(!is_dotfile_idiom(r"/\.ht"));
}

#[test]
fn location_patterns() {
    assert_eq!(
        extension_pattern(r"\.(js|CSS|png)$").unwrap(),
        ["js", "css", "png"]
    );
    assert_eq!(
        extension_pattern(r"^.+\.(?:ico|gif)$").unwrap(),
        ["ico", "gif"]
    );
    assert_eq!(extension_pattern(r"\.woff2$").unwrap(), ["woff2"]);
    assert_eq!(extension_pattern(r"\.(js|c.s)$"), None);
    assert_eq!(php_pattern(r"\.php$"), Some(PhpPattern::Any));
    assert_eq!(php_pattern(r"\.php(/|$)"), Some(PhpPattern::Any));
    assert_eq!(
        php_pattern(r"^/index\.php(/|$)"),
        Some(PhpPattern::Only("/index.php".into()))
    );
    assert_eq!(php_pattern(r"^/(index|app)\.php(/|$)"), None);
    assert!(is_usual_split_path_info(r"^(.+?\.php)(/.*)$"));
    assert_eq!(regex_escape("/a.b/"), r"/a\.b/");
}
