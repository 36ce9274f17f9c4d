//! One gateway session: the client's messages routed to the lane of the
//! upstream they are for, and the lanes' answers brought back.
//!
//! Every request the router sends a lane carries an id of the router's own
//! (a *leg*); the client's id is kept and put back on the answer exactly as
//! the client wrote it. A request for many upstreams (the lists,
//! `initialize`, `logging/setLevel`) has a leg per lane and is answered once
//! all legs are. Server→client requests get router ids too (*asks*), so
//! two upstreams' ids cannot collide at the client.
//!
//! Resources are routed by a table: every URI the client was given (in a
//! list, a template's fixed start, a link or embedded resource in a tool
//! result) points at the upstream it came from. URIs stay as the upstream
//! wrote them, so a client can keep and show them unchanged.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use futures::StreamExt;

use super::lane::{self, Lane, LaneEvent, LaneSetup};
use super::merge::{self, Introduced, Page};
use super::pins::{Pinned, Pins};
use super::rewrite;
use crate::audit::{At, Source};
use crate::config::gateway::{Gateway, PinPolicy, UpstreamConfig, MAX_RESTART_DELAY};
use crate::jsonrpc::{self, code, Kind, Message};
use crate::plugin::Chain;
use crate::transport::framing::{Frame, Outgoing};
use crate::upstream::child::SpawnError;
use crate::upstream::Opening;
use endpoint::Item;

mod answers;
mod cache;
mod endpoint;
mod lanes;
mod legs;
mod resources;
mod tasks;

/// What every session of one gateway shares.
pub struct Shared {
    /// The pinned tool definitions.
    pub pins: Arc<Pins>,
    /// What each upstream answered the gateway's probe.
    pub probes: Arc<super::probe::Probes>,
    /// The checked config.
    pub config: Arc<Gateway>,
    /// Each upstream's chains, at the main endpoint and at each virtual one.
    pub chains: super::Chains,
    /// What lanes are started with.
    pub setup: LaneSetup,
}

/// The method of the `initialize` a reload sends an upstream that joined a
/// session already under way (answered to no client).
const INTRODUCE: &str = "warden/introduce";

/// How long a restarted upstream must stay up for its backoff to start afresh.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Most server→client requests of one session waiting for the client's answer.
const MAX_ASKS: usize = 1024;

/// Longest an upstream may take to answer `initialize`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most resource URIs (and template starts) one session routes.
const MAX_ROUTES: usize = 100_000;

/// An upstream in this session.
struct Upstream {
    name: String,
    /// Its config as the session last took it.
    config: UpstreamConfig,
    /// Its chain.
    chain: watch::Receiver<Arc<Chain>>,
    /// Gone from the config: kept (its index) until what it owed is settled.
    removed: bool,
    lane: Option<Lane>,
    /// Its `initialize` answer, once it gave one.
    introduced: Option<Introduced>,
    /// Legs sent and not answered.
    in_flight: usize,
    /// Legs waiting for room under its `max-concurrency`, with what they send.
    waiting: VecDeque<(u64, Bytes)>,
    /// Failures in a row (start failed, or it ended): the next restart's backoff.
    failures: u32,
    /// Calls that failed in a row (timed out, the upstream gone): its circuit breaker.
    failed_calls: u32,
    /// While its breaker is open: until when calls are refused at once.
    open_until: Option<Instant>,
    /// Past the cool-down, the one call trying it is in flight.
    probing: bool,
    /// Its `initialize` is in flight (calls to it wait for the answer).
    intro_pending: bool,
    /// When its lane last started.
    started_at: Option<Instant>,
    /// What it answered the gateway's probe: the session answered its
    /// client's `initialize` from it and starts it when a message needs it.
    probed: Option<Introduced>,
    /// Not started yet in this session (see `probed`).
    dormant: bool,
    /// Why it cannot start for this session's caller (no credential fits):
    /// said to every request for it, never retried.
    refused: Option<String>,
    /// Why its last `initialize` failed, said to requests for it until one succeeds.
    failure: Option<String>,
    /// Started because a message needed it: its items are in no list yet,
    /// so its introduction is no `list_changed`.
    waking: bool,
}

