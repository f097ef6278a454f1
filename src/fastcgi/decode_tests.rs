//! Unit tests for the decoders, with crafted inputs for every error.

use bytes::{Bytes, BytesMut};

use super::decode::*;
use super::encode::*;
use super::record::{ProtocolStatus, RecordHeader, RecordType, Role, HEADER_LEN};

fn record(version: u8, record_type: u8, id: u16, content: &[u8], padding: u8) -> BytesMut {
    let header = RecordHeader {
        version,
        record_type,
        request_id: id,
        content_length: content.len() as u16,
        padding_length: padding,
    };
    let mut out = BytesMut::from(&header.to_bytes()[..]);
    out.extend_from_slice(content);
    out.extend_from_slice(&vec![0xEE; usize::from(padding)]);
    out
}

fn end_request(id: u16, app_status: u32, status: ProtocolStatus) -> BytesMut {
    let mut out = BytesMut::new();
    encode_end_request(&mut out, id, app_status, status);
    out
}

fn response_err(id: u16, mut buf: BytesMut) -> DecodeError {
    ResponseDecoder::new(id).decode(&mut buf).unwrap_err()
}

fn request_err(mut buf: BytesMut) -> DecodeError {
    let mut dec = RequestDecoder::new();
    loop {
        match dec.decode(&mut buf) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("no error"),
            Err(err) => return err,
        }
    }
}

#[test]
fn stdout_one_byte_at_a_time() {
    let mut wire = BytesMut::new();
    encode_stream(&mut wire, RecordType::Stdout, 1, b"Status: 200\r\n\r\nhi");
    encode_stream_end(&mut wire, RecordType::Stdout, 1);
    wire.extend_from_slice(&end_request(1, 0, ProtocolStatus::RequestComplete));
    let mut dec = ResponseDecoder::new(1);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for &byte in wire.iter() {
        buf.extend_from_slice(&[byte]);
        while let Some(event) = dec.decode(&mut buf).unwrap() {
            events.push(event);
        }
    }
    assert_eq!(
        events,
        vec![
            Event::Stdout(Bytes::from_static(b"Status: 200\r\n\r\nhi")),
            Event::EndRequest {
                app_status: 0,
                protocol_status: ProtocolStatus::RequestComplete
            },
        ]
    );
    assert!(buf.is_empty());
    assert!(dec.is_done());
    assert_eq!(dec.finish(&buf), Ok(()));
}

#[test]
fn stdout_is_zero_copy_and_padding_consumed() {
    let mut buf = record(1, 6, 1, b"abc", 255);
    buf.extend_from_slice(&record(1, 7, 1, b"oops", 0));
    let start = buf.as_ptr() as usize;
    let mut dec = ResponseDecoder::new(1);
    let Some(Event::Stdout(out)) = dec.decode(&mut buf).unwrap() else {
        panic!("expected stdout");
    };
    assert_eq!(&out[..], b"abc");
    assert_eq!(out.as_ptr() as usize, start + HEADER_LEN);
    assert_eq!(
        dec.decode(&mut buf).unwrap(),
        Some(Event::Stderr(Bytes::from_static(b"oops")))
    );
    assert!(buf.is_empty());
}

#[test]
fn empty_stream_records_are_skipped() {
    let mut buf = record(1, 6, 1, b"", 0);
    buf.extend_from_slice(&record(1, 7, 1, b"", 0));
    buf.extend_from_slice(&end_request(1, 3, ProtocolStatus::RequestComplete));
    let mut dec = ResponseDecoder::new(1);
    assert!(matches!(
        dec.decode(&mut buf).unwrap(),
        Some(Event::EndRequest { app_status: 3, .. })
    ));
}

#[test]
fn end_request_statuses() {
    for status in [
        ProtocolStatus::RequestComplete,
        ProtocolStatus::CantMpxConn,
        ProtocolStatus::Overloaded,
        ProtocolStatus::UnknownRole,
        ProtocolStatus::Other(200),
    ] {
        let mut buf = end_request(5, 0xDEAD_BEEF, status);
        let event = ResponseDecoder::new(5).decode(&mut buf).unwrap();
        assert_eq!(
            event,
            Some(Event::EndRequest {
                app_status: 0xDEAD_BEEF,
                protocol_status: status
            })
        );
    }
    // Raw wire values, independent of the encoder.
    for (raw, status) in [
        (1, ProtocolStatus::CantMpxConn),
        (2, ProtocolStatus::Overloaded),
        (3, ProtocolStatus::UnknownRole),
    ] {
        let mut buf = record(1, 3, 1, &[0, 0, 0, 0, raw, 0, 0, 0], 0);
        let Some(Event::EndRequest {
            protocol_status, ..
        }) = ResponseDecoder::new(1).decode(&mut buf).unwrap()
        else {
            panic!("expected END_REQUEST");
        };
        assert_eq!(protocol_status, status);
    }
}

