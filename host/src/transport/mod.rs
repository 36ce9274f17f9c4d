//! How messages reach Warden from the client side.
//!
//! - [`framing`]: newline-delimited JSON-RPC with a size limit, for any byte stream.
//! - [`stdio`]: Warden's own stdin and stdout.

pub mod framing;
pub mod stdio;