impl Upstream {
    fn new(config: &UpstreamConfig, chain: watch::Receiver<Arc<Chain>>) -> Upstream {
        Upstream {
            name: config.name.clone(),
            config: config.clone(),
            chain,
            removed: false,
            failure: None,
            refused: None,
            lane: None,
            introduced: None,
            in_flight: 0,
            waiting: VecDeque::new(),
            failures: 0,
            failed_calls: 0,
            open_until: None,
            probing: false,
            intro_pending: false,
            started_at: None,
            probed: None,
            dormant: false,
            waking: false,
        }
    }
}

/// A request sent (or to be sent) to one upstream for a client request.
struct Leg {
    slot: u64,
    lane: usize,
    /// The progress token the client's request carries, by value: progress
    /// under it is taken from this leg's upstream only.
    progress: Option<String>,
    /// Whether it went to the upstream (not still waiting for room).
    sent: bool,
}

/// A client request the router owes an answer.
struct Owed {
    /// The client's id, as it wrote it.
    client_id: String,
    method: String,
    /// Legs not answered yet.
    open: usize,
    /// Answers in, by lane: the whole message each lane sent.
    answers: Vec<(usize, Bytes)>,
    /// A list's cursor as the client sent it (where its merged page is kept).
    cursor: Option<String>,
    /// The kept lists' generation when it was asked for.
    generation: u64,
}

/// One session of the gateway.
pub struct Router {
    /// The config in force, followed as it is reloaded.
    shared: watch::Receiver<Arc<Shared>>,
    /// The session this router serves, as its lanes' plugins see it.
    opening: Opening,
    /// The virtual endpoint it serves (its path), if not the main one.
    endpoint: Option<Arc<str>>,
    /// That endpoint's shape as the session last took it (see [`Router::endpoint_print`]).
    endpoint_seen: Option<String>,
    /// That endpoint's chain folder when the session opened.
    endpoint_chain: Option<std::path::PathBuf>,
    separator: String,
    setup: LaneSetup,
    to_client: mpsc::Sender<Frame>,
    /// Every lane's messages (in a mutex only so that the router is `Sync`:
    /// it is only ever taken with `get_mut`).
    outputs: std::sync::Mutex<futures::stream::SelectAll<lane::Output>>,
    /// Every lane's relay, polled here (in a mutex for the same reason).
    running: std::sync::Mutex<futures::stream::FuturesUnordered<lane::Running>>,
    upstreams: Vec<Upstream>,
    by_name: HashMap<String, usize>,
    next_id: u64,
    /// Client requests owed, by slot.
    owed: HashMap<u64, Owed>,
    /// Legs in flight, by router id.
    legs: HashMap<u64, Leg>,
    /// When each leg times out (legs answered since are skipped).
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// When failed upstreams are started again.
    restarts: BinaryHeap<Reverse<(Instant, usize)>>,
    /// The client's ids of owed requests (by value) → slot.
    by_client: HashMap<String, u64>,
    /// Server→client requests: router id → (lane, the upstream's id as written).
    asks: HashMap<u64, (usize, String)>,
    /// Progress tokens of calls in flight → the upstream whose progress they take.
    progress: HashMap<String, usize>,
    /// Where each URI the client was given comes from.
    resources: HashMap<String, usize>,
    /// The fixed starts of resource templates, and their upstream.
    templates: HashMap<String, usize>,
    /// Whether the upstreams were started (at the client's `initialize`).
    started: bool,
    /// Whether the client sent `notifications/initialized`.
    initialized: bool,
    /// Whether `initialize` is still being answered by the upstreams.
    introducing: bool,
    /// Upstream sessions started and not yet ended.
    live: usize,
    /// The client's `initialize`, for upstreams that join later.
    init: Option<Bytes>,
    /// What the client sent meanwhile: handled once they have answered.
    held: Vec<Bytes>,
    /// Merged lists kept between `list_changed`s.
    lists: cache::Lists,
    /// Task ids given to the client (`<upstream>:<id>`).
    tasks_given: std::collections::HashSet<String>,
}

impl Shared {
    /// Each upstream's chain at `endpoint` (the main one: `None`), in config
    /// order; at an endpoint the config no longer has, none (its router serves nothing).
    pub fn chains_at(&self, endpoint: Option<&str>) -> &[watch::Receiver<Arc<Chain>>] {
        match endpoint {
            None => &self.chains.main,
            Some(path) => self.chains.endpoints.get(path).map(Vec::as_slice).unwrap_or_default(),
        }
    }
}

