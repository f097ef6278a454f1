//! Upstream: addresses, dialing, one connection's drive, the pool.

pub mod addr;

pub use addr::UpstreamAddr;
