//! Tests for loading: files, flags, precedence, defaults and error messages.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, Parser};
use tempfile::TempDir;

use super::test_support::message;
use super::*;
use crate::cli::{Cli, Command};

/// A temp dir holding `gateway.toml` (with `body`) and a `www` directory.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new(body: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("www")).unwrap();
        fs::write(dir.path().join("gateway.toml"), body).unwrap();
        Fixture { dir }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    fn www(&self) -> PathBuf {
        self.dir.path().join("www").canonicalize().unwrap()
    }

    fn args(&self) -> ServeArgs {
        ServeArgs {
            config: Some(self.file()),
            ..ServeArgs::default()
        }
    }
}

fn serve_args(argv: &[&str]) -> ServeArgs {
    let mut full = vec!["fcgi-gateway", "serve"];
    full.extend_from_slice(argv);
    match Cli::try_parse_from(full).unwrap().command {
        Command::Serve(args) => args,
        other => panic!("parsed as {other:?}"),
    }
}

const MINIMAL: &str = "upstream = \"unix:/run/php/fpm.sock\"\nroot = \"www\"\n";

#[test]
fn defaults_applied() {
    let fx = Fixture::new(MINIMAL);
    let config = check_file(&fx.file()).unwrap();
    assert_eq!(
        config,
        Config {
            listen: vec!["127.0.0.1:8080".parse().unwrap()],
            upstream: vec!["unix:/run/php/fpm.sock".parse().unwrap()],
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            health_interval: Duration::from_secs(5),
            resolve_interval: Duration::from_secs(5),
            root: fx.www(),
            root_as_given: fx.dir.path().join("www"),
            index: vec!["index.php".to_owned(), "index.html".to_owned()],
            front_controller: None,
            server_name: None,
            max_body_size: 16 * 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(75),
            grace_period: Duration::from_secs(10),
            max_upstream_conns: 8,
            max_connections: 4096,
            log_level: "info".to_owned(),
            params: vec![],
            fpm_status_path: None,
            size_from_fpm_status: false,
            max_idle_conns: 8,
            queue_length: 1024,
            acquire_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
            php_only_front_controller: false,
            never_serve_ext: ["php", "phtml", "phar", "inc", "phps", "bak", "orig", "swp"]
                .map(str::to_owned)
                .to_vec(),
            follow_symlinks_outside_root: false,
            script_stat_cache: Duration::from_secs(1),
            cache_control: vec![],
            max_uri_length: 8 * 1024,
            max_header_size: 32 * 1024,
            max_headers: 100,
            trusted_proxies: vec![],
            real_ip_header: RealIpHeader::XForwardedFor,
            internal_locations: vec![],
            sendfile_dir: None,
            compress: false,
            php_fpm: None,
            fpm_children: None,
            admin_listen: None,
            fpm_ping_path: None,
            server_timing: false,
            access_log_format: AccessLogFormat::Combined,
            tls_cert: None,
            tls_key: None,
            workers: None,
            idle_poll: Duration::from_micros(50),
            upstream_pipelining: Some(Duration::from_millis(10)),
            error_page: Vec::new(),
            intercept_errors: false,
            add_header: Vec::new(),
            redirect: Vec::new(),
            deny: Vec::new(),
            redirect_to_https: false,
            site: Vec::new(),
            top_level_site: true,
            listen_is_default: true,
        }
    );
    assert_eq!(load(&fx.args()).unwrap(), config);
}

