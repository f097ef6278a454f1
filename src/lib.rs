//! fcgi-gateway: an HTTP server that serves PHP (and any FastCGI app) through php-fpm.
//!
//! Module map (docs/architecture.md has the data flow and who owns what):
//! - `cli`      — the subcommands (serve, check-config, bench, doctor) over `config`, `bench` and `doctor`.
//! - `config`   — every setting declared once; flags + TOML file, defaults, validation (no sockets).
//! - `server`   — the serving threads (`workers`: a current-thread runtime per thread, each
//!   accepting on its own copy of every listener), listeners (TCP, TLS with reload, unix,
//!   systemd socket activation), hyper connections (h1, h2, h2c), limits, graceful drain,
//!   config reload; `respond` maps errors to statuses.
//! - `listen`   — binding TCP/TLS/unix listeners and accepting on them; below `server` and `admin`.
//! - `sites`    — several sites by Host (nginx `server_name` matching) and what a site adds
//!   around routing: error pages, response headers, redirects, deny patterns; pure.
//! - `route`    — path normalisation and safety checks; decides Script / Static / Redirect / NotFound / BadRequest.
//! - `static_files` — GET/HEAD of files route chose: type, ETag/304, Range, precompressed siblings.
//! - `body`     — the response body (fixed, streamed from the upstream, or boxed), watched by the access log.
//! - `cgi`      — HTTP request → CGI params; CGI response head → HTTP head; STDERR → logs.
//! - `compress` — optional gzip/brotli of PHP responses, streamed with flushes.
//! - `fastcgi`  — the FastCGI wire format only: pure encode/decode, no I/O.
//! - `upstream` — `unix:`/`tcp:` addresses, dialing (`connect`, with php-fpm's listen backlog read from the kernel by `listen_queue`), one connection's drive, the connection pool (one budget, a part per serving thread: `pool::shard`), pipelining and its `slowness` rules, several upstreams (`balance`: picking, passive health, names looked up again).
//! - `shutdown` — signals (SIGINT/SIGTERM drain, SIGHUP reload) and the drain deadline.
//! - `fpm`      — php-fpm itself: its own pages (status, ping), the health probe of each upstream (`fpm::health`) and php-fpm as our supervised child when no upstream is given (`fpm::embedded`); above `upstream` and `cgi`.
//! - `admin`    — the admin listener: /healthz, /readyz, /metrics.
//! - `metrics`  — Prometheus registry: requests, durations, upstream pool and times, php-fpm status.
//! - `bench`    — the `bench` subcommand: php-fpm latency/throughput per upstream; off the serving path.
//! - `doctor`   — the `doctor` subcommand: probes a live PHP site for known PHP/FastCGI misconfigurations; off the serving path.
//! - `nginx_import` — the `import-nginx` subcommand: nginx config files → the gateway's TOML and a list of what does not map; off the serving path.

mod admin;
mod ascii;
pub mod bench;
pub mod body;
pub mod cgi;
pub mod cli;
mod compress;
pub mod config;
pub mod doctor;
pub mod fastcgi;
pub mod fpm;
pub mod listen;
pub mod metrics;
pub mod nginx_import;
pub mod route;
pub mod server;
pub mod shutdown;
pub mod sites;
pub mod static_files;
pub mod upstream;

pub use server::run;
