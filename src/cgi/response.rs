//! CGI response head (the start of the application's STDOUT) → HTTP
//! response head (RFC 3875 §6).
//!
//! The head is a block of `Name: value` lines ended by an empty line. It can
//! arrive split anywhere across FastCGI records, so [`HeadParser`] buffers
//! only the head, finds its end scanning each byte once, and enforces a size
//! limit as bytes arrive. `httparse` (hyper's HTTP/1 parser) splits the
//! complete head into names and values and checks their bytes; the CGI
//! meaning (Status, Location, hop-by-hop fields) is ours.
//!
//! What counts as a head line is the same for both: a line ends at LF, a CR
//! just before it is dropped (PHP-FPM sends CRLF, other CGI programs may send
//! bare LF; `httparse` takes either); the name is an HTTP token followed
//! directly by ':' (no space: RFC 3875 §6.3 allows whitespace only after
//! the colon); the value is trimmed of spaces and tabs and may hold any byte
//! but controls other than tab (non-UTF-8 bytes pass through). Continuation
//! lines (obs-fold) are malformed: RFC 7230 deprecated them, and PHP's
//! `header()` refuses any CR or LF ("new line detected", checked with
//! php-fpm 8.2), so no PHP head has them.

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

/// Header slots `httparse` fills on the stack; PHP heads have 2 to ~15
/// fields. A head with more (at most `limit / 3` of them: `a:` and LF is the
/// shortest line) is parsed again into slots allocated for its line count,
/// so the byte limit stays the only limit, as it was before `httparse`.
const STACK_HEADERS: usize = 32;

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

        if self.buf.is_empty() {
            // Common case: php-fpm buffers the head with the first output,
            // so it usually comes whole in the first record; `httparse`
            // finds its end and splits it in one pass.
            let mut slots = [httparse::EMPTY_HEADER; STACK_HEADERS];
            if let Ok(httparse::Status::Complete((end, fields))) =
                httparse::parse_headers(window, &mut slots)
            {
                self.done = true;
                let head = data.slice(..end);
                let head = to_cgi_head(&head, fields)?;
                return Ok(Some((head, data.slice(end..))));
            }
            // Partial, or an error: `httparse` cannot resume where it
            // stopped, so the lines are tracked below and the head is parsed
            // (and any error reported) once complete, as for any split head.
        }

        // `httparse` has no incremental mode (`Partial` says nothing of how
        // far it got), so re-parsing the buffered head on every record would
        // be quadratic when it comes in small pieces; this scan finds the end
        // of a split head, looking at each byte once.
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
        // The blank line `httparse` needs to call the head complete.
        let mut head = self.buf;
        head.extend_from_slice(b"\n");
        Ok((parse_head(&head.freeze())?, Bytes::new()))
    }
}

/// Parses a complete head: lines up to and including the blank line.
fn parse_head(head: &Bytes) -> Result<CgiHead, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; STACK_HEADERS];
    match httparse::parse_headers(head, &mut slots) {
        Ok(httparse::Status::Complete((end, fields))) => {
            // Both find the end at the first line that is empty or a lone CR.
            debug_assert_eq!(end, head.len(), "httparse ended the head elsewhere");
            to_cgi_head(head, fields)
        }
        Err(httparse::Error::TooManyHeaders) => {
            // Every field takes a line: slots for each line always suffice.
            let lines = head.iter().filter(|&&b| b == b'\n').count();
            let mut slots = vec![httparse::EMPTY_HEADER; lines];
            match httparse::parse_headers(head, &mut slots) {
                Ok(httparse::Status::Complete((_, fields))) => to_cgi_head(head, fields),
                _ => Err(diagnose(head)),
            }
        }
        Ok(httparse::Status::Partial) | Err(_) => Err(diagnose(head)),
    }
}