#[test]
fn every_key_is_read() {
    let fx = Fixture::new(
        r#"
listen = ["127.0.0.1:0", "[::1]:8081", "unix:/tmp/gw.sock"]
upstream = "tcp:127.0.0.1:9000"
root = "www"
index = ["app.php", "index.html"]
front-controller = "/app.php"
server-name = "example.test"
max-body-size = "10k"
connect-timeout = "500ms"
read-timeout = "2m"
header-timeout = "1.5s"
grace-period = "0s"
max-upstream-conns = 2
max-connections = 100
log-level = "info,fcgi_gateway=debug"
fpm-status-path = "/status"
max-idle-conns = 0
queue-length = 16
acquire-timeout = "200ms"
idle-timeout = "1m"

[params]
APP_ENV = "prod"
"#,
    );
    let config = check_file(&fx.file()).unwrap();
    assert_eq!(
        config,
        Config {
            listen: vec![
                "127.0.0.1:0".parse().unwrap(),
                "[::1]:8081".parse().unwrap(),
                ListenAddr::Unix("/tmp/gw.sock".into()),
            ],
            upstream: vec!["tcp:127.0.0.1:9000".parse().unwrap()],
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            health_interval: Duration::from_secs(5),
            resolve_interval: Duration::from_secs(5),
            root: fx.www(),
            root_as_given: fx.dir.path().join("www"),
            index: vec!["app.php".to_owned(), "index.html".to_owned()],
            front_controller: Some("/app.php".to_owned()),
            server_name: Some("example.test".to_owned()),
            max_body_size: 10 * 1024,
            connect_timeout: Duration::from_millis(500),
            read_timeout: Duration::from_secs(120),
            header_timeout: Duration::from_millis(1500),
            keepalive_timeout: Duration::from_secs(75),
            grace_period: Duration::ZERO,
            max_upstream_conns: 2,
            max_connections: 100,
            log_level: "info,fcgi_gateway=debug".to_owned(),
            params: vec![("APP_ENV".to_owned(), "prod".to_owned())],
            fpm_status_path: Some("/status".to_owned()),
            // max-upstream-conns was given, so the status page only reports.
            size_from_fpm_status: false,
            max_idle_conns: 0,
            queue_length: 16,
            acquire_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(60),
            php_only_front_controller: false,
            never_serve_ext: ["php", "phtml", "phar", "inc", "phps", "bak", "orig", "swp"]
                .map(str::to_owned)
                .to_vec(),
            follow_symlinks_outside_root: false,
            script_stat_cache: Duration::from_secs(1),
            cache_control: vec![],
            max_uri_length: 8 * 1024,
            max_header_size: 32 * 1024,
            max_headers: 100,
            trusted_proxies: vec![],
            real_ip_header: RealIpHeader::XForwardedFor,
            internal_locations: vec![],
            sendfile_dir: None,
            compress: false,
            php_fpm: None,
            fpm_children: None,
            admin_listen: None,
            fpm_ping_path: None,
            server_timing: false,
            access_log_format: AccessLogFormat::Combined,
            tls_cert: None,
            tls_key: None,
            listen_is_default: false,
            workers: None,
            idle_poll: Duration::from_micros(50),
            upstream_pipelining: Some(Duration::from_millis(10)),
            error_page: Vec::new(),
            intercept_errors: false,
            add_header: Vec::new(),
            redirect: Vec::new(),
            deny: Vec::new(),
            redirect_to_https: false,
            site: Vec::new(),
            top_level_site: true,
        }
    );
}

#[test]
fn single_strings_and_integer_size() {
    let fx = Fixture::new(&format!(
        "{MINIMAL}listen = \"[::1]:9\"\nindex = \"app.php\"\nmax-body-size = 1000\n"
    ));
    let config = check_file(&fx.file()).unwrap();
    assert_eq!(config.listen, vec!["[::1]:9".parse().unwrap()]);
    assert_eq!(config.index, vec!["app.php".to_owned()]);
    assert_eq!(config.max_body_size, 1000);
}

#[test]
fn empty_index_list_is_allowed() {
    let fx = Fixture::new(&format!("{MINIMAL}index = []\n"));
    assert!(check_file(&fx.file()).unwrap().index.is_empty());
}

#[test]
fn flags_override_file() {
    let fx = Fixture::new(&format!(
        "{MINIMAL}listen = \"127.0.0.1:1\"\nindex = [\"a.php\"]\nread-timeout = \"7s\"\n\
         max-connections = 3\nlog-level = \"warn\"\n"
    ));
    let other = fx.dir.path().join("other");
    fs::create_dir(&other).unwrap();
    let mut args = serve_args(&[
        "--listen",
        "127.0.0.1:2",
        "--listen",
        "unix:/tmp/x.sock",
        "--upstream",
        "tcp:localhost:9001",
        "--root",
        other.to_str().unwrap(),
        "--read-timeout",
        "9s",
        "--max-body-size",
        "1M",
    ]);
    args.config = Some(fx.file());
    let config = load(&args).unwrap();
    // From the flags.
    assert_eq!(
        config.listen,
        vec![
            "127.0.0.1:2".parse().unwrap(),
            ListenAddr::Unix("/tmp/x.sock".into())
        ]
    );
    assert_eq!(
        config
            .upstream
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>(),
        ["tcp:localhost:9001"]
    );
    assert_eq!(config.root, other.canonicalize().unwrap());
    assert_eq!(config.read_timeout, Duration::from_secs(9));
    assert_eq!(config.max_body_size, 1 << 20);
    // From the file, no flag given.
    assert_eq!(config.index, vec!["a.php".to_owned()]);
    assert_eq!(config.max_connections, 3);
    assert_eq!(config.log_level, "warn");
    // Neither: defaults.
    assert_eq!(config.connect_timeout, Duration::from_secs(5));
}

