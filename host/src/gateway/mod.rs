//! The gateway: many upstreams behind one session, from a `warden.toml`.
//!
//! To the session's relay the gateway is one upstream ([`VirtualUpstream`]);
//! inside, a [`router::Router`] per session routes each message to the lane
//! of the upstream it is for ([`lane`]: a relay with that upstream's chain in
//! front of its own upstream session), so plugins judge each upstream's
//! traffic as that upstream sees it.
//!
//! ```text
//!  client ─ session relay (no plugins) ─ router ─┬─ lane fs:     relay (shared + fs chain)     ─ child
//!                                                 └─ lane remote: relay (shared + remote chain) ─ HTTP
//! ```

pub mod lane;
pub mod merge;
pub mod pins;
pub mod probe;
pub use crate::jsonrpc::rewrite;
pub mod router;
pub mod shared;

use crate::telemetry::health::HEALTH;
use crate::telemetry::metrics;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::audit::{At, AuditSink, Source};
use crate::config::{self, gateway::Gateway};
use crate::plugin::instances::Transport;
use crate::plugin::reload::Watching;
use crate::plugin::{Chain, LoadError, Plugins, Runtime};
use crate::transport::framing::{Frame, Outgoing};
use crate::transport::QUEUE;
use crate::upstream::child::SpawnError;
use crate::upstream::{Opening, Target, Upstream, VirtualUpstream};

/// A loaded gateway: its config and every upstream's chain, followed as the
/// config file is reloaded.
pub struct GatewayUpstream {
    state: Arc<State>,
    /// The virtual endpoint it serves (its path), if not the main one.
    endpoint: Option<Arc<str>>,
}

/// Loaded plugin folders by path (`None`: the empty chain), with their watches.
type Folders = tokio::sync::Mutex<HashMap<Option<PathBuf>, (Arc<Plugins>, Option<Watching>)>>;

struct State {
    shared: watch::Sender<Arc<router::Shared>>,
    setup: lane::LaneSetup,
    watch: bool,
    /// Loaded plugin folders, by path (`None`: the empty chain), kept while
    /// a config names them, with their watches.
    folders: Folders,
}

impl std::fmt::Debug for GatewayUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = self.state.shared.borrow();
        let names: Vec<&str> = shared.config.upstreams.iter().map(|u| u.name.as_str()).collect();
        f.debug_struct("GatewayUpstream").field("upstreams", &names).field("endpoint", &self.endpoint).finish()
    }
}

impl GatewayUpstream {
    /// Loads the shared chain and each upstream's own; `watch` follows
    /// changes to their folders.
    pub async fn load(
        config: Gateway,
        runtime: Arc<Runtime>,
        audit: AuditSink,
        transport: Transport,
        max_message_bytes: usize,
        watch: bool,
    ) -> Result<GatewayUpstream, LoadError> {
        let setup = lane::LaneSetup {
            runtime,
            audit,
            transport,
            max_message_bytes,
            shares: Arc::default(),
            exchanges: Arc::default(),
        };
        let folders = tokio::sync::Mutex::new(HashMap::new());
        let chains = chains(&config, &setup, watch, &folders).await?;
        let pins = Arc::new(pins::Pins::beside(&config.file));
        let probes = Arc::new(probe::Probes::default());
        HEALTH.track(&config.upstreams.iter().map(|u| u.name.clone()).collect::<Vec<_>>());
        probes.learn(&config, &chains.main, &setup, true);
        let shared = Arc::new(router::Shared { pins, probes, config: Arc::new(config), chains, setup: setup.clone() });
        let (shared, _) = watch::channel(shared);
        Ok(GatewayUpstream { state: Arc::new(State { shared, setup, watch, folders }), endpoint: None })
    }

