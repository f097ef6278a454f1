//! FastCGI name-value pairs, both ways.
//!
//! Decoding: the input as a PARAMS / GET_VALUES body. Both decoders agree;
//! what they return fits in the input and encodes back to a body that
//! decodes the same and is no longer than the input.
//!
//! Encoding: the input read as a list of pairs (each name and value a
//! length byte then the bytes; a length byte with the high bit set means
//! `(b & 0x7f) * 1024` copies of the next byte, so small inputs make pairs
//! that straddle 64 KiB records). `encode_params` must give records of at
//! most 65535 bytes, each filled before the next starts, padded to 8, that
//! a `RequestDecoder` reads back as exactly those pairs; `encode_pair` and
//! `encoded_len` must agree; GET_VALUES_RESULT records must carry the same
//! pairs back.
#![no_main]

use bytes::{Bytes, BytesMut};
use fcgi_gateway::fastcgi::nvpair::{decode_pairs, decode_pairs_shared, encode_pair, encoded_len};
use fcgi_gateway::fastcgi::{
    encode_begin_request, encode_get_values_result, encode_params, Event, RecordHeader,
    RequestDecoder, RequestEvent, ResponseDecoder, Role,
};
use libfuzzer_sys::fuzz_target;

fn decode_side(data: &[u8]) {
    let copied = decode_pairs(data);
    let shared = decode_pairs_shared(&Bytes::copy_from_slice(data));
    assert_eq!(
        copied, shared,
        "decode_pairs and decode_pairs_shared disagree"
    );
    let Ok(pairs) = copied else { return };
    let carried: usize = pairs.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
    assert!(carried <= data.len(), "pairs larger than their body");
    let mut again = BytesMut::new();
    for (name, value) in &pairs {
        let before = again.len();
        encode_pair(&mut again, name, value);
        assert_eq!(again.len() - before, encoded_len(name, value));
    }
    assert!(again.len() <= data.len(), "re-encoding grew the body");
    assert_eq!(decode_pairs(&again).as_ref(), Ok(&pairs), "round trip");
}

/// One length-prefixed field of the encoding-side input.
fn field(data: &mut &[u8]) -> Option<Vec<u8>> {
    let (&len, rest) = data.split_first()?;
    *data = rest;
    if len & 0x80 != 0 {
        let (&fill, rest) = data.split_first()?;
        *data = rest;
        return Some(vec![fill; usize::from(len & 0x7f) * 1024]);
    }
    let len = usize::from(len).min(data.len());
    let (bytes, rest) = data.split_at(len);
    *data = rest;
    Some(bytes.to_vec())
}

/// Splits an encoded stream into (header, content), checking the framing.
fn records(mut buf: &[u8]) -> Vec<(RecordHeader, &[u8])> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let header = RecordHeader::parse(buf[..8].try_into().expect("8 header bytes"));
        let len = usize::from(header.content_length);
        let pad = usize::from(header.padding_length);
        assert_eq!(header.version, 1);
        assert_eq!((len + pad) % 8, 0, "record not padded to 8");
        assert!(pad < 8);
        assert!(buf[8 + len..8 + len + pad].iter().all(|&b| b == 0));
        out.push((header, &buf[8..8 + len]));
        buf = &buf[header.record_len()..];
    }
    out
}

fn encode_side(mut data: &[u8]) {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut budget = 256 << 10; // keeps each run fast: a few records' worth
    while let (Some(name), Some(value)) = (field(&mut data), field(&mut data)) {
        budget -= (name.len() + value.len()).min(budget);
        pairs.push((name, value));
        if budget == 0 {
            break;
        }
    }
    let body_len: usize = pairs.iter().map(|(n, v)| encoded_len(n, v)).sum();

    let mut out = BytesMut::new();
    encode_begin_request(&mut out, 7, Role::Responder, true);
    let begin_len = out.len();
    encode_params(&mut out, 7, &pairs);
    let params = records(&out[begin_len..]);
    let (terminator, data_records) = params.split_last().expect("a terminator record");
    assert_eq!(terminator.0.content_length, 0, "PARAMS not terminated");
    let carried: usize = data_records.iter().map(|(_, c)| c.len()).sum();
    assert_eq!(
        carried, body_len,
        "PARAMS bytes differ from the pairs' size"
    );
    for (i, (header, content)) in data_records.iter().enumerate() {
        assert!(!content.is_empty(), "empty PARAMS record before the end");
        assert_eq!(header.request_id, 7);
        if i + 1 < data_records.len() {
            assert_eq!(content.len(), 65535, "PARAMS record not filled");
        }
    }

    let mut decoder = RequestDecoder::new();
    let mut buf = out;
    assert!(matches!(
        decoder.decode(&mut buf),
        Ok(Some(RequestEvent::Begin { request_id: 7, .. }))
    ));
    match decoder.decode(&mut buf) {
        Ok(Some(RequestEvent::Params(got))) => {
            assert_eq!(got.len(), pairs.len());
            for ((n, v), (gn, gv)) in pairs.iter().zip(&got) {
                assert!(n[..] == gn[..] && v[..] == gv[..], "PARAMS round trip");
            }
        }
        other => panic!("PARAMS did not decode: {other:?}"),
    }
    assert!(buf.is_empty());

    // GET_VALUES_RESULT packs whole pairs per record; pairs too big for
    // one record are left out (the encoder's documented limit).
    let fitting: Vec<(&[u8], &[u8])> = pairs
        .iter()
        .filter(|(n, v)| encoded_len(n, v) <= 65535)
        .map(|(n, v)| (&n[..], &v[..]))
        .collect();
    let mut out = BytesMut::new();
    encode_get_values_result(&mut out, &fitting);
    let mut got = Vec::new();
    let mut decoder = ResponseDecoder::new(1);
    loop {
        match decoder.decode(&mut out) {
            Ok(Some(Event::GetValuesResult(some))) => got.extend(some),
            Ok(None) => break,
            other => panic!("GET_VALUES_RESULT did not decode: {other:?}"),
        }
    }
    assert!(out.is_empty());
    assert_eq!(got.len(), fitting.len());
    for ((n, v), (gn, gv)) in fitting.iter().zip(&got) {
        assert!(
            n[..] == gn[..] && v[..] == gv[..],
            "GET_VALUES_RESULT round trip"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    decode_side(data);
    encode_side(data);
});
