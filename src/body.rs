//! The response body type: a short fixed body (error pages), the
//! application's STDOUT streamed through as records arrive, or any other
//! body boxed (a static file read from disk). STDERR that arrives mid-body
//! is logged, never sent.
//!
//! Below `server`, `static_files` and `compress`, which all build or wrap
//! it. Whoever needs to know what a body sent (the access log) watches it
//! through `BodyWatch`.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;

use crate::cgi::stderr::{log_stderr, StderrContext};
use crate::upstream::{Output, UpstreamResponse};

pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The most STDOUT, beyond the head's piece, that a response php-fpm has
/// already ended is sent with as one piece (`GatewayBody::upstream`); a
/// longer one streams as it would anyway, with no copy.
const WHOLE_BODY_MAX: usize = 64 * 1024;

/// Told how many bytes a response body sent, and whether it ended; it is
/// dropped when the body is (sent to the end, or abandoned).
pub trait BodyWatch: Send {
    fn sent(&mut self, bytes: usize);
    /// The body's last byte went out.
    fn completed(&mut self);
}

pub struct GatewayBody {
    kind: Kind,
    watch: Option<Box<dyn BodyWatch>>,
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
            watch: None,
        }
    }

    pub fn empty() -> Self {
        GatewayBody {
            kind: Kind::Full(None),
            watch: None,
        }
    }

    /// The application's STDOUT after the CGI head: `first`, then what `rx`
    /// brings. When php-fpm has already ended the response (most pages
    /// come in one read) and at most `WHOLE_BODY_MAX` more is queued, the
    /// body is known whole and goes with a Content-Length rather than
    /// chunked: shorter, cheaper, and an HTTP/1.0 client keeps its
    /// connection. Otherwise it streams as it arrives.
    pub fn upstream(first: Bytes, mut rx: UpstreamResponse, ctx: StderrContext) -> Self {
        if let Some(rest) = rx.take_ended(WHOLE_BODY_MAX.saturating_sub(first.len())) {
            return Self::whole(first, rest, &ctx);
        }
        GatewayBody {
            kind: Kind::Upstream {
                first: (!first.is_empty()).then_some(first),
                rx,
                ctx,
            },
            watch: None,
        }
    }

    /// `first` and the STDOUT in `rest` as one body; STDERR in `rest` is logged.
    fn whole(first: Bytes, rest: Vec<Output>, ctx: &StderrContext) -> Self {
        // Copied only when more STDOUT follows `first` (rarely: most pages
        // come in one read), at most `WHOLE_BODY_MAX` in all.
        let mut joined: Option<BytesMut> = None;
        for out in rest {
            match out {
                Output::Stdout(data) => joined
                    .get_or_insert_with(|| BytesMut::from(&first[..]))
                    .extend_from_slice(&data),
                Output::Stderr(data) => log_stderr(ctx, &data),
                // `take_ended` leaves no failure; timing comes before the head.
                Output::Timing(_) | Output::Failed(_) => {}
            }
        }
        let body = joined.map_or(first, BytesMut::freeze);
        if body.is_empty() {
            GatewayBody::empty()
        } else {
            GatewayBody::full(body)
        }
    }

    /// Any other body, e.g. a file streamed from disk.
    pub fn boxed<B>(body: B) -> Self
    where
        B: Body<Data = Bytes, Error = BodyError> + Send + 'static,
    {
        GatewayBody {
            kind: Kind::Boxed(UnsyncBoxBody::new(body)),
            watch: None,
        }
    }

    /// Reports what the body sends to `watch`, dropped with the body.
    pub fn watched(mut self, mut watch: Box<dyn BodyWatch>) -> Self {
        if self.is_end_stream() {
            watch.completed();
        }
        self.watch = Some(watch);
        self
    }

    fn count(&mut self, n: usize) {
        if let Some(watch) = self.watch.as_mut() {
            watch.sent(n);
        }
    }

    fn done(&mut self) {
        if let Some(watch) = self.watch.as_mut() {
            watch.completed();
        }
    }
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