/// Maps the fields `httparse` split out of `head` to an HTTP status and
/// headers: RFC 3875 §6.3 CGI fields are interpreted, the rest passed on.
fn to_cgi_head(head: &Bytes, fields: &[httparse::Header<'_>]) -> Result<CgiHead, HeadError> {
    let mut status = None;
    let mut location = false;
    let mut headers = Vec::with_capacity(fields.len());

    for field in fields {
        // Only a name over http's 64 KiB cap can fail here: `httparse`
        // accepted it as a token.
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| malformed(line_at(head, field.name.as_bytes()), "invalid header name"))?;
        if name.as_str() == "status" {
            status = Some(parse_status(field.value)?);
            continue;
        }
        if is_hop_by_hop(&name) {
            continue;
        }
        // Zero-copy: the value shares the head's buffer. `httparse` allows
        // the bytes HeaderValue does (tab, 0x20-0x7E, 0x80-0xFF), so this
        // check cannot fail; it is cheap and spares an unsafe constructor.
        let value = HeaderValue::from_maybe_shared(head.slice_ref(field.value))
            .map_err(|_| malformed(line_at(head, field.name.as_bytes()), "invalid header value"))?;
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

/// The line of `head` that starts where `start` (a slice of it) starts,
/// without its line ending.
fn line_at<'a>(head: &'a [u8], start: &[u8]) -> &'a [u8] {
    let from = (start.as_ptr() as usize).saturating_sub(head.as_ptr() as usize);
    let line = &head[from.min(head.len())..];
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Which line of a head `httparse` refused, and why. `httparse` says only
/// what kind of byte it stopped at, not where, so the lines are walked
/// again (errors only), in order, applying the same rules; a bad Status
/// value is reported as such when it comes before the broken line.
fn diagnose(head: &[u8]) -> HeadError {
    let is_ws = |b: &u8| *b == b' ' || *b == b'\t';
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return malformed(line, "missing ':'");
        };
        let Ok(name) = HeaderName::from_bytes(&line[..colon]) else {
            return malformed(line, "invalid header name");
        };
        let value = &line[colon + 1..];
        let lead = value.iter().take_while(|b| is_ws(b)).count();
        let trail = value[lead..].iter().rev().take_while(|b| is_ws(b)).count();
        let value = &value[lead..value.len() - trail];
        if name.as_str() == "status" {
            if let Err(e) = parse_status(value) {
                return e;
            }
        }
        if HeaderValue::from_bytes(value).is_err() {
            return malformed(line, "invalid header value");
        }
    }
    // Not reached for a head `httparse` refused (the property tests check);
    // an error all the same rather than a guess.
    malformed(head, "unparsable head")
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
mod proptests;
#[cfg(test)]
mod reference;

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

    #[test]
    fn bare_lf_split_anywhere() {
        // httparse takes bare LF; the split-head scan agrees on the end.
        let input = b"Status: 404\nX-A: 1\n\nbody";
        let want = one(input);
        assert_eq!(want.0.status, StatusCode::NOT_FOUND);
        for i in 0..input.len() - 4 {
            let got = parse_all(&[&input[..i], &input[i..]]).unwrap().unwrap();
            assert_eq!(got, want, "split at {i}");
        }
        let bytes: Vec<&[u8]> = input[..input.len() - 4].chunks(1).collect();
        assert_eq!(parse_all(&bytes).unwrap().unwrap().0, want.0);
    }

    #[test]
    fn continuation_lines_are_malformed() {
        // PHP's header() refuses CR and LF, so PHP never folds; httparse's
        // obs-fold support is only for parse_response, and off here.
        for input in [
            &b"X-A: a\r\n b\r\n\r\n"[..],
            b"X-A: a\n\tb\n\n",
            b" X-A: a\r\n\r\n",
            b"X-A: a\r\n \r\n\r\n",
        ] {
            let err = parse_all(&[input]).unwrap_err();
            assert!(
                matches!(err, HeadError::Malformed { .. }),
                "{input:?}: {err:?}"
            );
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(
                parse_all(&bytes).unwrap_err(),
                err,
                "{input:?} byte by byte"
            );
        }
        let err = parse_all(&[b"X-A: a\n\tb\n\n"]).unwrap_err();
        assert_eq!(
            err,
            HeadError::Malformed {
                line: "\tb".into(),
                reason: "missing ':'"
            }
        );
    }

    #[test]
    fn names_with_spaces_are_malformed() {
        // PHP passes all three on as written (header("X-Sp : 2") included).
        for (input, line) in [
            (&b"X Space: 1\r\n\r\n"[..], "X Space: 1"),
            (b"X-Sp : 2\r\n\r\n", "X-Sp : 2"),
            (
                b"Content-Type: text/html\r\n X-Lead: 3\r\n\r\n",
                " X-Lead: 3",
            ),
        ] {
            assert_eq!(
                parse_all(&[input]),
                Err(HeadError::Malformed {
                    line: line.into(),
                    reason: "invalid header name"
                })
            );
        }
    }

    #[test]
    fn lone_cr_is_malformed() {
        for input in [
            &b"X-A: a\rb\r\n\r\n"[..],
            b"X-A: 1\r\r\n\r\n",
            b"X\rA: 1\n\n",
        ] {
            assert!(
                matches!(parse_all(&[input]), Err(HeadError::Malformed { .. })),
                "{input:?}"
            );
        }
    }

    #[test]
    fn non_utf8_values_pass_names_do_not() {
        let (head, _) = one(b"X-Latin1: caf\xe9\r\nX-Raw: \xff\xfe \x80\r\n\r\n");
        assert_eq!(
            hdrs(&head),
            vec![("x-latin1", &b"caf\xe9"[..]), ("x-raw", b"\xff\xfe \x80")]
        );
        assert!(matches!(
            parse_all(&[b"X-N\xe9: 1\r\n\r\n"]),
            Err(HeadError::Malformed {
                reason: "invalid header name",
                ..
            })
        ));
        assert!(matches!(
            parse_all(&[b"Status: 2\xff0\r\n\r\n"]),
            Err(HeadError::BadStatus(_))
        ));
    }

    #[test]
    fn controls_are_malformed_in_every_field() {
        // Before httparse, Status and hop-by-hop fields were parsed or
        // dropped without checking their bytes; now every line is checked
        // alike (PHP does send header("Connection: a\x01b") as written).
        for input in [
            &b"X-Ctl: a\x01b\r\n\r\n"[..],
            b"Connection: a\x01b\r\n\r\n",
            b"Status: 200 \x7f\r\n\r\n",
            b"X-Nul: a\0b\r\n\r\n",
        ] {
            assert!(
                matches!(
                    parse_all(&[input]),
                    Err(HeadError::Malformed {
                        reason: "invalid header value",
                        ..
                    })
                ),
                "{input:?}"
            );
        }
    }

    #[test]
    fn errors_reported_in_line_order() {
        // httparse stops at the first bad byte of the head; which line and
        // why is found again in order, so a bad Status before a broken line
        // is what gets reported, as before.
        assert_eq!(
            parse_all(&[b"Status: abc\r\nBad Name: x\r\n\r\n"]),
            Err(HeadError::BadStatus("abc".into()))
        );
        assert!(matches!(
            parse_all(&[b"Bad Name: x\r\nStatus: abc\r\n\r\n"]),
            Err(HeadError::Malformed {
                reason: "invalid header name",
                ..
            })
        ));
    }

    #[test]
    fn more_fields_than_stack_slots() {
        for n in [STACK_HEADERS - 1, STACK_HEADERS, STACK_HEADERS + 1, 500] {
            let mut input = Vec::new();
            for i in 0..n {
                input.extend_from_slice(format!("X-H{i}: {i}\r\n").as_bytes());
            }
            input.extend_from_slice(b"Status: 201\r\n\r\nbody");
            let (head, body) = one(&input);
            assert_eq!(head.status, StatusCode::CREATED);
            assert_eq!(head.headers.len(), n);
            for (i, (name, value)) in head.headers.iter().enumerate() {
                assert_eq!(name.as_str(), format!("x-h{i}"));
                assert_eq!(value.as_bytes(), i.to_string().as_bytes());
            }
            assert_eq!(&body[..], b"body");
            // Split: the same, through the line scan.
            let mid = input.len() / 2;
            assert_eq!(
                parse_all(&[&input[..mid], &input[mid..]]).unwrap().unwrap(),
                (head, body)
            );
        }

        // The most a head can hold: the shortest lines up to the byte limit.
        let lines = (DEFAULT_HEAD_LIMIT - 1) / 3;
        let mut input = b"a:\n".repeat(lines);
        input.extend_from_slice(b"\n");
        assert!(input.len() <= DEFAULT_HEAD_LIMIT);
        let (head, body) = one(&input);
        assert_eq!(head.headers.len(), lines);
        assert!(head.headers.iter().all(|(n, v)| n == "a" && v.is_empty()));
        assert!(body.is_empty());
        // One field more and it no longer fits.
        let mut input = b"a:\n".repeat(lines + 1);
        input.extend_from_slice(b"\n");
        let too_large = parse_all(&[&input]);
        assert!(
            matches!(
                too_large,
                Err(HeadError::TooLarge {
                    limit: DEFAULT_HEAD_LIMIT
                })
            ),
            "{:?}",
            too_large.map(|done| done.map(|(head, _)| head.headers.len()))
        );
    }

    #[test]
    fn empty_head_split_and_bare_lf() {
        for chunks in [&[&b"\nbody"[..]][..], &[b"\r", b"\nbody"], &[b"", b"\r\n"]] {
            let (head, _) = parse_all(chunks).unwrap().unwrap();
            assert_eq!(
                head,
                CgiHead {
                    status: StatusCode::OK,
                    headers: vec![]
                }
            );
        }
        // Nothing but a lone CR before the stream ends: incomplete.
        let mut p = HeadParser::new(64);
        assert_eq!(p.push(Bytes::from_static(b"\r")), Ok(None));
        assert_eq!(p.finish(), Err(HeadError::Incomplete));
    }

    #[test]
    fn push_after_complete_is_an_error() {
        let mut p = HeadParser::new(64);
        assert!(p.push(Bytes::from_static(b"X-A: 1\n\n")).unwrap().is_some());
        assert!(p.push(Bytes::from_static(b"more")).is_err());
    }
}