impl Router {
    /// A router that answers the client through `to_client`; at a virtual
    /// endpoint (`endpoint`, its path) it serves that endpoint's items only.
    pub fn new(
        shared: watch::Receiver<Arc<Shared>>,
        opening: Opening,
        endpoint: Option<Arc<str>>,
        to_client: mpsc::Sender<Frame>,
    ) -> Router {
        let now = shared.borrow().clone();
        let upstreams: Vec<Upstream> = now
            .config
            .upstreams
            .iter()
            .zip(now.chains_at(endpoint.as_deref()))
            .map(|(u, chain)| Upstream::new(u, chain.clone()))
            .collect();
        let by_name = upstreams.iter().enumerate().map(|(i, u)| (u.name.clone(), i)).collect();
        let endpoint_seen = Router::endpoint_print(&now.config, endpoint.as_deref());
        let endpoint_chain = endpoint.as_deref().and_then(|p| now.config.endpoint(p)).and_then(|e| e.plugins.clone());
        Router {
            shared,
            opening,
            endpoint,
            endpoint_seen,
            endpoint_chain,
            separator: now.config.separator.clone(),
            setup: now.setup.clone(),
            to_client,
            outputs: std::sync::Mutex::new(futures::stream::SelectAll::new()),
            running: std::sync::Mutex::new(futures::stream::FuturesUnordered::new()),
            upstreams,
            by_name,
            next_id: 1,
            owed: HashMap::new(),
            legs: HashMap::new(),
            deadlines: BinaryHeap::new(),
            restarts: BinaryHeap::new(),
            by_client: HashMap::new(),
            asks: HashMap::new(),
            progress: HashMap::new(),
            resources: HashMap::new(),
            templates: HashMap::new(),
            started: false,
            initialized: false,
            introducing: false,
            live: 0,
            init: None,
            held: Vec::new(),
            lists: cache::Lists::default(),
            tasks_given: std::collections::HashSet::new(),
        }
    }

    /// Routes until the client is gone, then lets the lanes finish.
    pub async fn run(mut self, mut from_client: mpsc::Receiver<Outgoing>) {
        let mut client_open = true;
        // Once the client has closed its input, what it is still owed is answered first.
        while client_open || !self.owed.is_empty() {
            let next_deadline = self.deadlines.peek().map(|Reverse((at, _))| *at);
            let next_restart = self.restarts.peek().map(|Reverse((at, _))| *at);
            let outputs = self.outputs.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
            let any_output = !outputs.is_empty();
            let running = self.running.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
            let any_running = !running.is_empty();
            tokio::select! {
                Some((index, end)) = running.next(), if any_running => {
                    self.lane_event(index, LaneEvent::Ended(end)).await;
                }
                () = tokio::time::sleep_until(next_restart.unwrap_or_else(Instant::now)), if next_restart.is_some() => {
                    self.restart_due().await;
                }
                changed = self.shared.changed() => match changed {
                    Ok(()) => {
                        let now = self.shared.borrow_and_update().clone();
                        self.reconfigure(&now).await;
                        if self.endpoint_retired() {
                            tracing::info!(endpoint = ?self.endpoint, "virtual endpoint removed or given another chain; its session ends");
                            break;
                        }
                    }
                    // The gateway is gone: keep the config in force.
                    Err(_) => {
                        let (_, closed) = watch::channel(self.shared.borrow().clone());
                        self.shared = closed;
                    }
                },
                () = tokio::time::sleep_until(next_deadline.unwrap_or_else(Instant::now)), if next_deadline.is_some() => {
                    self.expire().await;
                }
                out = from_client.recv(), if client_open => match out {
                    Some(Outgoing::Message(bytes) | Outgoing::Part(bytes)) => self.client_message(bytes).await,
                    None => {
                        client_open = false;
                        // Each upstream's input closes now, as in `warden wrap`: it answers
                        // what it can and exits; what it leaves unanswered is settled when it ends.
                        self.close_lanes();
                    }
                },
                Some((index, event)) = outputs.next(), if any_output => {
                    self.lane_event(index, event).await;
                }
            }
        }
        // Closing each lane's input lets its upstream finish; wait for them (bounded).
        self.close_lanes();
        let grace = crate::upstream::child::EXIT_GRACE + Duration::from_secs(1);
        let _ = tokio::time::timeout(grace, async {
            while self.live > 0 {
                let outputs = self.outputs.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
                let any_output = !outputs.is_empty();
                let running = self.running.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
                let any_running = !running.is_empty();
                tokio::select! {
                    Some(_) = running.next(), if any_running => self.live = self.live.saturating_sub(1),
                    // What they still send is read (and dropped), so that none waits on the router.
                    Some(_) = outputs.next(), if any_output => {}
                    else => break,
                }
            }
        })
        .await;
    }

