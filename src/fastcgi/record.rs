//! Record framing: the fixed 8-byte header, record types, roles and
//! protocol statuses of FastCGI 1.0.

/// The only protocol version FastCGI defines.
pub const VERSION_1: u8 = 1;
/// Every record starts with a header of exactly this many bytes.
pub const HEADER_LEN: usize = 8;
/// `contentLength` is a u16, so one record carries at most this much content.
pub const MAX_CONTENT_LEN: usize = 65535;

/// `flags` bit of BEGIN_REQUEST asking the application to keep the
/// connection open after END_REQUEST.
pub(crate) const FLAG_KEEP_CONN: u8 = 1;

/// The record types of FastCGI 1.0.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    BeginRequest = 1,
    AbortRequest = 2,
    EndRequest = 3,
    Params = 4,
    Stdin = 5,
    Stdout = 6,
    Stderr = 7,
    Data = 8,
    GetValues = 9,
    GetValuesResult = 10,
    UnknownType = 11,
}

impl RecordType {
    /// Maps a wire value to a record type; `None` for values the spec
    /// does not define.
    pub fn from_u8(value: u8) -> Option<RecordType> {
        Some(match value {
            1 => RecordType::BeginRequest,
            2 => RecordType::AbortRequest,
            3 => RecordType::EndRequest,
            4 => RecordType::Params,
            5 => RecordType::Stdin,
            6 => RecordType::Stdout,
            7 => RecordType::Stderr,
            8 => RecordType::Data,
            9 => RecordType::GetValues,
            10 => RecordType::GetValuesResult,
            11 => RecordType::UnknownType,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn to_u8(self) -> u8 {
        self as u8
    }
}

/// A record header exactly as it appears on the wire.
///
/// `record_type` stays a raw `u8` so that a header with an unknown type can
/// still be parsed and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub version: u8,
    pub record_type: u8,
    pub request_id: u16,
    pub content_length: u16,
    pub padding_length: u8,
}

impl RecordHeader {
    /// A version-1 header.
    pub fn new(
        record_type: RecordType,
        request_id: u16,
        content_length: u16,
        padding_length: u8,
    ) -> RecordHeader {
        RecordHeader {
            version: VERSION_1,
            record_type: record_type.to_u8(),
            request_id,
            content_length,
            padding_length,
        }
    }

    /// Parses the 8 header bytes. Never fails: validation (version, type)
    /// is the decoder's job, so it can report what was wrong.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> RecordHeader {
        RecordHeader {
            version: bytes[0],
            record_type: bytes[1],
            request_id: u16::from_be_bytes([bytes[2], bytes[3]]),
            content_length: u16::from_be_bytes([bytes[4], bytes[5]]),
            padding_length: bytes[6],
            // bytes[7] is reserved.
        }
    }

    /// The 8 wire bytes (reserved byte zero).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let [id_hi, id_lo] = self.request_id.to_be_bytes();
        let [len_hi, len_lo] = self.content_length.to_be_bytes();
        [
            self.version,
            self.record_type,
            id_hi,
            id_lo,
            len_hi,
            len_lo,
            self.padding_length,
            0,
        ]
    }

    /// Length of the whole record: header, content and padding.
    pub fn record_len(&self) -> usize {
        HEADER_LEN + usize::from(self.content_length) + usize::from(self.padding_length)
    }
}

/// The role requested in BEGIN_REQUEST (a u16 on the wire).
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Responder = 1,
    Authorizer = 2,
    Filter = 3,
}

impl Role {
    /// Maps a wire value to a role; `None` for roles the spec does not define.
    pub fn from_u16(value: u16) -> Option<Role> {
        match value {
            1 => Some(Role::Responder),
            2 => Some(Role::Authorizer),
            3 => Some(Role::Filter),
            _ => None,
        }
    }

    /// The wire value.
    pub fn to_u16(self) -> u16 {
        self as u16
    }
}

