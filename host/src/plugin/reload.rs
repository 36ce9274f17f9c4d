//! The plugins folder while Warden serves: reloads, and who is told.
//!
//! The chain in force sits in a `watch` channel. Every session's relay looks
//! at it before each new message it handles, so a new chain takes effect at a
//! message boundary, while messages already in the chain (and the answers to
//! requests that went through it) finish on the chain they started on.
//!
//! A reload reads the whole folder again, reusing every plugin whose component
//! and manifest did not change (no compile, no `init`, its state lives on) and
//! compiling the rest off the async workers (with the precompiled cache). It
//! swaps the whole chain at once, or, if any file does not load, keeps the chain
//! in force and logs which file and why. Every reload is audited with each
//! plugin's old and new digest.
//!
//! The folder is watched: changes are debounced until it has been quiet for a
//! moment, and only `*.wasm` and `*.toml` files count, so a file written under
//! another name and renamed into place is seen whole. `SIGHUP` forces a reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::{Chain, LoadError, Runtime};
use crate::audit::{At, Source};

/// How long the folder must be quiet before a reload.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// The plugins folder and the chain in force.
pub struct Plugins {
    runtime: Arc<Runtime>,
    dir: Option<PathBuf>,
    current: watch::Sender<Arc<Chain>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

impl Plugins {
    /// Loads the folder (none: an empty chain). A folder that does not load is an error here.
    pub async fn load(runtime: Arc<Runtime>, dir: Option<PathBuf>) -> Result<Arc<Plugins>, LoadError> {
        let chain = match &dir {
            Some(dir) => runtime.load_dir(dir, &Chain::default()).await?,
            None => Chain::default(),
        };
        let (current, _) = watch::channel(Arc::new(chain));
        Ok(Arc::new(Plugins { runtime, dir, current, reloading: tokio::sync::Mutex::new(()) }))
    }

    /// The chain in force now.
    pub fn current(&self) -> Arc<Chain> {
        self.current.borrow().clone()
    }

    /// A handle that sees each new chain.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Chain>> {
        self.current.subscribe()
    }

    /// The runtime plugins are loaded with.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Loads the folder again and puts the new chain in force; on any error
    /// the chain in force stays. `why` is logged and audited.
    pub async fn reload(&self, why: &str) -> Result<(), LoadError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let _one = self.reloading.lock().await;
        let started = Instant::now();
        let old = self.current();
        match self.runtime.load_dir(dir, &old).await {
            Ok(new) => {
                let changes = changes(&old, &new);
                if changes.is_empty() {
                    tracing::debug!("{why}: plugins unchanged");
                    return Ok(());
                }
                let new = Arc::new(new);
                tracing::info!(
                    generation = new.generation(),
                    plugins = new.plugins().len(),
                    "{why}: new chain in force after {:?}",
                    started.elapsed()
                );
                self.audit(why, &changes, None);
                self.current.send_replace(new);
                Ok(())
            }
            Err(e) => {
                tracing::error!("{why}: reload refused, the chain in force stays: {e}");
                self.audit(why, &[], Some(&e.to_string()));
                Err(e)
            }
        }
    }

    /// Reloads on `SIGHUP` and, with `folder`, whenever the folder changes, until dropped.
    pub fn watch(self: &Arc<Self>, folder: bool) -> Result<Watching, notify::Error> {
        let Some(dir) = self.dir.clone() else { return Ok(Watching { _watcher: None, task: None }) };
        let (tx, rx) = mpsc::unbounded_channel();
        if !folder {
            // Only SIGHUP: the sender is dropped, the folder never reported.
            drop(tx);
            tracing::info!(dir = %dir.display(), "not watching the plugins folder (--no-watch): SIGHUP reloads it");
            let task = tokio::spawn(self.clone().follow(rx));
            return Ok(Watching { _watcher: None, task: Some(task) });
        }
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            // Reading the folder (a reload does) is not a change.
            Ok(event) if matches!(event.kind, notify::EventKind::Access(_)) => {}
            Ok(event) if event.paths.iter().any(|p| counts(p)) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("watching the plugins folder: {e}"),
        })?;
        notify::Watcher::watch(&mut watcher, &dir, notify::RecursiveMode::NonRecursive)?;
        tracing::info!(dir = %dir.display(), "watching the plugins folder");
        let task = tokio::spawn(self.clone().follow(rx));
        Ok(Watching { _watcher: Some(watcher), task: Some(task) })
    }

    async fn follow(self: Arc<Self>, mut changed: mpsc::UnboundedReceiver<()>) {
        let mut hangup = hangups();
        let mut folder_open = true;
        loop {
            let why = tokio::select! {
                change = changed.recv(), if folder_open => {
                    if change.is_none() {
                        folder_open = false;
                        continue;
                    }
                    // Wait until the folder has been quiet for a moment.
                    while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, changed.recv()).await {}
                    "plugins folder changed"
                }
                Some(()) = recv_hangup(&mut hangup) => "SIGHUP",
            };
            let _ = self.reload(why).await;
        }
    }

    fn audit(&self, why: &str, changes: &[Change], refused: Option<&str>) {
        let plugins: Vec<_> =
            changes.iter().map(|c| json!({"plugin": c.name, "old_digest": c.old, "new_digest": c.new})).collect();
        crate::telemetry::metrics::reloaded("plugins", refused.is_none());
        let event = match refused {
            None => json!({"event": "reload", "why": why, "result": "ok", "plugins": plugins}),
            Some(reason) => json!({"event": "reload", "why": why, "result": "refused", "reason": reason}),
        };
        self.runtime.audit().record(Source::Host, At::WARDEN, &event);
    }
}