    async fn client_message(&mut self, bytes: Bytes) {
        if self.introducing {
            self.held.push(bytes);
            return;
        }
        // The session's relay read it strictly already; this reading cannot differ.
        let Ok(message) = Message::parse(bytes) else { return };
        match message.head.kind {
            Kind::Request => self.request(message).await,
            Kind::Notification => self.client_notification(message).await,
            Kind::Response | Kind::Error => self.client_answer(message).await,
        }
    }

    async fn request(&mut self, m: Message) {
        let method = m.head.method.clone().unwrap_or_default();
        let client_id = m.head.raw_id.clone().unwrap_or_else(|| "null".into());
        match method.as_str() {
            jsonrpc::method::INITIALIZE => self.initialize(m, client_id).await,
            "ping" => self.reply(&client_id, &json!({})).await,
            "tools/call" | "prompts/get" => {
                let Some(name) = params_string(&m.raw, &["name"]) else {
                    return self.refuse(&client_id, code::INVALID_PARAMS, "params.name must be a string").await;
                };
                let kind = if method == "tools/call" { "tool" } else { "prompt" };
                let item = if kind == "tool" { Item::Tool } else { Item::Prompt };
                // What this endpoint does not serve is as unknown as what no upstream has.
                let served = self.serves(item, &name);
                match self.split(&name).filter(|_| served) {
                    Some((lane, inner)) if kind == "tool" && self.refused_by_pin(lane, &inner) => {
                        let key = format!("{}{}{inner}", self.upstreams[lane].name, self.separator);
                        let text = format!("tool {name} changed its definition since it was pinned; `warden pins accept {key}` takes the new one");
                        self.refuse(&client_id, code::TOOL_CHANGED, &text).await;
                    }
                    Some((lane, inner)) => {
                        let sent = rewrite::with_param(&m.raw, None, &["name"], &inner);
                        self.one(lane, &m, client_id, sent).await;
                    }
                    None => self.refuse(&client_id, code::INVALID_PARAMS, &format!("unknown {kind}: {name}")).await,
                }
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let Some(uri) = params_string(&m.raw, &["uri"]) else {
                    return self.refuse(&client_id, code::INVALID_PARAMS, "params.uri must be a string").await;
                };
                match self.lane_for_uri(&uri).filter(|_| self.serves(Item::Resource, &uri)) {
                    Some(lane) => self.one(lane, &m, client_id, Some(m.raw.clone())).await,
                    None => self.refuse(&client_id, code::INVALID_PARAMS, "unknown resource").await,
                }
            }
            "completion/complete" => {
                let kind = params_string(&m.raw, &["ref", "type"]);
                let routed = match kind.as_deref() {
                    Some("ref/prompt") => params_string(&m.raw, &["ref", "name"])
                        .filter(|n| self.serves(Item::Prompt, n))
                        .and_then(|n| self.split(&n))
                        .map(|(lane, inner)| (lane, rewrite::with_param(&m.raw, None, &["ref", "name"], &inner))),
                    Some("ref/resource") => params_string(&m.raw, &["ref", "uri"])
                        .filter(|uri| self.serves(Item::Resource, uri))
                        .and_then(|uri| self.lane_for_uri(&uri))
                        .map(|lane| (lane, Some(m.raw.clone()))),
                    _ => None,
                };
                match routed {
                    Some((lane, sent)) => self.one(lane, &m, client_id, sent).await,
                    None => self.refuse(&client_id, code::INVALID_PARAMS, "unknown completion reference").await,
                }
            }
            "tasks/get" | "tasks/result" | "tasks/cancel" => {
                let Some(task) = params_string(&m.raw, &["taskId"]) else {
                    return self.refuse(&client_id, code::INVALID_PARAMS, "params.taskId must be a string").await;
                };
                match self.task_lane(&task) {
                    Some((lane, inner)) => {
                        let sent = rewrite::with_param(&m.raw, None, &["taskId"], &inner);
                        self.one(lane, &m, client_id, sent).await;
                    }
                    None => {
                        self.refuse(&client_id, code::INVALID_PARAMS, "unknown task: the gateway gave no such id").await
                    }
                }
            }
            "logging/setLevel" => self.fan(&m, client_id, "logging").await,
            list if merge::list_key(list).is_some() => self.list(m, client_id).await,
            _ => self.refuse(&client_id, code::METHOD_NOT_FOUND, &format!("method not found: {method}")).await,
        }
    }