    /// Reads the config file again and, if it is good, has every session take
    /// it; a broken file keeps the config in force. Audited either way.
    pub async fn reload(&self, why: &str) {
        let state = &self.state;
        let file = state.shared.borrow().config.file.clone();
        let result = match config::gateway::load(&file) {
            Ok(config) => match chains(&config, &state.setup, state.watch, &state.folders).await {
                Ok(chains) => Ok((config, chains)),
                Err(e) => Err(format!("a plugins folder failed to load: {e}")),
            },
            Err(e) => Err(e.to_string()),
        };
        let audit = &state.setup.audit;
        match result {
            Ok((config, chains)) => {
                let names: Vec<String> = config.upstreams.iter().map(|u| u.name.clone()).collect();
                tracing::info!(why, upstreams = ?names, "gateway config reloaded");
                metrics::reloaded("config", true);
                HEALTH.config(None);
                HEALTH.track(&names);
                audit.record(
                    Source::Host,
                    At::WARDEN,
                    &json!({"event": "gateway-reload", "why": why, "result": "ok", "upstreams": names}),
                );
                let (pins, probes) = {
                    let now = state.shared.borrow();
                    (now.pins.clone(), now.probes.clone())
                };
                probes.learn(&config, &chains.main, &state.setup, false);
                // A shared child the config no longer runs as it was ends with its last lane.
                state
                    .setup
                    .shares
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .retain(|_, (seen, _)| config.upstreams.contains(seen));
                let shared =
                    router::Shared { pins, probes, config: Arc::new(config), chains, setup: state.setup.clone() };
                state.shared.send_replace(Arc::new(shared));
                // Folders no config names any more are let go.
                let wanted: Vec<Option<PathBuf>> = folder_paths(&state.shared.borrow().config);
                state.folders.lock().await.retain(|path, _| wanted.contains(path));
            }
            Err(reason) => {
                tracing::error!(why, "gateway config reload refused, the config in force stays: {reason}");
                metrics::reloaded("config", false);
                HEALTH.config(Some(reason.clone()));
                audit.record(
                    Source::Host,
                    At::WARDEN,
                    &json!({"event": "gateway-reload", "why": why, "result": "refused", "reason": reason}),
                );
            }
        }
        audit.schedule_flush();
    }

    /// Reloads on SIGHUP and, with `watch`, when the config file changes, until dropped.
    pub fn follow(self: &Arc<Self>) -> Result<Following, notify::Error> {
        let file = self.state.shared.borrow().config.file.clone();
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let watcher = if self.state.watch {
            let name = file.file_name().map(|n| n.to_owned());
            let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    let ours = event.paths.iter().any(|p| p.file_name().map(|n| n.to_owned()) == name);
                    if ours && !matches!(event.kind, notify::EventKind::Access(_)) {
                        let _ = tx.send(());
                    }
                }
            })?;
            let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            notify::Watcher::watch(&mut watcher, dir, notify::RecursiveMode::NonRecursive)?;
            Some(watcher)
        } else {
            drop(tx);
            None
        };
        let me = self.clone();
        let task = tokio::spawn(async move {
            let mut hangup = crate::plugin::reload::hangups();
            let mut file_open = true;
            loop {
                let why = tokio::select! {
                    change = rx.recv(), if file_open => {
                        if change.is_none() {
                            file_open = false;
                            continue;
                        }
                        // Wait until the file has been quiet for a moment (editors write in steps).
                        while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
                        "config file changed"
                    }
                    Some(()) = crate::plugin::reload::recv_hangup(&mut hangup) => "SIGHUP",
                };
                me.reload(why).await;
            }
        });
        Ok(Following { _watcher: watcher, task })
    }
}

/// How long the config file must be quiet before it is read again.
const DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(100);

/// Stops following the config file when dropped.
pub struct Following {
    _watcher: Option<notify::RecommendedWatcher>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Following {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The plugin folders a config names: the shared one, each upstream's own
/// and each endpoint's.
fn folder_paths(config: &Gateway) -> Vec<Option<PathBuf>> {
    let mut paths = vec![config.plugins.clone()];
    paths.extend(config.upstreams.iter().filter_map(|u| u.plugins.clone()).map(Some));
    paths.extend(config.endpoints.iter().filter_map(|e| e.plugins.clone()).map(Some));
    paths
}

/// Every upstream's chains, loading the folders not loaded yet.
pub struct Chains {
    /// At the main endpoint: the shared chain, then the upstream's own (config order).
    pub main: Vec<watch::Receiver<Arc<Chain>>>,
    /// At each virtual endpoint: the shared chain, the endpoint's, then the upstream's own.
    pub endpoints: HashMap<String, Vec<watch::Receiver<Arc<Chain>>>>,
}

async fn chains(
    config: &Gateway,
    setup: &lane::LaneSetup,
    watch: bool,
    folders: &Folders,
) -> Result<Chains, LoadError> {
    let mut folders = folders.lock().await;
    let mut loaded: HashMap<Option<PathBuf>, Arc<Plugins>> = HashMap::new();
    for path in folder_paths(config) {
        let plugins = match folders.get(&path) {
            Some((plugins, _)) => plugins.clone(),
            None => {
                let plugins = Plugins::load(setup.runtime.clone(), path.clone()).await?;
                let watching = match plugins.watch(watch) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        tracing::warn!("a plugins folder is not watched: {e}");
                        None
                    }
                };
                folders.insert(path.clone(), (plugins.clone(), watching));
                plugins
            }
        };
        loaded.insert(path, plugins);
    }
    let folder =
        |path: &Option<PathBuf>| path.as_ref().and_then(|p| loaded.get(&Some(p.clone()))).map(|p| p.subscribe());
    let shared = loaded.get(&config.plugins).map(|p| p.subscribe());
    let per_upstream = |extra: Option<watch::Receiver<Arc<Chain>>>| -> Vec<watch::Receiver<Arc<Chain>>> {
        config
            .upstreams
            .iter()
            .map(|u| join_all([shared.clone(), extra.clone(), folder(&u.plugins)].into_iter().flatten().collect()))
            .collect()
    };
    let main = per_upstream(None);
    let endpoints = config.endpoints.iter().map(|e| (e.path.clone(), per_upstream(folder(&e.plugins)))).collect();
    Ok(Chains { main, endpoints })
}

