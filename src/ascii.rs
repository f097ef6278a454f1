//! Numbers and addresses as ASCII text into a byte buffer, without the
//! `fmt` machinery: text written on every request (CGI params, access
//! lines), where formatting cost more than the rest of the field.

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
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.put_u8(b'.');
                }
                put_decimal(out, u64::from(octet));
            }
        }
        // Writing into a growable buffer cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(out.writer(), "{v6}");
        }
    }
}