    /// Answers from the gateway's probes where it has them (those upstreams
    /// start when a message needs them; the others start now and join with
    /// `list_changed` once they answer); without any, starts every upstream
    /// and asks each `initialize` with the client's params.
    async fn initialize(&mut self, m: Message, client_id: String) {
        if !self.started {
            self.started = true;
            self.init = Some(m.raw.clone());
            let probes = self.shared.borrow().probes.clone();
            probes.settled().await;
            let mut unprobed = Vec::new();
            for (index, u) in self.upstreams.iter_mut().enumerate() {
                u.probed = probes.get(&u.config);
                u.dormant = u.probed.is_some();
                if u.probed.is_none() {
                    unprobed.push(index);
                }
            }
            if unprobed.len() < self.upstreams.len() {
                let requested = params_string(&m.raw, &["protocolVersion"]);
                let shown =
                    self.shown_intros((0..self.upstreams.len()).map(|l| (l, self.upstreams[l].probed.as_ref())));
                let parts: Vec<(&str, &Introduced)> = shown.iter().map(|(n, i)| (n.as_str(), i)).collect();
                let mut result = merge::initialize_result(&parts, requested.as_deref());
                self.endpoint_capabilities(&mut result);
                // The probes asked for the newest version; this client may want an older one,
                // which its upstream sessions are asked for when they start.
                let known = |v: &&String| crate::era::LEGACY_VERSIONS.contains(&v.as_str());
                if let Some(asked) = requested.as_ref().filter(known) {
                    if result["protocolVersion"].as_str().is_some_and(|chosen| asked.as_str() < chosen) {
                        result["protocolVersion"] = Value::String(asked.clone());
                    }
                }
                self.reply(&client_id, &result).await;
                for index in unprobed {
                    self.start_lane(index);
                    self.introduce(index).await;
                }
                return;
            }
            for index in 0..self.upstreams.len() {
                self.start_lane(index);
            }
        }
        let lanes: Vec<usize> = (0..self.upstreams.len()).filter(|&i| self.upstreams[i].lane.is_some()).collect();
        if lanes.is_empty() {
            return self.refuse(&client_id, code::UPSTREAM_FAILED, "no upstream of the gateway is running").await;
        }
        let slot = self.owe(&m, client_id, lanes.len());
        self.introducing = true;
        for lane in lanes {
            self.leg(slot, lane, &m.raw).await;
        }
    }

    /// What the client sent while the upstreams were being introduced.
    async fn release_held(&mut self) {
        self.introducing = false;
        for bytes in std::mem::take(&mut self.held) {
            Box::pin(self.client_message(bytes)).await;
        }
    }

    async fn client_notification(&mut self, m: Message) {
        let method = m.head.method.clone().unwrap_or_default();
        if method == jsonrpc::method::INITIALIZED {
            self.initialized = true;
        }
        if method == jsonrpc::method::CANCELLED {
            let Some(key) = jsonrpc::cancelled_request(&m.raw).and_then(|id| jsonrpc::id_key(&id)) else { return };
            let Some(slot) = self.by_client.remove(&key) else { return };
            self.owed.remove(&slot);
            let legs: Vec<u64> = self.legs.iter().filter(|(_, leg)| leg.slot == slot).map(|(id, _)| *id).collect();
            for id in legs {
                let Some(leg) = self.take_leg(id) else { continue };
                let lane = leg.lane;
                if !leg.sent {
                    continue;
                }
                let sent = rewrite::fields(&m.raw).map(|mut f| {
                    let mut params = rewrite::nested(&f, "params").unwrap_or_default();
                    rewrite::set(&mut params, "requestId", &id);
                    rewrite::set_object(&mut f, "params", &params);
                    rewrite::to_bytes(&f)
                });
                if let (Some(sent), Some(l)) = (sent, &self.upstreams[lane].lane) {
                    l.send(sent);
                }
                self.dispatch(lane).await;
            }
            return;
        }
        // Everything else concerns every upstream (initialized, roots changed, …).
        for u in &self.upstreams {
            if let (Some(lane), Some(_)) = (&u.lane, &u.introduced) {
                lane.send(m.raw.clone());
            }
        }
    }

