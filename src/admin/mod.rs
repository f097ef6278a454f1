//! The admin listener (`--admin-listen`): `/healthz`, `/readyz` and
//! `/metrics` on their own socket, never on the public listeners, so they
//! can stay private while the site is public. Everything else is 404.

mod ready;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::watch;

use crate::listen::{accept, Listener};
use crate::metrics::{self, Metrics};
use crate::upstream::Upstreams;

/// What the admin endpoints read.
#[derive(Debug)]
pub(crate) struct AdminState {
    pub metrics: Arc<Metrics>,
    pub upstreams: Upstreams,
    pub connect_timeout: Duration,
    /// php-fpm's `ping.path`, asked instead of a bare connect.
    pub ping_path: Option<String>,
}

/// Serves admin requests on `listener` until `stop` turns true. Each request
/// reads the state in force (a config reload may change the upstream).
pub(crate) async fn serve(
    listener: Listener,
    state: Arc<ArcSwap<AdminState>>,
    mut stop: watch::Receiver<bool>,
) {
    tracing::info!(admin = %listener.describe(), "admin endpoints: /healthz /readyz /metrics");
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            a = accept(&listener) => a,
            _ = stop.changed() => break,
        };
        let io = match accepted {
            Ok((io, _, _)) => io,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        let builder = builder.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.load_full();
                async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
            });
            let conn = builder.serve_connection(io, service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    // Our socket, our file: a later start would otherwise find it stale.
    if let Listener::Unix { path, .. } = &listener {
        let _ = std::fs::remove_file(path);
    }
}

async fn handle<B>(state: &AdminState, req: Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => readyz(state).await,
        "/metrics" => match state.metrics.encode() {
            Ok(body) => reply(StatusCode::OK, metrics::CONTENT_TYPE, body),
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n"),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn readyz(state: &AdminState) -> Response<Full<Bytes>> {
    let ping = state.ping_path.as_deref();
    match ready::check_any(&state.upstreams, ping, state.connect_timeout).await {
        Ok(()) => text(StatusCode::OK, "ready\n"),
        Err(reason) => {
            tracing::debug!(%reason, "readyz: not ready");
            text(StatusCode::SERVICE_UNAVAILABLE, &format!("{reason}\n"))
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", body.to_owned())
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}