/// Chains run one after the other, as one chain that changes when any does.
fn join_all(parts: Vec<watch::Receiver<Arc<Chain>>>) -> watch::Receiver<Arc<Chain>> {
    let mut parts = parts.into_iter();
    let Some(first) = parts.next() else { return watch::channel(Arc::new(Chain::new(Vec::new()))).1 };
    parts.fold(first, joined)
}

/// Loads a [`Target::Gateway`] into the [`Target::Virtual`] that serves it;
/// any other target is returned as it is. The returned guard keeps the
/// plugin folders watched and follows the config file.
pub async fn prepare(
    target: Target,
    runtime: &Arc<Runtime>,
    audit: &AuditSink,
    transport: Transport,
    max_message_bytes: usize,
    watch: bool,
) -> Result<(Target, Option<Following>), LoadError> {
    let Target::Gateway(config) = target else { return Ok((target, None)) };
    let gateway =
        GatewayUpstream::load((*config).clone(), runtime.clone(), audit.clone(), transport, max_message_bytes, watch)
            .await?;
    tracing::info!(upstreams = config.upstreams.len(), "gateway ready");
    let gateway = Arc::new(gateway);
    let following = match gateway.follow() {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!("the config file is not watched (SIGHUP still reloads it): {e}");
            None
        }
    };
    Ok((Target::Virtual(gateway), following))
}

impl VirtualUpstream for GatewayUpstream {
    fn name(&self) -> Arc<str> {
        Arc::from("gateway")
    }

    fn start(
        &self,
        opening: &Opening,
        _max_message_bytes: usize,
    ) -> Result<(Upstream, mpsc::Sender<Outgoing>), SpawnError> {
        Ok(start_router(&self.state, opening, self.endpoint.clone()))
    }

    /// The same gateway at a virtual endpoint: its sessions' routers serve its subset.
    fn endpoint(&self, path: &str) -> Option<Arc<dyn VirtualUpstream>> {
        if self.endpoint.is_some() {
            return None;
        }
        self.state.shared.borrow().config.endpoint(path)?;
        Some(Arc::new(GatewayUpstream { state: self.state.clone(), endpoint: Some(Arc::from(path)) }))
    }

    fn required_scopes(&self, path: &str) -> Option<Vec<String>> {
        self.state.shared.borrow().config.endpoint(path)?.required_scopes.clone()
    }

    /// Every header some upstream's `forward-headers` names.
    fn forwards(&self) -> Vec<String> {
        let shared = self.state.shared.borrow();
        let mut names: Vec<String> = shared.config.upstreams.iter().flat_map(|u| u.forward_headers.clone()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// A router for one session (at `endpoint`, or the main one), as the upstream its relay talks to.
fn start_router(state: &State, opening: &Opening, endpoint: Option<Arc<str>>) -> (Upstream, mpsc::Sender<Outgoing>) {
    let (to_router, from_relay) = mpsc::channel::<Outgoing>(QUEUE);
    let (to_relay, mut output) = mpsc::channel::<Frame>(QUEUE);
    let router = router::Router::new(state.shared.subscribe(), opening.clone(), endpoint, to_relay);
    let pump = tokio::spawn(router.run(from_relay));
    let output = futures::stream::poll_fn(move |cx| output.poll_recv(cx)).map(Ok).boxed();
    (Upstream::remote(Arc::from("gateway"), output, pump), to_router)
}

/// The shared chain followed by an upstream's own, as one chain that
/// changes when either does.
fn joined(
    mut shared: watch::Receiver<Arc<Chain>>,
    mut own: watch::Receiver<Arc<Chain>>,
) -> watch::Receiver<Arc<Chain>> {
    let join = |a: &Chain, b: &Chain| Arc::new(Chain::new(a.plugins().iter().chain(b.plugins()).cloned().collect()));
    let first = join(&shared.borrow(), &own.borrow());
    let (tx, rx) = watch::channel(first);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = shared.changed() => if changed.is_err() { break },
                changed = own.changed() => if changed.is_err() { break },
                () = tx.closed() => break,
            }
            let next = join(&shared.borrow(), &own.borrow());
            if tx.send(next).is_err() {
                break;
            }
        }
    });
    rx
}