/// A request never gets a 503 for waiting on a connection sooner than
/// php-fpm itself may take to answer: the acquire timeout follows the read
/// timeout unless set.
#[test]
fn acquire_timeout_defaults_to_the_read_timeout() {
    let fx = Fixture::new(&format!("{MINIMAL}read-timeout = \"3s\"\n"));
    let config = check_file(&fx.file()).unwrap();
    assert_eq!(config.acquire_timeout, Duration::from_secs(3));
    let fx = Fixture::new(&format!(
        "{MINIMAL}read-timeout = \"3s\"\nacquire-timeout = \"1s\"\n"
    ));
    let config = check_file(&fx.file()).unwrap();
    assert_eq!(config.acquire_timeout, Duration::from_secs(1));
}

#[test]
fn flags_alone_suffice() {
    let dir = tempfile::tempdir().unwrap();
    let args = serve_args(&[
        "--upstream",
        "unix:/run/fpm.sock",
        "--root",
        dir.path().to_str().unwrap(),
        "--index",
        "a.php",
        "--index",
        "b.php",
        "--front-controller",
        "/a.php",
        "--server-name",
        "gw",
        "--connect-timeout",
        "1s",
        "--header-timeout",
        "2s",
        "--grace-period",
        "0s",
        "--max-upstream-conns",
        "4",
        "--max-connections",
        "5",
        "--log-level",
        "debug",
    ]);
    let config = load(&args).unwrap();
    assert_eq!(config.root, dir.path().canonicalize().unwrap());
    assert_eq!(config.index, vec!["a.php".to_owned(), "b.php".to_owned()]);
    assert_eq!(config.front_controller.as_deref(), Some("/a.php"));
    assert_eq!(config.server_name.as_deref(), Some("gw"));
    assert_eq!(config.connect_timeout, Duration::from_secs(1));
    assert_eq!(config.header_timeout, Duration::from_secs(2));
    assert_eq!(config.grace_period, Duration::ZERO);
    assert_eq!(config.max_upstream_conns, 4);
    assert_eq!(config.max_connections, 5);
    assert_eq!(config.log_level, "debug");
    assert!(config.params.is_empty());
}

#[test]
fn unknown_key_names_key_and_file() {
    let fx = Fixture::new(&format!("{MINIMAL}lisen = \"127.0.0.1:80\"\n"));
    let text = message(check_file(&fx.file()));
    let expected = format!(
        "{}: unknown key `lisen` (expected one of: listen, upstream, root, index, \
         front-controller, server-name, max-body-size, connect-timeout, read-timeout, \
         header-timeout, keepalive-timeout, grace-period, max-upstream-conns, max-fails, fail-timeout, \
         health-interval, resolve-interval, max-connections, log-level, params, \
         fpm-status-path, max-idle-conns, queue-length, acquire-timeout, idle-timeout, \
         php-only-front-controller, never-serve-ext, follow-symlinks-outside-root, script-stat-cache, \
         cache-control, max-uri-length, max-header-size, max-headers, trusted-proxy, real-ip-header, \
         internal-location, sendfile-dir, compress, php-fpm, fpm-children, admin-listen, fpm-ping-path, \
         server-timing, access-log-format, tls-cert, tls-key, error-page, intercept-errors, \
         add-header, redirect, deny, redirect-to-https, site, workers, idle-poll, upstream-pipelining)",
        fx.file().display()
    );
    assert_eq!(text, expected);
    // Same through `serve --config`.
    assert_eq!(message(load(&fx.args())), expected);
}

