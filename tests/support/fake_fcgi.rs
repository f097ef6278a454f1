//! A scripted fake FastCGI responder, for faults php-fpm cannot make on demand.
//!
//! It speaks just enough FastCGI (spec 1.0) to read requests from a gateway and
//! then plays a [`Script`] back. The record encoder and reader here are written
//! independently of the crate's own codec on purpose, so a bug in one is not
//! mirrored by the other.
//!
//! Per connection: read a whole request (BEGIN_REQUEST, PARAMS up to the empty
//! PARAMS record, STDIN up to the empty STDIN record), then run the steps of
//! the next script, writing records with the request's id. After the steps:
//!
//! * if the script sent [`Step::End`] and the BEGIN_REQUEST flags had
//!   FCGI_KEEP_CONN, the next request is read from the same connection;
//! * if it sent [`Step::End`] without FCGI_KEEP_CONN, the connection is closed
//!   (as the spec asks of an application);
//! * if it sent no `End` (a "hung" responder), the connection stays open and
//!   the fake keeps reading until the peer closes it.
//!
//! Also handled: management records (request id 0) get FCGI_GET_VALUES_RESULT
//! or FCGI_UNKNOWN_TYPE; a second BEGIN_REQUEST while one is in progress gets
//! END_REQUEST with FCGI_CANT_MPX_CONN; ABORT_REQUEST is counted
//! ([`FakeFcgi::aborts_seen`]) - while a request is still being read it is
//! answered with END_REQUEST, while a script runs it is only counted (it is
//! noticed during [`Step::Sleep`]).

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::{AbortHandle, JoinHandle};

const VERSION: u8 = 1;
const HEADER_LEN: usize = 8;
const MAX_CONTENT: usize = 65535;

const BEGIN_REQUEST: u8 = 1;
const ABORT_REQUEST: u8 = 2;
const END_REQUEST: u8 = 3;
const PARAMS: u8 = 4;
const STDIN: u8 = 5;
const STDOUT: u8 = 6;
const STDERR: u8 = 7;
const DATA: u8 = 8;
const GET_VALUES: u8 = 9;
const GET_VALUES_RESULT: u8 = 10;
const UNKNOWN_TYPE: u8 = 11;

const FLAG_KEEP_CONN: u8 = 1;
const REQUEST_COMPLETE: u8 = 0;
const CANT_MPX_CONN: u8 = 1;

/// Decoded name-value pairs, in wire order.
pub type NameValues = Vec<(Vec<u8>, Vec<u8>)>;

/// One thing the fake does while answering a request.
#[derive(Debug, Clone)]
pub enum Step {
    /// FCGI_STDOUT with these bytes, split into records of at most 65535
    /// bytes, each padded to a multiple of 8. An empty vector writes one empty
    /// STDOUT record (the end-of-stream marker).
    Stdout(Vec<u8>),
    /// FCGI_STDERR, split and padded like `Stdout`.
    Stderr(Vec<u8>),
    /// Bytes written as they are (for malformed records).
    Raw(Vec<u8>),
    /// Wait. ABORT_REQUEST records that arrive meanwhile are counted.
    Sleep(Duration),
    /// FCGI_END_REQUEST for the request.
    End {
        app_status: u32,
        protocol_status: u8,
    },
    /// A whole short answer in one write, as php-fpm sends a small page:
    /// FCGI_STDOUT with these bytes, the empty STDOUT record and
    /// END_REQUEST (app status 0, REQUEST_COMPLETE). Counts as `End`.
    Answer(Vec<u8>),
    /// Close the connection now (no further steps run).
    Close,
    /// Wait until the peer has ACKed all this connection has written, and
    /// note how long that took ([`FakeFcgi::ack_waits`]). Over tcp only;
    /// nothing happens on a unix socket.
    AwaitAcked,
    /// FCGI_END_REQUEST (app status 0, REQUEST_COMPLETE) carrying the given
    /// request id instead of the request's. Does not count as `End` for the
    /// connection's lifecycle.
    EndWithId(u16),
}

