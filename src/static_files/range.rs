//! The `Range` request header, single byte ranges only (RFC 9110 §14).
//!
//! Parsed here rather than with `headers::Range` (0.4), which the
//! conditionals use: its `satisfiable_ranges` drops a suffix longer than the
//! representation (`bytes=-1000` of 100 bytes must be all of it, §14.1.2)
//! and a last-pos past u64 (valid: "up to the end"), so both look like a
//! malformed spec; it rejects `Bytes=` (units are case-insensitive, §14.1),
//! takes `+1` for a position (the grammar is 1*DIGIT) and passes `5-1` and
//! `-` through unchecked. Working around all that would leave as much code
//! as this, and subtler. (hyperium/headers#197 is open on this type.)

/// What a `Range` header asks of a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RangeRequest {
    /// No usable range (absent, malformed, another unit, or several ranges): send it all.
    Full,
    /// Bytes `start..=end`, both inside the representation.
    Part { start: u64, end: u64 },
    /// A well-formed range that selects nothing: 416.
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` and `bytes=-n`. Several ranges are
/// answered with the whole file (no multipart), which RFC 9110 allows.
pub(super) fn parse(header: &str, len: u64) -> RangeRequest {
    let header = header.trim();
    let Some((unit, spec)) = header.split_once('=') else {
        return RangeRequest::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix: the last n bytes.
        return match digits(last) {
            None => RangeRequest::Full,
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if len == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
        };
    }
    let Some(start) = digits(first) else {
        return RangeRequest::Full;
    };
    let end = if last.is_empty() {
        None
    } else {
        match digits(last) {
            // last < first makes the header invalid, hence ignored.
            Some(end) if end < start => return RangeRequest::Full,
            Some(end) => Some(end),
            None => return RangeRequest::Full,
        }
    };
    if start >= len {
        return RangeRequest::Unsatisfiable;
    }
    let last_byte = len - 1;
    RangeRequest::Part {
        start,
        end: end.map_or(last_byte, |e| e.min(last_byte)),
    }
}

/// A non-empty run of ASCII digits; values past u64 saturate (they are
/// beyond any file anyway).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::{Full, Part, Unsatisfiable};
    use super::*;

    #[test]
    fn single_ranges() {
        assert_eq!(parse("bytes=0-9", 100), Part { start: 0, end: 9 });
        assert_eq!(parse("bytes=10-", 100), Part { start: 10, end: 99 });
        assert_eq!(parse("bytes=-10", 100), Part { start: 90, end: 99 });
        assert_eq!(parse("bytes=-1000", 100), Part { start: 0, end: 99 });
        assert_eq!(parse("bytes=90-1000", 100), Part { start: 90, end: 99 });
        assert_eq!(parse("bytes=99-99", 100), Part { start: 99, end: 99 });
        assert_eq!(parse("Bytes = 1 - 2 ", 100), Part { start: 1, end: 2 });
        assert_eq!(
            parse("bytes=0-99999999999999999999999", 100),
            Part { start: 0, end: 99 }
        );
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(parse("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(parse("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse("bytes=-5", 0), Unsatisfiable);
        assert_eq!(parse("bytes=99999999999999999999999-", 100), Unsatisfiable);
    }

    #[test]
    fn ignored() {
        for header in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=5-1",
            "bytes=0-1,5-6",
            "bytes=0-1, 200-300",
            "items=0-1",
            "bytes=1",
            "bytes=+1-2",
            "bytes=--1",
            "bytes=0x1-2",
        ] {
            assert_eq!(parse(header, 100), Full, "{header:?}");
        }
    }
}
