//! Numbers and addresses as ASCII text into a byte buffer, without the
//! `fmt` machinery: text written on every request (CGI params, access
//! lines), where formatting cost more than the rest of the field.
//!
//! Each value is formed on the stack and appended with one `put_slice`:
//! appending costs more than forming (a capacity check and a `memcpy`
//! call), so an IPv4 address goes in once, not once per octet.

use std::io::Write as _;
use std::net::IpAddr;

use bytes::BufMut;

/// The decimal digits of `n`.
pub(crate) fn put_decimal(out: &mut impl BufMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[at..]);
}

/// An address in its usual text form: IPv4 (nearly every peer) by hand,
/// IPv6 through `fmt`, which also shortens its runs of zeros.
pub(crate) fn put_ip(out: &mut impl BufMut, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            // "255.255.255.255" is the longest.
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    text[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    text[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                text[len] = b'0' + octet % 10;
                len += 1;
            }
            out.put_slice(&text[..len]);
        }
        // Writing into a growable buffer cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(out.writer(), "{v6}");
        }
    }
}

/// Short text formed on the stack: a number or an address written where
/// no growable buffer is at hand (a CGI param's value, written after its
/// length).
pub(crate) struct StackText {
    bytes: [u8; STACK_TEXT_LEN],
    len: usize,
}

/// Room for the longest text formed here: an IPv6 address with an embedded
/// IPv4 one takes at most 45 bytes, a u64 20 digits.
const STACK_TEXT_LEN: usize = 48;

impl StackText {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn formed(form: impl FnOnce(&mut &mut [u8])) -> StackText {
        let mut bytes = [0u8; STACK_TEXT_LEN];
        let mut rest = &mut bytes[..];
        form(&mut rest);
        let len = STACK_TEXT_LEN - rest.len();
        StackText { bytes, len }
    }
}

/// [`put_decimal`] into a [`StackText`].
pub(crate) fn decimal_text(n: u64) -> StackText {
    StackText::formed(|out| put_decimal(out, n))
}

/// [`put_ip`] into a [`StackText`].
pub(crate) fn ip_text(ip: IpAddr) -> StackText {
    StackText::formed(|out| put_ip(out, ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimal(n: u64) -> String {
        let mut out = Vec::new();
        put_decimal(&mut out, n);
        String::from_utf8(out).unwrap()
    }

    fn ip(text: &str) -> String {
        let mut out = Vec::new();
        put_ip(&mut out, text.parse().unwrap());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn stack_texts_hold_the_longest_numbers_and_addresses() {
        assert_eq!(decimal_text(u64::MAX).as_bytes(), b"18446744073709551615");
        assert_eq!(decimal_text(0).as_bytes(), b"0");
        for text in [
            "255.255.255.255",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
            "::1",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(ip_text(ip).as_bytes(), ip.to_string().as_bytes());
        }
    }

    #[test]
    fn decimals_at_their_edges() {
        for n in [0, 1, 9, 10, 99, 100, 255, 1000, 65535, u64::MAX] {
            assert_eq!(decimal(n), n.to_string());
        }
    }

    #[test]
    fn ipv4_octets_of_every_width_and_ipv6_shortened() {
        for text in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.7",
            "127.0.0.1",
            "192.168.9.99",
        ] {
            assert_eq!(ip(text), text);
        }
        // Every octet value, in each position.
        for octet in 0..=255u8 {
            let v4 = std::net::Ipv4Addr::new(octet, 1, octet, octet);
            assert_eq!(ip(&v4.to_string()), v4.to_string());
        }
        assert_eq!(ip("2001:db8:0:0:0:0:0:1"), "2001:db8::1");
    }
}