/// What to do for one request.
#[derive(Debug, Clone)]
pub struct Script {
    pub steps: Vec<Step>,
}

impl Script {
    pub fn new(steps: Vec<Step>) -> Script {
        Script { steps }
    }

    /// `Content-Type: text/plain` + `body` on STDOUT, then END_REQUEST
    /// (app status 0, REQUEST_COMPLETE).
    pub fn ok(body: &str) -> Script {
        let stdout = format!("Content-Type: text/plain\r\n\r\n{body}");
        Script::new(vec![
            Step::Stdout(stdout.into_bytes()),
            Step::End {
                app_status: 0,
                protocol_status: REQUEST_COMPLETE,
            },
        ])
    }
}

/// A running fake FastCGI server on a unix socket and on 127.0.0.1.
pub struct FakeFcgi {
    /// `<tmp>/fake.sock`.
    pub unix_socket: PathBuf,
    /// `127.0.0.1:<ephemeral port>`.
    pub tcp_addr: SocketAddr,
    shared: Arc<Shared>,
    accept_tasks: Vec<JoinHandle<()>>,
    _dir: TempDir,
}

struct Shared {
    scripts: Vec<Script>,
    /// BEGIN_REQUEST records received.
    requests: AtomicUsize,
    /// Scripts handed out (index of the next one).
    served: AtomicUsize,
    connections: AtomicUsize,
    /// Connections whose socket the fake has closed.
    ended: AtomicUsize,
    aborts: AtomicUsize,
    /// What each `Step::AwaitAcked` waited.
    ack_waits: Mutex<Vec<Duration>>,
    last: Mutex<LastRequest>,
    connection_tasks: Mutex<Vec<AbortHandle>>,
}

#[derive(Default)]
struct LastRequest {
    params: NameValues,
    stdin: Vec<u8>,
    keep_conn: bool,
}

impl Shared {
    fn last(&self) -> MutexGuard<'_, LastRequest> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_script(&self) -> Script {
        let index = self.served.fetch_add(1, Ordering::SeqCst);
        self.scripts[index.min(self.scripts.len() - 1)].clone()
    }
}

impl FakeFcgi {
    /// Start on a unix socket (in a temp dir) and on 127.0.0.1:0. `scripts`
    /// are served in order, one per request received (across all
    /// connections); once they are used up, the last one is reused.
    pub async fn start(scripts: Vec<Script>) -> FakeFcgi {
        FakeFcgi::start_inner(scripts, true).await
    }

    /// As [`FakeFcgi::start`], but its tcp connections keep Nagle's
    /// algorithm on, as php-fpm's do (it never sets TCP_NODELAY): a small
    /// write waits while an earlier small one is not ACKed.
    pub async fn start_with_nagle(scripts: Vec<Script>) -> FakeFcgi {
        FakeFcgi::start_inner(scripts, false).await
    }

    async fn start_inner(scripts: Vec<Script>, tcp_nodelay: bool) -> FakeFcgi {
        assert!(
            !scripts.is_empty(),
            "FakeFcgi::start needs at least one Script"
        );
        let dir = tempfile::Builder::new()
            .prefix("fake-fcgi-")
            .tempdir()
            .expect("could not create a temp dir for the fake FastCGI socket");
        let unix_socket = dir.path().join("fake.sock");
        let unix = UnixListener::bind(&unix_socket).unwrap_or_else(|e| {
            panic!(
                "fake FastCGI server could not bind {}: {e}",
                unix_socket.display()
            )
        });
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("fake FastCGI server could not bind 127.0.0.1:0");
        let tcp_addr = tcp
            .local_addr()
            .expect("local_addr of fake FastCGI listener");
        let shared = Arc::new(Shared {
            scripts,
            requests: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            ended: AtomicUsize::new(0),
            aborts: AtomicUsize::new(0),
            ack_waits: Mutex::new(Vec::new()),
            last: Mutex::new(LastRequest::default()),
            connection_tasks: Mutex::new(Vec::new()),
        });

        let unix_shared = shared.clone();
        let unix_task = tokio::spawn(async move {
            loop {
                match unix.accept().await {
                    Ok((stream, _)) => spawn_connection(stream, &unix_shared),
                    Err(e) => accept_failed("unix", e).await,
                }
            }
        });
        let tcp_shared = shared.clone();
        let tcp_task = tokio::spawn(async move {
            loop {
                match tcp.accept().await {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(tcp_nodelay);
                        spawn_connection(stream, &tcp_shared)
                    }
                    Err(e) => accept_failed("tcp", e).await,
                }
            }
        });

