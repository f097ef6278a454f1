//! Record encoders. Everything appends to a caller-provided `BytesMut`;
//! content longer than one record holds is split across records, and every
//! record is padded so content plus padding is a multiple of 8.

use bytes::{BufMut, Bytes, BytesMut};

use super::nvpair::{self, length_prefix, short_len};
use super::record::{
    padding_for, ProtocolStatus, RecordHeader, RecordType, Role, FLAG_KEEP_CONN, HEADER_LEN,
    MAX_CONTENT_LEN,
};

/// Zero bytes to copy padding from (padding is always shorter than 8).
pub const PADDING: [u8; 8] = [0; 8];

/// Header bytes for one stream record of `content_len` bytes, and the number
/// of zero padding bytes that must follow the content. Lets a caller send a
/// large body chunk without copying it: header, the chunk, then
/// `PADDING[..padding]`.
pub fn stream_record_header(
    record_type: RecordType,
    request_id: u16,
    content_len: u16,
) -> ([u8; 8], usize) {
    let padding = padding_for(usize::from(content_len));
    // padding_for is always < 8, so this conversion cannot fail.
    let padding_u8 = u8::try_from(padding).unwrap_or(0);
    let header = RecordHeader::new(record_type, request_id, content_len, padding_u8);
    (header.to_bytes(), padding)
}

/// Writes one record whose content fits in a single record.
fn write_record(out: &mut BytesMut, record_type: RecordType, request_id: u16, content: &[u8]) {
    debug_assert!(content.len() <= MAX_CONTENT_LEN);
    let len = u16::try_from(content.len()).unwrap_or(u16::MAX);
    let content = &content[..usize::from(len)];
    let (header, padding) = stream_record_header(record_type, request_id, len);
    out.reserve(HEADER_LEN + content.len() + padding);
    out.put_slice(&header);
    out.put_slice(content);
    out.put_slice(&PADDING[..padding]);
}

/// Worst-case framing overhead (header + padding per record) for `len`
/// bytes of stream content; used only to size reservations.
fn framing_overhead(len: usize) -> usize {
    (len / MAX_CONTENT_LEN + 1) * (HEADER_LEN + 8)
}

/// BEGIN_REQUEST: role, keep-connection flag, five reserved bytes.
pub fn encode_begin_request(out: &mut BytesMut, request_id: u16, role: Role, keep_conn: bool) {
    let [role_hi, role_lo] = role.to_u16().to_be_bytes();
    let flags = if keep_conn { FLAG_KEEP_CONN } else { 0 };
    let body = [role_hi, role_lo, flags, 0, 0, 0, 0, 0];
    write_record(out, RecordType::BeginRequest, request_id, &body);
}

/// ABORT_REQUEST: an empty record.
pub fn encode_abort_request(out: &mut BytesMut, request_id: u16) {
    write_record(out, RecordType::AbortRequest, request_id, &[]);
}

/// Stream content as records of at most 65535 bytes. Empty `data` writes
/// nothing, because an empty record would end the stream; use
/// [`encode_stream_end`] for that.
pub fn encode_stream(out: &mut BytesMut, record_type: RecordType, request_id: u16, data: &[u8]) {
    out.reserve(data.len() + framing_overhead(data.len()));
    for chunk in data.chunks(MAX_CONTENT_LEN) {
        write_record(out, record_type, request_id, chunk);
    }
}

/// The empty record that terminates a stream.
pub fn encode_stream_end(out: &mut BytesMut, record_type: RecordType, request_id: u16) {
    write_record(out, record_type, request_id, &[]);
}

/// The whole PARAMS stream including its empty terminator record.
///
/// The stream is a byte stream, so a pair may straddle records; pairs are
/// written straight into `out` with no intermediate copy. Pairs longer than
/// [`nvpair::MAX_NV_LEN`] are a caller bug: debug builds assert, release
/// builds skip the pair.
pub fn encode_params<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    out: &mut BytesMut,
    request_id: u16,
    params: &[(N, V)],
) {
    out.reserve(framed_stream_len(nvpair::total_len(params)));
    let mut writer = ParamsWriter::new(out, request_id);
    writer.pairs(params);
    writer.finish();
}

/// Bytes a stream of `content_len` bytes takes at most as records, their
/// headers, padding and the end record included; for reservations.
pub fn framed_stream_len(content_len: usize) -> usize {
    content_len
        .saturating_add(framing_overhead(content_len))
        .saturating_add(HEADER_LEN)
}

