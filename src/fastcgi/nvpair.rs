//! Name-value pairs (PARAMS, GET_VALUES, GET_VALUES_RESULT bodies).
//!
//! Each length is one byte when below 128, otherwise four bytes big-endian
//! with the high bit set (so at most 0x7fff_ffff). Names and values are raw
//! bytes: CGI variables may carry anything an HTTP client sent.

use bytes::{BufMut, Bytes, BytesMut};

use super::decode::DecodeError;

/// Longest name or value a 4-byte length can express.
pub const MAX_NV_LEN: usize = 0x7fff_ffff;

/// Lengths up to this use the 1-byte form.
const MAX_SHORT_LEN: usize = 127;

/// Whether a pair can be encoded at all (both lengths ≤ [`MAX_NV_LEN`]).
pub fn is_encodable(name: &[u8], value: &[u8]) -> bool {
    name.len() <= MAX_NV_LEN && value.len() <= MAX_NV_LEN
}

/// Bytes `encode_pair` writes for this pair: the length prefix plus name and
/// value. Returns 0 for a pair that is not [`is_encodable`], matching the
/// fact that `encode_pair` writes nothing for it.
pub fn encoded_len(name: &[u8], value: &[u8]) -> usize {
    match length_prefix(name.len(), value.len()) {
        Some((_, prefix_len)) => prefix_len + name.len() + value.len(),
        None => 0,
    }
}

/// Bytes a list of pairs takes encoded, [`encoded_len`] summed.
pub fn total_len<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> usize {
    pairs
        .iter()
        .map(|(n, v)| encoded_len(n.as_ref(), v.as_ref()))
        .fold(0, usize::saturating_add)
}

/// Appends one pair to `out`.
///
/// Callers must cap names and values at [`MAX_NV_LEN`]; a longer pair is a
/// bug (debug builds assert) and in release builds is skipped entirely
/// rather than written with a wrong length that would corrupt the stream.
pub fn encode_pair(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    debug_assert!(
        is_encodable(name, value),
        "FastCGI name-value pair longer than MAX_NV_LEN"
    );
    if let Some((prefix, prefix_len)) = length_prefix(name.len(), value.len()) {
        out.reserve(prefix_len + name.len() + value.len());
        out.put_slice(&prefix[..prefix_len]);
        out.put_slice(name);
        out.put_slice(value);
    }
}

/// A length in its 1-byte form, when it has one (up to 127).
#[inline]
pub(crate) fn short_len(len: usize) -> Option<u8> {
    u8::try_from(len)
        .ok()
        .filter(|&b| usize::from(b) <= MAX_SHORT_LEN)
}

/// The encoded name and value lengths: up to 8 bytes, of which the first
/// `.1` are used. `None` if either length is above [`MAX_NV_LEN`].
///
/// Split out so the PARAMS encoder can stream a pair across records
/// without first copying it into a scratch buffer.
pub(crate) fn length_prefix(name_len: usize, value_len: usize) -> Option<([u8; 8], usize)> {
    let mut prefix = [0u8; 8];
    let mut used = 0;
    for len in [name_len, value_len] {
        if let Some(short) = short_len(len) {
            prefix[used] = short;
            used += 1;
        } else {
            let wide = u32::try_from(len)
                .ok()
                .filter(|&l| l <= MAX_NV_LEN as u32)?;
            prefix[used..used + 4].copy_from_slice(&(wide | 0x8000_0000).to_be_bytes());
            used += 4;
        }
    }
    Some((prefix, used))
}

/// Decodes a complete name-value body. Any truncation or overrun is
/// [`DecodeError::BadNameValue`].
pub fn decode_pairs(buf: &[u8]) -> Result<Vec<(Bytes, Bytes)>, DecodeError> {
    decode_pairs_shared(&Bytes::copy_from_slice(buf))
}

/// Like [`decode_pairs`], but the returned names and values are zero-copy
/// slices of `buf`.
pub fn decode_pairs_shared(buf: &Bytes) -> Result<Vec<(Bytes, Bytes)>, DecodeError> {
    let mut pairs = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let name_len = read_len(buf, &mut pos)?;
        let value_len = read_len(buf, &mut pos)?;
        let name_end = pos.checked_add(name_len).ok_or(DecodeError::BadNameValue)?;
        let value_end = name_end
            .checked_add(value_len)
            .ok_or(DecodeError::BadNameValue)?;
        if value_end > buf.len() {
            return Err(DecodeError::BadNameValue);
        }
        pairs.push((buf.slice(pos..name_end), buf.slice(name_end..value_end)));
        pos = value_end;
    }
    Ok(pairs)
}

