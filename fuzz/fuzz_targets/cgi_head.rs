//! The CGI response head parser (`HeadParser`), through its public API
//! only (`new`, `push`, `finish`), on STDOUT bytes pushed in arbitrary
//! pieces.
//!
//! Input: byte 0 picks the size limit (below 0x80: the default 64 KiB;
//! otherwise `b & 0x7f` bytes, 0 included), byte 1 seeds the split (0: one
//! push), the rest is what php-fpm would have written on STDOUT.
//!
//! Checked: no panic; the outcome (head, body, or error) is the same
//! whatever the split; the body is exactly the input after the head, which
//! is no longer than the limit; no hop-by-hop header and no `Status` header
//! is passed on, values carry no surrounding blanks, a `Location` without a
//! `Status` means 302; a push after the head is complete is refused.
#![no_main]

use bytes::Bytes;
use fcgi_gateway::cgi::response::{CgiHead, HeadError, HeadParser, DEFAULT_HEAD_LIMIT};
use fuzz_support::Splits;
use http::{header, StatusCode};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
enum Outcome {
    /// The head, and the body: every byte after it in the input.
    Head(CgiHead, Vec<u8>),
    /// `push` failed.
    PushError(HeadError),
    /// The input ended first; what `finish` said.
    Finished(Result<(CgiHead, Vec<u8>), HeadError>),
}

fn run(limit: usize, pieces: &[&[u8]]) -> Outcome {
    let mut parser = HeadParser::new(limit);
    for (i, piece) in pieces.iter().enumerate() {
        match parser.push(Bytes::copy_from_slice(piece)) {
            Ok(None) => {}
            Ok(Some((head, body_start))) => {
                let mut body = body_start.to_vec();
                for rest in &pieces[i + 1..] {
                    body.extend_from_slice(rest);
                }
                let again = parser.push(Bytes::from_static(b"more"));
                assert!(again.is_err(), "push accepted after the head");
                return Outcome::Head(head, body);
            }
            Err(e) => return Outcome::PushError(e),
        }
    }
    Outcome::Finished(parser.finish().map(|(head, body)| (head, body.to_vec())))
}

/// `head_bytes`: the input the head was parsed from.
fn check_head(head: &CgiHead, head_bytes: &[u8]) {
    let mut location = false;
    for (name, value) in &head.headers {
        assert!(
            ![
                header::CONNECTION,
                header::TRANSFER_ENCODING,
                header::UPGRADE,
                header::TE,
                header::TRAILER,
            ]
            .contains(name)
                && !matches!(name.as_str(), "keep-alive" | "proxy-connection" | "status"),
            "header {name} passed on"
        );
        let v = value.as_bytes();
        let blank = |b: &u8| *b == b' ' || *b == b'\t';
        assert!(
            !v.first().is_some_and(blank) && !v.last().is_some_and(blank),
            "untrimmed value {value:?}"
        );
        location |= name == header::LOCATION;
    }
    // RFC 3875 6.2: with no Status line, 200, or 302 for a redirect.
    let status_given = head_bytes.split(|&b| b == b'\n').any(|line| {
        line.iter()
            .position(|&b| b == b':')
            .is_some_and(|colon| line[..colon].eq_ignore_ascii_case(b"status"))
    });
    if !status_given {
        let want = if location {
            StatusCode::FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(head.status, want, "default status");
    }
}

fuzz_target!(|data: &[u8]| {
    let [limit_sel, split_seed, stdout @ ..] = data else {
        return;
    };
    let limit = if *limit_sel < 0x80 {
        DEFAULT_HEAD_LIMIT
    } else {
        usize::from(limit_sel & 0x7f)
    };
    let whole = run(limit, &[stdout]);
    let split = run(limit, &Splits::new(*split_seed).pieces(stdout));
    assert_eq!(whole, split, "outcome depends on the split");

    match &whole {
        Outcome::Head(head, body) => {
            let head_len = stdout.len() - body.len();
            check_head(head, &stdout[..head_len]);
            assert_eq!(
                &stdout[head_len..],
                &body[..],
                "body is not the input's tail"
            );
            assert!(
                head_len <= limit,
                "head of {head_len} bytes over the limit {limit}"
            );
            // The head ends with its blank line.
            let head_bytes = &stdout[..head_len];
            assert!(
                head_bytes.ends_with(b"\n\n")
                    || head_bytes.ends_with(b"\n\r\n")
                    || head_bytes == b"\n"
                    || head_bytes == b"\r\n",
                "head does not end with a blank line"
            );
        }
        Outcome::Finished(Ok((head, body))) => {
            check_head(head, stdout);
            assert!(body.is_empty());
            assert!(stdout.ends_with(b"\n"), "finish accepted a cut line");
            assert!(stdout.len() <= limit);
        }
        Outcome::PushError(HeadError::TooLarge { limit: l }) => {
            assert_eq!(*l, limit);
            assert!(
                stdout.len() > limit,
                "too large with {} bytes",
                stdout.len()
            );
        }
        Outcome::PushError(_) | Outcome::Finished(Err(_)) => {}
    }
    // Whatever went wrong, the error message quotes at most a bounded piece
    // (100 bytes of the line, each at worst an escape like `\u{1d}`).
    if let Outcome::PushError(e) | Outcome::Finished(Err(e)) = &whole {
        assert!(e.to_string().len() < 1024, "unbounded error message");
    }
});
