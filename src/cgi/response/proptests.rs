//! Property tests for [`HeadParser`]: it never panics, whatever the bytes
//! and however they are split; the outcome does not depend on the split;
//! and it agrees with the hand-written splitter it replaced
//! ([`OldHeadParser`]) but for the one documented difference.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;

use super::reference::OldHeadParser;
use super::*;

/// The head and the whole body (the bytes `push` returned with the head,
/// then every later piece), or the error.
type Outcome = Result<(CgiHead, Bytes), HeadError>;

/// Feeds `pieces` in order, then calls `finish` if the head never completed.
macro_rules! run {
    ($parser:expr, $pieces:expr) => {{
        let mut p = $parser;
        let pieces: &[Bytes] = $pieces;
        let mut outcome = None;
        for (i, piece) in pieces.iter().enumerate() {
            match p.push(piece.clone()) {
                Ok(None) => {}
                Ok(Some((head, first))) => {
                    let mut body = BytesMut::from(&first[..]);
                    for rest in &pieces[i + 1..] {
                        body.extend_from_slice(rest);
                    }
                    outcome = Some(Ok((head, body.freeze())));
                    break;
                }
                Err(e) => {
                    outcome = Some(Err(e));
                    break;
                }
            }
        }
        let outcome: Outcome = outcome.unwrap_or_else(|| p.finish());
        outcome
    }};
}

fn run_new(limit: usize, pieces: &[Bytes]) -> Outcome {
    run!(HeadParser::new(limit), pieces)
}

fn run_old(limit: usize, pieces: &[Bytes]) -> Outcome {
    run!(OldHeadParser::new(limit), pieces)
}

/// `input` cut at `cuts` (positions taken modulo its length; empty pieces
/// included, as a record may be empty).
fn split(input: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    at.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for to in at {
        pieces.push(Bytes::copy_from_slice(&input[from..to]));
        from = to;
    }
    pieces.push(Bytes::copy_from_slice(&input[from..]));
    pieces
}

fn bytes_of(choices: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    proptest::sample::select(choices).prop_map(<[u8]>::to_vec)
}

/// Bytes that look like a CGI head: mostly good lines, with the usual ways
/// of getting one wrong now and then: names with spaces or none, no colon,
/// continuation lines, CR without LF, controls and non-UTF-8 bytes in
/// values, bad Status values, a missing blank line.
fn head_like() -> impl Strategy<Value = Vec<u8>> {
    let good_line = (
        bytes_of(&[
            b"Location",
            b"Content-Type",
            b"Set-Cookie",
            b"Connection",
            b"Transfer-Encoding",
            b"X-A",
            b"x-a",
            b"Content-Length",
        ]),
        bytes_of(&[b":", b": ", b":  \t"]),
        prop_oneof![
            bytes_of(&[
                b"200",
                b"302 Found",
                b"404 Not Found",
                b"418",
                b"/login",
                b"https://x.test/",
                b"text/html; charset=UTF-8",
                b"a=1; path=/",
                b"",
                b"  spaced  ",
                b"a\tb",
                b"caf\xc3\xa9",
                b"\xff\xfe",
            ]),
            vec(prop_oneof![Just(b'\t'), 0x20..0x7fu8, 0x80..=0xffu8], 0..12),
        ],
        bytes_of(&[b"\r\n", b"\n", b" \r\n"]),
    )
        .prop_map(|(n, s, v, e)| [n, s, v, e].concat());
    let status_line = bytes_of(&[
        b"Status: 200 OK\r\n",
        b"status:404\n",
        b"Status: 302 Found\r\n",
        b"Status: 418\r\n",
    ]);
    let name = prop_oneof![
        4 => bytes_of(&[b"Status", b"Location", b"Connection", b"X-A"]),
        1 => bytes_of(&[b"", b" ", b"Bad Name", b"X-A ", b" X-A", b"\tX", b"X\rY", b"\xc3\xa9"]),
        1 => vec(any::<u8>(), 0..6),
    ];
    let sep = bytes_of(&[b":", b": ", b" :", b"", b"::"]);
    let value = prop_oneof![
        bytes_of(&[b"200", b"99", b"abc", b"200OK", b"200 \x01", b"/login", b""]),
        vec(any::<u8>(), 0..12),
    ];
    let end = bytes_of(&[b"\r\n", b"\n", b"\r", b"", b"\r\r\n", b"\n ", b"\n\t"]);
    let bad_line = (name, sep, value, end).prop_map(|(n, s, v, e)| [n, s, v, e].concat());
    let line = prop_oneof![40 => good_line, 2 => status_line, 1 => bad_line];
    let blank = prop_oneof![8 => bytes_of(&[b"\r\n", b"\n"]), 1 => Just(Vec::new())];
    let body = vec(any::<u8>(), 0..16);
    (vec(line, 0..50), blank, body).prop_map(|(lines, blank, body)| {
        let mut out = lines.concat();
        out.extend_from_slice(&blank);
        out.extend_from_slice(&body);
        out
    })
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => head_like(),
        1 => vec(any::<u8>(), 0..300),
    ]
}

fn limit() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => Just(DEFAULT_HEAD_LIMIT),
        1 => 0..400usize,
    ]
}

/// The one place the outputs may differ: every field value is now checked,
/// so a control byte in a Status or hop-by-hop field (which the old code
/// dropped or parsed without checking) makes the head malformed.
fn allowed_difference(new: &Outcome) -> bool {
    let Err(HeadError::Malformed { line, reason }) = new else {
        return false;
    };
    let name = line.split(':').next().unwrap_or_default();
    *reason == "invalid header value"
        && HeaderName::from_bytes(name.as_bytes())
            .is_ok_and(|n| n.as_str() == "status" || is_hop_by_hop(&n))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn same_outcome_for_every_split(
        input in input(),
        cuts in vec(any::<usize>(), 0..8),
        limit in limit(),
    ) {
        let whole = run_new(limit, &[Bytes::from(input.clone())]);
        let pieces = run_new(limit, &split(&input, &cuts));
        prop_assert_eq!(&pieces, &whole);
    }

    #[test]
    fn byte_by_byte_like_whole(input in input(), limit in limit()) {
        let whole = run_new(limit, &[Bytes::from(input.clone())]);
        let bytes: Vec<Bytes> = input.iter().map(|b| Bytes::copy_from_slice(&[*b])).collect();
        prop_assert_eq!(run_new(limit, &bytes), whole);
    }

    #[test]
    fn agrees_with_the_old_splitter(
        input in input(),
        cuts in vec(any::<usize>(), 0..4),
        limit in limit(),
    ) {
        let pieces = split(&input, &cuts);
        let new = run_new(limit, &pieces);
        let old = run_old(limit, &pieces);
        if new != old {
            prop_assert!(allowed_difference(&new), "new {:?}\nold {:?}", new, old);
        }
    }

    #[test]
    fn refused_heads_name_their_line(input in head_like()) {
        // `diagnose` finds the line for every head `httparse` refuses.
        if let Err(HeadError::Malformed { reason, .. }) =
            run_new(DEFAULT_HEAD_LIMIT, &[Bytes::from(input)])
        {
            prop_assert_ne!(reason, "unparsable head");
        }
    }
}
