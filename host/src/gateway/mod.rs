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
pub mod rewrite;
pub mod router;

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::audit::AuditSink;
use crate::config::gateway::Gateway;
use crate::plugin::instances::Transport;
use crate::plugin::{Chain, LoadError, Plugins, Runtime};
use crate::transport::framing::{Frame, Outgoing};
use crate::transport::QUEUE;
use crate::upstream::child::SpawnError;
use crate::upstream::{Target, Upstream, VirtualUpstream};

/// A loaded gateway: its config and every upstream's chain.
pub struct GatewayUpstream {
    shared: Arc<router::Shared>,
    /// The plugin folders in force, kept so their watches and reloads live.
    _plugins: Vec<Arc<Plugins>>,
}

impl std::fmt::Debug for GatewayUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.shared.config.upstreams.iter().map(|u| u.name.as_str()).collect();
        f.debug_struct("GatewayUpstream").field("upstreams", &names).finish()
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
    ) -> Result<(GatewayUpstream, Vec<crate::plugin::reload::Watching>), LoadError> {
        let shared_plugins = Plugins::load(runtime.clone(), config.plugins.clone()).await?;
        let mut watching = Vec::new();
        let mut kept = vec![shared_plugins.clone()];
        if let Ok(w) = shared_plugins.watch(watch) {
            watching.push(w);
        }
        let mut chains = Vec::new();
        for upstream in &config.upstreams {
            match &upstream.plugins {
                None => chains.push(shared_plugins.subscribe()),
                Some(dir) => {
                    let own = Plugins::load(runtime.clone(), Some(dir.clone())).await?;
                    if let Ok(w) = own.watch(watch) {
                        watching.push(w);
                    }
                    chains.push(joined(shared_plugins.subscribe(), own.subscribe()));
                    kept.push(own);
                }
            }
        }
        let setup = lane::LaneSetup { runtime, audit, transport, max_message_bytes };
        let shared = Arc::new(router::Shared { config: Arc::new(config), chains, setup });
        Ok((GatewayUpstream { shared, _plugins: kept }, watching))
    }
}

/// Loads a [`Target::Gateway`] into the [`Target::Virtual`] that serves it;
/// any other target is returned as it is. The watches live as long as the
/// returned guard.
pub async fn prepare(
    target: Target,
    runtime: &Arc<Runtime>,
    audit: &AuditSink,
    transport: Transport,
    max_message_bytes: usize,
    watch: bool,
) -> Result<(Target, Vec<crate::plugin::reload::Watching>), LoadError> {
    let Target::Gateway(config) = target else { return Ok((target, Vec::new())) };
    let (gateway, watching) =
        GatewayUpstream::load((*config).clone(), runtime.clone(), audit.clone(), transport, max_message_bytes, watch)
            .await?;
    tracing::info!(upstreams = config.upstreams.len(), "gateway ready");
    Ok((Target::Virtual(Arc::new(gateway)), watching))
}

impl VirtualUpstream for GatewayUpstream {
    fn name(&self) -> Arc<str> {
        Arc::from("gateway")
    }

    fn start(&self, _max_message_bytes: usize) -> Result<(Upstream, mpsc::Sender<Outgoing>), SpawnError> {
        let (to_router, from_relay) = mpsc::channel::<Outgoing>(QUEUE);
        let (to_relay, mut output) = mpsc::channel::<Frame>(QUEUE);
        let router = router::Router::new(self.shared.clone(), to_relay);
        let pump = tokio::spawn(router.run(from_relay));
        let output = futures::stream::poll_fn(move |cx| output.poll_recv(cx)).map(Ok).boxed();
        Ok((Upstream::remote(self.name(), output, pump), to_router))
    }
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
