//! Incremental record decoders: bytes in, events out.
//!
//! Both decoders take whole records off the front of a `BytesMut` and leave
//! a partial record in place until more bytes arrive. Header problems are
//! reported as soon as the 8 header bytes are in, without waiting for the
//! body. After an error the connection is unusable; the caller should drop it.

use bytes::{Buf, Bytes, BytesMut};

use super::nvpair::decode_pairs_shared;
use super::record::{
    ProtocolStatus, RecordHeader, RecordType, FLAG_KEEP_CONN, HEADER_LEN, VERSION_1,
};

/// Everything that can be wrong with bytes from the peer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("upstream sent FastCGI version {0}, expected 1")]
    BadVersion(u8),
    /// A record for another request. `expected` is 0 where only management
    /// records (or no request) are acceptable.
    #[error("upstream sent a record for FastCGI request id {got}, expected {expected}")]
    ForeignRequestId { expected: u16, got: u16 },
    #[error("upstream sent unknown FastCGI record type {0}")]
    UnknownRecordType(u8),
    /// A known record type that is not valid here: one the peer's side never
    /// sends (e.g. BEGIN_REQUEST from a server), one out of order, or a
    /// fixed-layout body (UNKNOWN_TYPE, BEGIN_REQUEST) that is too short.
    #[error("upstream sent a FastCGI record of type {0} that is not valid here")]
    UnexpectedRecordType(u8),
    #[error("upstream sent a FastCGI END_REQUEST body shorter than 8 bytes")]
    BadEndRequest,
    #[error("upstream sent a malformed FastCGI name-value pair")]
    BadNameValue,
    #[error("upstream closed the FastCGI connection before END_REQUEST")]
    Truncated,
}

/// What a server sent, as seen by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A non-empty STDOUT chunk (zero-copy slice of the input).
    Stdout(Bytes),
    /// A non-empty STDERR chunk.
    Stderr(Bytes),
    EndRequest {
        app_status: u32,
        protocol_status: ProtocolStatus,
    },
    /// Reply to GET_VALUES.
    GetValuesResult(Vec<(Bytes, Bytes)>),
    /// The server's FCGI_UNKNOWN_TYPE reply: it did not understand a
    /// management record of this type.
    UnknownType(u8),
}

/// Checks the header at the front of `buf`, if all 8 bytes are there.
fn peek_header(buf: &BytesMut) -> Result<Option<RecordHeader>, DecodeError> {
    let Some(bytes) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut raw = [0u8; HEADER_LEN];
    raw.copy_from_slice(bytes);
    let header = RecordHeader::parse(&raw);
    if header.version != VERSION_1 {
        return Err(DecodeError::BadVersion(header.version));
    }
    Ok(Some(header))
}

/// Removes the whole record from `buf` and returns its content, or `None`
/// if it has not fully arrived yet. Padding is consumed and dropped.
fn take_record(buf: &mut BytesMut, header: &RecordHeader) -> Option<Bytes> {
    if buf.len() < header.record_len() {
        return None;
    }
    let content_len = usize::from(header.content_length);
    buf.advance(HEADER_LEN);
    let content = buf.split_to(content_len).freeze();
    buf.advance(usize::from(header.padding_length));
    Some(content)
}

fn known_type(header: &RecordHeader) -> Result<RecordType, DecodeError> {
    RecordType::from_u8(header.record_type)
        .ok_or(DecodeError::UnknownRecordType(header.record_type))
}

fn expect_id(header: &RecordHeader, expected: u16) -> Result<(), DecodeError> {
    if header.request_id == expected {
        Ok(())
    } else {
        Err(DecodeError::ForeignRequestId {
            expected,
            got: header.request_id,
        })
    }
}

/// Client-side decoder for the responses to one request.
#[derive(Debug, Clone)]
pub struct ResponseDecoder {
    request_id: u16,
    done: bool,
}

impl ResponseDecoder {
    pub fn new(request_id: u16) -> Self {
        ResponseDecoder {
            request_id,
            done: false,
        }
    }

