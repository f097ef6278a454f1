//! Tests for the request-limit, proxy and PHP-response settings:
//! `max-uri-length`, `max-header-size`, `max-headers` and those after them.

use std::fs;

use super::test_support::{file_with, flags, message, serve_args};
use super::*;

#[test]
fn limit_keys_and_flags_are_read() {
    let (_dir, path) =
        file_with("max-uri-length = \"4k\"\nmax-header-size = 2048\nmax-headers = 20\n");
    let config = check_file(&path).unwrap();
    assert_eq!(config.max_uri_length, 4096);
    assert_eq!(config.max_header_size, 2048);
    assert_eq!(config.max_headers, 20);

    let config = flags(&[
        "--max-uri-length",
        "100",
        "--max-header-size",
        "1M",
        "--max-headers",
        "7",
    ])
    .unwrap();
    assert_eq!(config.max_uri_length, 100);
    assert_eq!(config.max_header_size, 1 << 20);
    assert_eq!(config.max_headers, 7);
}

#[test]
fn limits_out_of_range_are_refused() {
    let text = message(flags(&["--max-uri-length", "70000"]));
    assert!(text.starts_with("--max-uri-length: "), "{text}");
    assert!(text.contains("65534"), "{text}");
    assert!(message(flags(&["--max-uri-length", "0"])).contains("between 1"));
    assert!(message(flags(&["--max-header-size", "2M"])).starts_with("--max-header-size: "));
    assert!(message(flags(&["--max-header-size", "0"])).contains("between 1"));
    assert!(message(flags(&["--max-headers", "0"])).starts_with("--max-headers: "));
    let (_dir, path) = file_with("max-headers = 0\n");
    assert!(message(check_file(&path)).contains("key `max-headers`"));
    let (_dir, path) = file_with("max-uri-length = \"1G\"\n");
    assert!(message(check_file(&path)).contains("key `max-uri-length`"));
}

#[test]
fn proxy_keys_and_flags_are_read() {
    let (_dir, path) = file_with(
        "trusted-proxy = [\"10.0.0.0/8\", \"::1\", \"unix\"]\nreal-ip-header = \"forwarded\"\n",
    );
    let config = check_file(&path).unwrap();
    let shown: Vec<String> = config
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["10.0.0.0/8", "::1/128", "unix"]);
    assert_eq!(config.real_ip_header, RealIpHeader::Forwarded);
    let (_dir, path) = file_with("trusted-proxy = \"127.0.0.1\"\n");
    assert_eq!(check_file(&path).unwrap().trusted_proxies.len(), 1);

    let config = flags(&[
        "--trusted-proxy",
        "192.168.0.0/16",
        "--trusted-proxy",
        "fd00::/8",
        "--real-ip-header",
        "X-Forwarded-For",
    ])
    .unwrap();
    assert_eq!(config.trusted_proxies.len(), 2);
    assert_eq!(config.real_ip_header, RealIpHeader::XForwardedFor);
}

#[test]
fn bad_proxy_values_name_the_flag_or_key() {
    let text = message(flags(&["--trusted-proxy", "10.0.0.0/40"]));
    assert!(text.starts_with("--trusted-proxy: `10.0.0.0/40`"), "{text}");
    let text = message(flags(&["--real-ip-header", "x-real-ip"]));
    assert!(text.starts_with("--real-ip-header: "), "{text}");
    let (_dir, path) = file_with("trusted-proxy = [\"lb.example\"]\n");
    assert!(message(check_file(&path)).contains("key `trusted-proxy`"));
}

