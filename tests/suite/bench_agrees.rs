//! The bench's req/s must agree with an independent FastCGI client (the
//! `fastcgi-client` crate) driving the same php-fpm script at the same
//! concurrency, over both socket kinds.
//!
//! How it stays robust on a shared 2-core machine (measured here while other
//! work kept the load average at 5-9):
//! - The two run *at the same time*, each with `CONCURRENCY` clients against
//!   one 4-worker pool, 7 times, and the medians are compared. Interleaved
//!   slices (ours, theirs, ours, ...) were tried first: the load swung single
//!   slices by 2x and the medians ended up 24-49 % apart in some runs.
//! - Without keep-alive, so every request takes whichever php-fpm worker is
//!   free. With keep-alive each client is bound to its own two workers, so
//!   each side's rate hangs on how those processes get scheduled: medians
//!   came out up to 41 % apart.
//! - The reference client gets a `BufStream`: it writes each record with its
//!   own call, which on two cores shared with php-fpm halved its rate.

use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};

use fastcgi_client::{Client, Params, Request};
use fcgi_gateway::bench::load::{run_cell, CellSpec};
use fcgi_gateway::bench::request::script_request;
use fcgi_gateway::bench::Stop;
use fcgi_gateway::upstream::UpstreamAddr;
use support::php_fpm::{fixtures_dir, PhpFpm};
use tokio::io::{AsyncRead, AsyncWrite, BufStream};
use tokio::net::{TcpStream, UnixStream};

const CONCURRENCY: usize = 2;
const SLICE: Duration = Duration::from_millis(600);
const RUNS: usize = 7;
/// Allowed difference of the medians: 10 % as asked for optimised builds
/// (`cargo test --release --test suite bench_agrees`; measured at most 6.1 % in
/// 20 comparisons).
/// Debug builds get 20 %: there the unoptimised bench spends more CPU per
/// request than the reference and, sharing two cores with php-fpm, ran up
/// to 12.1 % slower.
const TOLERANCE: f64 = if cfg!(debug_assertions) { 0.20 } else { 0.10 };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_req_per_sec_agrees_with_fastcgi_client() {
    let fpm = PhpFpm::start();
    let script = fixtures_dir().join("hello.php");
    let script = script.to_str().expect("fixtures path is UTF-8");
    let upstreams = [
        UpstreamAddr::Unix(fpm.unix_socket.clone()),
        UpstreamAddr::Tcp {
            host: fpm.tcp_addr.ip().to_string(),
            port: fpm.tcp_addr.port(),
        },
    ];
    let mut report = String::new();
    let mut failures = Vec::new();
    for addr in &upstreams {
        let spec = CellSpec {
            addr: addr.clone(),
            concurrency: CONCURRENCY,
            keepalive: false,
            request: script_request(script, "", false),
            stop: Stop::After(SLICE),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        };
        // Warm both paths (opcache, CPU frequency) before anything counts.
        let mut warm = spec.clone();
        warm.stop = Stop::After(Duration::from_millis(300));
        tokio::join!(
            run_cell(&warm),
            reference_rps(addr, script, Duration::from_millis(300))
        );

        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let (run, reference) =
                tokio::join!(run_cell(&spec), reference_rps(addr, script, SLICE));
            assert_eq!(run.errors.total(), 0, "{addr}: {:?}", run.first_error);
            ours.push(run.rps());
            theirs.push(reference);
        }
        let (a, b) = (median(&mut ours), median(&mut theirs));
        let diff = (a - b).abs() / b;
        report.push_str(&format!(
            "{addr}: bench {ours:.0?} median {a:.0}, fastcgi-client {theirs:.0?} median {b:.0}, \
             difference {:.1} %\n",
            diff * 100.0
        ));
        if diff > TOLERANCE {
            failures.push(addr.to_string());
        }
    }
    eprint!("{report}");
    assert!(
        failures.is_empty(),
        "medians differ by more than {:.0} % on {failures:?}:\n{report}",
        TOLERANCE * 100.0
    );
}

/// `CONCURRENCY` fastcgi-client loops requesting `script` back to back for
/// `slice`, each request on its own connection; requests finished within it
/// per second.
async fn reference_rps(addr: &UpstreamAddr, script: &str, slice: Duration) -> f64 {
    let deadline = Instant::now() + slice;
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let addr = addr.clone();
        let script = script.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while Instant::now() < deadline {
                // A fresh connection per request (FCGI_KEEP_CONN unset).
                let request = async {
                    Client::new_tokio(connect(&addr).await)
                        .execute_once(Request::new_tokio(params(&script), &[][..]))
                        .await
                };
                match tokio::time::timeout_at(deadline.into(), request).await {
                    // Cut off by the deadline, like the bench's abandoned requests.
                    Err(_) => break,
                    Ok(r) => check(r),
                }
                done += 1;
            }
            done
        }));
    }
    let mut done = 0u64;
    for task in tasks {
        done += task.await.expect("reference client task");
    }
    done as f64 / slice.as_secs_f64()
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A buffered stream: fastcgi-client writes every record with its own call.
async fn connect(addr: &UpstreamAddr) -> BufStream<Box<dyn Io>> {
    let stream: Box<dyn Io> = match addr {
        UpstreamAddr::Unix(path) => Box::new(UnixStream::connect(path).await.expect("unix")),
        UpstreamAddr::Tcp { host, port } => {
            let s = TcpStream::connect((host.as_str(), *port))
                .await
                .expect("tcp");
            s.set_nodelay(true).expect("nodelay");
            Box::new(s)
        }
    };
    BufStream::new(stream)
}

fn params(script: &str) -> Params<'_> {
    let root = Path::new(script)
        .parent()
        .and_then(Path::to_str)
        .unwrap_or("/");
    Params::default()
        .request_method("GET")
        .script_filename(script)
        .script_name("/hello.php")
        .request_uri("/hello.php")
        .document_root(root)
}

fn check(response: Result<fastcgi_client::Response, fastcgi_client::ClientError>) {
    let stdout = response
        .expect("fastcgi-client request")
        .stdout
        .unwrap_or_default();
    assert!(
        stdout.ends_with(b"Hello, world!"),
        "{}",
        String::from_utf8_lossy(&stdout)
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