    /// Decodes the next event from the front of `buf`, consuming exactly the
    /// records it used. `Ok(None)` means more bytes are needed, or that
    /// END_REQUEST has already been returned (then nothing is consumed).
    /// Empty STDOUT/STDERR records are stream terminators and are skipped.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, DecodeError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let Some(header) = peek_header(buf)? else {
                return Ok(None);
            };
            let record_type = self.check(&header)?;
            let Some(content) = take_record(buf, &header) else {
                return Ok(None);
            };
            let event = match record_type {
                RecordType::Stdout if content.is_empty() => continue,
                RecordType::Stderr if content.is_empty() => continue,
                RecordType::Stdout => Event::Stdout(content),
                RecordType::Stderr => Event::Stderr(content),
                RecordType::EndRequest => {
                    let [a, b, c, d, status, ..] = content[..] else {
                        return Err(DecodeError::BadEndRequest);
                    };
                    self.done = true;
                    Event::EndRequest {
                        app_status: u32::from_be_bytes([a, b, c, d]),
                        protocol_status: ProtocolStatus::from_u8(status),
                    }
                }
                RecordType::GetValuesResult => {
                    Event::GetValuesResult(decode_pairs_shared(&content)?)
                }
                RecordType::UnknownType => match content.first() {
                    Some(&unknown) => Event::UnknownType(unknown),
                    None => return Err(DecodeError::UnexpectedRecordType(header.record_type)),
                },
                _ => return Err(DecodeError::UnexpectedRecordType(header.record_type)),
            };
            return Ok(Some(event));
        }
    }

    /// Validates a header before its body arrives.
    fn check(&self, header: &RecordHeader) -> Result<RecordType, DecodeError> {
        let record_type = known_type(header)?;
        match record_type {
            RecordType::Stdout | RecordType::Stderr => expect_id(header, self.request_id)?,
            RecordType::EndRequest => {
                expect_id(header, self.request_id)?;
                if header.content_length < 8 {
                    return Err(DecodeError::BadEndRequest);
                }
            }
            // Management records always travel on request id 0.
            RecordType::GetValuesResult => expect_id(header, 0)?,
            RecordType::UnknownType => {
                expect_id(header, 0)?;
                if header.content_length < 8 {
                    return Err(DecodeError::UnexpectedRecordType(header.record_type));
                }
            }
            _ => return Err(DecodeError::UnexpectedRecordType(header.record_type)),
        }
        Ok(record_type)
    }

    /// True once END_REQUEST has been returned.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Call at EOF. Ok only if END_REQUEST was seen; otherwise the response
    /// was cut short, whether or not a partial record is left over in
    /// `_remaining` (taken so the call site reads naturally at EOF).
    pub fn finish(&self, _remaining: &BytesMut) -> Result<(), DecodeError> {
        if self.done {
            Ok(())
        } else {
            Err(DecodeError::Truncated)
        }
    }
}

/// What a client sent, as seen by the server (fake servers, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestEvent {
    /// BEGIN_REQUEST. `role` is the raw wire value so a server can answer
    /// an unknown role with UNKNOWN_ROLE; see [`super::Role::from_u16`].
    Begin {
        request_id: u16,
        role: u16,
        keep_conn: bool,
    },
    /// The whole PARAMS stream, emitted once at its terminator.
    Params(Vec<(Bytes, Bytes)>),
    /// A non-empty STDIN chunk.
    Stdin(Bytes),
    /// The empty STDIN record ending the request body.
    StdinEnd,
    Abort {
        request_id: u16,
    },
    /// GET_VALUES: the names asked for.
    GetValues(Vec<Bytes>),
}

/// Where the current request is. One request at a time: a FastCGI client
/// may multiplex, but this gateway never does, so it is treated as an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request yet, or the last one was aborted.
    Idle,
    Params(u16),
    Stdin(u16),
    /// STDIN ended; the server is responding. ABORT_REQUEST may still come,
    /// and with keep-conn the next BEGIN_REQUEST.
    Received(u16),
}

