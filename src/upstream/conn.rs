//! One FastCGI connection to the upstream: dialing `unix:`/`tcp:` with a
//! connect timeout, and driving one request/response exchange over it.
//! This is the only place that does upstream socket I/O.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_util::either::Either;

use super::body::RequestBody;
use super::output::{Output, OutputSink};
use super::pipeline::{Handoff, MAX_BEHIND};
use super::pool::{Lease, LeaseGuard};
use super::request::REQUEST_ID;
use super::{ClientError, Timing, UpstreamAddr, UpstreamError};
use crate::fastcgi::{self, DecodeError, Event, ProtocolStatus, RecordType, ResponseDecoder};

/// How many response bytes we read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// A connected stream to the upstream.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// An in-process peer (`connect::Connect` implementations other than
    /// sockets: the pool's tests drive it against an in-memory php-fpm).
    Memory(tokio::io::DuplexStream),
}

/// A number for the calling thread, unique in the process: tells whose
/// event loop a socket was registered with.
fn this_thread() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static TAG: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    TAG.with(|tag| *tag)
}

/// A FastCGI connection plus what the pool needs to know about it.
#[derive(Debug)]
pub struct Conn {
    pub(crate) stream: Stream,
    /// The thread whose event loop the socket is registered with
    /// (`this_thread`).
    home: usize,
    /// How many exchanges completed on it; 0 = fresh.
    pub(crate) uses: u64,
    pub(crate) idle_since: Instant,
    /// Response bytes read but not yet decoded. Kept with the connection:
    /// after one response ends, what follows belongs to the request sent
    /// ahead (`pipeline`).
    read_buf: BytesMut,
    /// php-fpm's last output is not ACKed and a request sent ahead will
    /// answer on this connection: ACK before waiting for that answer
    /// (`rearm_quickack`), unless a write of ours carries the ACK first.
    ack_owed: bool,
    /// The read deadline's timer, kept from one exchange to the next: set
    /// to a later deadline it only stores the new time, where a timer per
    /// exchange went into the runtime's timer wheel and out again. Belongs
    /// to the event loop of `home`.
    read_timer: Option<Pin<Box<Sleep>>>,
}

impl Conn {
    pub fn is_reused(&self) -> bool {
        self.uses > 0
    }

    /// Moves the connection to the calling thread's event loop (it is
    /// registered with the one of the thread that opened it): taken from
    /// another serving thread's idle list, it would otherwise be woken by
    /// that thread's loop on every read.
    pub(crate) fn rehome(self) -> io::Result<Conn> {
        let stream = match self.stream {
            Stream::Tcp(s) => Stream::Tcp(TcpStream::from_std(s.into_std()?)?),
            Stream::Unix(s) => Stream::Unix(UnixStream::from_std(s.into_std()?)?),
            // Not tied to an event loop.
            Stream::Memory(s) => Stream::Memory(s),
        };
        Ok(Conn {
            stream,
            home: this_thread(),
            // Its timer belongs to the other thread's runtime.
            read_timer: None,
            ..self
        })
    }

    /// Whether the socket is registered with the calling thread's event
    /// loop. Not so for one dialled by the control thread (php-fpm's status
    /// page) and left idle in a serving thread's part of the pool.
    pub(crate) fn is_home(&self) -> bool {
        self.home == this_thread() || matches!(self.stream, Stream::Memory(_))
    }

