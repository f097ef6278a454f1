//! One cell: `concurrency` clients, each a task with its own connection,
//! sending the same request through `upstream::conn` (the code that serves
//! traffic) until the cell stops, timing every request.
//!
//! Timing of one request starts before the connect (when a connection is
//! made for it) or before the write (on a kept-alive one):
//! - connect: `conn::dial` alone, only when a connection was made;
//! - ttfb: until `exchange` hands over the first STDOUT record;
//! - total: until END_REQUEST.
//!
//! When the cell stops, requests still in flight are abandoned and counted
//! as `unfinished`, not as errors: with keep-alive on and more clients than
//! php-fpm has workers, the clients that never got a worker show up there
//! and in `workers_served`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::args::Stop;
use super::stats::{classify, ErrorCounts, ErrorKind, Latencies};
use crate::cgi::response::{HeadParser, DEFAULT_HEAD_LIMIT};
use crate::upstream::conn::{self, Conn, ExchangeTimeouts, Outcome};
use crate::upstream::{Output, OutputSink};
use crate::upstream::{RequestBody, UpstreamAddr};

/// How long a client waits after a refused connect before trying again.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(1);

/// STDOUT/STDERR records the exchange may hand over before we read them.
const CHANNEL_DEPTH: usize = 64;

/// What to run.
#[derive(Debug, Clone)]
pub struct CellSpec {
    pub addr: UpstreamAddr,
    pub concurrency: usize,
    /// FCGI_KEEP_CONN: reuse one connection per client.
    pub keepalive: bool,
    /// The encoded request head (see `request::script_request`); its
    /// keep-conn flag must match `keepalive`.
    pub request: Bytes,
    pub stop: Stop,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

/// What one run of a cell measured.
#[derive(Debug, Clone, Default)]
pub struct CellRun {
    /// Requests that ended with END_REQUEST and a CGI status below 400.
    pub ok: u64,
    pub errors: ErrorCounts,
    /// The first failure's message, to tell the user what went wrong.
    pub first_error: Option<String>,
    /// In flight when the cell stopped.
    pub unfinished: u64,
    /// Clients that finished at least one request (ok or not).
    pub workers_served: usize,
    pub connects: u64,
    pub stdout_bytes: u64,
    /// From the start of the first request to the stop.
    pub elapsed: Duration,
    pub total: Latencies,
    pub ttfb: Latencies,
    pub connect: Latencies,
}

impl CellRun {
    /// Successful requests per second.
    pub fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    fn merge_worker(&mut self, w: CellRun) {
        self.ok += w.ok;
        self.errors.merge(&w.errors);
        if self.first_error.is_none() {
            self.first_error = w.first_error;
        }
        self.unfinished += w.unfinished;
        self.workers_served += w.workers_served;
        self.connects += w.connects;
        self.stdout_bytes += w.stdout_bytes;
        self.total.merge(&w.total);
        self.ttfb.merge(&w.ttfb);
        self.connect.merge(&w.connect);
    }
}

/// Runs one cell to its stop and returns what it measured. Every request is
/// bounded by the connect and read timeouts, so with `Stop::Requests` the
/// cell ends too, even against an upstream that never answers.
pub async fn run_cell(spec: &CellSpec) -> CellRun {
    let spec = Arc::new(spec.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let finished = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    // A JoinSet aborts its clients when dropped: a cell whose future is
    // dropped (the bench interrupted by Ctrl-C) leaves none running.
    let mut tasks = JoinSet::new();
    for _ in 0..spec.concurrency {
        tasks.spawn(client(
            spec.clone(),
            stop_rx.clone(),
            stop_tx.clone(),
            finished.clone(),
        ));
    }
    match spec.stop {
        Stop::After(d) => tokio::time::sleep(d).await,
        // The client that finishes the n-th request flips the flag.
        Stop::Requests(_) => {
            let mut stopped = stop_rx.clone();
            let _ = stopped.wait_for(|s| *s).await;
        }
    }
    stop_tx.send_replace(true);
    let elapsed = start.elapsed();
    let mut run = CellRun {
        elapsed,
        ..CellRun::default()
    };
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(w) => run.merge_worker(w),
            Err(e) => {
                run.errors.add(ErrorKind::Other);
                run.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    run
}

/// One client: requests back to back until the stop.
async fn client(
    spec: Arc<CellSpec>,
    mut stop: watch::Receiver<bool>,
    stop_tx: Arc<watch::Sender<bool>>,
    finished: Arc<AtomicU64>,
) -> CellRun {
    let mut me = CellRun::default();
    let mut conn: Option<Conn> = None;
    let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
    let tx = OutputSink::from(tx);
    let mut served = false;
    loop {
        if *stop.borrow() {
            break;
        }
        let attempt = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => {
                me.unfinished += 1;
                break;
            }
            a = one_request(&spec, &mut conn, &tx, &mut rx) => a,
        };
        served = true;
        if let Some(c) = attempt.connect {
            me.connects += 1;
            me.connect.record(c);
        }
        match attempt.result {
            Ok(sample) => {
                me.ok += 1;
                me.stdout_bytes += sample.stdout_bytes;
                me.total.record(sample.total);
                me.ttfb.record(sample.ttfb);
            }
            Err(failure) => {
                me.errors.add(failure.kind);
                me.first_error.get_or_insert(failure.message);
                if matches!(failure.kind, ErrorKind::Refused | ErrorKind::Eagain) {
                    // A refused connect fails in microseconds; without a pause
                    // the client would spin and steal php-fpm's CPU.
                    tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
                }
            }
        }
        if let Stop::Requests(n) = spec.stop {
            if finished.fetch_add(1, Ordering::Relaxed) + 1 >= n {
                stop_tx.send_replace(true);
            }
        }
    }
    me.workers_served = usize::from(served);
    me
}

/// One request's timings, or why it failed.
struct Attempt {
    /// Set when a connection was made for this request.
    connect: Option<Duration>,
    result: Result<Sample, Failure>,
}

struct Sample {
    total: Duration,
    ttfb: Duration,
    stdout_bytes: u64,
}

struct Failure {
    kind: ErrorKind,
    message: String,
}

impl Failure {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

/// Sends the request once (dialing first when there is no connection) and
/// reads the whole response. Leaves `conn` set only if it can be reused.
async fn one_request(
    spec: &CellSpec,
    conn: &mut Option<Conn>,
    tx: &OutputSink,
    rx: &mut mpsc::Receiver<Output>,
) -> Attempt {
    let start = Instant::now();
    let mut connect = None;
    let c = match conn {
        Some(c) => c,
        None => match conn::dial(&spec.addr, spec.connect_timeout).await {
            Ok(c) => {
                connect = Some(start.elapsed());
                conn.insert(c)
            }
            Err(e) => {
                return Attempt {
                    connect: None,
                    result: Err(Failure::new(classify(&e), e.to_string())),
                }
            }
        },
    };
    let mut response = Response::new();
    let mut body = RequestBody::Empty;
    let timeouts = ExchangeTimeouts { read: spec.timeout };
    let outcome = {
        let exchange = conn::exchange(c, &spec.request, &mut body, tx, timeouts);
        tokio::pin!(exchange);
        loop {
            // Records are taken as soon as the exchange hands them over, so
            // the first one is timed when it leaves the decoder.
            tokio::select! {
                biased;
                Some(out) = rx.recv() => response.take(out),
                r = &mut exchange => break r,
            }
        }
    };
    while let Ok(out) = rx.try_recv() {
        response.take(out);
    }
    let total = start.elapsed();
    let reusable = matches!(outcome, Ok(Outcome::Reusable));
    if !(spec.keepalive && reusable) {
        *conn = None;
    }
    let result = match outcome {
        Err(failure) => Err(Failure::new(
            classify(&failure.error),
            failure.error.to_string(),
        )),
        Ok(_) => response.finish(start, total),
    };
    Attempt { connect, result }
}

/// The response as it arrives: when the first STDOUT byte came, its CGI status.
struct Response {
    first_stdout: Option<Instant>,
    stdout_bytes: u64,
    head: Option<HeadParser>,
    status: Option<Result<u16, String>>,
}

impl Response {
    fn new() -> Response {
        Response {
            first_stdout: None,
            stdout_bytes: 0,
            head: Some(HeadParser::new(DEFAULT_HEAD_LIMIT)),
            status: None,
        }
    }

    fn take(&mut self, out: Output) {
        let Output::Stdout(data) = out else {
            // STDERR (PHP notices) does not make a request fail.
            return;
        };
        self.first_stdout.get_or_insert_with(Instant::now);
        self.stdout_bytes += data.len() as u64;
        if let Some(parser) = self.head.as_mut() {
            match parser.push(data) {
                Ok(None) => {}
                Ok(Some((head, _))) => {
                    self.status = Some(Ok(head.status.as_u16()));
                    self.head = None;
                }
                Err(e) => {
                    self.status = Some(Err(e.to_string()));
                    self.head = None;
                }
            }
        }
    }

    fn finish(mut self, start: Instant, total: Duration) -> Result<Sample, Failure> {
        if let Some(parser) = self.head.take() {
            self.status = Some(
                parser
                    .finish()
                    .map(|(h, _)| h.status.as_u16())
                    .map_err(|e| e.to_string()),
            );
        }
        match self.status {
            Some(Ok(status)) if status < 400 => Ok(Sample {
                total,
                ttfb: self
                    .first_stdout
                    .map_or(total, |t| t.saturating_duration_since(start)),
                stdout_bytes: self.stdout_bytes,
            }),
            Some(Ok(status)) => Err(Failure::new(
                ErrorKind::Status,
                format!("php-fpm answered with status {status}"),
            )),
            Some(Err(e)) => Err(Failure::new(
                ErrorKind::Other,
                format!("bad CGI response: {e}"),
            )),
            None => Err(Failure::new(ErrorKind::Other, "empty response")),
        }
    }
}
