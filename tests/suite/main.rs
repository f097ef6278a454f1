//! The integration suite, one test binary for all of it: every test file
//! linked on its own took ~27 MB of disk each, and CI machines can be short
//! of disk. `tests/logging.rs` stays apart because it installs a global
//! tracing subscriber.
//!
//! Run one part with `cargo test --test suite pool::`.

#[path = "../support/mod.rs"]
mod support;

mod accel_redirect;
mod admin;
mod bench_agrees;
mod bench_cli;
mod bench_link;
mod cli;
mod compress_stream;
mod deploys;
mod doctor;
mod dokuwiki;
mod embedded_fpm;
mod fake_upstream;
mod framing;
mod harness_selftest;
mod limits;
mod nginx_dropin;
mod nginx_import;
mod observability;
mod php_fpm_http;
mod pipelining;
mod pool;
mod reload;
mod routing_static;
mod sites;
mod slow_pages;
mod static_files_http;
mod threads;
mod tls;
mod trusted_proxy;
mod upstreams;