    /// The client's answer to an upstream's request: back to that upstream, under its id.
    async fn client_answer(&mut self, m: Message) {
        let ask = m.head.id.as_deref().and_then(|k| k.parse::<u64>().ok()).and_then(|id| self.asks.remove(&id));
        let Some((lane, upstream_id)) = ask else {
            tracing::warn!("client answered a request no upstream is waiting on; dropped");
            return;
        };
        if let (Some(sent), Some(l)) = (rewrite::with_id_spliced(&m.raw, &upstream_id), &self.upstreams[lane].lane) {
            l.send(sent);
        }
    }

    /// The upstream a listed name is for, and the name it knows: by its
    /// prefix, else the unprefixed upstream's (`prefix = false`), if any.
    fn split(&self, name: &str) -> Option<(usize, String)> {
        if let Some((prefix, inner)) = name.split_once(self.separator.as_str()) {
            if let Some(&lane) = self.by_name.get(prefix).filter(|&&l| self.upstreams[l].config.prefix) {
                return Some((lane, inner.to_owned()));
            }
        }
        let bare = self.upstreams.iter().position(|u| !u.removed && !u.config.prefix)?;
        Some((bare, name.to_owned()))
    }

    /// The name the client sees for an upstream's tool or prompt `inner`.
    fn listed(&self, lane: usize, inner: &str) -> String {
        let u = &self.upstreams[lane];
        if u.config.prefix {
            format!("{}{}{inner}", u.name, self.separator)
        } else {
            inner.to_owned()
        }
    }

    /// Whether an unprefixed upstream's `name` would read as another
    /// upstream's prefixed name (it is left out: the call would go there).
    fn shadowed(&self, name: &str) -> bool {
        let prefix = name.split_once(self.separator.as_str()).map(|(p, _)| p);
        prefix.and_then(|p| self.by_name.get(p)).is_some_and(|&l| self.upstreams[l].config.prefix)
    }

    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    async fn send_client(&self, bytes: Bytes) {
        let _ = self.to_client.send(Frame::Line(bytes)).await;
    }

    async fn reply(&self, id: &str, result: &Value) {
        let text = serde_json::to_string(result).unwrap_or_else(|_| "{}".into());
        let Ok(raw) = serde_json::value::RawValue::from_string(text) else { return };
        self.send_client(jsonrpc::result_response(id, &raw)).await;
    }

    async fn refuse(&self, id: &str, code: i32, message: &str) {
        self.send_client(jsonrpc::error_response(Some(id), code, message, None)).await;
    }

    /// A lane's answer under the client's id, the rest as the lane sent it.
    async fn forward_answer(&self, id: &str, answer: &Bytes) {
        if let Some(sent) = rewrite::with_id_spliced(answer, id) {
            self.send_client(sent).await;
        }
    }
}

/// A string at `path` inside a message's `params`.
fn params_string(raw: &[u8], path: &[&str]) -> Option<String> {
    let f = rewrite::fields(raw)?;
    rewrite::string_at(&rewrite::nested(&f, "params")?, path)
}

/// A member of a message's `params`, read.
fn params_value(raw: &[u8], key: &str) -> Option<Value> {
    let f = rewrite::fields(raw)?;
    let params = rewrite::nested(&f, "params")?;
    params.get(key).and_then(|v| serde_json::from_str(v.get()).ok())
}

/// An answer's `result` text, if it is a result.
fn raw_result(answer: &[u8]) -> Option<String> {
    let f = rewrite::fields(answer)?;
    f.get("result").map(|r| r.get().to_owned())
}

/// An answer's `result`, read.
fn result_of(answer: &[u8]) -> Option<Value> {
    raw_result(answer).and_then(|r| serde_json::from_str(&r).ok())
}

/// An error answer's message (its first 300 characters), to say why an upstream failed.
fn error_message(answer: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(answer).ok()?;
    Some(value.get("error")?.get("message")?.as_str()?.chars().take(300).collect())
}