    /// True when the peer closed (EOF), reset, or sent unexpected bytes while
    /// the connection sat idle. A non-blocking peek: one syscall, no waiting.
    pub fn is_stale(&mut self) -> bool {
        let mut probe = [0u8; 1];
        let res = match &mut self.stream {
            Stream::Tcp(s) => s.try_read(&mut probe),
            Stream::Unix(s) => s.try_read(&mut probe),
            Stream::Memory(s) => {
                // The same look without a socket: poll once, never wait.
                use tokio::io::AsyncRead;
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                let mut buf = tokio::io::ReadBuf::new(&mut probe);
                match std::pin::Pin::new(s).poll_read(&mut cx, &mut buf) {
                    std::task::Poll::Ready(Ok(())) => Ok(buf.filled().len()),
                    std::task::Poll::Ready(Err(e)) => Err(e),
                    std::task::Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        };
        match res {
            // Readable with no request outstanding: EOF (0) or stray bytes.
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(_) => true,
        }
    }
}

/// Opens a stream to `addr` (no timeout).
pub(crate) async fn open(addr: &UpstreamAddr) -> io::Result<Stream> {
    match addr {
        UpstreamAddr::Unix(path) => UnixStream::connect(path).await.map(Stream::Unix),
        UpstreamAddr::Tcp { host, port } => {
            let s = TcpStream::connect((host.as_str(), *port)).await?;
            // Our request head is one coalesced write; never hold it back.
            s.set_nodelay(true)?;
            Ok(Stream::Tcp(s))
        }
    }
}

/// Opens a new connection within `timeout`.
pub async fn dial(addr: &UpstreamAddr, timeout: Duration) -> Result<Conn, UpstreamError> {
    dial_with(open(addr), addr, timeout).await
}

/// Opens a new connection through `connecting` within `timeout`; errors name `addr`.
pub(crate) async fn dial_with(
    connecting: impl std::future::Future<Output = io::Result<Stream>>,
    addr: &UpstreamAddr,
    timeout: Duration,
) -> Result<Conn, UpstreamError> {
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(stream)) => Ok(Conn {
            stream,
            home: this_thread(),
            uses: 0,
            idle_since: Instant::now(),
            read_buf: BytesMut::new(),
            ack_owed: false,
            read_timer: None,
        }),
        Ok(Err(source)) => Err(UpstreamError::Connect {
            addr: addr.to_string(),
            source,
        }),
        Err(_) => Err(UpstreamError::ConnectTimeout {
            addr: addr.to_string(),
            after: timeout,
        }),
    }
}

/// How an exchange ended, for the pool.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// END_REQUEST seen and the whole request was sent: the connection may be reused.
    Reusable,
    /// Anything else: close it.
    Close,
}

/// Why an exchange stopped before END_REQUEST, with whether any response byte
/// had arrived (a failure before the first byte on a reused connection is safe to retry).
#[derive(Debug)]
pub struct ExchangeFailure {
    pub error: UpstreamError,
    pub got_response_bytes: bool,
    /// The request body was (partly) consumed and cannot be sent again.
    pub body_consumed: bool,
}

/// Timeouts that apply to one exchange.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeTimeouts {
    /// No data from the upstream for this long → 504 (counts from the end of the request body).
    pub read: Duration,
}

/// Sends one request (`head` = BEGIN_REQUEST + PARAMS [+ a small whole STDIN]
/// already encoded; `body` = the rest of STDIN, if any) and forwards the
/// response to `out` as it arrives. Returns when END_REQUEST was read, the
/// receiver went away (client gone), or something failed.
pub async fn exchange(
    conn: &mut Conn,
    head: &[u8],
    body: &mut RequestBody,
    out: &OutputSink,
    timeouts: ExchangeTimeouts,
) -> Result<Outcome, ExchangeFailure> {
    exchange_with(conn, None, Some(head), body, out, timeouts, None).await
}

/// Where an exchange notes its time to the first STDOUT record, and whether
/// it tells the reader (`Output::Timing`) before passing that record on.
#[derive(Debug)]
pub(crate) struct Clock<'a> {
    pub timing: &'a mut Timing,
    pub report: bool,
}

/// `exchange` on a pooled connection, telling the pool when the request went
/// out and when the first byte came back (the backlog signal). A request
/// that was sent ahead (`pipeline`) only reads its response.
pub(crate) async fn exchange_leased(
    lease: &mut Lease,
    head: &[u8],
    body: &mut RequestBody,
    out: &OutputSink,
    timeouts: ExchangeTimeouts,
    clock: Clock<'_>,
) -> Result<Outcome, ExchangeFailure> {
    let head = (!lease.was_sent_ahead()).then_some(head);
    lease.request_sent();
    let Some((conn, guard)) = lease.parts() else {
        return Err(ExchangeFailure {
            error: UpstreamError::Closed,
            got_response_bytes: false,
            body_consumed: false,
        });
    };
    let outcome = exchange_with(
        conn,
        Some(&mut *guard),
        head,
        body,
        out,
        timeouts,
        Some(clock),
    )
    .await?;
    if outcome == Outcome::Reusable && guard.has_successor() {
        // php-fpm runs the request sent ahead now, so a place behind it is
        // free: refill here (if few enough wait, `places_to_fill`) rather
        // than after the hand-over.
        let (_, mut writer) = split(&mut conn.stream);
        // php-fpm answers the request sent ahead with no write of ours to
        // carry the ACK of this response, and its Nagle would hold that
        // answer until our delayed ACK (20-40 ms). A request written here
        // carries the ACK (under load about every other response, as
        // requests go out two or more to a write); else the request behind
        // ACKs before it waits for its answer. Not now: its answer often
        // came in the same read as this one (it then owes the ACK on in
        // turn), and then nothing waits for that ACK.
        conn.ack_owed = !send_ahead(guard, &mut writer, true).await;
    }
    Ok(outcome)
}

