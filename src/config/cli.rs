//! The command line.
//!
//! Flags that take a value with its own syntax (addresses, durations, sizes,
//! counts) are kept as text and parsed by `load`, so a bad flag and a bad file
//! key produce the same message, named after where the value came from.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "fcgi-gateway",
    version,
    about = "An HTTP server that serves PHP (and any FastCGI app) through php-fpm"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at startup, so the unboxed `ServeArgs` costs nothing and keeps
// `Command::Serve(args)` plain to match on.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP, forwarding script requests to the FastCGI upstream.
    Serve(ServeArgs),
    /// Read and fully validate a config file, then exit (0 if valid).
    CheckConfig {
        #[arg(value_name = "FILE", help = "The TOML config file to check")]
        file: PathBuf,
    },
    /// Measure php-fpm over FastCGI on each upstream (e.g. unix vs tcp).
    Bench(crate::bench::BenchArgs),
}

/// Every field is optional so that a flag, when given, overrides the file.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    #[arg(
        long,
        value_name = "FILE",
        help = "TOML config file; flags given on the command line override its values"
    )]
    pub config: Option<PathBuf>,

    #[arg(
        long,
        value_name = "ADDR",
        help = "Address to accept HTTP on: 127.0.0.1:8080, [::1]:8080 or unix:/path/to.sock; \
                with --tls-cert a TCP address serves TLS unless written http://HOST:PORT \
                (https://HOST:PORT asks for TLS); repeat for several [default: 127.0.0.1:8080]"
    )]
    pub listen: Vec<String>,

    #[arg(
        long,
        value_name = "ADDR",
        help = "FastCGI server (php-fpm) address: unix:/path/to.sock or tcp:host:port; \
                without it, php-fpm is started as our child on a private socket"
    )]
    pub upstream: Option<String>,

    #[arg(
        long,
        value_name = "DIR",
        help = "Document root; scripts are looked up below it (relative to the current directory)"
    )]
    pub root: Option<PathBuf>,

    #[arg(
        long,
        value_name = "NAME",
        help = "File name tried when a directory is requested; repeat for several, tried in order; \
                a PHP one runs, another is sent as a file [default: index.php index.html]"
    )]
    pub index: Vec<String>,

    #[arg(
        long,
        value_name = "PATH",
        help = "Script that handles requests matching no file, e.g. /index.php"
    )]
    pub front_controller: Option<String>,

    #[arg(
        long,
        value_name = "NAME",
        help = "Server name passed to scripts as SERVER_NAME"
    )]
    pub server_name: Option<String>,

    #[arg(
        long,
        value_name = "BYTES",
        help = "Largest request body accepted, in bytes or with k/M/G suffix [default: 16M]"
    )]
    pub max_body_size: Option<String>,

    #[arg(
        long,
        value_name = "DUR",
        help = "Time allowed to connect to the upstream, e.g. 5s or 500ms [default: 5s]"
    )]
    pub connect_timeout: Option<String>,

    #[arg(
        long,
        value_name = "DUR",
        help = "Longest wait for data from the upstream before answering 504 [default: 60s]"
    )]
    pub read_timeout: Option<String>,

    #[arg(
        long,
        value_name = "DUR",
        help = "Time a client has to send its request head [default: 10s]"
    )]
    pub header_timeout: Option<String>,

    #[arg(
        long,
        value_name = "DUR",
        help = "On shutdown, how long in-flight requests may finish [default: 10s]"
    )]
    pub grace_period: Option<String>,

    #[arg(
        long,
        value_name = "N",
        help = "Most connections open to the upstream at once; fewer when php-fpm has fewer workers (learned) [default: 8]"
    )]
    pub max_upstream_conns: Option<String>,

    #[arg(
        long,
        value_name = "N",
        help = "Most client connections served at once [default: 4096]"
    )]
    pub max_connections: Option<String>,

    #[arg(
        long,
        value_name = "LEVEL",
        help = "Log level (error, warn, info, debug, trace) or a filter such as \
                info,fcgi_gateway=debug [default: info]"
    )]
    pub log_level: Option<String>,

    #[arg(
        long,
        value_name = "PATH",
        help = "php-fpm's pm.status_path (e.g. /status): read at start and every 30s to size \
                the upstream pool to php-fpm's `max children`"
    )]
    pub fpm_status_path: Option<String>,

    #[arg(
        long,
        value_name = "N",
        help = "Most idle upstream connections kept open; 0 = a fresh connection per request \
                [default: the pool size]"
    )]
    pub max_idle_conns: Option<String>,

    #[arg(
        long,
        value_name = "N",
        help = "Requests that may wait for a free upstream connection; more get 503 [default: 1024]"
    )]
    pub queue_length: Option<String>,

    #[arg(
        long,
        value_name = "DUR",
        help = "How long a request may wait for a free upstream connection before 503 [default: the read timeout]"
    )]
    pub acquire_timeout: Option<String>,

    #[arg(
        long,
        value_name = "DUR",
        help = "Idle upstream connections are closed after this, freeing php-fpm workers [default: 30s]"
    )]
    pub idle_timeout: Option<String>,

    #[arg(
        long,
        help = "Run no PHP but the front controller: any other .php is 404 (needs --front-controller)"
    )]
    pub php_only_front_controller: bool,

    #[arg(
        long,
        value_name = "EXT",
        help = "Extension never sent as a static file (404 instead); repeat for several. \
                .php is always refused [default: php phtml phar inc]"
    )]
    pub never_serve_ext: Vec<String>,

    #[arg(
        long,
        help = "Serve and run files reached through symlinks that lead out of the root"
    )]
    pub follow_symlinks_outside_root: bool,

    #[arg(
        long,
        value_name = "EXT=VALUE",
        help = "Cache-Control for static files with this extension, e.g. css=max-age=3600; \
                repeat for several"
    )]
    pub cache_control: Vec<String>,

    #[arg(
        long,
        value_name = "BYTES",
        help = "Longest request target (path and query) accepted; longer gets 414 [default: 8k]"
    )]
    pub max_uri_length: Option<String>,

    #[arg(
        long,
        value_name = "BYTES",
        help = "Largest request header block accepted (request line excluded); larger gets 431 \
                [default: 32k]"
    )]
    pub max_header_size: Option<String>,

    #[arg(
        long,
        value_name = "N",
        help = "Most request header lines accepted; more get 431 [default: 100]"
    )]
    pub max_headers: Option<String>,

    #[arg(
        long,
        value_name = "CIDR",
        help = "A reverse proxy whose X-Forwarded-For/-Proto (see --real-ip-header) are believed: \
                a network such as 10.0.0.0/8, an IP, or unix (clients of unix-socket listeners); \
                repeat for several"
    )]
    pub trusted_proxy: Vec<String>,

    #[arg(
        long,
        value_name = "HEADER",
        help = "Where trusted proxies put the client: x-forwarded-for (with X-Forwarded-Proto) \
                or forwarded (RFC 7239 for= and proto=) [default: x-forwarded-for]"
    )]
    pub real_ip_header: Option<String>,

    #[arg(
        long,
        value_name = "PREFIX",
        help = "URL path prefix (e.g. /protected) that clients get 404 for; its files are \
                served only when a script answers X-Accel-Redirect; repeat for several"
    )]
    pub internal_location: Vec<String>,

    #[arg(
        long,
        value_name = "DIR",
        help = "Directory whose files a script may send with X-Sendfile: /abs/path; without it \
                X-Sendfile is ignored"
    )]
    pub sendfile_dir: Option<PathBuf>,

    #[arg(
        long,
        help = "Compress PHP responses of text, JSON, JavaScript, XML and SVG types with brotli \
                or gzip when the client accepts it; never event streams or X-Accel-Buffering: no"
    )]
    pub compress: bool,

    #[arg(
        long,
        value_name = "BIN",
        help = "php-fpm binary for the embedded php-fpm (no --upstream) \
                [default: php-fpm, php-fpm8.x or php-fpm7.x on PATH, then /usr/sbin/php-fpm*]"
    )]
    pub php_fpm: Option<PathBuf>,

    #[arg(
        long,
        value_name = "N",
        help = "Workers of the embedded php-fpm (pm = static) [default: the CPU count, at least 2]"
    )]
    pub fpm_children: Option<String>,

    #[arg(
        long,
        value_name = "ADDR",
        help = "Address for /healthz, /readyz and /metrics (127.0.0.1:9100 or unix:/path); \
                never served on --listen [default: none]"
    )]
    pub admin_listen: Option<String>,

    #[arg(
        long,
        value_name = "PATH",
        help = "php-fpm's ping.path (e.g. /ping): /readyz asks it instead of only connecting"
    )]
    pub fpm_ping_path: Option<String>,

    #[arg(
        long,
        help = "Send a Server-Timing header on PHP responses: pool wait, connect, php-fpm's \
                time to first byte and the gateway's total, in milliseconds"
    )]
    pub server_timing: bool,

    #[arg(
        long,
        value_name = "FORMAT",
        help = "Access log lines: combined (Apache/nginx, then request and upstream seconds) \
                or json (one object per line) [default: combined]"
    )]
    pub access_log_format: Option<String>,

    #[arg(
        long,
        value_name = "FILE",
        help = "PEM certificate chain for TLS (needs --tls-key); TCP listeners then serve \
                HTTPS with h2 and http/1.1; re-read on SIGHUP"
    )]
    pub tls_cert: Option<PathBuf>,

    #[arg(
        long,
        value_name = "FILE",
        help = "PEM private key (PKCS#8, RSA or EC) of --tls-cert; re-read on SIGHUP"
    )]
    pub tls_key: Option<PathBuf>,

    #[arg(
        long,
        value_name = "N",
        help = "Threads serving connections (like nginx's worker_processes) [default: the CPU count]"
    )]
    pub workers: Option<String>,

    #[arg(
        long,
        value_name = "on|off|DURATION",
        help = "When every upstream connection is busy, write a bodiless request onto one \
                whose request still runs, so php-fpm need not sleep between the two. A request \
                slower than DURATION (on: 10ms) pauses it for 2s: the request behind a slow \
                one waits for it [default: on]"
    )]
    pub upstream_pipelining: Option<String>,
}