        FakeFcgi {
            unix_socket,
            tcp_addr,
            shared,
            accept_tasks: vec![unix_task, tcp_task],
            _dir: dir,
        }
    }

    /// How many BEGIN_REQUEST records arrived (on all connections).
    pub fn requests_seen(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// How many connections were accepted (unix + TCP).
    pub fn connections_seen(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// How many connections the fake is done with and has closed its end
    /// of: by [`Step::Close`], after END_REQUEST without FCGI_KEEP_CONN, or
    /// because the peer closed it or a read or write failed.
    pub fn connections_ended(&self) -> usize {
        self.shared.ended.load(Ordering::SeqCst)
    }

    /// How many ABORT_REQUEST records arrived.
    pub fn aborts_seen(&self) -> usize {
        self.shared.aborts.load(Ordering::SeqCst)
    }

    /// Decoded PARAMS of the latest request whose PARAMS stream completed, in
    /// the order they were sent.
    pub fn last_params(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.shared.last().params.clone()
    }

    /// Value of one parameter of the latest request (lossy UTF-8), if sent.
    pub fn last_param(&self, name: &str) -> Option<String> {
        self.shared
            .last()
            .params
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// STDIN of the latest request whose STDIN stream completed.
    pub fn last_stdin(&self) -> Vec<u8> {
        self.shared.last().stdin.clone()
    }

    /// How long each [`Step::AwaitAcked`] waited for the gateway's ACK, in
    /// the order they ran.
    pub fn ack_waits(&self) -> Vec<Duration> {
        self.shared
            .ack_waits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the latest BEGIN_REQUEST had FCGI_KEEP_CONN.
    pub fn last_keep_conn(&self) -> bool {
        self.shared.last().keep_conn
    }
}

impl Drop for FakeFcgi {
    fn drop(&mut self) {
        for task in &self.accept_tasks {
            task.abort();
        }
        let tasks = self
            .shared
            .connection_tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for task in tasks.iter() {
            task.abort();
        }
    }
}

async fn accept_failed(kind: &str, e: io::Error) {
    eprintln!("fake FastCGI server: {kind} accept failed: {e}");
    // Avoid a hot loop on e.g. EMFILE.
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// Bytes written on a socket that its peer has not ACKed yet.
trait SendQueue {
    /// `None` where there are no ACKs to wait for (unix sockets).
    fn unacked(&self) -> Option<usize>;
}

impl SendQueue for tokio::net::TcpStream {
    fn unacked(&self) -> Option<usize> {
        // For tcp: written and not yet ACKed (sent or not).
        Some(super::wait::send_queue(self))
    }
}

impl SendQueue for tokio::net::UnixStream {
    fn unacked(&self) -> Option<usize> {
        None
    }
}

fn spawn_connection<S>(stream: S, shared: &Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + SendQueue + Unpin + Send + 'static,
{
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let counts = shared.clone();
    let task = tokio::spawn(async move {
        // The connection (and its socket) is dropped when this returns.
        serve_connection(Conn::new(stream), counts.clone()).await;
        counts.ended.fetch_add(1, Ordering::SeqCst);
    });
    shared
        .connection_tasks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(task.abort_handle());
}

struct Record {
    kind: u8,
    id: u16,
    content: Vec<u8>,
}

/// A request read off the wire.
struct Request {
    id: u16,
    keep_conn: bool,
    params: Vec<u8>,
    params_done: bool,
    stdin: Vec<u8>,
    stdin_done: bool,
}

/// One connection: a cancel-safe record reader plus the write side.
struct Conn<S> {
    stream: S,
    /// Bytes read but not yet parsed into records.
    buf: Vec<u8>,
    /// Records parsed while a script was sleeping, not yet consumed.
    pending: VecDeque<Record>,
    eof: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(stream: S) -> Self {
        Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            pending: VecDeque::new(),
            eof: false,
        }
    }

    /// Take one complete record off the front of `buf`, if there is one.
    fn parse_buffered(&mut self) -> Result<Option<Record>, String> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let header = &self.buf[..HEADER_LEN];
        if header[0] != VERSION {
            return Err(format!(
                "record with version {} (expected {VERSION}); header bytes {header:?}",
                header[0]
            ));
        }
        let kind = header[1];
        let id = u16::from_be_bytes([header[2], header[3]]);
        let content_len = u16::from_be_bytes([header[4], header[5]]) as usize;
        let padding_len = header[6] as usize;
        let total = HEADER_LEN + content_len + padding_len;
        if self.buf.len() < total {
            return Ok(None);
        }
        let content = self.buf[HEADER_LEN..HEADER_LEN + content_len].to_vec();
        self.buf.drain(..total);
        Ok(Some(Record { kind, id, content }))
    }

    /// Next record; `Ok(None)` on a clean EOF between records.
    async fn next_record(&mut self) -> Result<Option<Record>, String> {
        if let Some(record) = self.pending.pop_front() {
            return Ok(Some(record));
        }
        loop {
            if let Some(record) = self.parse_buffered()? {
                return Ok(Some(record));
            }
            if self.eof {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(format!(
                        "peer closed the connection inside a record ({} stray bytes)",
                        self.buf.len()
                    ))
                };
            }
            self.fill().await.map_err(|e| format!("read failed: {e}"))?;
        }
    }

    /// Read more bytes into `buf`. Cancel-safe (`read_buf` is).
    async fn fill(&mut self) -> io::Result<()> {
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            self.eof = true;
        }
        Ok(())
    }

    /// Sleep for `duration` while still reading, so ABORT_REQUEST for
    /// `request_id` is noticed; other records are kept for later.
    async fn sleep_watching(&mut self, duration: Duration, request_id: u16, shared: &Shared) {
        let sleep = tokio::time::sleep(duration);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return,
                read = self.fill(), if !self.eof => {
                    if read.is_err() {
                        // Connection reset; the next write will fail too.
                        self.eof = true;
                    }
                    loop {
                        match self.parse_buffered() {
                            Ok(Some(r)) if r.kind == ABORT_REQUEST && r.id == request_id => {
                                shared.aborts.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(Some(r)) => self.pending.push_back(r),
                            Ok(None) => break,
                            Err(e) => {
                                eprintln!("fake FastCGI server: {e}; ignoring further input");
                                self.buf.clear();
                                self.eof = true;
                                break;
                            }
                        }
                    }
                }
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }
}

impl<S: SendQueue> Conn<S> {
    /// How long until all written is ACKed (polled each millisecond, for
    /// at most 5 s); `None` on a socket without ACKs.
    async fn await_acked(&mut self) -> Option<Duration> {
        let started = tokio::time::Instant::now();
        while self.stream.unacked()? > 0 && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Some(started.elapsed())
    }
}

async fn serve_connection<S: AsyncRead + AsyncWrite + SendQueue + Unpin>(
    mut conn: Conn<S>,
    shared: Arc<Shared>,
) {
    loop {
        let request = match read_request(&mut conn, &shared).await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => {
                eprintln!("fake FastCGI server: {e}; closing the connection");
                return;
            }
        };
        let script = shared.next_script();
        let mut ended = false;
        for step in script.steps {
            let written = match step {
                Step::Stdout(data) => conn.write(&stream_records(STDOUT, request.id, &data)).await,
                Step::Stderr(data) => conn.write(&stream_records(STDERR, request.id, &data)).await,
                Step::Raw(bytes) => conn.write(&bytes).await,
                Step::Sleep(duration) => {
                    conn.sleep_watching(duration, request.id, &shared).await;
                    Ok(())
                }
                Step::End {
                    app_status,
                    protocol_status,
                } => {
                    ended = true;
                    conn.write(&end_request(request.id, app_status, protocol_status))
                        .await
                }
                Step::Answer(data) => {
                    ended = true;
                    let mut bytes = stream_records(STDOUT, request.id, &data);
                    bytes.extend(stream_records(STDOUT, request.id, &[]));
                    bytes.extend(end_request(request.id, 0, REQUEST_COMPLETE));
                    conn.write(&bytes).await
                }
                Step::EndWithId(id) => conn.write(&end_request(id, 0, REQUEST_COMPLETE)).await,
                Step::Close => return,
                Step::AwaitAcked => {
                    if let Some(waited) = conn.await_acked().await {
                        shared
                            .ack_waits
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(waited);
                    }
                    Ok(())
                }
            };
            if written.is_err() {
                // The gateway went away; nothing more to do on this connection.
                return;
            }
        }
        if ended && !request.keep_conn {
            let _ = conn.stream.shutdown().await;
            return;
        }
    }
}

/// Read records until one request is complete. `Ok(None)` when the peer
/// closes the connection first.
async fn read_request<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    shared: &Shared,
) -> Result<Option<Request>, String> {
    let mut current: Option<Request> = None;
    loop {
        let Some(record) = conn.next_record().await? else {
            return Ok(None);
        };
        if record.id == 0 {
            let reply = match record.kind {
                GET_VALUES => get_values_result(&record.content),
                kind => record_bytes(UNKNOWN_TYPE, 0, &[kind, 0, 0, 0, 0, 0, 0, 0]),
            };
            conn.write(&reply)
                .await
                .map_err(|e| format!("write failed: {e}"))?;
            continue;
        }
        let matches_current = current.as_ref().is_some_and(|r| r.id == record.id);
        match record.kind {
            BEGIN_REQUEST => {
                shared.requests.fetch_add(1, Ordering::SeqCst);
                if current.is_some() {
                    conn.write(&end_request(record.id, 0, CANT_MPX_CONN))
                        .await
                        .map_err(|e| format!("write failed: {e}"))?;
                    continue;
                }
                if record.content.len() < 3 {
                    return Err(format!(
                        "BEGIN_REQUEST body is {} bytes, expected 8",
                        record.content.len()
                    ));
                }
                let keep_conn = record.content[2] & FLAG_KEEP_CONN != 0;
                shared.last().keep_conn = keep_conn;
                current = Some(Request {
                    id: record.id,
                    keep_conn,
                    params: Vec::new(),
                    params_done: false,
                    stdin: Vec::new(),
                    stdin_done: false,
                });
            }
            PARAMS if matches_current => {
                let request = current.as_mut().expect("matches_current");
                if record.content.is_empty() {
                    request.params_done = true;
                    let params = parse_name_values(&request.params).unwrap_or_else(|e| {
                        eprintln!("fake FastCGI server: malformed PARAMS: {e}");
                        Vec::new()
                    });
                    shared.last().params = params;
                } else {
                    request.params.extend_from_slice(&record.content);
                }
            }
            STDIN if matches_current => {
                let request = current.as_mut().expect("matches_current");
                if record.content.is_empty() {
                    request.stdin_done = true;
                    shared.last().stdin = std::mem::take(&mut request.stdin);
                } else {
                    request.stdin.extend_from_slice(&record.content);
                }
            }
            ABORT_REQUEST if matches_current => {
                shared.aborts.fetch_add(1, Ordering::SeqCst);
                let request = current.take().expect("matches_current");
                conn.write(&end_request(request.id, 0, REQUEST_COMPLETE))
                    .await
                    .map_err(|e| format!("write failed: {e}"))?;
                if !request.keep_conn {
                    return Ok(None);
                }
            }
            DATA if matches_current => {}
            kind => eprintln!(
                "fake FastCGI server: ignoring record type {kind} for request {} \
                 (current request: {:?})",
                record.id,
                current.as_ref().map(|r| r.id)
            ),
        }
        if current
            .as_ref()
            .is_some_and(|r| r.params_done && r.stdin_done)
        {
            return Ok(current);
        }
    }
}

