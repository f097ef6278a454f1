//! The FastCGI record decoders (`ResponseDecoder`, what php-fpm sends us;
//! `RequestDecoder`, what a client sends a server) on arbitrary bytes fed
//! in arbitrary pieces.
//!
//! Input: byte 0 picks the decoder (low bit: 0 response, 1 request), byte 1
//! seeds how the rest is cut into pieces (0: all at once), the rest is the
//! byte stream. The response decoder expects request id 1, as the gateway's
//! first request on a connection uses.
//!
//! Checked: no panic; the events and the error (if any) are the same
//! whatever the split; no call consumes more than it was given, and no
//! STDOUT/STDERR/STDIN byte is reported that was not consumed; nothing is
//! consumed after END_REQUEST; `finish` agrees with `is_done`; the events,
//! encoded again with the crate's encoders, decode to the same events.
#![no_main]

use bytes::{BufMut, BytesMut};
use fcgi_gateway::fastcgi::{
    encode_abort_request, encode_end_request, encode_get_values, encode_get_values_result,
    encode_params, encode_stream, encode_stream_end, encode_unknown_type, DecodeError, Event,
    RecordHeader, RecordType, RequestDecoder, RequestEvent, ResponseDecoder,
};
use fuzz_support::Splits;
use libfuzzer_sys::fuzz_target;

const REQUEST_ID: u16 = 1;

/// One decoder behind a common face, so the feeding logic is written once.
trait Decoder: Clone {
    type Event: std::fmt::Debug + PartialEq;
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Event>, DecodeError>;
    /// Stream bytes the event carries (STDOUT, STDERR, STDIN).
    fn stream_len(event: &Self::Event) -> usize;
    /// Whether nothing more may be consumed (END_REQUEST seen).
    fn is_done(&self) -> bool;
}

impl Decoder for ResponseDecoder {
    type Event = Event;
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, DecodeError> {
        ResponseDecoder::decode(self, buf)
    }
    fn stream_len(event: &Event) -> usize {
        match event {
            Event::Stdout(b) | Event::Stderr(b) => {
                assert!(!b.is_empty(), "empty stream chunk reported");
                b.len()
            }
            _ => 0,
        }
    }
    fn is_done(&self) -> bool {
        ResponseDecoder::is_done(self)
    }
}

impl Decoder for RequestDecoder {
    type Event = RequestEvent;
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RequestEvent>, DecodeError> {
        RequestDecoder::decode(self, buf)
    }
    fn stream_len(event: &RequestEvent) -> usize {
        match event {
            RequestEvent::Stdin(b) => {
                assert!(!b.is_empty(), "empty STDIN chunk reported");
                b.len()
            }
            _ => 0,
        }
    }
    fn is_done(&self) -> bool {
        false
    }
}

/// Everything a decoder made of `pieces`: its events, the error that
/// stopped it (if any), and the decoder as it was left.
struct Outcome<D: Decoder> {
    events: Vec<D::Event>,
    error: Option<DecodeError>,
    decoder: D,
}

fn run<D: Decoder>(mut decoder: D, pieces: &[&[u8]]) -> Outcome<D> {
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let (mut fed, mut consumed, mut streamed) = (0usize, 0usize, 0usize);
    for piece in pieces {
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            let before = buf.len();
            let was_done = decoder.is_done();
            let result = decoder.decode(&mut buf);
            // `buf` only ever shrinks from the front.
            assert!(buf.len() <= before, "decode grew the buffer");
            consumed += before - buf.len();
            assert_eq!(consumed + buf.len(), fed, "bytes lost or invented");
            if was_done {
                assert_eq!(buf.len(), before, "consumed bytes after END_REQUEST");
                assert!(matches!(result, Ok(None)), "event after END_REQUEST");
            }
            match result {
                Ok(Some(event)) => {
                    streamed += D::stream_len(&event);
                    assert!(
                        streamed <= consumed,
                        "reported more stream bytes than consumed"
                    );
                    events.push(event);
                }
                Ok(None) => break,
                Err(error) => {
                    return Outcome {
                        events,
                        error: Some(error),
                        decoder,
                    }
                }
            }
        }
    }
    Outcome {
        events,
        error: None,
        decoder,
    }
}

/// The response events written again as php-fpm would send them.
fn encode_response(events: &[Event]) -> BytesMut {
    let mut out = BytesMut::new();
    for event in events {
        match event {
            Event::Stdout(data) => encode_stream(&mut out, RecordType::Stdout, REQUEST_ID, data),
            Event::Stderr(data) => encode_stream(&mut out, RecordType::Stderr, REQUEST_ID, data),
            Event::EndRequest {
                app_status,
                protocol_status,
            } => encode_end_request(&mut out, REQUEST_ID, *app_status, *protocol_status),
            Event::GetValuesResult(pairs) => encode_get_values_result(&mut out, pairs),
            Event::UnknownType(t) => encode_unknown_type(&mut out, *t),
        }
    }
    out
}

/// The request events written again as a client would send them.
fn encode_request(events: &[RequestEvent]) -> BytesMut {
    let mut out = BytesMut::new();
    let mut id = 0;
    for event in events {
        match event {
            RequestEvent::Begin {
                request_id,
                role,
                keep_conn,
            } => {
                // By hand: `encode_begin_request` takes only the known roles.
                id = *request_id;
                let header = RecordHeader::new(RecordType::BeginRequest, id, 8, 0);
                out.put_slice(&header.to_bytes());
                out.put_u16(*role);
                out.put_u8(u8::from(*keep_conn));
                out.put_slice(&[0; 5]);
            }
            RequestEvent::Params(pairs) => encode_params(&mut out, id, pairs),
            RequestEvent::Stdin(data) => encode_stream(&mut out, RecordType::Stdin, id, data),
            RequestEvent::StdinEnd => encode_stream_end(&mut out, RecordType::Stdin, id),
            RequestEvent::Abort { request_id } => encode_abort_request(&mut out, *request_id),
            RequestEvent::GetValues(names) => {
                let names: Vec<&[u8]> = names.iter().map(|n| &n[..]).collect();
                encode_get_values(&mut out, &names);
            }
        }
    }
    out
}

fn check<D: Decoder>(
    new: impl Fn() -> D,
    split_seed: u8,
    stream: &[u8],
    encode: impl Fn(&[D::Event]) -> BytesMut,
) -> Outcome<D> {
    let whole = run(new(), &[stream]);
    let split = run(new(), &Splits::new(split_seed).pieces(stream));
    assert_eq!(whole.events, split.events, "events depend on the split");
    assert_eq!(whole.error, split.error, "error depends on the split");

    let again = encode(&whole.events);
    let redone = run(new(), &[&again]);
    assert_eq!(redone.error, None, "re-encoded events do not decode");
    assert_eq!(redone.events, whole.events, "re-encoded events differ");
    whole
}

fuzz_target!(|data: &[u8]| {
    let [mode, split_seed, stream @ ..] = data else {
        return;
    };
    if mode & 1 == 0 {
        let out = check(
            || ResponseDecoder::new(REQUEST_ID),
            *split_seed,
            stream,
            encode_response,
        );
        let done = out.decoder.is_done();
        assert_eq!(
            done,
            out.events
                .iter()
                .any(|e| matches!(e, Event::EndRequest { .. })),
            "is_done disagrees with the events"
        );
        let finished = out.decoder.finish(&BytesMut::new());
        assert_eq!(finished.is_ok(), done, "finish disagrees with is_done");
        if !done {
            assert_eq!(finished, Err(DecodeError::Truncated));
        }
    } else {
        check(RequestDecoder::new, *split_seed, stream, encode_request);
    }
});