#[test]
fn bad_value_names_key_and_file() {
    let fx = Fixture::new(&format!("{MINIMAL}read-timeout = \"5x\"\n"));
    assert_eq!(
        message(check_file(&fx.file())),
        format!(
            "{}: key `read-timeout`: \"5x\" is not a duration (use e.g. 3s, 500ms, 2m)",
            fx.file().display()
        )
    );
}

/// Found by the `config_file` fuzz target: a value, key or path holding a
/// newline (a TOML `\n` escape) was quoted as it was, so the error took two
/// lines. Control characters are now escaped wherever an error shows what
/// the user gave.
#[test]
fn errors_stay_one_line_whatever_the_file_holds() {
    let cases = [
        (
            "internal-location = \"a\\nb\"\n",
            "`a\\nb`: must be a URL path",
        ),
        (
            "index = [\"x\\n/y\"]\n",
            "`x\\n/y` must be a plain file name",
        ),
        (
            "never-serve-ext = \"a\\rb c\"\n",
            "`a\\rb c` must be a file extension",
        ),
        ("\"lis\\nten\" = 1\n", "unknown key `lis\\nten`"),
        ("[params]\n\"B\\u001b\" = 2\n", "key `params.B\\u{1b}`"),
        (
            "sendfile-dir = \"no\\nsuch\"\n",
            "/no\\nsuch`: no such directory",
        ),
    ];
    for (extra, needle) in cases {
        let fx = Fixture::new(&format!("{MINIMAL}{extra}"));
        // `message` asserts the single line.
        let text = message(check_file(&fx.file()));
        assert!(text.contains(needle), "{text}");
    }
    let fx = Fixture::new("upstream = \"unix:/x\"\nroot = \"www\\n\\t\"\n");
    let text = message(check_file(&fx.file()));
    assert!(text.ends_with("www\\n\\t`: no such directory"), "{text}");
    // Flags are shown the same way.
    let text = message(load(&serve_args(&[
        "--upstream",
        "unix:/x",
        "--root",
        "/",
        "--front-controller",
        "index\n.php",
    ])));
    assert!(text.contains("`index\\n.php` must be a URL path"), "{text}");
}

#[test]
fn bad_values_in_file() {
    let cases = [
        ("listen = \"localhost:80\"", "listen", "`localhost:80`"),
        ("listen = []", "listen", "at least one"),
        (
            "listen = [\"127.0.0.1:1\", 2]",
            "listen",
            "item 2: expected a string, found integer",
        ),
        ("index = \"a/b.php\"", "index", "plain file name"),
        (
            "index = 1",
            "index",
            "expected a string or an array of strings",
        ),
        (
            "front-controller = \"index.php\"",
            "front-controller",
            "starting with `/`",
        ),
        ("server-name = \"\"", "server-name", "must not be empty"),
        (
            "max-body-size = -1",
            "max-body-size",
            "must not be negative",
        ),
        ("max-body-size = \"lots\"", "max-body-size", "is not a size"),
        ("max-body-size = 1.5", "max-body-size", "found float"),
        (
            "connect-timeout = \"0s\"",
            "connect-timeout",
            "greater than 0s",
        ),
        (
            "header-timeout = 10",
            "header-timeout",
            "expected a string, found integer",
        ),
        ("grace-period = \"10\"", "grace-period", "missing unit"),
        ("max-upstream-conns = 0", "max-upstream-conns", "at least 1"),
        ("max-connections = -5", "max-connections", "at least 1"),
        (
            "max-connections = \"10\"",
            "max-connections",
            "expected an integer, found string",
        ),
        ("log-level = \" \"", "log-level", "must not be empty"),
        ("params = \"x\"", "params", "expected a table, found string"),
    ];
    for (line, key, needle) in cases {
        let fx = Fixture::new(&format!("{MINIMAL}{line}\n"));
        check_bad_value(&fx, key, needle);
    }
    let fx = Fixture::new("upstream = \"unix:/x\"\nroot = \"\"\n");
    check_bad_value(&fx, "root", "must not be empty");
}