/// One record: header, content, zero padding up to a multiple of 8.
fn record_bytes(kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
    assert!(
        content.len() <= MAX_CONTENT,
        "a FastCGI record holds at most {MAX_CONTENT} bytes, got {}",
        content.len()
    );
    let padding = (8 - content.len() % 8) % 8;
    let mut out = Vec::with_capacity(HEADER_LEN + content.len() + padding);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(content.len() as u16).to_be_bytes());
    out.push(padding as u8);
    out.push(0);
    out.extend_from_slice(content);
    out.resize(out.len() + padding, 0);
    out
}

/// `data` as a run of STDOUT/STDERR records (one empty record if empty).
fn stream_records(kind: u8, id: u16, data: &[u8]) -> Vec<u8> {
    if data.is_empty() {
        return record_bytes(kind, id, &[]);
    }
    data.chunks(MAX_CONTENT)
        .flat_map(|chunk| record_bytes(kind, id, chunk))
        .collect()
}

fn end_request(id: u16, app_status: u32, protocol_status: u8) -> Vec<u8> {
    let mut body = [0u8; 8];
    body[..4].copy_from_slice(&app_status.to_be_bytes());
    body[4] = protocol_status;
    record_bytes(END_REQUEST, id, &body)
}

fn get_values_result(query: &[u8]) -> Vec<u8> {
    let names = parse_name_values(query).unwrap_or_default();
    let mut body = Vec::new();
    for (name, _) in names {
        let value: &[u8] = match name.as_slice() {
            b"FCGI_MAX_CONNS" => b"100",
            b"FCGI_MAX_REQS" => b"100",
            b"FCGI_MPXS_CONNS" => b"0",
            _ => continue,
        };
        encode_length(&mut body, name.len());
        encode_length(&mut body, value.len());
        body.extend_from_slice(&name);
        body.extend_from_slice(value);
    }
    record_bytes(GET_VALUES_RESULT, 0, &body)
}

