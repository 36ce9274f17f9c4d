//! Warden: an MCP proxy whose every message passes through sandboxed
//! WebAssembly plugins.
//!
//! # Layout
//!
//! A message walks one road and the modules follow it:
//!
//! ```text
//!  client ⇄ transport ⇄ relay ⇄ plugin chain ⇄ upstream
//!           (framing)   (relay)  (plugin/)     (upstream/child)
//! ```
//!
//! - [`wrap`]: the `warden wrap` mode, wiring stdio to a child server.
//! - [`serve`]: the `warden serve` gateway: Streamable HTTP sessions, each with its own child server.
//! - [`transport`]: reading and writing messages on the client side.
//! - [`session`]: the loop that feeds one relay from a client and an upstream.
//! - [`relay`]: one session: pending tables, the chain run both ways, host-built replies.
//! - [`plugin`]: the wasmtime runtime, the chain snapshot, per-session instances, host imports.
//! - [`upstream`]: the server side: a child process, or a remote Streamable HTTP server.
//! - [`scaffold`]: `warden plugin new`, a plugin skeleton per language.
//! - [`jsonrpc`]: the little JSON-RPC routing needs; [`config`]: plugin manifests;
//!   [`audit`]: the audit trail.

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod audit;
pub mod config;
pub mod era;
pub mod jsonrpc;
pub mod plugin;
pub mod relay;
pub mod scaffold;
pub mod serve;
pub mod session;
pub mod transport;
pub mod upstream;
pub mod wrap;
