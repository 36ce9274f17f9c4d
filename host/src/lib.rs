//! Warden: an MCP proxy whose every message passes through sandboxed
//! WebAssembly plugins.
//!
//! # Layout
//!
//! A message walks one road and the modules follow it; dependencies run one
//! way along it (no module imports one further back on its road, and
//! `host/tests/layout.rs` checks there is no import cycle):
//!
//! ```text
//!  warden wrap:   stdin ─ transport ─ session ─ relay ─ plugin chain ─ upstream (child / remote)
//!                         (framing,    (drive)   (relay)  (plugin/)     (upstream/)
//!                          stdio)
//!
//!  warden serve:  HTTP ─ serve/listener ─ serve/http ─┬─ legacy session ─ session ─ relay ─ chain ─ upstream
//!                        (limits)  (guard, batch, sse) └─ 2026-07-28 lane (serve/modern) ─ relay ─ chain ─ upstream/bridge
//! ```
//!
//! - [`wrap`]: the `warden wrap` mode, wiring stdio to a child server.
//! - [`serve`]: the `warden serve` gateway: the HTTP front door (listener,
//!   Host/Origin guard, Streamable HTTP, batches, HTTP+SSE), legacy sessions
//!   each with their own relay and upstream, and the stateless 2026-07-28 lane.
//! - [`transport`]: what every mode shares to move newline-delimited JSON-RPC
//!   over a byte stream (framing, stdio).
//! - [`session`]: the loop that feeds one relay from a client and an upstream.
//! - [`relay`]: one session: pending tables, the chain run both ways, host-built replies.
//! - [`plugin`]: the wasmtime runtime, the chain snapshot, per-session instances, host imports.
//! - [`upstream`]: the server side: the started upstream's handle, a child
//!   process, a remote Streamable HTTP or HTTP+SSE server and its event
//!   streams, and the bridge that lets a modern client reach a legacy server.
//! - [`start`]: why a mode could not start, by kind.
//! - [`era`]: the two eras of the protocol and their versions.
//! - [`scaffold`]: `warden plugin new`, a plugin skeleton per language.
//! - [`jsonrpc`]: the strict reader and what routing needs of JSON-RPC;
//!   [`config`]: plugin manifests; [`audit`]: the audit trail.
//! - [`telemetry`]: metrics and readiness, counted along the road (leaves);
//!   [`admin`]: the operators' listener that serves them.

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod config;
pub mod era;
pub mod expiring;
pub mod gateway;
pub mod jsonrpc;
pub mod plugin;
pub mod relay;
pub mod scaffold;
pub mod serve;
pub mod session;
pub mod start;
pub mod telemetry;
pub mod transport;
pub mod upstream;
pub mod wrap;