impl Phase {
    fn request_id(self) -> Option<u16> {
        match self {
            Phase::Idle => None,
            Phase::Params(id) | Phase::Stdin(id) | Phase::Received(id) => Some(id),
        }
    }
}

/// Server-side decoder: BEGIN_REQUEST, PARAMS, STDIN in that order, plus
/// ABORT_REQUEST and GET_VALUES. DATA (the Filter role) is not supported.
#[derive(Debug, Clone)]
pub struct RequestDecoder {
    phase: Phase,
    params: BytesMut,
}

impl Default for RequestDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestDecoder {
    pub fn new() -> Self {
        RequestDecoder {
            phase: Phase::Idle,
            params: BytesMut::new(),
        }
    }

    /// Decodes the next event from the front of `buf`; `Ok(None)` means
    /// more bytes are needed. Non-empty PARAMS records are buffered until
    /// the terminator.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RequestEvent>, DecodeError> {
        loop {
            let Some(header) = peek_header(buf)? else {
                return Ok(None);
            };
            let record_type = self.check(&header)?;
            let Some(content) = take_record(buf, &header) else {
                return Ok(None);
            };
            let id = header.request_id;
            let event = match record_type {
                RecordType::BeginRequest => {
                    let [role_hi, role_lo, flags, ..] = content[..] else {
                        return Err(DecodeError::UnexpectedRecordType(header.record_type));
                    };
                    self.phase = Phase::Params(id);
                    self.params.clear();
                    RequestEvent::Begin {
                        request_id: id,
                        role: u16::from_be_bytes([role_hi, role_lo]),
                        keep_conn: flags & FLAG_KEEP_CONN != 0,
                    }
                }
                RecordType::Params if content.is_empty() => {
                    self.phase = Phase::Stdin(id);
                    let body = std::mem::take(&mut self.params).freeze();
                    RequestEvent::Params(decode_pairs_shared(&body)?)
                }
                RecordType::Params => {
                    self.params.extend_from_slice(&content);
                    continue;
                }
                RecordType::Stdin if content.is_empty() => {
                    self.phase = Phase::Received(id);
                    RequestEvent::StdinEnd
                }
                RecordType::Stdin => RequestEvent::Stdin(content),
                RecordType::AbortRequest => {
                    self.phase = Phase::Idle;
                    self.params.clear();
                    RequestEvent::Abort { request_id: id }
                }
                RecordType::GetValues => {
                    let pairs = decode_pairs_shared(&content)?;
                    RequestEvent::GetValues(pairs.into_iter().map(|(name, _)| name).collect())
                }
                _ => return Err(DecodeError::UnexpectedRecordType(header.record_type)),
            };
            return Ok(Some(event));
        }
    }

    /// Validates a header against the current phase before its body arrives.
    fn check(&self, header: &RecordHeader) -> Result<RecordType, DecodeError> {
        let record_type = known_type(header)?;
        let unexpected = DecodeError::UnexpectedRecordType(header.record_type);
        let current = self.phase.request_id();
        match record_type {
            RecordType::GetValues => expect_id(header, 0)?,
            RecordType::BeginRequest => {
                if header.request_id == 0 || header.content_length < 8 {
                    return Err(unexpected);
                }
                match self.phase {
                    Phase::Idle | Phase::Received(_) => {}
                    Phase::Params(id) | Phase::Stdin(id) => {
                        expect_id(header, id)?;
                        return Err(unexpected);
                    }
                }
            }
            RecordType::Params | RecordType::Stdin | RecordType::AbortRequest => {
                let Some(id) = current else {
                    return Err(unexpected);
                };
                expect_id(header, id)?;
                let in_order = match record_type {
                    RecordType::Params => self.phase == Phase::Params(id),
                    RecordType::Stdin => self.phase == Phase::Stdin(id),
                    _ => true,
                };
                if !in_order {
                    return Err(unexpected);
                }
            }
            _ => return Err(unexpected),
        }
        Ok(record_type)
    }
}
