//! The FastCGI request php-fpm gets, built in one place: this module owns
//! the request id and the record layout (BEGIN_REQUEST as a responder,
//! the whole PARAMS stream, then STDIN). Serving, php-fpm's own pages and
//! the bench all encode through it.

use bytes::{Bytes, BytesMut};

use crate::cgi::params::ParamSink;
use crate::fastcgi::{self, RecordType, Role};

/// The request id on every connection: php-fpm does not multiplex, so one
/// request at a time runs on a connection and they all use this id.
pub const REQUEST_ID: u16 = 1;

/// What follows the params.
#[derive(Debug, Clone, Copy)]
pub enum Stdin<'a> {
    /// The whole body (possibly empty), then the end of STDIN: the request
    /// is complete in this one buffer.
    Complete(&'a [u8]),
    /// The body follows as its own STDIN records (`conn::exchange`).
    Streamed,
}

/// The encoded head of a request: BEGIN_REQUEST, PARAMS and per `stdin`.
/// `keep_conn` asks php-fpm to leave the connection open after answering.
pub fn encode<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    params: &[(N, V)],
    keep_conn: bool,
    stdin: Stdin<'_>,
) -> Bytes {
    encode_with(
        fastcgi::nvpair::total_len(params),
        keep_conn,
        stdin,
        |writer| writer.pairs(params),
    )
}

/// As [`encode`], the params written by `write_params` straight into the
/// request's buffer (the CGI params of a served request: no list of pairs
/// in between). `pairs_len` is about the bytes they take, so that the
/// buffer is allocated once; more only costs a reallocation.
pub fn encode_with(
    pairs_len: usize,
    keep_conn: bool,
    stdin: Stdin<'_>,
    write_params: impl FnOnce(&mut fastcgi::ParamsWriter<'_>),
) -> Bytes {
    let inline = match stdin {
        Stdin::Complete(body) => body.len(),
        Stdin::Streamed => 0,
    };
    // BEGIN_REQUEST, the params, the body's records and STDIN's end.
    let capacity = fastcgi::framed_stream_len(pairs_len)
        .saturating_add(fastcgi::framed_stream_len(inline))
        .saturating_add(32);
    let mut out = BytesMut::with_capacity(capacity);
    fastcgi::encode_begin_request(&mut out, REQUEST_ID, Role::Responder, keep_conn);
    let mut writer = fastcgi::ParamsWriter::new(&mut out, REQUEST_ID);
    write_params(&mut writer);
    writer.finish();
    if let Stdin::Complete(body) = stdin {
        fastcgi::encode_stream(&mut out, RecordType::Stdin, REQUEST_ID, body);
        fastcgi::encode_stream_end(&mut out, RecordType::Stdin, REQUEST_ID);
    }
    out.freeze()
}

/// The CGI params go straight into the PARAMS stream.
impl ParamSink for fastcgi::ParamsWriter<'_> {
    #[inline]
    fn pair(&mut self, name: &[u8], value: &[u8]) {
        fastcgi::ParamsWriter::pair(self, name, value);
    }

    fn begin_pair(&mut self, name_len: usize, value_len: usize) -> bool {
        fastcgi::ParamsWriter::begin_pair(self, name_len, value_len)
    }

    #[inline]
    fn piece(&mut self, bytes: &[u8]) {
        fastcgi::ParamsWriter::piece(self, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastcgi::{RequestDecoder, RequestEvent};

    fn events(head: &[u8]) -> Vec<RequestEvent> {
        let mut decoder = RequestDecoder::new();
        let mut buf = BytesMut::from(head);
        std::iter::from_fn(|| decoder.decode(&mut buf).unwrap()).collect()
    }

    #[test]
    fn a_complete_request_ends_its_stdin_and_a_streamed_one_does_not() {
        let params = [
            ("SCRIPT_FILENAME", "/srv/a.php"),
            ("REQUEST_METHOD", "POST"),
        ];
        let complete = events(&encode(&params, true, Stdin::Complete(b"a=1")));
        assert!(matches!(
            complete.first(),
            Some(RequestEvent::Begin {
                request_id: REQUEST_ID,
                keep_conn: true,
                ..
            })
        ));
        assert!(complete
            .iter()
            .any(|e| matches!(e, RequestEvent::Params(p) if p.len() == 2)));
        assert!(complete
            .iter()
            .any(|e| matches!(e, RequestEvent::Stdin(d) if d.as_ref() == b"a=1")));
        assert!(matches!(complete.last(), Some(RequestEvent::StdinEnd)));

        let streamed = events(&encode(&params, false, Stdin::Streamed));
        assert!(matches!(
            streamed.first(),
            Some(RequestEvent::Begin {
                keep_conn: false,
                ..
            })
        ));
        assert!(!streamed
            .iter()
            .any(|e| matches!(e, RequestEvent::StdinEnd | RequestEvent::Stdin(_))));
    }
}
