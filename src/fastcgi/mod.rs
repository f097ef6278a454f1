//! placeholder
pub mod decode;
pub mod encode;
pub mod nvpair;
pub mod record;