async fn exchange_with(
    conn: &mut Conn,
    mut first_byte: Option<&mut LeaseGuard>,
    head: Option<&[u8]>,
    body: &mut RequestBody,
    out: &OutputSink,
    timeouts: ExchangeTimeouts,
    mut clock: Option<Clock<'_>>,
) -> Result<Outcome, ExchangeFailure> {
    let sent_at = Instant::now();
    let reused = conn.is_reused();
    // A request of ours written below carries the ACK.
    let mut ack_owed = std::mem::take(&mut conn.ack_owed) && head.is_none();
    let buf = &mut conn.read_buf;
    let (mut reader, mut writer) = split(&mut conn.stream);
    let fail = |error, got, consumed| ExchangeFailure {
        error,
        got_response_bytes: got,
        body_consumed: consumed,
    };

    if let Some(head) = head {
        if let Err(e) = writer.write_all(head).await {
            return Err(fail(UpstreamError::Write(e), false, false));
        }
    }

    let mut body_done = body.is_empty();
    // php-fpm has this whole request: the next may queue up behind it on a
    // live worker's connection.
    if body_done && reused {
        if let Some(guard) = first_byte.as_deref_mut() {
            if send_ahead(guard, &mut writer, false).await {
                ack_owed = false;
            }
        }
    }
    let mut body_consumed = false;
    let mut body_fut = std::pin::pin!(async {
        if body.is_empty() {
            return Ok(());
        }
        send_body(&mut writer, body).await
    });

    let mut decoder = ResponseDecoder::new(REQUEST_ID);
    let mut got_bytes = false;
    let mut just_read = false;
    let mut read_timer = arm(&mut conn.read_timer, Instant::now() + timeouts.read);
    // When the bytes being decoded were read: the times below are taken
    // from it rather than from a clock read of their own each.
    let mut read_at = sent_at;
    loop {
        // Decode everything already buffered before reading again.
        loop {
            match decoder.decode(buf) {
                Ok(Some(Event::Stdout(data))) => {
                    // Taken once: after the first STDOUT the clock is gone.
                    if let Some(Clock { timing, report }) = clock.take() {
                        timing.first_byte = Some(read_at.saturating_duration_since(sent_at));
                        if report && out.send(Output::Timing(*timing)).await.is_err() {
                            return Err(fail(
                                UpstreamError::Client(ClientError::Gone),
                                true,
                                body_consumed,
                            ));
                        }
                    }
                    if out.send(Output::Stdout(data)).await.is_err() {
                        return Err(fail(
                            UpstreamError::Client(ClientError::Gone),
                            true,
                            body_consumed,
                        ));
                    }
                }
                Ok(Some(Event::Stderr(data))) => {
                    if out.send(Output::Stderr(data)).await.is_err() {
                        return Err(fail(
                            UpstreamError::Client(ClientError::Gone),
                            true,
                            body_consumed,
                        ));
                    }
                }
                Ok(Some(Event::EndRequest {
                    protocol_status, ..
                })) => {
                    return match protocol_status {
                        ProtocolStatus::RequestComplete => {
                            if let Some(guard) = first_byte.as_deref() {
                                guard.response_ended_after(
                                    read_at.saturating_duration_since(sent_at),
                                    !reused,
                                );
                            }
                            // Unsent STDIN or trailing bytes would corrupt the
                            // next exchange, unless they are the response to
                            // the request sent ahead.
                            // (With one behind, `exchange_leased` sees
                            // that this response is ACKed before the
                            // next is waited for: `Conn::ack_owed`.)
                            let requests_behind =
                                first_byte.as_ref().is_some_and(|g| g.has_successor());
                            if body_done && (buf.is_empty() || requests_behind) {
                                Ok(Outcome::Reusable)
                            } else {
                                Ok(Outcome::Close)
                            }
                        }
                        other => Err(fail(
                            UpstreamError::Refused(other),
                            got_bytes,
                            body_consumed,
                        )),
                    };
                }
                Ok(Some(Event::GetValuesResult(_) | Event::UnknownType(_))) => {}
                Ok(None) => break,
                Err(e) => return Err(fail(UpstreamError::Protocol(e), got_bytes, body_consumed)),
            }
        }
        // More of the response is to come: ACK it at once. Not before: a
        // response that came whole (most) would pay a syscall for nothing.
        if std::mem::take(&mut just_read) | std::mem::take(&mut ack_owed) {
            rearm_quickack(&reader);
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_CHUNK);
        }
        let stuck_check = match (&first_byte, got_bytes) {
            (Some(guard), false) => guard.stuck_check_at(),
            _ => None,
        };
        tokio::select! {
            biased;
            _ = sleep_if_some(stuck_check), if stuck_check.is_some() => {
                if let Some(guard) = first_byte.as_deref_mut() {
                    guard.free_a_worker();
                }
                continue;
            }
            res = &mut body_fut, if !body_done => {
                body_done = true;
                body_consumed = true;
                if let Err(e) = res {
                    return Err(fail(e, got_bytes, true));
                }
                // The read timeout counts from the moment php-fpm has the whole request.
                read_timer.as_mut().reset(Instant::now() + timeouts.read);
            }
            res = reader.read_buf(buf) => {
                match res {
                    Ok(0) => {
                        let error = match decoder.finish(buf) {
                            Err(DecodeError::Truncated) | Ok(()) => UpstreamError::Closed,
                            Err(e) => UpstreamError::Protocol(e),
                        };
                        return Err(fail(error, got_bytes, body_consumed || !body_done));
                    }
                    Ok(_) => {
                        just_read = true;
                        read_at = Instant::now();
                        if !got_bytes {
                            if let Some(guard) = first_byte.as_deref_mut() {
                                guard.first_byte_after(read_at.saturating_duration_since(sent_at));
                            }
                        }
                        got_bytes = true;
                        read_timer.as_mut().reset(read_at + timeouts.read);
                    }
                    Err(e) => {
                        return Err(fail(UpstreamError::Read(e), got_bytes, body_consumed || !body_done));
                    }
                }
            }
            // The client went away: close now so the worker sees the abort and
            // the slot frees at once, not at the script's next output.
            _ = out.closed() => {
                return Err(fail(UpstreamError::Client(ClientError::Gone), got_bytes, true));
            }
            _ = read_timer.as_mut(), if body_done => {
                let error = if got_bytes {
                    UpstreamError::ReadTimeout { after: timeouts.read }
                } else {
                    UpstreamError::HeadTimeout { after: timeouts.read }
                };
                return Err(fail(error, got_bytes, body_consumed));
            }
        }
    }
}