/// A PARAMS stream written pair by pair straight into a request's buffer,
/// so a caller that forms values as it goes (the CGI params) needs no list
/// of pairs in between. A pair is either whole ([`ParamsWriter::pair`]) or
/// announced by its lengths and then written in pieces
/// ([`ParamsWriter::begin_pair`], [`ParamsWriter::piece`]).
pub struct ParamsWriter<'a> {
    stream: StreamWriter<'a>,
    /// Bytes the pair begun last still expects.
    pending: usize,
}

impl<'a> ParamsWriter<'a> {
    pub fn new(out: &'a mut BytesMut, request_id: u16) -> Self {
        ParamsWriter {
            stream: StreamWriter::new(out, RecordType::Params, request_id),
            pending: 0,
        }
    }

    /// One whole pair.
    ///
    /// Inlined, with a fast path for nearly every CGI param (both lengths
    /// in one byte, the pair fits the open record): one room check and
    /// three appends, the name's copy of a known size when the caller's
    /// name is a constant. It writes exactly what the general path would.
    #[inline(always)]
    pub fn pair(&mut self, name: &[u8], value: &[u8]) {
        if let (Some(name_len), Some(value_len)) = (short_len(name.len()), short_len(value.len())) {
            let total = 2 + name.len() + value.len();
            if self.pending == 0 && self.stream.has_room(total) {
                let out = &mut *self.stream.out;
                out.reserve(total);
                out.extend_from_slice(&[name_len, value_len]);
                out.extend_from_slice(name);
                out.extend_from_slice(value);
                return;
            }
        }
        self.pair_in_pieces(name, value);
    }

    /// [`ParamsWriter::pair`] for any lengths and wherever the open record
    /// ends: announced, then split across records as needed.
    fn pair_in_pieces(&mut self, name: &[u8], value: &[u8]) {
        if self.begin_pair(name.len(), value.len()) {
            self.piece(name);
            self.piece(value);
        }
    }

    /// Each pair of a list, in order.
    pub fn pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(&mut self, pairs: &[(N, V)]) {
        for (name, value) in pairs {
            self.pair(name.as_ref(), value.as_ref());
        }
    }

    /// Announces a pair of these lengths; its name and then its value
    /// follow through [`ParamsWriter::piece`], exactly that many bytes.
    /// `false` (and nothing written) for a pair longer than
    /// [`nvpair::MAX_NV_LEN`]: a caller bug, asserted in debug builds; its
    /// pieces are then dropped.
    pub fn begin_pair(&mut self, name_len: usize, value_len: usize) -> bool {
        self.complete_pending();
        debug_assert!(
            name_len <= nvpair::MAX_NV_LEN && value_len <= nvpair::MAX_NV_LEN,
            "FastCGI name-value pair longer than MAX_NV_LEN"
        );
        match length_prefix(name_len, value_len) {
            Some((prefix, prefix_len)) => {
                if prefix_len == 2 {
                    // Both lengths short, as for nearly every CGI param: a
                    // fixed-size copy the compiler inlines, not a memcpy call.
                    self.stream.write(&prefix[..2]);
                } else {
                    self.stream.write(&prefix[..prefix_len]);
                }
                self.pending = name_len + value_len;
                true
            }
            None => false,
        }
    }

    /// The next bytes of the pair begun last. Bytes past what it announced
    /// are a caller bug (asserted) and are dropped, so the stream's framing
    /// stays right whatever the caller does.
    #[inline]
    pub fn piece(&mut self, bytes: &[u8]) {
        debug_assert!(
            bytes.len() <= self.pending,
            "more bytes than the pair announced"
        );
        let take = bytes.len().min(self.pending);
        self.pending -= take;
        self.stream.write(&bytes[..take]);
    }

    /// Ends the stream: closes the open record and writes the empty one.
    pub fn finish(mut self) {
        self.complete_pending();
        let record_type = self.stream.record_type;
        let request_id = self.stream.request_id;
        let out = self.stream.finish();
        encode_stream_end(out, record_type, request_id);
    }

    /// A pair left short (a caller bug, asserted) is filled with zero
    /// bytes, so the lengths already written stay true.
    fn complete_pending(&mut self) {
        debug_assert_eq!(self.pending, 0, "a pair was left short");
        while self.pending > 0 {
            let take = self.pending.min(PADDING.len());
            self.pending -= take;
            self.stream.write(&PADDING[..take]);
        }
    }
}