fn encode_length(out: &mut Vec<u8>, len: usize) {
    if len < 128 {
        out.push(len as u8);
    } else {
        out.extend_from_slice(&(len as u32 | 0x8000_0000).to_be_bytes());
    }
}

/// Name-value pairs: each length is 1 byte (high bit clear) or 4 bytes
/// (high bit set, masked off).
fn parse_name_values(mut bytes: &[u8]) -> Result<NameValues, String> {
    fn length(bytes: &mut &[u8]) -> Result<usize, String> {
        let first = *bytes.first().ok_or("truncated length")?;
        if first & 0x80 == 0 {
            *bytes = &bytes[1..];
            return Ok(first as usize);
        }
        if bytes.len() < 4 {
            return Err("truncated 4-byte length".into());
        }
        let len = u32::from_be_bytes([bytes[0] & 0x7f, bytes[1], bytes[2], bytes[3]]);
        *bytes = &bytes[4..];
        Ok(len as usize)
    }
    let mut pairs = Vec::new();
    while !bytes.is_empty() {
        let name_len = length(&mut bytes)?;
        let value_len = length(&mut bytes)?;
        if bytes.len() < name_len + value_len {
            return Err(format!(
                "pair wants {name_len}+{value_len} bytes, {} left",
                bytes.len()
            ));
        }
        let (name, rest) = bytes.split_at(name_len);
        let (value, rest) = rest.split_at(value_len);
        pairs.push((name.to_vec(), value.to_vec()));
        bytes = rest;
    }
    Ok(pairs)
}