/// The connection's read timer, set to `at`.
fn arm(slot: &mut Option<Pin<Box<Sleep>>>, at: Instant) -> Pin<&mut Sleep> {
    match slot {
        Some(timer) => {
            timer.as_mut().reset(at);
            timer.as_mut()
        }
        None => slot.insert(Box::pin(tokio::time::sleep_until(at))).as_mut(),
    }
}

/// Sleeps until `at`; never resolves without one. (`select!` builds a
/// disabled branch's future too: this one costs nothing until polled.)
async fn sleep_if_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Writes the oldest requests waiting to be sent ahead, as many as the pool
/// allows now, in one write, and tells the lease they are behind the
/// current one (`ended`: the lease's own response is over, so its first
/// successor is the one running). Whether any was written.
async fn send_ahead(guard: &mut LeaseGuard, writer: &mut WriteHalf<'_>, ended: bool) -> bool {
    let places = guard.places_to_fill(ended).min(MAX_BEHIND);
    if places == 0 {
        return false;
    }
    let Some(first) = guard.claim_successor() else {
        return false;
    };
    // Usually one request goes ahead: the others, when there are, in a list
    // allocated only then. (Arrays of MAX_BEHIND places, held across the
    // write, made every exchange's future ~0.9 KB larger.)
    let mut rest = Vec::new();
    while 1 + rest.len() < places {
        let Some(next) = guard.claim_successor() else {
            break;
        };
        rest.push(next);
    }
    let heads = || std::iter::once(&first).chain(&rest).map(|(head, _)| head);
    let written = if rest.is_empty() {
        write_all_vectored(writer, &mut [IoSlice::new(&first.0)]).await
    } else {
        let mut slices: Vec<IoSlice<'_>> = heads().map(|head| IoSlice::new(head)).collect();
        write_all_vectored(writer, &mut slices).await
    };
    if written.is_ok() {
        guard.wrote_ahead();
    }
    let (Ok(sent) | Err(sent)) = written;
    let whole = heads_sent_whole(heads().map(|head| head.len()), sent);
    for (index, (_, successor)) in std::iter::once(first).chain(rest).enumerate() {
        if index < whole {
            // On the connection whole: php-fpm may run it, and the lease
            // answers for it from now on (even if the connection broke
            // right after: see `Lease`'s drop).
            guard.set_successor(successor);
        } else {
            // The connection broke before all of it went: php-fpm cannot
            // run a request it did not get whole, and the exchange ahead
            // fails on the same socket.
            let _ = successor.send(Handoff::NotSent);
        }
    }
    whole > 0
}

