//! One upstream of a gateway session: its own relay and chain in front of
//! its own upstream session, exactly as `warden wrap` runs one, with the
//! router as its client. Plugins in it see the messages between the client
//! and this upstream as the upstream sees them (unprefixed names, its own
//! ids), with `context.upstream` set to its name.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::shared::Shared;
use crate::audit::AuditSink;
use crate::config::gateway::TokenExchange;
use crate::config::gateway::{Reach, UpstreamConfig, CHILD_BASE_ENV};
use crate::plugin::instances::{Caller, SessionFacts, Transport};
use crate::plugin::{Chain, Instances, Runtime};
use crate::relay::Relay;
use crate::session::{self, SessionEnd};
use crate::transport::framing::{Frame, Outgoing};
use crate::transport::QUEUE;
use crate::upstream::child::{ChildEnv, SpawnError, EXIT_GRACE};
use crate::upstream::exchange::{Exchanger, SessionExchange};
use crate::upstream::http::RemoteOptions;
use crate::upstream::{Opening, Target, Upstream};

/// What a lane tells the router.
#[derive(Debug)]
pub enum LaneEvent {
    /// A message from the upstream, through its chain.
    Message(Bytes),
    /// The upstream session ended.
    Ended(SessionEnd),
}

/// Most messages queued for a lane whose upstream is not reading them; past
/// it, requests for that upstream are refused and notifications dropped.
pub const MAX_QUEUED: usize = 4096;

/// A started lane: where its client-side messages go. Sending never waits:
/// the router must keep reading every lane while one upstream is stuck (a
/// router waiting on a lane that waits on the router would stop the session).
pub struct Lane {
    input: mpsc::UnboundedSender<Frame>,
    /// Messages sent and not yet taken by the lane's relay.
    queued: Arc<AtomicUsize>,
}

/// What a lane's relay sends the client, tagged with the lane's index. The
/// router polls these itself (no task between it and the relay).
pub type Output = futures::stream::BoxStream<'static, (usize, LaneEvent)>;

/// A lane's relay at work, tagged with the lane's index: its end when its
/// upstream session ends. The router polls it in its own task, so that a
/// message between the two wakes no other task.
pub type Running = futures::future::BoxFuture<'static, (usize, SessionEnd)>;

/// The shared children of `share = true` upstreams, by name, with the config each runs.
pub type Shares = Arc<std::sync::Mutex<std::collections::HashMap<String, (UpstreamConfig, Arc<Shared>)>>>;

/// What every lane of a gateway shares.
#[derive(Clone)]
pub struct LaneSetup {
    /// The runtime plugins run on.
    pub runtime: Arc<Runtime>,
    /// The audit sink.
    pub audit: AuditSink,
    /// How the client reaches Warden.
    pub transport: Transport,
    /// Largest message either way.
    pub max_message_bytes: usize,
    /// The shared children of `share = true` upstreams, by name, with the config each runs.
    pub shares: Shares,
    /// The token exchangers of upstreams with `token-exchange`, by name, with
    /// the config each was made for (their kept tokens serve every session).
    pub exchanges: Exchanges,
}

/// See [`LaneSetup::exchanges`].
pub type Exchanges = Arc<std::sync::Mutex<std::collections::HashMap<String, (TokenExchange, Arc<Exchanger>)>>>;

/// The exchanger for `config`: the one made for this very config, or a new one.
fn exchanger(name: &str, config: &TokenExchange, setup: &LaneSetup) -> Arc<Exchanger> {
    let mut exchanges = setup.exchanges.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((seen, exchanger)) = exchanges.get(name) {
        if seen == config {
            return exchanger.clone();
        }
    }
    let exchanger = Arc::new(Exchanger::new(config.clone()));
    exchanges.insert(name.to_owned(), (config.clone(), exchanger.clone()));
    exchanger
}

impl Lane {
    /// Starts upstream `config` behind `chain` in a task of its own: its
    /// messages come out of the returned [`Output`], its end reaches
    /// `events`, both tagged with `index`.
    pub fn start(
        index: usize,
        config: &UpstreamConfig,
        chain: watch::Receiver<Arc<Chain>>,
        setup: &LaneSetup,
        opening: &Opening,
        events: mpsc::Sender<(usize, LaneEvent)>,
    ) -> Result<(Lane, Output), SpawnError> {
        let (lane, output, running) = Lane::start_here(index, config, chain, setup, opening)?;
        tokio::spawn(async move {
            let (index, end) = running.await;
            let _ = events.send((index, LaneEvent::Ended(end))).await;
        });
        Ok((lane, output))
    }