fn check_bad_value(fx: &Fixture, key: &str, needle: &str) {
    {
        let text = message(check_file(&fx.file()));
        let prefix = format!("{}: key `{key}`: ", fx.file().display());
        assert!(text.starts_with(&prefix), "{text}");
        assert!(text.contains(needle), "{text}");
    }
}

#[test]
fn a_table_where_a_value_belongs() {
    let fx = Fixture::new("upstream = \"unix:/x\"\n[root]\npath = \"www\"\n");
    let text = message(check_file(&fx.file()));
    assert!(
        text.ends_with("key `root`: expected a string, found table"),
        "{text}"
    );
}

#[test]
fn bad_params() {
    let fx = Fixture::new(&format!("{MINIMAL}[params]\nOK = \"1\"\nCOUNT = 3\n"));
    let text = message(check_file(&fx.file()));
    assert_eq!(
        text,
        format!(
            "{}: key `params.COUNT`: expected a string, found integer",
            fx.file().display()
        )
    );
    let fx = Fixture::new(&format!("{MINIMAL}[params]\n\"\" = \"1\"\n"));
    let text = message(check_file(&fx.file()));
    assert!(text.contains("param names must not be empty"), "{text}");
}

#[test]
fn params_keep_file_order() {
    let fx = Fixture::new(&format!(
        "{MINIMAL}[params]\nZ_LAST = \"z\"\nA_FIRST = \"a\"\nM_MIDDLE = \"m\"\nB = \"\"\n"
    ));
    let params = check_file(&fx.file()).unwrap().params;
    let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Z_LAST", "A_FIRST", "M_MIDDLE", "B"]);
    assert_eq!(params[0].1, "z");
    assert_eq!(params[3].1, "");
}

#[test]
fn missing_root() {
    let fx = Fixture::new("upstream = \"unix:/x\"\n");
    assert_eq!(
        message(check_file(&fx.file())),
        "missing root: give --root or `root` in the config file"
    );
    let args = serve_args(&["--upstream", "unix:/x"]);
    assert!(matches!(load(&args), Err(ConfigError::MissingRoot)));
}

#[test]
fn root_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let nope = dir.path().join("nope");
    let args = serve_args(&["--upstream", "unix:/x", "--root", nope.to_str().unwrap()]);
    assert_eq!(
        message(load(&args)),
        format!("root `{}`: no such directory", nope.display())
    );
    // From a file, the message shows the path as resolved against the file.
    let fx = Fixture::new("upstream = \"unix:/x\"\nroot = \"missing\"\n");
    assert_eq!(
        message(check_file(&fx.file())),
        format!(
            "root `{}`: no such directory",
            fx.dir.path().join("missing").display()
        )
    );
}

#[test]
fn root_must_be_a_directory() {
    let fx = Fixture::new("upstream = \"unix:/x\"\nroot = \"gateway.toml\"\n");
    assert_eq!(
        message(check_file(&fx.file())),
        format!("root `{}`: not a directory", fx.file().display())
    );
    // clap refuses `--root ""`, but the API must not depend on that.
    let args = ServeArgs {
        upstream: vec!["unix:/x".to_owned()],
        root: Some(PathBuf::new()),
        ..ServeArgs::default()
    };
    assert_eq!(message(load(&args)), "root ``: the path is empty");
}

#[test]
fn relative_root_is_relative_to_the_file() {
    let fx = Fixture::new("upstream = \"unix:/x\"\nroot = \"../www\"\n");
    let conf_dir = fx.dir.path().join("conf");
    fs::create_dir(&conf_dir).unwrap();
    let file = conf_dir.join("gw.toml");
    fs::rename(fx.file(), &file).unwrap();
    // The test's working directory is the crate, not the temp dir.
    assert_eq!(check_file(&file).unwrap().root, fx.www());
}

#[test]
fn relative_root_flag_is_relative_to_the_current_directory() {
    let args = serve_args(&["--upstream", "unix:/x", "--root", "src"]);
    let expected = std::env::current_dir()
        .unwrap()
        .join("src")
        .canonicalize()
        .unwrap();
    assert_eq!(load(&args).unwrap().root, expected);
}

