//! What every mode shares to move newline-delimited JSON-RPC over a byte stream.
//!
//! - [`framing`]: newline-delimited JSON-RPC with a size limit, for any byte stream.
//! - [`stdio`]: Warden's own stdin and stdout.
//!
//! The HTTP front door of `warden serve` lives in [`crate::serve`]; reading an
//! HTTP upstream's event streams, in [`crate::upstream`].

pub mod framing;
pub mod stdio;

/// Queue length between the relay and each writer.
pub const QUEUE: usize = 1024;

/// Read buffer of each stream.
pub const READ_BUFFER: usize = 64 * 1024;

/// A line still unfinished at this many bytes is handed to the relay in pieces,
/// so that a message no plugin wants is passed on while it arrives.
pub const STREAM_FROM: usize = 64 * 1024;
