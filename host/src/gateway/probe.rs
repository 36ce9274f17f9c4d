//! What each upstream can do, learned once when the gateway starts and again
//! when a reload adds or changes it: an `initialize` through its chain (so
//! plugins shape the answer as they shape a session's), then it is closed.
//! Sessions answer their client's `initialize` from these and start an
//! upstream only when a message needs it (see `router::lanes`).
//!
//! A probe that fails is tried again (1 s, doubling to 30 s) until it
//! answers or a reload comes; `/readyz` says the upstream is down meanwhile.
//!
//! Probes run in the background: a session that initializes before they are
//! all in starts every upstream and asks each, as without them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::lane::{Lane, LaneEvent, LaneSetup};
use super::merge::Introduced;
use crate::config::gateway::{Gateway, UpstreamConfig};
use crate::plugin::Chain;
use crate::telemetry::health::HEALTH;
use crate::upstream::Opening;

/// Longest an upstream may take to answer the probe.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long after a failed probe it is tried again, doubling up to [`RETRY_MAX`].
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// The id of the probe's `initialize`.
const PROBE_ID: &str = "\"warden-probe\"";

/// Each upstream's `initialize` answer, by name, with the config it was
/// learned under (a changed upstream is learned again).
pub struct Probes {
    learned: Mutex<HashMap<String, (UpstreamConfig, Introduced)>>,
    /// Probes in flight.
    pending: watch::Sender<usize>,
    /// Bumped by every [`Probes::learn`]: a failed upstream's retries stop at the next.
    generation: AtomicU64,
}

impl Default for Probes {
    fn default() -> Probes {
        Probes { learned: Mutex::default(), pending: watch::channel(0).0, generation: AtomicU64::new(0) }
    }
}

/// Counts a probe in flight until dropped.
struct InFlight(Arc<Probes>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.pending.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Probes(..)")
    }
}

impl Probes {
    /// What `config`'s upstream answered, if it was probed under this very config.
    pub fn get(&self, config: &UpstreamConfig) -> Option<Introduced> {
        let probes = self.learned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        probes.get(&config.name).filter(|(seen, _)| seen == config).map(|(_, intro)| intro.clone())
    }

    /// Probes, in the background, every upstream of `config` not probed under
    /// its current config; forgets the upstreams it no longer has.
    /// `first`: the gateway is starting, and its first sessions wait for these
    /// (see [`Probes::settled`]); a reload's probes are waited for by nobody.
    pub fn learn(
        self: &Arc<Self>,
        config: &Gateway,
        chains: &[watch::Receiver<Arc<Chain>>],
        setup: &LaneSetup,
        first: bool,
    ) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        {
            let mut probes = self.learned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            probes.retain(|name, (seen, _)| config.upstreams.iter().any(|u| &u.name == name && u == seen));
        }
        for (upstream, chain) in config.upstreams.iter().zip(chains) {
            if self.get(upstream).is_some() {
                continue;
            }
            let (me, upstream, chain, setup) = (self.clone(), upstream.clone(), chain.clone(), setup.clone());
            let in_flight = first.then(|| {
                self.pending.send_modify(|n| *n += 1);
                InFlight(self.clone())
            });
            let generation = self.generation.load(Ordering::Relaxed);
            tokio::spawn(async move {
                let mut in_flight = in_flight;
                let mut pause = RETRY_FIRST;
                loop {
                    match probe(&upstream, chain.clone(), &setup).await {
                        Some(intro) => {
                            tracing::info!(upstream = %upstream.name, "upstream probed");
                            HEALTH.upstream(&upstream.name, None);
                            let mut probes = me.learned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                            probes.insert(upstream.name.clone(), (upstream, intro));
                            return;
                        }
                        None => {
                            tracing::warn!(
                                upstream = %upstream.name,
                                "upstream could not be probed (sessions start it at once); probing it again in {}",
                                humantime::format_duration(pause)
                            );
                            HEALTH.upstream(&upstream.name, Some("did not answer the probe's initialize".into()));
                        }
                    }
                    // The gateway's first sessions wait for the first try only.
                    drop(in_flight.take());
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                    // A reload since probes what it names itself.
                    if me.generation.load(Ordering::Relaxed) != generation {
                        return;
                    }
                }
            });
        }
    }
}

impl Probes {
    /// Resolves once no probe of the gateway's start is in flight (they end
    /// within [`PROBE_TIMEOUT`]); an upstream a reload brings is probed while
    /// sessions go on, and joins those that start before it is with `list_changed`.
    pub async fn settled(&self) {
        let mut pending = self.pending.subscribe();
        let _ = tokio::time::timeout(PROBE_TIMEOUT * 2, pending.wait_for(|n| *n == 0)).await;
    }
}

/// Starts the upstream behind its chain, asks `initialize`, and closes it.
async fn probe(config: &UpstreamConfig, chain: watch::Receiver<Arc<Chain>>, setup: &LaneSetup) -> Option<Introduced> {
    let (events, _ended) = mpsc::channel(4);
    // A child of its own, even for a shared upstream: the share's is initialized by a session.
    let config = UpstreamConfig { share: false, ..config.clone() };
    let (lane, mut output) = Lane::start(0, &config, chain, setup, &Opening::default(), events).ok()?;
    let init = json!({
        "jsonrpc": "2.0",
        "id": "warden-probe",
        "method": "initialize",
        "params": {
            "protocolVersion": crate::era::LATEST_LEGACY,
            "capabilities": {},
            "clientInfo": {"name": "warden-probe", "version": env!("CARGO_PKG_VERSION")}
        }
    });
    if !lane.send(Bytes::from(init.to_string())) {
        return None;
    }
    let answer = tokio::time::timeout(PROBE_TIMEOUT, async {
        while let Some((_, event)) = output.next().await {
            let LaneEvent::Message(bytes) = event else { continue };
            let Ok(message) = crate::jsonrpc::Message::parse(bytes) else { continue };
            if message.head.raw_id.as_deref() == Some(PROBE_ID) {
                let result: Option<Value> = serde_json::from_slice::<Value>(&message.raw).ok()?.get("result").cloned();
                return result;
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    // Dropping the lane closes the upstream's input: it exits as after any session.
    drop(lane);
    answer.map(|result| Introduced::read(&result))
}