#[test]
fn bad_upstream_address() {
    let args = serve_args(&["--upstream", "foo", "--root", "/"]);
    assert_eq!(
        message(load(&args)),
        "--upstream: `foo`: expected `unix:/path/to.sock` or `tcp:host:port`"
    );
    let fx = Fixture::new("upstream = \"tcp:127.0.0.1:0\"\nroot = \"www\"\n");
    let text = message(check_file(&fx.file()));
    assert!(
        text.starts_with(&format!("{}: key `upstream`: ", fx.file().display())),
        "{text}"
    );
    assert!(text.contains("`tcp:127.0.0.1:0`"), "{text}");
}

#[test]
fn bad_flags_name_the_flag() {
    let cases: [(&[&str], &str); 9] = [
        (&["--listen", "8080"], "--listen: `8080`"),
        (
            &["--index", "../x.php"],
            "--index: `../x.php` must be a plain file name",
        ),
        (
            &["--front-controller", "x.php"],
            "--front-controller: `x.php`",
        ),
        (
            &["--max-body-size", "1T"],
            "--max-body-size: \"1T\" is not a size",
        ),
        (
            &["--connect-timeout", "0ms"],
            "--connect-timeout: must be greater than 0s",
        ),
        (
            &["--read-timeout", "5"],
            "--read-timeout: \"5\": missing unit",
        ),
        (
            &["--header-timeout", "5x"],
            "--header-timeout: \"5x\" is not a duration",
        ),
        (
            &["--max-upstream-conns", "0"],
            "--max-upstream-conns: must be at least 1",
        ),
        (
            &["--max-connections", "many"],
            "--max-connections: \"many\" is not a whole number",
        ),
    ];
    for (argv, needle) in cases {
        let mut full = vec!["--upstream", "unix:/x", "--root", "/"];
        full.extend_from_slice(argv);
        let text = message(load(&serve_args(&full)));
        assert!(text.starts_with(needle), "{argv:?}: {text}");
    }
}

#[test]
fn toml_syntax_error_has_line_number() {
    let fx = Fixture::new("upstream = \"unix:/x\"\nroot = \"www\"\nlisten = [\"a\"\n");
    let text = message(check_file(&fx.file()));
    assert!(
        text.starts_with(&format!(
            "{}: TOML syntax error at line 3",
            fx.file().display()
        )),
        "{text}"
    );
    let fx = Fixture::new("upstream = \"unix:/x\"\nupstream = \"unix:/y\"\n");
    let text = message(check_file(&fx.file()));
    assert!(text.contains("TOML syntax error at line 2"), "{text}");
}

#[test]
fn unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.toml");
    assert_eq!(
        message(check_file(&path)),
        format!(
            "cannot read config file {}: No such file or directory",
            path.display()
        )
    );
    let args = ServeArgs {
        config: Some(path),
        upstream: vec!["unix:/x".to_owned()],
        ..ServeArgs::default()
    };
    assert!(matches!(load(&args), Err(ConfigError::Read { .. })));
}

#[test]
fn error_positions() {
    assert_eq!(file::line_column("ab\ncd\n", 4), (2, 2));
    assert_eq!(file::line_column("é\nx", 1), (1, 1), "inside a char");
    assert_eq!(file::line_column("a", 99), (1, 2));
}

#[test]
fn cli_parses_serve() {
    let cli = Cli::try_parse_from([
        "fcgi-gateway",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "unix:/tmp/x.sock",
        "--upstream",
        "tcp:127.0.0.1:9000",
        "--root",
        "/tmp",
    ])
    .unwrap();
    let Command::Serve(args) = cli.command else {
        panic!("not serve");
    };
    assert_eq!(args.listen, ["127.0.0.1:0", "unix:/tmp/x.sock"]);
    assert_eq!(args.upstream, ["tcp:127.0.0.1:9000"]);
    assert_eq!(args.root.as_deref(), Some(Path::new("/tmp")));
    assert_eq!(args.config, None);
    let config = load(&args).unwrap();
    assert_eq!(config.listen.len(), 2);
    assert_eq!(config.root, Path::new("/tmp").canonicalize().unwrap());

    // Every option is optional.
    assert!(matches!(
        Cli::try_parse_from(["fcgi-gateway", "serve"])
            .unwrap()
            .command,
        Command::Serve(_)
    ));
}