#[test]
fn nothing_is_consumed_after_end_request() {
    let mut buf = end_request(1, 0, ProtocolStatus::RequestComplete);
    buf.extend_from_slice(&record(1, 6, 1, b"late", 4));
    let mut dec = ResponseDecoder::new(1);
    assert!(dec.decode(&mut buf).unwrap().is_some());
    let left = buf.len();
    assert_eq!(dec.decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), left);
    assert_eq!(dec.finish(&buf), Ok(()));
}

#[test]
fn management_records_on_id_zero() {
    let mut buf = BytesMut::new();
    encode_get_values_result(&mut buf, &[("FCGI_MAX_CONNS", "10")]);
    encode_unknown_type(&mut buf, 42);
    let mut dec = ResponseDecoder::new(1);
    assert_eq!(
        dec.decode(&mut buf).unwrap(),
        Some(Event::GetValuesResult(vec![(
            Bytes::from_static(b"FCGI_MAX_CONNS"),
            Bytes::from_static(b"10")
        )]))
    );
    assert_eq!(dec.decode(&mut buf).unwrap(), Some(Event::UnknownType(42)));
    assert!(!dec.is_done());
}

#[test]
fn response_errors() {
    use DecodeError::*;
    assert_eq!(response_err(1, record(3, 6, 1, b"x", 7)), BadVersion(3));
    assert_eq!(
        response_err(1, record(1, 6, 2, b"x", 7)),
        ForeignRequestId {
            expected: 1,
            got: 2
        }
    );
    assert_eq!(
        response_err(1, record(1, 10, 1, b"", 0)),
        ForeignRequestId {
            expected: 0,
            got: 1
        }
    );
    assert_eq!(
        response_err(1, record(1, 0, 1, b"", 0)),
        UnknownRecordType(0)
    );
    assert_eq!(
        response_err(1, record(1, 12, 1, b"", 0)),
        UnknownRecordType(12)
    );
    for server_never_sends in [1, 2, 4, 5, 8, 9] {
        assert_eq!(
            response_err(1, record(1, server_never_sends, 1, &[0; 8], 0)),
            UnexpectedRecordType(server_never_sends)
        );
    }
    assert_eq!(
        response_err(1, record(1, 11, 0, b"", 0)),
        UnexpectedRecordType(11)
    );
    assert_eq!(response_err(1, record(1, 3, 1, &[0; 7], 1)), BadEndRequest);
    assert_eq!(
        response_err(1, record(1, 10, 0, &[5, 1, b'a'], 5)),
        BadNameValue
    );
}

#[test]
fn header_errors_do_not_wait_for_the_body() {
    // Only the header of a 1000-byte record has arrived.
    let mut buf = record(1, 6, 9, b"", 0);
    buf[4..6].copy_from_slice(&1000u16.to_be_bytes());
    assert!(matches!(
        ResponseDecoder::new(1).decode(&mut buf),
        Err(DecodeError::ForeignRequestId { .. })
    ));
}

#[test]
fn truncated_at_eof() {
    let mut buf = BytesMut::new();
    encode_stream(&mut buf, RecordType::Stdout, 1, b"partial");
    buf.truncate(buf.len() - 3);
    let mut dec = ResponseDecoder::new(1);
    assert_eq!(dec.decode(&mut buf), Ok(None));
    assert_eq!(dec.finish(&buf), Err(DecodeError::Truncated));
    assert_eq!(
        ResponseDecoder::new(1).finish(&BytesMut::new()),
        Err(DecodeError::Truncated)
    );
}

#[test]
fn error_messages() {
    assert_eq!(
        DecodeError::BadVersion(3).to_string(),
        "upstream sent FastCGI version 3, expected 1"
    );
    assert_eq!(
        DecodeError::ForeignRequestId {
            expected: 1,
            got: 2
        }
        .to_string(),
        "upstream sent a record for FastCGI request id 2, expected 1"
    );
    assert!(DecodeError::Truncated
        .to_string()
        .contains("before END_REQUEST"));
}

