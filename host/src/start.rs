//! Why `warden wrap` or `warden serve` could not start (or go on): the
//! plugin runtime, the plugins folder, its watcher, the upstream, the listener.

use crate::plugin::{LoadError, RuntimeError};
use crate::upstream::child::SpawnError;

/// Why a mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The plugin runtime.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A plugin of the folder (it names the file).
    #[error(transparent)]
    Plugins(#[from] LoadError),
    /// Watching the plugins folder for changes.
    #[error("watching the plugins folder: {0}")]
    Watch(#[from] notify::Error),
    /// Starting the upstream server.
    #[error(transparent)]
    Upstream(#[from] SpawnError),
    /// A virtual endpoint of the config at the main endpoint's own path,
    /// which would serve everything where the config means a subset.
    #[error("the config's endpoint {0} is the main endpoint's path; give one of them another path (--path)")]
    EndpointAtMain(String),
    /// Binding or reading the listening socket.
    #[error("the listener: {0}")]
    Listen(#[from] std::io::Error),
}