/// Writes a byte stream into records, filling each record up to 65535 bytes
/// before starting the next. The header of the open record is written as a
/// placeholder and patched once its length is known.
struct StreamWriter<'a> {
    out: &'a mut BytesMut,
    record_type: RecordType,
    request_id: u16,
    /// Offset in `out` of the open record's header.
    open: Option<usize>,
}

impl<'a> StreamWriter<'a> {
    fn new(out: &'a mut BytesMut, record_type: RecordType, request_id: u16) -> Self {
        StreamWriter {
            out,
            record_type,
            request_id,
            open: None,
        }
    }

    /// Whether `len` more bytes fit the open record without filling it (a
    /// full record is closed by [`StreamWriter::write_split`]); `false`
    /// when no record is open.
    #[inline]
    fn has_room(&self, len: usize) -> bool {
        self.open
            .is_some_and(|start| self.out.len() - start - HEADER_LEN + len < MAX_CONTENT_LEN)
    }

    /// Inlined: it runs for every piece of a pair written in pieces, and
    /// the usual piece fits the open record as it is (PARAMS are rarely
    /// over one record).
    #[inline]
    fn write(&mut self, data: &[u8]) {
        if self.has_room(data.len()) {
            self.out.extend_from_slice(data);
            return;
        }
        self.write_split(data);
    }

    /// Opens a record when none is, and splits `data` where one fills up.
    fn write_split(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let start = match self.open {
                Some(start) => start,
                None => {
                    let start = self.out.len();
                    self.out.put_slice(&[0; HEADER_LEN]);
                    self.open = Some(start);
                    start
                }
            };
            let used = self.out.len() - start - HEADER_LEN;
            let take = (MAX_CONTENT_LEN - used).min(data.len());
            self.out.put_slice(&data[..take]);
            data = &data[take..];
            if used + take == MAX_CONTENT_LEN {
                self.close();
            }
        }
    }

    /// Closes the open record, if any: patch its header, append padding.
    fn close(&mut self) {
        if let Some(start) = self.open.take() {
            let len = self.out.len() - start - HEADER_LEN;
            // `write` never lets a record grow past MAX_CONTENT_LEN.
            let len = u16::try_from(len).unwrap_or(u16::MAX);
            let (header, padding) = stream_record_header(self.record_type, self.request_id, len);
            self.out[start..start + HEADER_LEN].copy_from_slice(&header);
            self.out.put_slice(&PADDING[..padding]);
        }
    }

    /// Closes the open record; gives back the buffer for what follows.
    fn finish(mut self) -> &'a mut BytesMut {
        self.close();
        self.out
    }
}

/// GET_VALUES (request id 0): the names to query, each with an empty value.
///
/// Management records are single records, not streams; if the names do not
/// fit in one record they are spread over several GET_VALUES records (each
/// answered on its own). A single name too long for any record is skipped.
pub fn encode_get_values(out: &mut BytesMut, names: &[&[u8]]) {
    let pairs: Vec<(&[u8], &[u8])> = names.iter().map(|name| (*name, &[][..])).collect();
    encode_management_pairs(out, RecordType::GetValues, &pairs);
}

/// GET_VALUES_RESULT (request id 0), server side. Split like
/// [`encode_get_values`].
pub fn encode_get_values_result<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    out: &mut BytesMut,
    pairs: &[(N, V)],
) {
    encode_management_pairs(out, RecordType::GetValuesResult, pairs);
}

/// Packs whole pairs into as few records as possible, never splitting a
/// pair, and always writes at least one record.
fn encode_management_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    out: &mut BytesMut,
    record_type: RecordType,
    pairs: &[(N, V)],
) {
    let mut body = BytesMut::new();
    let mut wrote_any = false;
    for (name, value) in pairs {
        let (name, value) = (name.as_ref(), value.as_ref());
        let len = nvpair::encoded_len(name, value);
        let fits = len != 0 && len <= MAX_CONTENT_LEN;
        debug_assert!(fits, "FastCGI management pair does not fit in a record");
        if !fits {
            continue;
        }
        if body.len() + len > MAX_CONTENT_LEN {
            write_record(out, record_type, 0, &body);
            body.clear();
            wrote_any = true;
        }
        nvpair::encode_pair(&mut body, name, value);
    }
    if !body.is_empty() || !wrote_any {
        write_record(out, record_type, 0, &body);
    }
}