fn decode_all(dec: &mut RequestDecoder, buf: &mut BytesMut) -> Vec<RequestEvent> {
    let mut events = Vec::new();
    while let Some(event) = dec.decode(buf).unwrap() {
        events.push(event);
    }
    events
}

#[test]
fn request_round_trip_and_keep_conn_reuse() {
    let req = Request {
        request_id: 1,
        role: Role::Responder,
        keep_conn: true,
        params: vec![(Bytes::from_static(b"A"), Bytes::from_static(b"\xff"))],
        stdin: Bytes::from_static(b"body"),
    };
    let mut buf = BytesMut::new();
    encode_request(&mut buf, &req);
    encode_request(
        &mut buf,
        &Request {
            request_id: 2,
            ..req.clone()
        },
    );
    let mut dec = RequestDecoder::new();
    let events = decode_all(&mut dec, &mut buf);
    assert_eq!(events.len(), 8);
    assert_eq!(
        events[0],
        RequestEvent::Begin {
            request_id: 1,
            role: 1,
            keep_conn: true
        }
    );
    assert_eq!(events[1], RequestEvent::Params(req.params.clone()));
    assert_eq!(events[2], RequestEvent::Stdin(req.stdin.clone()));
    assert_eq!(events[3], RequestEvent::StdinEnd);
    assert!(matches!(
        events[4],
        RequestEvent::Begin { request_id: 2, .. }
    ));
}

#[test]
fn request_abort_get_values_and_unknown_role() {
    let mut buf = BytesMut::new();
    encode_get_values(&mut buf, &[b"FCGI_MPXS_CONNS"]);
    buf.extend_from_slice(&record(1, 1, 4, &[0, 9, 0, 0, 0, 0, 0, 0], 0));
    encode_abort_request(&mut buf, 4);
    let events = decode_all(&mut RequestDecoder::new(), &mut buf);
    assert_eq!(
        events,
        vec![
            RequestEvent::GetValues(vec![Bytes::from_static(b"FCGI_MPXS_CONNS")]),
            RequestEvent::Begin {
                request_id: 4,
                role: 9,
                keep_conn: false
            },
            RequestEvent::Abort { request_id: 4 },
        ]
    );
}

#[test]
fn request_errors() {
    use DecodeError::*;
    let mut begin = BytesMut::new();
    encode_begin_request(&mut begin, 1, Role::Responder, false);
    let after_begin = |extra: BytesMut| {
        let mut buf = begin.clone();
        buf.extend_from_slice(&extra);
        request_err(buf)
    };
    assert_eq!(request_err(record(0, 1, 1, &[0; 8], 0)), BadVersion(0));
    assert_eq!(
        request_err(record(1, 4, 1, b"", 0)),
        UnexpectedRecordType(4)
    );
    assert_eq!(
        request_err(record(1, 1, 0, &[0; 8], 0)),
        UnexpectedRecordType(1)
    );
    assert_eq!(
        request_err(record(1, 1, 1, &[0; 2], 6)),
        UnexpectedRecordType(1)
    );
    assert_eq!(
        request_err(record(1, 6, 1, b"", 0)),
        UnexpectedRecordType(6)
    );
    assert_eq!(
        request_err(record(1, 8, 1, b"", 0)),
        UnexpectedRecordType(8)
    );
    assert_eq!(
        request_err(record(1, 200, 1, b"", 0)),
        UnknownRecordType(200)
    );
    assert_eq!(
        request_err(record(1, 9, 3, b"", 0)),
        ForeignRequestId {
            expected: 0,
            got: 3
        }
    );
    assert_eq!(request_err(record(1, 9, 0, &[0x80], 7)), BadNameValue);
    assert_eq!(
        after_begin(record(1, 4, 2, b"", 0)),
        ForeignRequestId {
            expected: 1,
            got: 2
        }
    );
    assert_eq!(
        after_begin(record(1, 1, 2, &[0, 1, 0, 0, 0, 0, 0, 0], 0)),
        ForeignRequestId {
            expected: 1,
            got: 2
        }
    );
    // STDIN before the PARAMS terminator is out of order.
    assert_eq!(
        after_begin(record(1, 5, 1, b"x", 7)),
        UnexpectedRecordType(5)
    );
    let mut bad_params = record(1, 4, 1, &[3, 0], 6);
    bad_params.extend_from_slice(&record(1, 4, 1, b"", 0));
    assert_eq!(after_begin(bad_params), BadNameValue);
}