    /// The same, its relay to be polled by the caller ([`Running`]).
    pub fn start_here(
        index: usize,
        config: &UpstreamConfig,
        chain: watch::Receiver<Arc<Chain>>,
        setup: &LaneSetup,
        opening: &Opening,
    ) -> Result<(Lane, Output, Running), SpawnError> {
        let name: Arc<str> = Arc::from(config.name.as_str());
        let (upstream, to_upstream) = if config.share {
            share(name.clone(), config, setup).attach(name.clone())
        } else {
            connect(name.clone(), config, opening, setup)?
        };
        let (to_router, mut from_relay) = mpsc::channel::<Outgoing>(QUEUE);
        let facts = SessionFacts {
            id: opening.session.clone(),
            upstream: name.clone(),
            caller: opening.caller.as_deref().map(|subject| Caller {
                subject: subject.to_owned(),
                claims: opening.claims.as_deref().unwrap_or("{}").to_owned(),
            }),
            protocol_version: None,
            transport: setup.transport,
        };
        let current = chain.borrow().clone();
        let instances = Instances::new(setup.runtime.clone(), current, facts);
        let relay = Relay::new(instances, to_router, to_upstream, setup.audit.clone(), setup.max_message_bytes)
            .follow(chain)
            .stream_to_upstream(upstream.takes_pieces())
            .in_gateway(false);
        let (input, mut input_rx) = mpsc::unbounded_channel::<Frame>();
        let queued = Arc::new(AtomicUsize::new(0));
        let taken = queued.clone();
        let client = futures::stream::poll_fn(move |cx| {
            input_rx.poll_recv(cx).map(|f| {
                if f.is_some() {
                    taken.fetch_sub(1, Ordering::Relaxed);
                }
                f.map(Ok)
            })
        });
        let running = async move {
            let end = session::drive(relay, upstream, client, std::future::pending(), EXIT_GRACE).await;
            tracing::info!(upstream = %name, "upstream session ended: {end:?}");
            (index, end)
        };
        let output = futures::stream::poll_fn(move |cx| from_relay.poll_recv(cx)).map(move |out| {
            // The relay sends whole messages to a client that is no byte stream.
            let (Outgoing::Message(bytes) | Outgoing::Part(bytes)) = out;
            (index, LaneEvent::Message(bytes))
        });
        Ok((Lane { input, queued }, output.boxed(), futures::FutureExt::boxed(running)))
    }

    /// Sends a message to the upstream, through the chain, without waiting.
    /// `false` once the lane is gone, or while [`MAX_QUEUED`] messages wait for it.
    pub fn send(&self, message: Bytes) -> bool {
        if self.queued.load(Ordering::Relaxed) >= MAX_QUEUED {
            return false;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.input.send(Frame::Line(message)).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// The share of a `share = true` upstream: the one running under this very
/// config, or a new one (a changed config gets a new child).
fn share(name: Arc<str>, config: &UpstreamConfig, setup: &LaneSetup) -> Arc<Shared> {
    let mut shares = setup.shares.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((seen, share)) = shares.get(&config.name) {
        if seen == config {
            return share.clone();
        }
    }
    let (start_name, start_config) = (name.clone(), config.clone());
    let setup = setup.clone();
    // One child for every caller: the config refuses credentials chosen per caller here.
    let start = Box::new(move || connect(start_name.clone(), &start_config, &Opening::default(), &setup));
    let share = Shared::new(name, start);
    shares.insert(config.name.clone(), (config.clone(), share.clone()));
    share
}

/// Starts the upstream session itself, with the credentials for the caller
/// that opens it.
fn connect(
    name: Arc<str>,
    config: &UpstreamConfig,
    opening: &Opening,
    setup: &LaneSetup,
) -> Result<(Upstream, mpsc::Sender<Outgoing>), SpawnError> {
    let max_message_bytes = setup.max_message_bytes;
    let claims: Value = opening.claims.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or(Value::Null);
    let subject = opening.caller.as_deref();
    let refused = |what: &str| SpawnError::NoCredential { upstream: config.name.clone(), what: what.to_owned() };
    match &config.reach {
        Reach::Command { command, env, inherit_env, cwd, limits } => {
            let mut vars = Vec::new();
            for (var, credential) in env {
                let value = credential.for_caller(subject, &claims).ok_or_else(|| refused(&format!("env.{var}")))?;
                vars.push((var.clone(), value.expose().to_owned()));
            }
            let env = ChildEnv {
                vars,
                pass: CHILD_BASE_ENV.iter().map(|s| s.to_string()).collect(),
                inherit: *inherit_env,
                cwd: cwd.clone(),
                limits: *limits,
            };
            Upstream::start_with(name, command, Some(&env), max_message_bytes)
        }
        Reach::Remote { url, headers, exchange } => {
            let mut lines = Vec::new();
            for (header, credential) in headers {
                let value =
                    credential.for_caller(subject, &claims).ok_or_else(|| refused(&format!("headers.{header}")))?;
                lines.push(format!("{header}: {}", value.expose()));
            }
            // The client's headers this upstream's `forward-headers` names, unless its own config sets them.
            let configured = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
            for (name, value) in &opening.forwarded.0 {
                if config.forward_headers.contains(name) && !configured(name) {
                    lines.push(format!("{name}: {value}"));
                }
            }
            // Errors name the upstream, never the URL (its query may carry a token) or a header.
            let mut remote = RemoteOptions::new(url, &lines).map_err(|_| SpawnError::Spawn {
                program: config.name.clone(),
                error: std::io::Error::other("its url or headers are not usable"),
            })?;
            if let Some(exchange) = exchange {
                // Only a caller admitted by an OAuth token has one to exchange.
                let caller = opening.subject_token.clone().ok_or_else(|| refused("token-exchange"))?;
                let header =
                    http::HeaderName::from_bytes(exchange.header.as_bytes()).map_err(|_| refused("token-exchange"))?;
                let source = SessionExchange::new(exchanger(&config.name, exchange, setup), caller, header);
                remote.dynamic = Some(Arc::new(source));
            }
            Target::Remote(remote).start(name, &Opening::default(), max_message_bytes)
        }
    }
}
