//! How Warden reaches the server it fronts.
//!
//! - [`child`]: a stdio server started as a child process.
//! - [`http`]: a remote server over Streamable HTTP (or HTTP+SSE).
//! - [`bridge`]: a handshake-era client in front of a 2026-07-28-only server.

pub mod bridge;
pub mod child;
pub mod exchange;
pub mod handle;
pub mod http;
pub mod sse;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::transport::framing::Outgoing;
pub use handle::{Output, Upstream};

/// Which server Warden fronts: a command or a remote server, never both or neither.
#[derive(Debug, Clone)]
pub enum Target {
    /// A stdio server's command, started per session.
    Command {
        /// The program and its arguments.
        command: Vec<String>,
        /// Ask it `server/discover` before a client's `initialize` and bridge
        /// to it if it speaks only 2026-07-28.
        probe_era: bool,
    },
    /// A remote server (always asked its era).
    Remote(http::RemoteOptions),
    /// Many servers behind one, as a `warden.toml` lists them: loaded by the
    /// mode into a [`Target::Virtual`] before its first session.
    Gateway(Arc<crate::config::gateway::Gateway>),
    /// Something that speaks for many servers, started per session (the
    /// loaded gateway).
    Virtual(Arc<dyn VirtualUpstream>),
}

/// An upstream made of others: started per session like a child, it takes
/// the relay's messages and answers as one server would.
pub trait VirtualUpstream: Send + Sync + std::fmt::Debug {
    /// Its name in logs.
    fn name(&self) -> Arc<str>;
    /// Starts it for one client session.
    fn start(
        &self,
        opening: &Opening,
        max_message_bytes: usize,
    ) -> Result<(Upstream, mpsc::Sender<Outgoing>), child::SpawnError>;
    /// The virtual endpoint at `path` (a gateway's subset), if it has one.
    fn endpoint(&self, _path: &str) -> Option<Arc<dyn VirtualUpstream>> {
        None
    }
    /// The client headers (lowercase names) some upstream may be given.
    fn forwards(&self) -> Vec<String> {
        Vec::new()
    }
    /// The scopes tokens for the virtual endpoint at `path` must carry, when
    /// it says (otherwise `[auth]`'s).
    fn required_scopes(&self, _path: &str) -> Option<Vec<String>> {
        None
    }
}

/// What a session tells the upstream it opens: what a virtual upstream hands
/// on to the sessions it opens in turn (their plugins judge the same caller).
#[derive(Debug, Clone, Default)]
pub struct Opening {
    /// The session's id, when the transport has one.
    pub session: Option<Arc<str>>,
    /// The authenticated caller's subject.
    pub caller: Option<Arc<str>>,
    /// Its claims, as JSON object text (`None`: `{}`).
    pub claims: Option<Arc<str>>,
    /// Client headers a gateway may pass on (see [`Forwarded`]).
    pub forwarded: Forwarded,
    /// The caller's latest OAuth access token, for upstreams that exchange it
    /// (never sent to an upstream itself).
    pub subject_token: Option<exchange::SubjectToken>,
}

/// Headers of the client's request that opened a session, by lowercase
/// name, that some gateway upstream's `forward-headers` names; each upstream
/// gets those its own list names. Never credentials: the config refuses them.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Forwarded(pub Vec<(String, String)>);

impl std::fmt::Debug for Forwarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values are the client's.
        f.debug_list().entries(self.0.iter().map(|(name, _)| name)).finish()
    }
}

/// A command line that names no server, or two.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// Neither a command nor a URL.
    #[error("no upstream: give a command after `--`, or a URL")]
    Neither,
    /// Both.
    #[error("two upstreams: give a command after `--` or a URL, not both")]
    Both,
}

impl Target {
    /// The target a command line names: exactly one of a command and a remote.
    pub fn from_parts(
        command: Vec<String>,
        remote: Option<http::RemoteOptions>,
        probe_era: bool,
    ) -> Result<Target, TargetError> {
        match (command.is_empty(), remote) {
            (false, None) => Ok(Target::Command { command, probe_era }),
            (true, Some(remote)) => Ok(Target::Remote(remote)),
            (true, None) => Err(TargetError::Neither),
            (false, Some(_)) => Err(TargetError::Both),
        }
    }

    /// Its name in plugin contexts and audit records, unless one is given.
    pub fn name(&self, given: Option<&str>) -> Arc<str> {
        match (given, self) {
            (Some(name), _) => Arc::from(name),
            (None, Target::Remote(remote)) => Arc::from(remote.url.host().unwrap_or("upstream")),
            (None, Target::Command { command, .. }) => default_upstream_name(command),
            (None, Target::Virtual(v)) => v.name(),
            (None, Target::Gateway(_)) => Arc::from("gateway"),
        }
    }

    /// Starts it for one client session: the upstream, and the queue that feeds it.
    pub fn start(
        &self,
        name: Arc<str>,
        opening: &Opening,
        max_message_bytes: usize,
    ) -> Result<(Upstream, mpsc::Sender<Outgoing>), child::SpawnError> {
        let (upstream, input) = self.start_plain(name, opening, max_message_bytes)?;
        Ok(match self {
            Target::Remote(_) | Target::Command { probe_era: true, .. } => bridge::bridge(upstream, input),
            Target::Command { probe_era: false, .. } | Target::Virtual(_) | Target::Gateway(_) => (upstream, input),
        })
    }

    /// Starts it for Warden's own use (the 2026-07-28 lane): no bridge.
    pub fn start_plain(
        &self,
        name: Arc<str>,
        opening: &Opening,
        max_message_bytes: usize,
    ) -> Result<(Upstream, mpsc::Sender<Outgoing>), child::SpawnError> {
        match self {
            Target::Remote(remote) => Ok(http::connect(name, remote.clone(), max_message_bytes)),
            Target::Command { command, .. } => Upstream::start(name, command, max_message_bytes),
            Target::Virtual(v) => v.start(opening, max_message_bytes),
            Target::Gateway(_) => Err(child::SpawnError::Spawn {
                program: "gateway".into(),
                error: std::io::Error::other("the gateway was not loaded"),
            }),
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
