//! CGI response head (the start of the application's STDOUT) → HTTP
//! response head (RFC 3875 §6).
//!
//! The head is a block of `Name: value` lines ended by an empty line. It can
//! arrive split anywhere across FastCGI records, so [`HeadParser`] buffers
//! only the head, scans each byte once, and enforces a size limit as bytes
//! arrive.

use bytes::{Bytes, BytesMut};
use http::{header, HeaderName, HeaderValue, StatusCode};

/// The HTTP status and headers an application asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgiHead {
    pub status: StatusCode,
    /// In the order sent; repeated names (Set-Cookie) stay separate.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HeadError {
    #[error("CGI response head exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("malformed CGI header line {line:?}: {reason}")]
    Malformed { line: String, reason: &'static str },
    #[error("invalid CGI Status header {0:?}")]
    BadStatus(String),
    #[error("CGI response ended before its head was complete")]
    Incomplete,
}

/// Default cap on the size of a response head, blank line included.
pub const DEFAULT_HEAD_LIMIT: usize = 64 * 1024;

/// How much of an offending line is quoted in errors (keeps logs bounded).
const QUOTE_MAX: usize = 100;

/// Incremental parser for a CGI response head.
#[derive(Debug)]
pub struct HeadParser {
    limit: usize,
    /// Head bytes received so far (never more than `limit`).
    buf: BytesMut,
    /// Bytes of the unfinished last line in `buf` (a trailing '\r' included),
    /// so a blank line is recognised without rescanning earlier bytes.
    line_len: usize,
    /// Set once a head has been returned, so misuse is reported, not misparsed.
    done: bool,
}

impl HeadParser {
    pub fn new(limit: usize) -> Self {
        HeadParser {
            limit,
            buf: BytesMut::new(),
            line_len: 0,
            done: false,
        }
    }

