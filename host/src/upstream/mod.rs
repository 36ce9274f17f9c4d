//! How Warden reaches the server it fronts.
//!
//! - [`child`]: a stdio server started as a child process.
//! - [`http`]: a remote server over Streamable HTTP (or HTTP+SSE).
//! - [`bridge`]: a handshake-era client in front of a 2026-07-28-only server.

pub mod bridge;
pub mod child;
pub mod handle;
pub mod http;
pub mod sse;

use std::sync::Arc;

use tokio::sync::mpsc;

pub use handle::{Output, Upstream};
use crate::transport::framing::Outgoing;

/// Which server Warden fronts.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// A stdio server's command, started per session.
    pub command: Vec<String>,
    /// A remote server instead.
    pub remote: Option<http::RemoteOptions>,
    /// Ask a stdio server `server/discover` before a client's `initialize` and
    /// bridge to it if it speaks only 2026-07-28 (remote servers are always asked).
    pub probe_era: bool,
}

impl Target {
    /// Its name in plugin contexts and audit records, unless one is given.
    pub fn name(&self, given: Option<&str>) -> Arc<str> {
        match (given, &self.remote) {
            (Some(name), _) => Arc::from(name),
            (None, Some(remote)) => Arc::from(remote.url.host().unwrap_or("upstream")),
            (None, None) => default_upstream_name(&self.command),
        }
    }

    /// Starts it for one client session: the upstream, and the queue that feeds it.
    pub fn start(
        &self,
        name: Arc<str>,
        max_message_bytes: usize,
    ) -> Result<(Upstream, mpsc::Sender<Outgoing>), child::SpawnError> {
        let (upstream, input) = match &self.remote {
            Some(remote) => http::connect(name, remote.clone(), max_message_bytes),
            None => Upstream::start(name, &self.command, max_message_bytes)?,
        };
        Ok(if self.remote.is_some() || self.probe_era { bridge::bridge(upstream, input) } else { (upstream, input) })
    }

    /// Starts it for Warden's own use (the 2026-07-28 lane): no bridge.
    pub fn start_plain(
        &self,
        name: Arc<str>,
        max_message_bytes: usize,
    ) -> Result<(Upstream, mpsc::Sender<Outgoing>), child::SpawnError> {
        match &self.remote {
            Some(remote) => Ok(http::connect(name, remote.clone(), max_message_bytes)),
            None => Upstream::start(name, &self.command, max_message_bytes),
        }
    }
}

/// The upstream name used when none is given: the command's file name.
pub fn default_upstream_name(command: &[String]) -> Arc<str> {
    command
        .first()
        .and_then(|p| std::path::Path::new(p).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "upstream".to_owned())
        .into()
}
