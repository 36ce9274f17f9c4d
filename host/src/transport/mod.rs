//! How messages reach Warden from the client side.
//!
//! - [`framing`]: newline-delimited JSON-RPC with a size limit, for any byte stream.
//! - [`stdio`]: Warden's own stdin and stdout.
//! - [`http`]: the Streamable HTTP listener of `warden serve`.
//! - [`http_batch`]: JSON-RPC batches (2025-03-26) on that listener.
//! - [`http_guard`]: the `Host` and `Origin` checks in front of it.
//! - [`http_sse`]: the old HTTP+SSE transport (2024-11-05) beside it.
//! - [`sse`]: reading `text/event-stream` bodies (from HTTP upstreams).

pub mod framing;
pub mod http;
pub mod http_batch;
pub mod http_guard;
pub mod http_sse;
pub mod sse;
pub mod stdio;