#[test]
fn cli_parses_check_config() {
    let cli = Cli::try_parse_from(["fcgi-gateway", "check-config", "gw.toml"]).unwrap();
    match cli.command {
        Command::CheckConfig { file } => assert_eq!(file, Path::new("gw.toml")),
        other => panic!("parsed as {other:?}"),
    }
    assert!(Cli::try_parse_from(["fcgi-gateway", "check-config"]).is_err());
    // Bare `bench` starts its own php-fpm; `bench-link` needs its command.
    assert!(matches!(
        Cli::try_parse_from(["fcgi-gateway", "bench"])
            .unwrap()
            .command,
        Command::Bench(_)
    ));
    assert!(Cli::try_parse_from(["fcgi-gateway", "bench-link", "--delay", "1ms"]).is_err());
    assert!(Cli::try_parse_from(["fcgi-gateway", "serve", "--lisen", "x"]).is_err());
}

#[test]
fn cli_definition_is_consistent() {
    Cli::command().debug_assert();
}

/// Guards the promise that file keys are the flag names without dashes.
#[test]
fn file_keys_match_flags() {
    let cli = Cli::command();
    let serve = cli.find_subcommand("serve").unwrap();
    let flags: Vec<&str> = serve
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|long| !matches!(*long, "config" | "help"))
        .collect();
    let keys: Vec<&str> = settings::SETTINGS
        .iter()
        .filter(|s| s.flag != settings::FlagKind::FileOnly)
        .map(|s| s.key)
        .collect();
    assert_eq!(flags, keys);
    for arg in serve.get_arguments() {
        assert!(arg.get_help().is_some(), "{:?} has no help", arg.get_id());
    }
}

#[test]
fn workers_from_file_and_flag() {
    let fx = Fixture::new(&format!("{MINIMAL}workers = 2\n"));
    assert_eq!(check_file(&fx.file()).unwrap().workers, Some(2));
    let fx = Fixture::new(&format!("{MINIMAL}workers = 0\n"));
    assert!(message(check_file(&fx.file())).contains("`workers`"));
}

#[test]
fn every_fixed_default_parses() {
    let defaults = settings::Layer::defaults().unwrap();
    for s in settings::SETTINGS {
        if let settings::DefaultValue::Fixed(text) = s.default {
            assert!(!text.is_empty(), "{}", s.key);
        }
    }
    // Spot checks that the text is what is applied.
    assert_eq!(defaults.max_body_size, Some(16 * 1024 * 1024));
    assert_eq!(
        defaults.upstream_pipelining,
        Some(Some(Duration::from_millis(10)))
    );
    assert_eq!(defaults.compress, Some(false));
    assert_eq!(defaults.upstream, None);
}

#[test]
fn changed_and_restart_only_keys_cover_every_setting() {
    let fx = Fixture::new(MINIMAL);
    let old = check_file(&fx.file()).unwrap();
    let mut new = old.clone();
    new.upstream_pipelining = None;
    new.server_timing = true;
    new.tls_cert = Some("cert.pem".into());
    new.workers = Some(3);
    new.log_level = "debug".to_owned();
    assert_eq!(
        settings::changed_keys(&old, &new),
        [
            "log-level",
            "server-timing",
            "tls-cert",
            "workers",
            "upstream-pipelining"
        ]
    );
    // Only the restart-only ones go back to their running value.
    assert_eq!(
        settings::keep_restart_only(&old, &mut new),
        ["log-level", "workers"]
    );
    assert_eq!((new.workers, new.log_level.as_str()), (None, "info"));
    assert_eq!(
        settings::changed_keys(&old, &new),
        ["server-timing", "tls-cert", "upstream-pipelining"]
    );
}

/// docs/configuration.md's settings table is generated from `SETTINGS`;
/// `UPDATE_DOCS=1 cargo test --lib settings_table` rewrites it.
#[test]
fn docs_settings_table_is_generated() {
    const BEGIN: &str =
        "<!-- settings-table:begin (generated from src/config/settings.rs; do not edit by hand) -->";
    const END: &str = "<!-- settings-table:end -->";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let doc = fs::read_to_string(&path).unwrap();
    let (Some(begin), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("{} lacks the settings-table markers", path.display());
    };
    let current = &doc[begin + BEGIN.len()..end];
    let generated = format!("\n{}", settings::markdown_table());
    if current != generated {
        if std::env::var_os("UPDATE_DOCS").is_some() {
            let updated = format!("{}{generated}{}", &doc[..begin + BEGIN.len()], &doc[end..]);
            fs::write(&path, updated).unwrap();
        } else {
            panic!(
                "docs/configuration.md's settings table differs from src/config/settings.rs: \
                 run UPDATE_DOCS=1 cargo test --lib docs_settings_table"
            );
        }
    }
}