    /// Feeds STDOUT bytes (any split: byte by byte, across records).
    /// Returns `Ok(Some((head, body_start)))` once the blank line ending the
    /// head was seen; `body_start` is whatever followed it in the bytes seen
    /// so far (may be empty). Don't call `push` again after that.
    pub fn push(&mut self, data: Bytes) -> Result<Option<(CgiHead, Bytes)>, HeadError> {
        if self.done {
            return Err(HeadError::Malformed {
                line: String::new(),
                reason: "data pushed after the head was complete",
            });
        }
        let room = self.limit.saturating_sub(self.buf.len());
        // Only look as far as the limit allows: a head end further on would
        // be rejected anyway.
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

    /// The head ends `end` bytes into `data`; everything after is body.
    fn complete(&mut self, data: Bytes, end: usize) -> Result<(CgiHead, Bytes), HeadError> {
        self.done = true;
        let head = if self.buf.is_empty() {
            // Common case: the whole head came in one record; no copy.
            data.slice(..end)
        } else {
            self.buf.extend_from_slice(&data[..end]);
            self.buf.split().freeze()
        };
        let body = data.slice(end..);
        Ok((parse_head(&head)?, body))
    }

    /// Call at end of stream if `push` never completed. Succeeds (with an
    /// empty body) only when the buffered bytes are complete header lines
    /// lacking just the final blank line; anything else is `Incomplete`.
    pub fn finish(self) -> Result<(CgiHead, Bytes), HeadError> {
        if self.done || self.buf.is_empty() || self.line_len != 0 {
            return Err(HeadError::Incomplete);
        }
        let head = self.buf.freeze();
        Ok((parse_head(&head)?, Bytes::new()))
    }
}

/// Parses complete head lines (up to the first blank line, if any).
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
        // Zero-copy: the value shares the head's buffer.
        let value = HeaderValue::from_maybe_shared(value)
            .map_err(|_| malformed(raw, "invalid header value"))?;
        location |= name == header::LOCATION;
        headers.push((name, value));
    }

    let status = status.unwrap_or(if location {
        // RFC 3875 §6.2.3: a client redirect without Status means 302.
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

/// `Status: 404 Not Found` or `Status: 418`; the reason phrase is ignored
/// because HTTP/2 has none and hyper supplies the canonical one.
fn parse_status(value: &[u8]) -> Result<StatusCode, HeadError> {
    let bad = || {
        let shown = &value[..value.len().min(QUOTE_MAX)];
        HeadError::BadStatus(String::from_utf8_lossy(shown).into_owned())
    };
    let (code, rest) = value.split_at_checked(3).ok_or_else(bad)?;
    if !rest.is_empty() && rest[0] != b' ' && rest[0] != b'\t' {
        return Err(bad());
    }
    StatusCode::from_bytes(code).map_err(|_| bad())
}

/// Connection-level headers belong to the server, not the application.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    *name == header::CONNECTION
        || *name == header::TRANSFER_ENCODING
        || *name == header::UPGRADE
        || *name == header::TE
        || *name == header::TRAILER
        || matches!(name.as_str(), "keep-alive" | "proxy-connection")
}

fn malformed(line: &[u8], reason: &'static str) -> HeadError {
    let shown = &line[..line.len().min(QUOTE_MAX)];
    HeadError::Malformed {
        line: String::from_utf8_lossy(shown).into_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Result<Option<(CgiHead, Bytes)>, HeadError> {
        let mut p = HeadParser::new(DEFAULT_HEAD_LIMIT);
        for (i, c) in chunks.iter().enumerate() {
            if let Some(done) = p.push(Bytes::copy_from_slice(c))? {
                assert_eq!(i, chunks.len() - 1, "completed before the last chunk");
                return Ok(Some(done));
            }
        }
        Ok(None)
    }

    fn one(input: &[u8]) -> (CgiHead, Bytes) {
        parse_all(&[input]).unwrap().unwrap()
    }

    fn hdrs(head: &CgiHead) -> Vec<(&str, &[u8])> {
        head.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect()
    }

    const SAMPLE: &[u8] = b"Status: 201 Created\r\nContent-Type: text/html\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n<html>";

    #[test]
    fn simple_head_and_body_start() {
        let (head, body) = one(SAMPLE);
        assert_eq!(head.status, StatusCode::CREATED);
        assert_eq!(
            hdrs(&head),
            vec![
                ("content-type", &b"text/html"[..]),
                ("set-cookie", b"a=1"),
                ("set-cookie", b"b=2"),
            ]
        );
        assert_eq!(&body[..], b"<html>");
    }

    #[test]
    fn every_split_point() {
        let want = one(SAMPLE);
        // Stop before the first body byte so the first chunk never already
        // completes the head while leaving bytes for a second push.
        let head_len = SAMPLE.len() - b"<html>".len();
        for i in 0..head_len {
            let got = parse_all(&[&SAMPLE[..i], &SAMPLE[i..]]).unwrap().unwrap();
            assert_eq!(got, want, "split at {i}");
        }
        for i in head_len..=SAMPLE.len() {
            let mut p = HeadParser::new(DEFAULT_HEAD_LIMIT);
            let (head, body) = p
                .push(Bytes::copy_from_slice(&SAMPLE[..i]))
                .unwrap()
                .unwrap();
            assert_eq!(head, want.0);
            assert_eq!(&body[..], &SAMPLE[head_len..i]);
        }
    }

    #[test]
    fn byte_by_byte() {
        let head_len = SAMPLE.len() - b"<html>".len();
        let chunks: Vec<&[u8]> = SAMPLE[..head_len].chunks(1).collect();
        let (head, body) = parse_all(&chunks).unwrap().unwrap();
        assert_eq!(head, one(SAMPLE).0);
        assert!(body.is_empty());
    }

    #[test]
    fn lf_crlf_and_mixed_endings() {
        let want = one(b"Content-Type: text/plain\r\nX-A: 1\r\n\r\n").0;
        assert_eq!(one(b"Content-Type: text/plain\nX-A: 1\n\n").0, want);
        assert_eq!(one(b"Content-Type: text/plain\r\nX-A: 1\n\r\n").0, want);
        assert_eq!(one(b"Content-Type: text/plain\nX-A: 1\r\n\n").0, want);
        assert_eq!(want.status, StatusCode::OK);
    }

    #[test]
    fn value_whitespace_trimmed() {
        let (head, _) = one(b"X-A:\t  spaced out \t\r\nX-B:\r\n\r\n");
        assert_eq!(hdrs(&head), vec![("x-a", &b"spaced out"[..]), ("x-b", b"")]);
    }

    #[test]
    fn status_with_and_without_reason() {
        assert_eq!(
            one(b"Status: 404 Not Found\n\n").0.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(one(b"Status: 418\n\n").0.status.as_u16(), 418);
        assert_eq!(one(b"status:599\n\n").0.status.as_u16(), 599);
        assert!(one(b"Status: 500\n\n").0.headers.is_empty());
    }

    #[test]
    fn location_defaults_to_302() {
        let (head, _) = one(b"Location: /login\r\n\r\n");
        assert_eq!(head.status, StatusCode::FOUND);
        assert_eq!(hdrs(&head), vec![("location", &b"/login"[..])]);

        let (head, _) = one(b"Location: https://x.test/\r\nStatus: 301 Moved Permanently\r\n\r\n");
        assert_eq!(head.status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(hdrs(&head), vec![("location", &b"https://x.test/"[..])]);
    }

    #[test]
    fn hop_by_hop_dropped_content_length_kept() {
        let (head, _) = one(
            b"Connection: close\nKeep-Alive: timeout=5\nTransfer-Encoding: chunked\n\
              Upgrade: h2c\nProxy-Connection: close\nTE: trailers\nTrailer: X\n\
              Content-Length: 5\nX-Ok: 1\n\nhello",
        );
        assert_eq!(
            hdrs(&head),
            vec![("content-length", &b"5"[..]), ("x-ok", b"1")]
        );
    }

    #[test]
    fn empty_head_is_plain_200() {
        let (head, body) = one(b"\r\nbody");
        assert_eq!(head.status, StatusCode::OK);
        assert!(head.headers.is_empty());
        assert_eq!(&body[..], b"body");
    }

    #[test]
    fn too_large() {
        let mut p = HeadParser::new(16);
        assert_eq!(
            p.push(Bytes::from_static(b"X-Long: 0123456789")),
            Err(HeadError::TooLarge { limit: 16 })
        );

        // Fed byte by byte, the error comes as soon as the limit is passed.
        let mut p = HeadParser::new(16);
        let input = b"X-Long: 0123456789abcdef\n\n";
        for (i, b) in input.iter().enumerate() {
            let r = p.push(Bytes::copy_from_slice(&[*b]));
            if i < 16 {
                assert_eq!(r, Ok(None), "byte {i}");
            } else {
                assert_eq!(r, Err(HeadError::TooLarge { limit: 16 }));
                break;
            }
        }

        // A head of exactly `limit` bytes fits, even with a large body after it.
        let mut p = HeadParser::new(8);
        let (head, body) = p
            .push(Bytes::from_static(b"X-A: 1\n\nbody-bigger-than-limit"))
            .unwrap()
            .unwrap();
        assert_eq!(hdrs(&head), vec![("x-a", &b"1"[..])]);
        assert_eq!(&body[..], b"body-bigger-than-limit");
        let mut p = HeadParser::new(7);
        assert_eq!(
            p.push(Bytes::from_static(b"X-A: 1\n\n")),
            Err(HeadError::TooLarge { limit: 7 })
        );
    }

    #[test]
    fn malformed_lines() {
        let err = parse_all(&[b"Content-Type text/html\n\n"]).unwrap_err();
        assert_eq!(
            err,
            HeadError::Malformed {
                line: "Content-Type text/html".into(),
                reason: "missing ':'"
            }
        );
        assert!(matches!(
            parse_all(&[b"Bad Name: x\n\n"]),
            Err(HeadError::Malformed {
                reason: "invalid header name",
                ..
            })
        ));
        assert!(matches!(
            parse_all(&[b": x\n\n"]),
            Err(HeadError::Malformed {
                reason: "invalid header name",
                ..
            })
        ));
        assert!(matches!(
            parse_all(&[b"X-A: a\x01b\n\n"]),
            Err(HeadError::Malformed {
                reason: "invalid header value",
                ..
            })
        ));
        // Obsolete line folding is not accepted.
        assert!(matches!(
            parse_all(&[b"X-A: a\n b\n\n"]),
            Err(HeadError::Malformed { .. })
        ));
        // Quoted lines are truncated.
        let long = [b"x".repeat(300), b"\n\n".to_vec()].concat();
        match parse_all(&[&long]) {
            Err(HeadError::Malformed { line, .. }) => assert_eq!(line.len(), QUOTE_MAX),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn bad_status() {
        for s in [
            &b"Status: 99\n\n"[..],
            b"Status: 1000\n\n",
            b"Status: 099 x\n\n",
            b"Status: abc\n\n",
            b"Status: 20x\n\n",
            b"Status: 200OK\n\n",
            b"Status:\n\n",
        ] {
            assert!(
                matches!(parse_all(&[s]), Err(HeadError::BadStatus(_))),
                "{:?}",
                String::from_utf8_lossy(s)
            );
        }
        assert_eq!(
            parse_all(&[b"Status: 9000 Over\n\n"]),
            Err(HeadError::BadStatus("9000 Over".into()))
        );
    }

    #[test]
    fn finish_cases() {
        // Nothing at all.
        assert_eq!(HeadParser::new(64).finish(), Err(HeadError::Incomplete));

        // Complete lines missing only the blank line: accepted.
        let mut p = HeadParser::new(64);
        assert_eq!(
            p.push(Bytes::from_static(b"Status: 404\r\nX-A: 1\r\n")),
            Ok(None)
        );
        let (head, body) = p.finish().unwrap();
        assert_eq!(head.status, StatusCode::NOT_FOUND);
        assert_eq!(hdrs(&head), vec![("x-a", &b"1"[..])]);
        assert!(body.is_empty());

        // A truncated last line: incomplete.
        let mut p = HeadParser::new(64);
        assert_eq!(p.push(Bytes::from_static(b"X-A: 1\r\nX-B: 2")), Ok(None));
        assert_eq!(p.finish(), Err(HeadError::Incomplete));

        // Ends with a lone '\r' (cut inside the CRLF): incomplete.
        let mut p = HeadParser::new(64);
        assert_eq!(p.push(Bytes::from_static(b"X-A: 1\r")), Ok(None));
        assert_eq!(p.finish(), Err(HeadError::Incomplete));

        // Complete lines, but one is malformed: the parse error wins.
        let mut p = HeadParser::new(64);
        assert_eq!(p.push(Bytes::from_static(b"garbage\n")), Ok(None));
        assert!(matches!(p.finish(), Err(HeadError::Malformed { .. })));

        // After a completed head, finish has nothing left to give.
        let mut p = HeadParser::new(64);
        assert!(p.push(Bytes::from_static(b"X-A: 1\n\n")).unwrap().is_some());
        assert_eq!(p.finish(), Err(HeadError::Incomplete));
    }

    /// What parsing a typical PHP head costs. No assertion on time: run it
    /// optimised and read the figures:
    /// `cargo test --release --lib cgi::response::tests::head_parse_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "timing loop; run in release with --ignored --nocapture"]
    fn head_parse_cost() {
        use std::hint::black_box;
        use std::time::{Duration, Instant};

        let body =
            "<!DOCTYPE html>\n<html><head><title>x</title></head><body>hello</body></html>\n";
        let small = Bytes::from(format!(
            "Content-type: text/html; charset=UTF-8\r\nX-Powered-By: PHP/8.2\r\n\r\n{body}"
        ));
        let ten = Bytes::from(format!(
            "Status: 302 Found\r\n\
             X-Powered-By: PHP/8.2.20\r\n\
             Set-Cookie: PHPSESSID=5f3a0c9e1b7d4e2a8c6f0b1d3e5a7c9f; path=/; HttpOnly; SameSite=Lax\r\n\
             Expires: Thu, 19 Nov 1981 08:52:00 GMT\r\n\
             Cache-Control: no-store, no-cache, must-revalidate\r\n\
             Pragma: no-cache\r\n\
             Set-Cookie: lang=en; expires=Fri, 31 Dec 2038 23:59:59 GMT; Max-Age=433036800; path=/\r\n\
             Location: https://wiki.example.org/doku.php?id=start&do=login&sectok=\r\n\
             Vary: Accept-Encoding\r\n\
             Content-type: text/html; charset=UTF-8\r\n\
             \r\n{body}"
        ));
        // Splits the head in the middle of its lines.
        let mid = |b: &Bytes| (b.len() - body.len()) / 2;
        let cases = [
            ("2 headers, one record", small.clone(), None),
            ("10 headers, one record", ten.clone(), None),
            ("2 headers, two records", small.clone(), Some(mid(&small))),
            ("10 headers, two records", ten.clone(), Some(mid(&ten))),
        ];
        const ITERS: u32 = 100_000;
        for (what, input, split) in cases {
            let run = || {
                let mut p = HeadParser::new(DEFAULT_HEAD_LIMIT);
                let done = match split {
                    None => p.push(black_box(input.clone())),
                    Some(at) => {
                        assert!(p.push(black_box(input.slice(..at))).unwrap().is_none());
                        p.push(black_box(input.slice(at..)))
                    }
                };
                black_box(done.unwrap().unwrap());
            };
            // Best of several rounds: the machine is shared.
            let mut best = Duration::MAX;
            for _ in 0..7 {
                let t = Instant::now();
                for _ in 0..ITERS {
                    run();
                }
                best = best.min(t.elapsed());
            }
            println!(
                "head_parse_cost: {what}: {} ns/head",
                best.as_nanos() / u128::from(ITERS)
            );
        }
    }

    #[test]
    fn push_after_complete_is_an_error() {
        let mut p = HeadParser::new(64);
        assert!(p.push(Bytes::from_static(b"X-A: 1\n\n")).unwrap().is_some());
        assert!(p.push(Bytes::from_static(b"more")).is_err());
    }
}