/// Reads one 1- or 4-byte length at `*pos` and advances past it.
fn read_len(buf: &[u8], pos: &mut usize) -> Result<usize, DecodeError> {
    let first = *buf.get(*pos).ok_or(DecodeError::BadNameValue)?;
    if first & 0x80 == 0 {
        *pos += 1;
        return Ok(usize::from(first));
    }
    let bytes = buf.get(*pos..*pos + 4).ok_or(DecodeError::BadNameValue)?;
    let wide = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) & 0x7fff_ffff;
    *pos += 4;
    usize::try_from(wide).map_err(|_| DecodeError::BadNameValue)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(name: &[u8], value: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        encode_pair(&mut out, name, value);
        assert_eq!(out.len(), encoded_len(name, value));
        out
    }

    #[test]
    fn one_byte_lengths_up_to_127() {
        let name = vec![b'n'; 127];
        let out = encode(&name, b"v");
        assert_eq!(out[0], 127);
        assert_eq!(out[1], 1);
        assert_eq!(out.len(), 2 + 127 + 1);
        let pairs = decode_pairs(&out).unwrap();
        assert_eq!(pairs, vec![(Bytes::from(name), Bytes::from_static(b"v"))]);
    }

    #[test]
    fn four_byte_lengths_from_128() {
        let name = vec![b'n'; 128];
        let value = vec![b'v'; 300];
        let out = encode(&name, &value);
        assert_eq!(&out[..4], &[0x80, 0, 0, 128]);
        assert_eq!(&out[4..8], &[0x80, 0, 0x01, 0x2C]);
        assert_eq!(out.len(), 8 + 128 + 300);
        let pairs = decode_pairs(&out).unwrap();
        assert_eq!(pairs, vec![(Bytes::from(name), Bytes::from(value))]);
    }

    #[test]
    fn mixed_lengths_and_boundaries() {
        let mut out = BytesMut::new();
        let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (vec![], vec![]),
            (vec![1; 127], vec![2; 128]),
            (vec![3; 128], vec![4; 127]),
            (b"SCRIPT_FILENAME".to_vec(), b"/srv/index.php".to_vec()),
        ];
        for (n, v) in &cases {
            encode_pair(&mut out, n, v);
        }
        let decoded = decode_pairs(&out).unwrap();
        assert_eq!(decoded.len(), cases.len());
        for ((n, v), (dn, dv)) in cases.iter().zip(&decoded) {
            assert_eq!(&n[..], &dn[..]);
            assert_eq!(&v[..], &dv[..]);
        }
    }

    #[test]
    fn non_utf8_names_and_values() {
        let name = [0xFF, 0xFE, 0x00, 0x80];
        let value = [0xC3, 0x28, 0xA0, 0xA1, 0x00];
        let out = encode(&name, &value);
        let pairs = decode_pairs(&out).unwrap();
        assert_eq!(&pairs[0].0[..], &name);
        assert_eq!(&pairs[0].1[..], &value);
    }

    #[test]
    fn high_bit_value_lengths_are_masked() {
        // A 4-byte length of 0x8000_0001 means 1.
        let buf = [0x80, 0, 0, 1, 0x01, b'a', b'b'];
        let pairs = decode_pairs(&buf).unwrap();
        assert_eq!(
            pairs,
            vec![(Bytes::from_static(b"a"), Bytes::from_static(b"b"))]
        );
    }

    #[test]
    fn empty_body_is_no_pairs() {
        assert_eq!(decode_pairs(&[]).unwrap(), vec![]);
    }

    #[test]
    fn malformed_pairs_are_rejected() {
        let bad: [&[u8]; 7] = [
            &[1],                                              // value length missing
            &[0x80, 0, 0],                                     // 4-byte name length cut short
            &[1, 0x80, 0],                                     // 4-byte value length cut short
            &[2, 1, b'a'],                                     // name overruns the body
            &[1, 2, b'a', b'b'],                               // value overruns the body
            &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], // 2 GiB lengths
            &[0, 0, 1],                                        // a good pair then a truncated one
        ];
        for buf in bad {
            assert_eq!(decode_pairs(buf), Err(DecodeError::BadNameValue), "{buf:?}");
        }
    }

    #[test]
    fn length_prefix_limits() {
        assert_eq!(length_prefix(0, 0).map(|p| p.1), Some(2));
        assert_eq!(length_prefix(127, 128).map(|p| p.1), Some(5));
        assert_eq!(length_prefix(128, 128).map(|p| p.1), Some(8));
        let (prefix, used) = length_prefix(MAX_NV_LEN, 0).unwrap();
        assert_eq!(&prefix[..used], &[0xFF, 0xFF, 0xFF, 0xFF, 0]);
        // One past the limit cannot be expressed; no wrong length is produced.
        assert_eq!(length_prefix(MAX_NV_LEN + 1, 0), None);
        assert_eq!(length_prefix(0, MAX_NV_LEN + 1), None);
        assert_eq!(length_prefix(usize::MAX, usize::MAX), None);
    }

    #[test]
    fn decoded_pairs_share_the_buffer() {
        let mut out = BytesMut::new();
        encode_pair(&mut out, b"NAME", b"value");
        let body = out.freeze();
        let pairs = decode_pairs_shared(&body).unwrap();
        let body_range = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
        assert!(body_range.contains(&(pairs[0].1.as_ptr() as usize)));
    }
}
