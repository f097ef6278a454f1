//! Property tests across encoder and decoders: round trips under arbitrary
//! chunking, and robustness against arbitrary bytes.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

/// Deterministic filler so large values don't cost one strategy draw per
/// byte (which makes 200 KiB cases very slow).
fn blob(len: usize, seed: u64) -> Bytes {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// Mostly short arbitrary bytes (non-UTF-8 included), sometimes long ones.
fn some_bytes(max_long: usize) -> impl Strategy<Value = Bytes> {
    prop_oneof![
        6 => vec(any::<u8>(), 0..200).prop_map(Bytes::from),
        1 => (0..max_long, any::<u64>()).prop_map(|(len, seed)| blob(len, seed)),
    ]
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Responder),
        Just(Role::Authorizer),
        Just(Role::Filter)
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (
        1..=u16::MAX,
        role(),
        any::<bool>(),
        vec((some_bytes(70_000), some_bytes(70_000)), 0..12),
        some_bytes(200 * 1024),
    )
        .prop_map(|(request_id, role, keep_conn, params, stdin)| Request {
            request_id,
            role,
            keep_conn,
            params,
            stdin,
        })
}

/// Chunk sizes to cut a byte stream with; cycled until the input runs out.
fn chunking() -> impl Strategy<Value = Vec<usize>> {
    vec(prop_oneof![1..8usize, 1..70_000usize], 1..16)
}

fn chunks<'a>(data: &'a [u8], sizes: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = data;
    sizes.iter().cycle().map_while(move |&size| {
        if rest.is_empty() {
            return None;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        Some(chunk)
    })
}

/// One thing a server writes before END_REQUEST.
#[derive(Debug, Clone)]
enum ServerOut {
    Stdout(Bytes),
    Stderr(Bytes),
    /// An empty stream record; decoders must skip it.
    End(RecordType),
}

fn server_out() -> impl Strategy<Value = ServerOut> {
    prop_oneof![
        4 => some_bytes(100_000).prop_map(ServerOut::Stdout),
        2 => some_bytes(5_000).prop_map(ServerOut::Stderr),
        1 => prop_oneof![Just(RecordType::Stdout), Just(RecordType::Stderr)].prop_map(ServerOut::End),
    ]
}

/// Drives a decoder over `input` cut by `sizes`, stopping at the first
/// error. Every `Some` must consume bytes, so the inner loop is bounded.
fn drive<E>(
    input: &[u8],
    sizes: &[usize],
    mut decode: impl FnMut(&mut BytesMut) -> Result<Option<E>, DecodeError>,
) -> (Vec<E>, Option<DecodeError>, BytesMut) {
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for chunk in chunks(input, sizes) {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match decode(&mut buf) {
                Ok(Some(event)) => {
                    assert!(buf.len() < before, "event without consuming input");
                    events.push(event);
                }
                Ok(None) => break,
                Err(err) => return (events, Some(err), buf),
            }
        }
    }
    (events, None, buf)
}

/// A record with a plausible header (mostly version 1, types around the
/// defined range, ids 0..=2) so the fuzzing reaches past the header checks.
fn plausible_record() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![8 => Just(1u8), 1 => any::<u8>()],
        0u8..14,
        0u16..3,
        vec(any::<u8>(), 0..40),
        0u8..10,
    )
        .prop_map(|(version, record_type, id, content, padding)| {
            let header = RecordHeader {
                version,
                record_type,
                request_id: id,
                content_length: content.len() as u16,
                padding_length: padding,
            };
            let mut out = header.to_bytes().to_vec();
            out.extend_from_slice(&content);
            out.extend(std::iter::repeat_n(0, usize::from(padding)));
            out
        })
}

