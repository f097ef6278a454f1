//! The hand-written head splitter this module used before `httparse`, kept
//! for tests only: the oracle of the differential property test and the
//! baseline of `head_parse_cost`. It shares the CGI mapping helpers
//! (`parse_status`, `is_hop_by_hop`, `malformed`) with the real parser, so
//! it only stands for the old line splitting and end-of-head detection.

use bytes::{Bytes, BytesMut};
use http::{header, HeaderName, HeaderValue, StatusCode};

use super::{is_hop_by_hop, malformed, parse_status, CgiHead, HeadError};

#[derive(Debug)]
pub struct OldHeadParser {
    limit: usize,
    buf: BytesMut,
    line_len: usize,
    done: bool,
}

impl OldHeadParser {
    pub fn new(limit: usize) -> Self {
        OldHeadParser {
            limit,
            buf: BytesMut::new(),
            line_len: 0,
            done: false,
        }
    }

    pub fn push(&mut self, data: Bytes) -> Result<Option<(CgiHead, Bytes)>, HeadError> {
        if self.done {
            return Err(HeadError::Malformed {
                line: String::new(),
                reason: "data pushed after the head was complete",
            });
        }
        let room = self.limit.saturating_sub(self.buf.len());
        let window = &data[..data.len().min(room)];

        let mut start = 0;
        while let Some(off) = window[start..].iter().position(|&b| b == b'\n') {
            let nl = start + off;
            let len = self.line_len + (nl - start);
            let prev = if nl > start {
                Some(window[nl - 1])
            } else {
                self.buf.last().copied()
            };
            if len == 0 || (len == 1 && prev == Some(b'\r')) {
                return self.complete(data, nl + 1).map(Some);
            }
            self.line_len = 0;
            start = nl + 1;
        }

        if data.len() > room {
            return Err(HeadError::TooLarge { limit: self.limit });
        }
        self.line_len += data.len() - start;
        self.buf.extend_from_slice(&data);
        Ok(None)
    }

    fn complete(&mut self, data: Bytes, end: usize) -> Result<(CgiHead, Bytes), HeadError> {
        self.done = true;
        let head = if self.buf.is_empty() {
            data.slice(..end)
        } else {
            self.buf.extend_from_slice(&data[..end]);
            self.buf.split().freeze()
        };
        let body = data.slice(end..);
        Ok((parse_head(&head)?, body))
    }

    pub fn finish(self) -> Result<(CgiHead, Bytes), HeadError> {
        if self.done || self.buf.is_empty() || self.line_len != 0 {
            return Err(HeadError::Incomplete);
        }
        let head = self.buf.freeze();
        Ok((parse_head(&head)?, Bytes::new()))
    }
}

fn parse_head(head: &Bytes) -> Result<CgiHead, HeadError> {
    let mut status = None;
    let mut location = false;
    let mut headers = Vec::new();

    let mut pos = 0;
    while pos < head.len() {
        let nl = head[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(head.len(), |o| pos + o);
        let mut end = nl;
        if end > pos && head[end - 1] == b'\r' {
            end -= 1;
        }
        let line = pos..end;
        pos = nl + 1;
        if line.is_empty() {
            break;
        }
        let raw = &head[line.clone()];

        let colon = raw
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| malformed(raw, "missing ':'"))?;
        let name = HeaderName::from_bytes(&raw[..colon])
            .map_err(|_| malformed(raw, "invalid header name"))?;
        let value = trim(head.slice(line.start + colon + 1..line.end));

        if name.as_str() == "status" {
            status = Some(parse_status(&value)?);
            continue;
        }
        if is_hop_by_hop(&name) {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(value)
            .map_err(|_| malformed(raw, "invalid header value"))?;
        location |= name == header::LOCATION;
        headers.push((name, value));
    }

    let status = status.unwrap_or(if location {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    Ok(CgiHead { status, headers })
}

fn trim(mut v: Bytes) -> Bytes {
    let is_ws = |b: &u8| *b == b' ' || *b == b'\t';
    let lead = v.iter().take_while(|b| is_ws(b)).count();
    let trail = v[lead..].iter().rev().take_while(|b| is_ws(b)).count();
    v.truncate(v.len() - trail);
    v.slice(lead..)
}