/// How many of the requests written in a row, of these `lengths`, went out
/// whole in the first `sent` bytes.
fn heads_sent_whole(lengths: impl Iterator<Item = usize>, mut sent: usize) -> usize {
    let mut whole = 0;
    for length in lengths {
        if sent < length {
            break;
        }
        sent -= length;
        whole += 1;
    }
    whole
}

/// Writes every byte of `slices`, in one `writev` when the socket takes
/// them all (a socket that writes one slice at a time gets several). The
/// bytes written: all of them, or as many as went before a write failed.
async fn write_all_vectored(
    writer: &mut WriteHalf<'_>,
    mut slices: &mut [IoSlice<'_>],
) -> Result<usize, usize> {
    let mut sent = 0;
    while !slices.is_empty() {
        match writer.write_vectored(slices).await {
            Ok(0) | Err(_) => return Err(sent),
            Ok(n) => {
                sent += n;
                IoSlice::advance_slices(&mut slices, n);
            }
        }
    }
    Ok(sent)
}

/// Why `read_away` could not finish a response.
#[derive(Debug)]
pub(crate) enum ReadAwayFailure {
    /// php-fpm closed or reset the connection before END_REQUEST.
    Dead,
    /// Anything else (timeout, malformed records): php-fpm may still run.
    Other(UpstreamError),
}

/// Reads the current response to its END_REQUEST and drops it, leaving
/// what follows (the next response) in the connection's buffer.
pub(crate) async fn read_away(conn: &mut Conn, timeout: Duration) -> Result<(), ReadAwayFailure> {
    let mut decoder = ResponseDecoder::new(REQUEST_ID);
    let ack_owed = &mut conn.ack_owed;
    let buf = &mut conn.read_buf;
    let (mut reader, _) = split(&mut conn.stream);
    loop {
        loop {
            match decoder.decode(buf) {
                // An ACK still owed passes to the request behind.
                Ok(Some(Event::EndRequest { .. })) => return Ok(()),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(ReadAwayFailure::Other(UpstreamError::Protocol(e))),
            }
        }
        if std::mem::take(ack_owed) {
            rearm_quickack(&reader);
        }
        buf.reserve(READ_CHUNK);
        match tokio::time::timeout(timeout, reader.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(ReadAwayFailure::Dead),
            // More is to come: ACK it at once, as `exchange_with` does.
            Ok(Ok(_)) => rearm_quickack(&reader),
            Err(_) => {
                return Err(ReadAwayFailure::Other(UpstreamError::ReadTimeout {
                    after: timeout,
                }))
            }
        }
    }
}

/// Streams the request body as STDIN records, then the empty terminator.
async fn send_body<W: AsyncWrite + Unpin>(
    writer: &mut W,
    body: &mut RequestBody,
) -> Result<(), UpstreamError> {
    while let Some(chunk) = body.next_chunk().await? {
        // Records carry at most 65535 bytes; split big chunks without copying them.
        for piece in chunk.chunks(fastcgi::record::MAX_CONTENT_LEN) {
            let (header, padding) =
                fastcgi::stream_record_header(RecordType::Stdin, REQUEST_ID, piece.len() as u16);
            // Header, data and padding go out together (tokio writes a
            // chain of buffers with writev): one syscall per record.
            let mut record =
                Buf::chain(Buf::chain(&header[..], piece), &fastcgi::PADDING[..padding]);
            writer
                .write_all_buf(&mut record)
                .await
                .map_err(UpstreamError::Write)?;
        }
    }
    let mut end = BytesMut::with_capacity(fastcgi::record::HEADER_LEN);
    fastcgi::encode_stream_end(&mut end, RecordType::Stdin, REQUEST_ID);
    writer.write_all(&end).await.map_err(UpstreamError::Write)?;
    Ok(())
}

// --- borrowed read/write halves over either stream kind ---

type SocketRead<'a> = Either<tokio::net::tcp::ReadHalf<'a>, tokio::net::unix::ReadHalf<'a>>;
type SocketWrite<'a> = Either<tokio::net::tcp::WriteHalf<'a>, tokio::net::unix::WriteHalf<'a>>;
type ReadHalf<'a> = Either<SocketRead<'a>, tokio::io::ReadHalf<&'a mut tokio::io::DuplexStream>>;
type WriteHalf<'a> = Either<SocketWrite<'a>, tokio::io::WriteHalf<&'a mut tokio::io::DuplexStream>>;

/// php-fpm writes without TCP_NODELAY: while a piece of its output is not
/// ACKed, its Nagle holds the next small one (the rest of a big response,
/// or the answer to a request sent ahead) until our delayed ACK, ~40 ms.
/// Setting QUICKACK sends the pending ACK now; Linux leaves quick-ACK mode
/// again once we write, so it is set whenever more is due and no write of
/// ours is about to carry the ACK.
fn rearm_quickack(reader: &ReadHalf<'_>) {
    if let Either::Left(Either::Left(r)) = reader {
        let tcp: &TcpStream = r.as_ref();
        let _ = socket2::SockRef::from(tcp).set_tcp_quickack(true);
    }
}

fn split(stream: &mut Stream) -> (ReadHalf<'_>, WriteHalf<'_>) {
    match stream {
        Stream::Tcp(s) => {
            let (r, w) = s.split();
            (Either::Left(Either::Left(r)), Either::Left(Either::Left(w)))
        }
        Stream::Unix(s) => {
            let (r, w) = s.split();
            (
                Either::Left(Either::Right(r)),
                Either::Left(Either::Right(w)),
            )
        }
        Stream::Memory(s) => {
            let (r, w) = tokio::io::split(s);
            (Either::Right(r), Either::Right(w))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_written_whole_count_as_sent_ahead() {
        let lengths = || [500, 300, 700].into_iter();
        assert_eq!(heads_sent_whole(lengths(), 1500), 3);
        assert_eq!(heads_sent_whole(lengths(), 1499), 2);
        assert_eq!(heads_sent_whole(lengths(), 800), 2);
        assert_eq!(heads_sent_whole(lengths(), 799), 1);
        assert_eq!(heads_sent_whole(lengths(), 499), 0);
        assert_eq!(heads_sent_whole(lengths(), 0), 0);
    }

    /// A connection opened on one thread is not at home on another until
    /// moved there (the control thread's status reads leave connections in
    /// serving thread 0's part of the pool).
    #[test]
    fn a_connection_knows_whose_event_loop_it_is_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fpm.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let addr = UpstreamAddr::Unix(path);
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let dial_addr = addr.clone();
        // The other thread's runtime stays alive while its socket is used.
        let (_other, conn) = std::thread::spawn(move || {
            let other = runtime();
            let conn = other.block_on(dial(&dial_addr, Duration::from_secs(5)));
            let conn = conn.unwrap();
            assert!(conn.is_home());
            (other, conn)
        })
        .join()
        .unwrap();
        runtime().block_on(async move {
            assert!(!conn.is_home());
            let conn = conn.rehome().unwrap();
            assert!(conn.is_home());
        });
    }
}