fn fuzz_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..4096),
        vec(plausible_record(), 0..30).prop_map(|records| records.concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn request_round_trip(req in request(), sizes in chunking()) {
        let mut wire = BytesMut::new();
        encode_request(&mut wire, &req);

        let mut decoder = RequestDecoder::new();
        let (events, err, rest) = drive(&wire, &sizes, |buf| decoder.decode(buf));
        prop_assert_eq!(err, None);
        prop_assert!(rest.is_empty());

        let mut events = events.into_iter();
        prop_assert_eq!(
            events.next(),
            Some(RequestEvent::Begin {
                request_id: req.request_id,
                role: req.role.to_u16(),
                keep_conn: req.keep_conn,
            })
        );
        prop_assert_eq!(events.next(), Some(RequestEvent::Params(req.params.clone())));
        let mut stdin = Vec::new();
        let mut ended = false;
        for event in events {
            prop_assert!(!ended, "event after StdinEnd");
            match event {
                RequestEvent::Stdin(chunk) => {
                    prop_assert!(!chunk.is_empty());
                    stdin.extend_from_slice(&chunk);
                }
                RequestEvent::StdinEnd => ended = true,
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        prop_assert!(ended);
        prop_assert_eq!(&stdin[..], &req.stdin[..]);
    }

    #[test]
    fn response_round_trip(
        request_id in 1..=u16::MAX,
        outs in vec(server_out(), 0..12),
        app_status in any::<u32>(),
        status in any::<u8>(),
        sizes in chunking(),
    ) {
        let mut wire = BytesMut::new();
        let (mut want_out, mut want_err) = (Vec::new(), Vec::new());
        for out in &outs {
            match out {
                ServerOut::Stdout(data) => {
                    encode_stream(&mut wire, RecordType::Stdout, request_id, data);
                    want_out.extend_from_slice(data);
                }
                ServerOut::Stderr(data) => {
                    encode_stream(&mut wire, RecordType::Stderr, request_id, data);
                    want_err.extend_from_slice(data);
                }
                ServerOut::End(record_type) => encode_stream_end(&mut wire, *record_type, request_id),
            }
        }
        let status = ProtocolStatus::from_u8(status);
        encode_end_request(&mut wire, request_id, app_status, status);

        let mut decoder = ResponseDecoder::new(request_id);
        let (events, err, rest) = drive(&wire, &sizes, |buf| decoder.decode(buf));
        prop_assert_eq!(err, None);
        prop_assert!(rest.is_empty());
        prop_assert!(decoder.is_done());
        prop_assert_eq!(decoder.finish(&rest), Ok(()));

        let (mut got_out, mut got_err, mut end) = (Vec::new(), Vec::new(), None);
        for event in events {
            prop_assert!(end.is_none(), "event after END_REQUEST");
            match event {
                Event::Stdout(data) => got_out.extend_from_slice(&data),
                Event::Stderr(data) => got_err.extend_from_slice(&data),
                Event::EndRequest { app_status, protocol_status } => {
                    end = Some((app_status, protocol_status));
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        prop_assert_eq!(got_out, want_out);
        prop_assert_eq!(got_err, want_err);
        prop_assert_eq!(end, Some((app_status, status)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(input in fuzz_input(), sizes in chunking()) {
        let mut response = ResponseDecoder::new(1);
        let (_, err, rest) = drive(&input, &sizes, |buf| response.decode(buf));
        // At EOF, finish must agree with whether END_REQUEST was seen.
        if err.is_none() {
            prop_assert_eq!(response.finish(&rest).is_ok(), response.is_done());
        }

        let mut request = RequestDecoder::new();
        drive(&input, &sizes, |buf| request.decode(buf));
    }

    #[test]
    fn decode_pairs_never_panics(input in vec(any::<u8>(), 0..512)) {
        if let Ok(pairs) = nvpair::decode_pairs(&input) {
            // Whatever decodes re-encodes (canonically) to the same pairs.
            let mut out = BytesMut::new();
            for (name, value) in &pairs {
                nvpair::encode_pair(&mut out, name, value);
            }
            prop_assert!(out.len() <= input.len());
            prop_assert_eq!(nvpair::decode_pairs(&out), Ok(pairs));
        }
    }
}