/// Stops watching when dropped.
pub struct Watching {
    _watcher: Option<notify::RecommendedWatcher>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A plugin added, replaced, reconfigured or removed by a reload.
struct Change {
    name: String,
    old: Option<String>,
    new: Option<String>,
}

fn changes(old: &Chain, new: &Chain) -> Vec<Change> {
    let mut changes = Vec::new();
    for plugin in new.plugins() {
        let before = old.plugins().iter().find(|p| p.name == plugin.name);
        if before.is_none_or(|b| !Arc::ptr_eq(b, plugin)) {
            let old = before.map(|b| b.digest.clone());
            changes.push(Change { name: plugin.name.to_string(), old, new: Some(plugin.digest.clone()) });
        }
    }
    for plugin in old.plugins() {
        if !new.plugins().iter().any(|p| p.name == plugin.name) {
            changes.push(Change { name: plugin.name.to_string(), old: Some(plugin.digest.clone()), new: None });
        }
    }
    changes
}

/// Whether a change to `path` concerns the chain.
fn counts(path: &Path) -> bool {
    let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
    !hidden && path.extension().is_some_and(|e| e == "wasm" || e == "toml")
}

#[cfg(unix)]
pub(crate) type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub(crate) type Hangups = Option<()>;

#[cfg(unix)]
pub(crate) fn hangups() -> Hangups {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
pub(crate) fn hangups() -> Hangups {
    None
}

#[cfg(unix)]
pub(crate) async fn recv_hangup(hangups: &mut Hangups) -> Option<()> {
    match hangups {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
pub(crate) async fn recv_hangup(_: &mut Hangups) -> Option<()> {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plugin_files_count() {
        assert!(counts(Path::new("/p/10-policy.wasm")));
        assert!(counts(Path::new("/p/10-policy.toml")));
        assert!(!counts(Path::new("/p/.10-policy.wasm.part")));
        assert!(!counts(Path::new("/p/.10-policy.wasm")));
        assert!(!counts(Path::new("/p/10-policy.wasm.tmp")));
        assert!(!counts(Path::new("/p/notes.txt")));
    }
}