/// END_REQUEST, server side: application status, protocol status, three
/// reserved bytes.
pub fn encode_end_request(
    out: &mut BytesMut,
    request_id: u16,
    app_status: u32,
    status: ProtocolStatus,
) {
    let [a, b, c, d] = app_status.to_be_bytes();
    let body = [a, b, c, d, status.to_u8(), 0, 0, 0];
    write_record(out, RecordType::EndRequest, request_id, &body);
}

/// UNKNOWN_TYPE (request id 0), server side: the type it did not understand
/// and seven reserved bytes.
pub fn encode_unknown_type(out: &mut BytesMut, unknown: u8) {
    let body = [unknown, 0, 0, 0, 0, 0, 0, 0];
    write_record(out, RecordType::UnknownType, 0, &body);
}

/// A whole request small enough to build in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub request_id: u16,
    pub role: Role,
    pub keep_conn: bool,
    pub params: Vec<(Bytes, Bytes)>,
    pub stdin: Bytes,
}

/// BEGIN_REQUEST, PARAMS with terminator, STDIN with terminator, all into
/// one buffer so a small request goes out in a single write.
pub fn encode_request(out: &mut BytesMut, req: &Request) {
    encode_begin_request(out, req.request_id, req.role, req.keep_conn);
    encode_params(out, req.request_id, &req.params);
    encode_stream(out, RecordType::Stdin, req.request_id, &req.stdin);
    encode_stream_end(out, RecordType::Stdin, req.request_id);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits an encoded buffer into (header, content) per record, checking
    /// framing invariants on the way.
    fn records(mut buf: &[u8]) -> Vec<(RecordHeader, Vec<u8>)> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let header = RecordHeader::parse(buf[..8].try_into().unwrap());
            assert_eq!(header.version, 1);
            let len = usize::from(header.content_length);
            let pad = usize::from(header.padding_length);
            assert_eq!((len + pad) % 8, 0, "record not 8-aligned");
            assert!(pad < 8);
            assert!(buf[8 + len..8 + len + pad].iter().all(|&b| b == 0));
            out.push((header, buf[8..8 + len].to_vec()));
            buf = &buf[header.record_len()..];
        }
        out
    }

    #[test]
    fn begin_request_layout() {
        let mut out = BytesMut::new();
        encode_begin_request(&mut out, 7, Role::Responder, true);
        assert_eq!(&out[..], &[1, 1, 0, 7, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
        out.clear();
        encode_begin_request(&mut out, 0x0102, Role::Filter, false);
        assert_eq!(&out[8..11], &[0, 3, 0]);
        assert_eq!(&out[2..4], &[1, 2]);
    }

    #[test]
    fn end_request_and_unknown_type_layout() {
        let mut out = BytesMut::new();
        encode_end_request(&mut out, 1, 0x0102_0304, ProtocolStatus::Overloaded);
        assert_eq!(&out[..], &[1, 3, 0, 1, 0, 8, 0, 0, 1, 2, 3, 4, 2, 0, 0, 0]);
        out.clear();
        encode_unknown_type(&mut out, 99);
        assert_eq!(
            &out[..],
            &[1, 11, 0, 0, 0, 8, 0, 0, 99, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn abort_and_stream_end_are_empty_records() {
        let mut out = BytesMut::new();
        encode_abort_request(&mut out, 3);
        encode_stream_end(&mut out, RecordType::Stdin, 3);
        assert_eq!(&out[..], &[1, 2, 0, 3, 0, 0, 0, 0, 1, 5, 0, 3, 0, 0, 0, 0]);
    }

    #[test]
    fn stream_padding() {
        let mut out = BytesMut::new();
        encode_stream(&mut out, RecordType::Stdout, 1, b"hello");
        assert_eq!(&out[..], b"\x01\x06\x00\x01\x00\x05\x03\x00hello\0\0\0");
    }

    #[test]
    fn empty_stream_writes_nothing() {
        let mut out = BytesMut::new();
        encode_stream(&mut out, RecordType::Stdin, 1, &[]);
        assert!(out.is_empty());
    }

    fn stream_sizes(len: usize) -> Vec<usize> {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut out = BytesMut::new();
        encode_stream(&mut out, RecordType::Stdin, 9, &data);
        let recs = records(&out);
        let joined: Vec<u8> = recs.iter().flat_map(|(_, c)| c.clone()).collect();
        assert_eq!(joined, data);
        assert!(recs
            .iter()
            .all(|(h, _)| h.request_id == 9 && h.record_type == 5));
        recs.iter().map(|(_, c)| c.len()).collect()
    }

    #[test]
    fn stream_split_at_65535() {
        assert_eq!(stream_sizes(65535), vec![65535]);
        assert_eq!(stream_sizes(65536), vec![65535, 1]);
        assert_eq!(
            stream_sizes(200 * 1024),
            vec![65535, 65535, 65535, 200 * 1024 - 3 * 65535]
        );
    }

    #[test]
    fn stream_record_header_matches_encode_stream() {
        let data = vec![0xAB; 1001];
        let (header, padding) = stream_record_header(RecordType::Stdin, 4, 1001);
        let mut manual = BytesMut::new();
        manual.put_slice(&header);
        manual.put_slice(&data);
        manual.put_slice(&PADDING[..padding]);
        let mut encoded = BytesMut::new();
        encode_stream(&mut encoded, RecordType::Stdin, 4, &data);
        assert_eq!(manual, encoded);
        assert_eq!(padding, 7);
    }

    #[test]
    fn params_stream_with_terminator() {
        let mut out = BytesMut::new();
        encode_params(&mut out, 2, &[("A", "1"), ("BB", "22")]);
        let recs = records(&out);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].1, b"\x01\x01A1\x02\x02BB22");
        assert_eq!(recs[1].0.content_length, 0);
        assert!(recs
            .iter()
            .all(|(h, _)| h.record_type == 4 && h.request_id == 2));
    }

    #[test]
    fn empty_params_is_just_the_terminator() {
        let mut out = BytesMut::new();
        encode_params::<&[u8], &[u8]>(&mut out, 1, &[]);
        assert_eq!(&out[..], &[1, 4, 0, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn huge_param_straddles_records() {
        let value = vec![b'x'; 150_000];
        let mut out = BytesMut::new();
        encode_params(&mut out, 1, &[(&b"BIG"[..], &value[..]), (b"S", b"s")]);
        let recs = records(&out);
        let sizes: Vec<usize> = recs.iter().map(|(_, c)| c.len()).collect();
        // Prefixes: 1 + 4 for BIG, 1 + 1 for S.
        let stream_len = 5 + 3 + 150_000 + 2 + 1 + 1;
        assert_eq!(sizes, vec![65535, 65535, stream_len - 2 * 65535, 0]);
        let joined: Vec<u8> = recs.iter().flat_map(|(_, c)| c.clone()).collect();
        let pairs = nvpair::decode_pairs(&joined).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(&pairs[0].1[..], &value[..]);
        assert_eq!(&pairs[1].0[..], b"S");
    }

    #[test]
    fn params_exactly_filling_a_record() {
        // 1 + 4 + 1 + 65529 = 65535: one full record, then the terminator.
        let value = vec![b'v'; 65529];
        let mut out = BytesMut::new();
        encode_params(&mut out, 1, &[(&b"N"[..], &value[..])]);
        let sizes: Vec<usize> = records(&out).iter().map(|(_, c)| c.len()).collect();
        assert_eq!(sizes, vec![65535, 0]);
    }

    /// The stream `pairs` must make: their encodings back to back, cut
    /// into full records, then the empty one (built without ParamsWriter).
    fn params_stream_reference(pairs: &[(Vec<u8>, Vec<u8>)]) -> BytesMut {
        let mut content = BytesMut::new();
        for (name, value) in pairs {
            nvpair::encode_pair(&mut content, name, value);
        }
        let mut out = BytesMut::new();
        encode_stream(&mut out, RecordType::Params, 1, &content);
        encode_stream_end(&mut out, RecordType::Params, 1);
        out
    }

    /// Short pairs take `pair`'s fast path while they fit the open record;
    /// one that would fill it or cross its end goes the general way. Either
    /// way the stream is the reference one, at every alignment.
    #[test]
    fn short_pairs_at_record_ends_match_the_reference() {
        // Lengths 0..=127 on both sides, crossing two record ends.
        let mut varied = Vec::new();
        for i in 0..2000usize {
            let name = vec![b'N'; 1 + i % 127];
            let value = vec![b'v'; (i * 7) % 128];
            varied.push((name, value));
        }
        let mut out = BytesMut::new();
        let mut writer = ParamsWriter::new(&mut out, 1);
        for (name, value) in &varied {
            writer.pair(name, value);
        }
        writer.finish();
        assert!(records(&out).len() >= 3, "the pairs cross a record end");
        assert_eq!(out, params_stream_reference(&varied));

        // A short pair that exactly fills the record, one short of filling
        // it, and one a byte too long for it: 1 + 4 + 1 + long, then 4.
        for long in [65525, 65524, 65526] {
            let pairs = vec![
                (b"L".to_vec(), vec![b'x'; long]),
                (b"S".to_vec(), b"s".to_vec()),
                (b"T".to_vec(), b"t".to_vec()),
            ];
            let mut out = BytesMut::new();
            let mut writer = ParamsWriter::new(&mut out, 1);
            for (name, value) in &pairs {
                writer.pair(name, value);
            }
            writer.finish();
            assert_eq!(out, params_stream_reference(&pairs), "long value {long}");
        }
    }

    #[test]
    fn a_pair_written_in_pieces_is_the_pair_written_whole() {
        // The long value straddles two records; the pieces split it
        // elsewhere than the record boundary does.
        let long = vec![b'v'; 70_000];
        let pairs: [(&[u8], &[u8]); 3] = [(b"A", b"1"), (b"HTTP_LONG", &long), (b"B", b"")];
        let mut whole = BytesMut::new();
        encode_params(&mut whole, 1, &pairs);

        let mut pieces = BytesMut::new();
        let mut writer = ParamsWriter::new(&mut pieces, 1);
        writer.pair(b"A", b"1");
        assert!(writer.begin_pair(b"HTTP_LONG".len(), long.len()));
        writer.piece(b"HTTP_");
        writer.piece(b"LONG");
        for chunk in long.chunks(30_001) {
            writer.piece(chunk);
        }
        writer.pair(b"B", b"");
        writer.finish();

        assert_eq!(pieces, whole);
        let recs = records(&pieces);
        assert_eq!(recs.len(), 3, "two records of pairs and the terminator");
        let mut content = recs[0].1.clone();
        content.extend_from_slice(&recs[1].1);
        let decoded = nvpair::decode_pairs(&content).unwrap();
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[1].1.len(), 70_000);
    }

    #[test]
    fn get_values_layout() {
        let mut out = BytesMut::new();
        encode_get_values(&mut out, &[b"FCGI_MAX_CONNS", b"FCGI_MPXS_CONNS"]);
        let recs = records(&out);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].0.request_id, 0);
        assert_eq!(recs[0].0.record_type, 9);
        let pairs = nvpair::decode_pairs(&recs[0].1).unwrap();
        assert_eq!(&pairs[1].0[..], b"FCGI_MPXS_CONNS");
        assert!(pairs.iter().all(|(_, v)| v.is_empty()));
    }

    #[test]
    fn get_values_result_splits_on_pair_boundaries() {
        let big = vec![b'v'; 40_000];
        let pairs = vec![(&b"A"[..], &big[..]), (b"B", &big[..]), (b"C", b"1")];
        let mut out = BytesMut::new();
        encode_get_values_result(&mut out, &pairs);
        let recs = records(&out);
        assert_eq!(recs.len(), 2);
        let first = nvpair::decode_pairs(&recs[0].1).unwrap();
        let second = nvpair::decode_pairs(&recs[1].1).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(second.len(), 2);
    }

    #[test]
    fn empty_get_values_is_one_empty_record() {
        let mut out = BytesMut::new();
        encode_get_values(&mut out, &[]);
        assert_eq!(&out[..], &[1, 9, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn whole_request_layout() {
        let req = Request {
            request_id: 1,
            role: Role::Responder,
            keep_conn: false,
            params: vec![(Bytes::from_static(b"K"), Bytes::from_static(b"V"))],
            stdin: Bytes::from_static(b"body"),
        };
        let mut out = BytesMut::new();
        encode_request(&mut out, &req);
        let types: Vec<u8> = records(&out).iter().map(|(h, _)| h.record_type).collect();
        assert_eq!(types, vec![1, 4, 4, 5, 5]);
    }
}