#[test]
fn upstreams_as_a_string_a_list_or_tables() {
    let specs = |body: &str| {
        let fx = Fixture::new(&format!("root = \"www\"\n{body}"));
        check_file(&fx.file()).map(|c| c.upstream.iter().map(|u| u.to_string()).collect::<Vec<_>>())
    };
    assert_eq!(
        specs("upstream = \"tcp:10.0.0.1:9000 weight=2\"\n").unwrap(),
        ["tcp:10.0.0.1:9000 weight=2"]
    );
    assert_eq!(
        specs("upstream = [\"unix:/a.sock\", \"tcp:10.0.0.2:9000 backup\"]\n").unwrap(),
        ["unix:/a.sock", "tcp:10.0.0.2:9000 backup"]
    );
    assert_eq!(
        specs(
            "[[upstream]]\naddress = \"tcp:10.0.0.1:9000\"\nweight = 3\nmax-conns = 16\n\n\
             [[upstream]]\naddress = \"unix:/run/php.sock\"\nbackup = true\n"
        )
        .unwrap(),
        [
            "tcp:10.0.0.1:9000 weight=3 max-conns=16",
            "unix:/run/php.sock backup"
        ]
    );
    let fx = Fixture::new("root = \"www\"\n[[upstream]]\naddress = \"tcp:h:9000\"\nweight = 0\n");
    assert_eq!(
        message(check_file(&fx.file())),
        format!(
            "{}: key `upstream[0].weight`: weight must be 1-1000, not 0",
            fx.file().display()
        )
    );
    let fx = Fixture::new("root = \"www\"\n[[upstream]]\nweight = 2\n");
    assert!(message(check_file(&fx.file())).contains("key `upstream[0]`: needs an `address`"));
    let fx = Fixture::new("root = \"www\"\n[[upstream]]\naddress = \"tcp:h:9000\"\ndown = true\n");
    assert!(message(check_file(&fx.file())).contains("key `upstream[0].down`: unknown key"));
    let fx = Fixture::new("root = \"www\"\nupstream = []\n");
    assert!(message(check_file(&fx.file())).contains("must list at least one upstream"));
}

#[test]
fn several_upstream_flags_and_health_settings() {
    let args = super::test_support::serve_args;
    let config = load(&args(&[
        "--root",
        "src",
        "--upstream",
        "unix:/a.sock weight=2",
        "--upstream",
        "tcp:127.0.0.1:9000 backup",
        "--max-fails",
        "3",
        "--fail-timeout",
        "30s",
        "--health-interval",
        "2s",
        "--resolve-interval",
        "1s",
    ]))
    .unwrap();
    assert_eq!(config.upstream.len(), 2);
    assert_eq!(config.upstream[0].weight, 2);
    assert!(config.upstream[1].backup);
    assert_eq!(config.max_fails, 3);
    assert_eq!(config.fail_timeout, Duration::from_secs(30));
    assert_eq!(config.health_interval, Duration::from_secs(2));
    assert_eq!(config.resolve_interval, Duration::from_secs(1));
    let bad = load(&args(&[
        "--root",
        "src",
        "--upstream",
        "unix:/a.sock heavy",
    ]));
    assert!(message(bad).starts_with("--upstream: `heavy`"));
}

#[test]
fn the_root_is_kept_as_given_for_symlink_deploys() {
    let fx = Fixture::new("root = \"current\"\n");
    fs::create_dir(fx.dir.path().join("release-1")).unwrap();
    std::os::unix::fs::symlink(
        fx.dir.path().join("release-1"),
        fx.dir.path().join("current"),
    )
    .unwrap();
    let config = check_file(&fx.file()).unwrap();
    assert_eq!(
        config.root,
        fx.dir.path().join("release-1").canonicalize().unwrap()
    );
    assert_eq!(config.root_as_given, fx.dir.path().join("current"));
}