/// `protocolStatus` of END_REQUEST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolStatus {
    /// Normal end of request.
    RequestComplete,
    /// The application cannot multiplex requests on one connection.
    CantMpxConn,
    /// The application is out of some resource (e.g. workers).
    Overloaded,
    /// The application does not implement the requested role.
    UnknownRole,
    /// A value the spec does not define; kept so nothing is lost.
    Other(u8),
}

impl ProtocolStatus {
    pub fn from_u8(value: u8) -> ProtocolStatus {
        match value {
            0 => ProtocolStatus::RequestComplete,
            1 => ProtocolStatus::CantMpxConn,
            2 => ProtocolStatus::Overloaded,
            3 => ProtocolStatus::UnknownRole,
            other => ProtocolStatus::Other(other),
        }
    }

    pub fn to_u8(self) -> u8 {
        match self {
            ProtocolStatus::RequestComplete => 0,
            ProtocolStatus::CantMpxConn => 1,
            ProtocolStatus::Overloaded => 2,
            ProtocolStatus::UnknownRole => 3,
            ProtocolStatus::Other(value) => value,
        }
    }
}

/// Padding needed after `content_len` bytes of content so that content plus
/// padding is a multiple of 8 (the spec recommends 8-byte alignment).
pub fn padding_for(content_len: usize) -> usize {
    (8 - content_len % 8) % 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let header = RecordHeader {
            version: VERSION_1,
            record_type: RecordType::Stdout.to_u8(),
            request_id: 0xBEEF,
            content_length: 0x1234,
            padding_length: 4,
        };
        let bytes = header.to_bytes();
        assert_eq!(bytes, [1, 6, 0xBE, 0xEF, 0x12, 0x34, 4, 0]);
        assert_eq!(RecordHeader::parse(&bytes), header);
        assert_eq!(header.record_len(), 8 + 0x1234 + 4);
    }

    #[test]
    fn header_parse_keeps_unknown_values() {
        let header = RecordHeader::parse(&[9, 200, 0, 1, 0xFF, 0xFF, 255, 77]);
        assert_eq!(header.version, 9);
        assert_eq!(header.record_type, 200);
        assert_eq!(header.request_id, 1);
        assert_eq!(header.content_length, 65535);
        assert_eq!(header.padding_length, 255);
        // The reserved byte is not preserved; it is always written as zero.
        assert_eq!(header.to_bytes()[7], 0);
    }

    #[test]
    fn record_type_round_trip() {
        for value in 0..=255u8 {
            match RecordType::from_u8(value) {
                Some(rt) => {
                    assert!((1..=11).contains(&value));
                    assert_eq!(rt.to_u8(), value);
                }
                None => assert!(value == 0 || value > 11),
            }
        }
    }

    #[test]
    fn role_round_trip() {
        for role in [Role::Responder, Role::Authorizer, Role::Filter] {
            assert_eq!(Role::from_u16(role.to_u16()), Some(role));
        }
        assert_eq!(Role::from_u16(0), None);
        assert_eq!(Role::from_u16(4), None);
    }

    #[test]
    fn protocol_status_round_trip() {
        for value in 0..=255u8 {
            assert_eq!(ProtocolStatus::from_u8(value).to_u8(), value);
        }
        assert_eq!(ProtocolStatus::from_u8(2), ProtocolStatus::Overloaded);
        assert_eq!(ProtocolStatus::from_u8(9), ProtocolStatus::Other(9));
    }

    #[test]
    fn padding() {
        assert_eq!(padding_for(0), 0);
        assert_eq!(padding_for(1), 7);
        assert_eq!(padding_for(7), 1);
        assert_eq!(padding_for(8), 0);
        assert_eq!(padding_for(9), 7);
        assert_eq!(padding_for(MAX_CONTENT_LEN), 1);
        for len in 0..100 {
            assert_eq!((len + padding_for(len)) % 8, 0);
            assert!(padding_for(len) < 8);
        }
    }
}
