//! The FastCGI 1.0 wire format, and nothing else: record framing,
//! name-value pairs, encoders for everything a client (and, for tests, a
//! server) sends, and incremental decoders. Pure bytes in, events out; no
//! I/O, no timers, no HTTP.

pub mod decode;
pub mod encode;
pub mod nvpair;
pub mod record;

pub use decode::{DecodeError, Event, RequestDecoder, RequestEvent, ResponseDecoder};
pub use encode::*;
pub use record::{ProtocolStatus, RecordHeader, RecordType, Role};

#[cfg(test)]
mod decode_tests;
#[cfg(test)]
mod proptests;
