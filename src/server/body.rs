//! The response body type: a short fixed body (error pages), the
//! application's STDOUT streamed through as records arrive, or any other
//! body boxed (a static file read from disk). STDERR that arrives mid-body
//! is logged, never sent.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;

use super::access_log::AccessLog;
use crate::upstream::{Output, UpstreamResponse};

pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Which request STDERR lines belong to.
#[derive(Debug, Clone)]
pub struct StderrContext {
    pub request_id: u64,
    /// SCRIPT_NAME, moved here from the routed script once params are built.
    pub script: String,
    /// The SCRIPT_FILENAME we sent, for php-fpm's "Primary script unknown".
    pub script_filename: std::path::PathBuf,
}

pub struct GatewayBody {
    kind: Kind,
    log: Option<AccessLog>,
}

enum Kind {
    Full(Option<Bytes>),
    Upstream {
        first: Option<Bytes>,
        rx: UpstreamResponse,
        ctx: StderrContext,
    },
    /// Send but not Sync: a file body holds a tokio `File`, and hyper needs only Send.
    Boxed(UnsyncBoxBody<Bytes, BodyError>),
}

impl std::fmt::Debug for GatewayBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Full(_) => f.write_str("GatewayBody::Full"),
            Kind::Upstream { .. } => f.write_str("GatewayBody::Upstream"),
            Kind::Boxed(_) => f.write_str("GatewayBody::Boxed"),
        }
    }
}

impl GatewayBody {
    pub fn full(data: Bytes) -> Self {
        GatewayBody {
            kind: Kind::Full(Some(data)),
            log: None,
        }
    }

    pub fn empty() -> Self {
        GatewayBody {
            kind: Kind::Full(None),
            log: None,
        }
    }

    pub fn upstream(first: Bytes, rx: UpstreamResponse, ctx: StderrContext) -> Self {
        GatewayBody {
            kind: Kind::Upstream {
                first: (!first.is_empty()).then_some(first),
                rx,
                ctx,
            },
            log: None,
        }
    }

    /// Any other body, e.g. a file streamed from disk.
    pub fn boxed<B>(body: B) -> Self
    where
        B: Body<Data = Bytes, Error = BodyError> + Send + 'static,
    {
        GatewayBody {
            kind: Kind::Boxed(UnsyncBoxBody::new(body)),
            log: None,
        }
    }

    /// Attaches the access-log record, finished when the body ends or drops.
    pub fn with_log(mut self, mut log: AccessLog, status: u16) -> Self {
        log.status = status;
        if self.is_end_stream() {
            log.completed = true;
        }
        self.log = Some(log);
        self
    }

    fn count(&mut self, n: usize) {
        if let Some(log) = self.log.as_mut() {
            log.bytes += n as u64;
        }
    }

    fn done(&mut self) {
        if let Some(log) = self.log.as_mut() {
            log.completed = true;
        }
    }
}

pub fn log_stderr(ctx: &StderrContext, data: &[u8]) {
    for line in String::from_utf8_lossy(data).lines() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(e) = super::php_stderr::parse(line) {
            tracing::warn!(
                request_id = ctx.request_id,
                script = %ctx.script,
                php_level = e.level,
                php_file = e.file,
                php_line = e.line,
                "php {}: {}",
                e.level,
                e.message
            );
        } else {
            tracing::warn!(request_id = ctx.request_id, script = %ctx.script, "php stderr: {line}");
            if names_missing_script(line) {
                // Usually php-fpm runs elsewhere (a container) with the app
                // mounted at another path than ours.
                tracing::warn!(
                    request_id = ctx.request_id,
                    script_filename = %ctx.script_filename.display(),
                    "php-fpm cannot find the script we sent as SCRIPT_FILENAME={}: that path \
                     must exist where php-fpm runs (in a container, mount the app at the \
                     same path in both containers)",
                    ctx.script_filename.display()
                );
            }
        }
    }
}

/// php-fpm's words for "SCRIPT_FILENAME does not exist here".
fn names_missing_script(line: &str) -> bool {
    line.contains("Primary script unknown") || line.contains("File not found.")
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Full(data) => Ok(data.take()),
            Kind::Boxed(body) => match std::task::ready!(Pin::new(body).poll_frame(cx)) {
                // Only data frames reach here: our boxed bodies send no trailers.
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => Ok(Some(data)),
                    Err(_) => Ok(None),
                },
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "response body failed mid-stream; aborting the response");
                    return Poll::Ready(Some(Err(e)));
                }
                None => Ok(None),
            },
            Kind::Upstream { first, rx, ctx } => {
                if let Some(data) = first.take() {
                    Ok(Some(data))
                } else {
                    loop {
                        match rx.poll_recv(cx) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(None) => break Ok(None),
                            Poll::Ready(Some(Output::Stdout(data))) => {
                                if !data.is_empty() {
                                    break Ok(Some(data));
                                }
                            }
                            Poll::Ready(Some(Output::Stderr(data))) => log_stderr(ctx, &data),
                            // Only ever sent before the head, which is read elsewhere.
                            Poll::Ready(Some(Output::Timing(_))) => {}
                            Poll::Ready(Some(Output::Failed(e))) => {
                                tracing::error!(request_id = ctx.request_id, script = %ctx.script, error = %e, "upstream failed mid-response; aborting the response");
                                break Err(e);
                            }
                        }
                    }
                }
            }
        };
        match polled {
            Ok(Some(data)) => {
                this.count(data.len());
                // hyper may stop polling once the body says it has ended,
                // so the log learns completion from the frame that ends it.
                if this.is_end_stream() {
                    this.done();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Ok(None) => {
                this.done();
                Poll::Ready(None)
            }
            Err(e) => Poll::Ready(Some(Err(Box::new(e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(data) => data.is_none(),
            Kind::Upstream { .. } => false,
            Kind::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Upstream { .. } => SizeHint::default(),
            Kind::Boxed(body) => body.size_hint(),
        }
    }
}
