//! Starts the gateway in-process (`fcgi_gateway::run`) on 127.0.0.1:0 with
//! the real CLI parser, and a small HTTP/1.1 client for tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use fcgi_gateway::cli::{Cli, Command};
use fcgi_gateway::config;
use fcgi_gateway::server::Listener;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Gateway {
    pub addr: SocketAddr,
    /// The admin listener, when `--admin-listen` was given (any value: the
    /// gateway gets a fresh 127.0.0.1:0 for it, like the public listener).
    pub admin: Option<SocketAddr>,
    /// The (first) upstream's pool, for its counters.
    pub pool: fcgi_gateway::upstream::Pool,
    /// Every upstream, for their counters and health.
    pub upstreams: fcgi_gateway::upstream::Upstreams,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Gateway {
    /// `args` are `serve` flags (e.g. `--upstream`, `--root`); `--listen` is ignored:
    /// the gateway gets a fresh 127.0.0.1:0 listener.
    pub async fn start(args: &[&str]) -> Gateway {
        Gateway::start_with(args, |server| server).await
    }

    /// Like [`Gateway::start`], with `customize` applied to the server
    /// before it runs (e.g. `with_resolver`).
    pub async fn start_with(
        args: &[&str],
        customize: impl FnOnce(fcgi_gateway::server::Server) -> fcgi_gateway::server::Server,
    ) -> Gateway {
        let mut argv = vec!["fcgi-gateway".to_string(), "serve".to_string()];
        argv.extend(super::with_test_workers(args));
        let cli = Cli::try_parse_from(&argv).expect("test gateway flags parse");
        let Command::Serve(serve) = cli.command else {
            panic!("not a serve command")
        };
        let config = config::load(&serve).expect("test gateway config is valid");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let admin_listener = match config.admin_listen {
            Some(_) => Some(
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind admin 127.0.0.1:0"),
            ),
            None => None,
        };
        let admin = admin_listener
            .as_ref()
            .map(|l| l.local_addr().expect("admin local addr"));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = customize(
            fcgi_gateway::server::Server::new(config).with_admin(admin_listener.map(Listener::Tcp)),
        );
        let pool = server.pool();
        let upstreams = server.upstreams();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stop_rx.await;
            };
            server
                .run(vec![Listener::Tcp(listener)], shutdown)
                .await
                .expect("gateway ran");
        });
        Gateway {
            addr,
            admin,
            pool,
            upstreams,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// `--upstream UPSTREAM --root ROOT` plus `extra` flags.
    pub async fn serve(upstream: &str, root: &str, extra: &[&str]) -> Gateway {
        let mut args = vec!["--upstream", upstream, "--root", root];
        args.extend_from_slice(extra);
        Gateway::start(&args).await
    }

    /// Requests that reached the upstream pool since its `acquired` count
    /// was `acquired_before`: waiting for a connection, or given one.
    pub fn reached_pool(&self, acquired_before: u64) -> u64 {
        let snap = self.pool.snapshot();
        snap.waiting as u64 + (snap.acquired - acquired_before)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Starts the graceful shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

/// Sends one request over a fresh HTTP/1.1 connection (hyper client) and
/// reads the whole response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Reply {
    let resp = send(addr, method, path, headers, body).await;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("read response body").to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[], Bytes::new()).await
}

/// Sends a request and returns the response with its body still streaming.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> http::Response<hyper::body::Incoming> {
    let stream = TcpStream::connect(addr).await.expect("connect to gateway");
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("http handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = http::Request::builder().method(method).uri(path);
    // A Host of the test's own replaces the default one.
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header("host", "localhost");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body)).expect("valid request");
    sender
        .send_request(req)
        .await
        .expect("response from gateway")
}

/// Sends `total` GETs of `path` from `concurrency` clients; returns the statuses.
pub async fn load(addr: SocketAddr, path: &str, total: usize, concurrency: usize) -> Vec<u16> {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                statuses.push(get(addr, &path).await.status);
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    all
}

/// Writes raw bytes and reads until the server closes or `timeout` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, stream.read_to_end(&mut out)).await;
    out
}

/// An HTTP/1.1 client connection kept alive across requests.
pub type KeptAlive = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Opens an HTTP/1.1 connection over `stream` (tcp or unix), kept alive
/// for `get_on`.
pub async fn keep_alive<S>(stream: S) -> Result<KeptAlive, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// GET `path` with `Host: host` on a kept-alive connection: status and body.
pub async fn get_on(
    sender: &mut KeptAlive,
    host: &str,
    path: &str,
) -> Result<(u16, String), String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("GET {path}: connection: {e}"))?;
    let req = http::Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("GET {path}: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("GET {path} body: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