#[test]
fn internal_location_and_sendfile_dir_are_read() {
    let (dir, path) = file_with(
        "internal-location = [\"/protected/\", \"/private/files\"]\nsendfile-dir = \"www\"\n",
    );
    let config = check_file(&path).unwrap();
    assert_eq!(config.internal_locations, ["/protected", "/private/files"]);
    let www = fs::canonicalize(dir.path().join("www")).unwrap();
    assert_eq!(config.sendfile_dir.as_deref(), Some(www.as_path()));

    let files = tempfile::tempdir().unwrap();
    let config = flags(&[
        "--internal-location",
        "/dl",
        "--sendfile-dir",
        files.path().to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(config.internal_locations, ["/dl"]);
    assert_eq!(
        config.sendfile_dir,
        Some(fs::canonicalize(files.path()).unwrap())
    );
}

#[test]
fn bad_internal_location_or_sendfile_dir() {
    let text = message(flags(&["--internal-location", "/"]));
    assert!(text.starts_with("--internal-location: "), "{text}");
    let text = message(flags(&["--sendfile-dir", "/no/such/dir"]));
    assert_eq!(text, "sendfile-dir `/no/such/dir`: no such directory");
    let (_dir, path) = file_with("internal-location = \"protected\"\n");
    assert!(message(check_file(&path)).contains("key `internal-location`"));
    let (_dir, path) = file_with("sendfile-dir = \"gateway.toml\"\n");
    assert!(message(check_file(&path)).contains("not a directory"));
}

#[test]
fn compress_is_off_unless_asked() {
    assert!(!flags(&[]).unwrap().compress);
    assert!(flags(&["--compress"]).unwrap().compress);
    let (_dir, path) = file_with("compress = true\n");
    assert!(check_file(&path).unwrap().compress);
    let (_dir, path) = file_with("compress = \"yes\"\n");
    assert!(message(check_file(&path)).contains("key `compress`"));
}

#[test]
fn admin_listen_from_flag_and_file() {
    assert_eq!(flags(&[]).unwrap().admin_listen, None);
    let config = flags(&["--admin-listen", "127.0.0.1:9100"]).unwrap();
    assert_eq!(config.admin_listen, Some("127.0.0.1:9100".parse().unwrap()));
    let (_dir, path) = file_with("admin-listen = \"unix:/tmp/gw-admin.sock\"\n");
    assert_eq!(
        check_file(&path).unwrap().admin_listen,
        Some("unix:/tmp/gw-admin.sock".parse().unwrap())
    );
    let (_dir, path) = file_with("admin-listen = \"nonsense\"\n");
    let err = check_file(&path).unwrap_err().to_string();
    assert!(err.contains("admin-listen"), "{err}");
    let err = flags(&["--admin-listen", "nonsense"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--admin-listen"), "{err}");
}

#[test]
fn fpm_ping_path_from_flag_and_file() {
    assert_eq!(flags(&[]).unwrap().fpm_ping_path, None);
    let config = flags(&["--fpm-ping-path", "/ping"]).unwrap();
    assert_eq!(config.fpm_ping_path.as_deref(), Some("/ping"));
    let (_dir, path) = file_with("fpm-ping-path = \"/health\"\n");
    assert_eq!(
        check_file(&path).unwrap().fpm_ping_path.as_deref(),
        Some("/health")
    );
    let err = flags(&["--fpm-ping-path", "ping"]).unwrap_err().to_string();
    assert!(err.contains("--fpm-ping-path"), "{err}");
}

#[test]
fn server_timing_and_access_log_format_from_flag_and_file() {
    let config = flags(&[]).unwrap();
    assert!(!config.server_timing);
    assert_eq!(config.access_log_format, AccessLogFormat::Combined);
    let config = flags(&["--server-timing", "--access-log-format", "json"]).unwrap();
    assert!(config.server_timing);
    assert_eq!(config.access_log_format, AccessLogFormat::Json);
    let (_dir, path) = file_with("server-timing = true\naccess-log-format = \"json\"\n");
    let config = check_file(&path).unwrap();
    assert!(config.server_timing);
    assert_eq!(config.access_log_format, AccessLogFormat::Json);
    // The flag overrides the file.
    let args = serve_args(&[
        "--config",
        path.to_str().unwrap(),
        "--access-log-format",
        "combined",
    ]);
    assert_eq!(
        load(&args).unwrap().access_log_format,
        AccessLogFormat::Combined
    );
    let text = message(flags(&["--access-log-format", "apache"]));
    assert!(text.starts_with("--access-log-format: "), "{text}");
    assert!(text.contains("combined or json"), "{text}");
    let (_dir, path) = file_with("access-log-format = \"xml\"\n");
    assert!(message(check_file(&path)).contains("key `access-log-format`"));
    let (_dir, path) = file_with("server-timing = \"yes\"\n");
    assert!(message(check_file(&path)).contains("key `server-timing`"));
}

#[test]
fn upstream_pipelining_from_flag_and_file() {
    use std::time::Duration;
    // On by default, pausing after a request slower than 10 ms.
    assert_eq!(
        flags(&[]).unwrap().upstream_pipelining,
        Some(Duration::from_millis(10))
    );
    let off = flags(&["--upstream-pipelining", "off"]).unwrap();
    assert_eq!(off.upstream_pipelining, None);
    let slow = flags(&["--upstream-pipelining", "250ms"]).unwrap();
    assert_eq!(slow.upstream_pipelining, Some(Duration::from_millis(250)));
    let text = message(flags(&["--upstream-pipelining", "sometimes"]));
    assert!(text.starts_with("--upstream-pipelining: "), "{text}");
    assert!(text.contains("on, off or a duration"), "{text}");

    let (_dir, path) = file_with("upstream-pipelining = false\n");
    assert_eq!(check_file(&path).unwrap().upstream_pipelining, None);
    let (_dir, path) = file_with("upstream-pipelining = \"40ms\"\n");
    assert_eq!(
        check_file(&path).unwrap().upstream_pipelining,
        Some(Duration::from_millis(40))
    );
    let (_dir, path) = file_with("upstream-pipelining = 3\n");
    assert!(message(check_file(&path)).contains("key `upstream-pipelining`"));
}

#[test]
fn idle_poll_from_flag_and_file() {
    use std::time::Duration;
    // On by default: 50 µs.
    assert_eq!(flags(&[]).unwrap().idle_poll, Duration::from_micros(50));
    let off = flags(&["--idle-poll", "off"]).unwrap();
    assert_eq!(off.idle_poll, Duration::ZERO);
    let longer = flags(&["--idle-poll", "200us"]).unwrap();
    assert_eq!(longer.idle_poll, Duration::from_micros(200));
    let text = message(flags(&["--idle-poll", "1s"]));
    assert!(text.starts_with("--idle-poll: "), "{text}");
    assert!(text.contains("longer than 10ms"), "{text}");
    let text = message(flags(&["--idle-poll", "briefly"]));
    assert!(text.contains("off or a duration"), "{text}");

    let (_dir, path) = file_with("idle-poll = false\n");
    assert_eq!(check_file(&path).unwrap().idle_poll, Duration::ZERO);
    let (_dir, path) = file_with("idle-poll = \"1ms\"\n");
    assert_eq!(
        check_file(&path).unwrap().idle_poll,
        Duration::from_millis(1)
    );
    let (_dir, path) = file_with("idle-poll = \"20ms\"\n");
    let text = message(check_file(&path));
    assert!(text.contains("key `idle-poll`"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
}
