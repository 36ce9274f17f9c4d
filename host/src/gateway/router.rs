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
use crate::transport::QUEUE;
use crate::upstream::Opening;

/// What every session of one gateway shares.
pub struct Shared {
    /// The pinned tool definitions.
    pub pins: Arc<Pins>,
    /// The checked config.
    pub config: Arc<Gateway>,
    /// Each upstream's chain (shared, then its own), in config order.
    pub chains: Vec<watch::Receiver<Arc<Chain>>>,
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
}

impl Upstream {
    fn new(config: &UpstreamConfig, chain: watch::Receiver<Arc<Chain>>) -> Upstream {
        Upstream {
            name: config.name.clone(),
            config: config.clone(),
            chain,
            removed: false,
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
}

/// One session of the gateway.
pub struct Router {
    /// The config in force, followed as it is reloaded.
    shared: watch::Receiver<Arc<Shared>>,
    /// The session this router serves, as its lanes' plugins see it.
    opening: Opening,
    separator: String,
    setup: LaneSetup,
    to_client: mpsc::Sender<Frame>,
    events_tx: mpsc::Sender<(usize, LaneEvent)>,
    events: mpsc::Receiver<(usize, LaneEvent)>,
    /// Every lane's messages (in a mutex only so that the router is `Sync`:
    /// it is only ever taken with `get_mut`).
    outputs: std::sync::Mutex<futures::stream::SelectAll<lane::Output>>,
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
}

impl Router {
    /// A router that answers the client through `to_client`.
    pub fn new(shared: watch::Receiver<Arc<Shared>>, opening: Opening, to_client: mpsc::Sender<Frame>) -> Router {
        let (events_tx, events) = mpsc::channel(QUEUE);
        let now = shared.borrow().clone();
        let upstreams: Vec<Upstream> =
            now.config.upstreams.iter().zip(&now.chains).map(|(u, chain)| Upstream::new(u, chain.clone())).collect();
        let by_name = upstreams.iter().enumerate().map(|(i, u)| (u.name.clone(), i)).collect();
        Router {
            shared,
            opening,
            separator: now.config.separator.clone(),
            setup: now.setup.clone(),
            to_client,
            events_tx,
            events,
            outputs: std::sync::Mutex::new(futures::stream::SelectAll::new()),
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
            tokio::select! {
                () = tokio::time::sleep_until(next_restart.unwrap_or_else(Instant::now)), if next_restart.is_some() => {
                    self.restart_due().await;
                }
                changed = self.shared.changed() => match changed {
                    Ok(()) => {
                        let now = self.shared.borrow_and_update().clone();
                        self.reconfigure(&now).await;
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
                event = self.events.recv() => match event {
                    Some((index, event)) => self.lane_event(index, event).await,
                    None => break,
                },
            }
        }
        // Closing each lane's input lets its upstream finish; wait for them (bounded).
        self.close_lanes();
        let grace = crate::upstream::child::EXIT_GRACE + Duration::from_secs(1);
        let _ = tokio::time::timeout(grace, async {
            while self.live > 0 {
                let outputs = self.outputs.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
                let any_output = !outputs.is_empty();
                tokio::select! {
                    // What they still send is read (and dropped), so that none waits on the router.
                    Some(_) = outputs.next(), if any_output => {}
                    event = self.events.recv() => match event {
                        Some((_, LaneEvent::Ended(_))) => self.live = self.live.saturating_sub(1),
                        Some(_) => {}
                        None => break,
                    },
                }
            }
        })
        .await;
    }

    /// Closes every lane's input (no restarts follow).
    fn close_lanes(&mut self) {
        self.restarts.clear();
        for u in &mut self.upstreams {
            u.lane = None;
            u.waiting.clear();
        }
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
                match self.split(&name) {
                    Some((lane, inner)) if kind == "tool" && self.refused_by_pin(lane, &inner) => {
                        let text = format!("tool {name} changed its definition since it was pinned; `warden pins accept {name}` takes the new one");
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
                match self.lane_for_uri(&uri) {
                    Some(lane) => self.one(lane, &m, client_id, Some(m.raw.clone())).await,
                    None => self.refuse(&client_id, code::INVALID_PARAMS, "unknown resource").await,
                }
            }
            "completion/complete" => {
                let kind = params_string(&m.raw, &["ref", "type"]);
                let routed = match kind.as_deref() {
                    Some("ref/prompt") => params_string(&m.raw, &["ref", "name"])
                        .and_then(|n| self.split(&n))
                        .map(|(lane, inner)| (lane, rewrite::with_param(&m.raw, None, &["ref", "name"], &inner))),
                    Some("ref/resource") => params_string(&m.raw, &["ref", "uri"])
                        .and_then(|uri| self.lane_for_uri(&uri))
                        .map(|lane| (lane, Some(m.raw.clone()))),
                    _ => None,
                };
                match routed {
                    Some((lane, sent)) => self.one(lane, &m, client_id, sent).await,
                    None => self.refuse(&client_id, code::INVALID_PARAMS, "unknown completion reference").await,
                }
            }
            "logging/setLevel" => self.fan(&m, client_id, "logging").await,
            list if merge::list_key(list).is_some() => self.list(m, client_id).await,
            _ => self.refuse(&client_id, code::METHOD_NOT_FOUND, &format!("method not found: {method}")).await,
        }
    }

    /// Starts every upstream and asks each `initialize` with the client's params.
    async fn initialize(&mut self, m: Message, client_id: String) {
        if !self.started {
            self.started = true;
            self.init = Some(m.raw.clone());
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

    /// Starts upstream `index`'s lane.
    fn start_lane(&mut self, index: usize) {
        let u = &mut self.upstreams[index];
        if u.removed || u.lane.is_some() {
            return;
        }
        match Lane::start(index, &u.config, u.chain.clone(), &self.setup, &self.opening, self.events_tx.clone()) {
            Ok((lane, output)) => {
                u.lane = Some(lane);
                u.started_at = Some(Instant::now());
                self.live += 1;
                self.outputs.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).push(output);
            }
            Err(e) => {
                tracing::error!(upstream = %u.name, "upstream could not be started: {e}");
                self.schedule_restart(index);
            }
        }
    }

    /// An upstream that did not initialize: its lane closes (what waits for
    /// it is answered when it ends) and it is started again after its backoff.
    async fn restart_later(&mut self, lane: usize) {
        self.upstreams[lane].lane = None;
        self.upstreams[lane].introduced = None;
        let waiting: Vec<u64> = self.upstreams[lane].waiting.drain(..).map(|(id, _)| id).collect();
        for id in waiting {
            if let Some(leg) = self.take_leg(id) {
                Box::pin(self.settle(leg.slot, lane, Err("did not initialize".into()))).await;
            }
        }
        self.schedule_restart(lane);
    }

    /// Starts upstream `index` again after its backoff: its restart delay,
    /// doubled for each failure in a row, at most [`MAX_RESTART_DELAY`].
    fn schedule_restart(&mut self, index: usize) {
        let u = &mut self.upstreams[index];
        if u.removed {
            return;
        }
        let delay = u.config.restart_delay.saturating_mul(1 << u.failures.min(16)).min(MAX_RESTART_DELAY);
        u.failures = u.failures.saturating_add(1);
        tracing::info!(upstream = %u.name, "starting it again in {}", humantime::format_duration(delay));
        self.restarts.push(Reverse((Instant::now() + delay, index)));
    }

    /// Upstreams whose backoff is over: started and introduced again.
    async fn restart_due(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, index))) = self.restarts.peek().copied() {
            if at > now {
                break;
            }
            self.restarts.pop();
            if self.upstreams[index].removed || self.upstreams[index].lane.is_some() {
                continue;
            }
            self.start_lane(index);
            self.introduce(index).await;
        }
    }

    /// Asks an upstream that joined a session under way `initialize`, with the
    /// client's params; its items join the lists when it answers.
    async fn introduce(&mut self, index: usize) {
        let Some(init) = self.init.clone() else { return };
        if self.upstreams[index].lane.is_none() {
            return;
        }
        let slot = self.next();
        let owed = Owed { client_id: String::new(), method: INTRODUCE.into(), open: 1, answers: Vec::new() };
        self.owed.insert(slot, owed);
        self.leg(slot, index, &init).await;
    }

    /// Takes a reloaded config: upstreams gone (or changed) leave the session,
    /// their items the lists; new ones (and changed ones, anew) join it,
    /// introduced with the client's `initialize`. The client hears
    /// `list_changed` either way.
    async fn reconfigure(&mut self, now: &Shared) {
        self.setup = now.setup.clone();
        let renamed = self.separator != now.config.separator;
        self.separator = now.config.separator.clone();
        for index in 0..self.upstreams.len() {
            let u = &self.upstreams[index];
            if u.removed || now.config.upstreams.contains(&u.config) {
                continue;
            }
            tracing::info!(upstream = %u.name, "upstream leaves the session (config reloaded)");
            self.by_name.remove(&u.name);
            let u = &mut self.upstreams[index];
            u.removed = true;
            // Its lane finishes what it has; what it still owes is settled when it ends.
            u.lane = None;
            u.waiting.clear();
            let intro = u.introduced.take();
            self.resources.retain(|_, l| *l != index);
            self.templates.retain(|_, l| *l != index);
            if let Some(intro) = intro {
                self.list_changed(&intro).await;
            }
        }
        for (config, chain) in now.config.upstreams.iter().zip(&now.chains) {
            if self.by_name.contains_key(&config.name) {
                continue;
            }
            let index = self.upstreams.len();
            self.upstreams.push(Upstream::new(config, chain.clone()));
            self.by_name.insert(config.name.clone(), index);
            tracing::info!(upstream = %config.name, "upstream joins the session (config reloaded)");
            if self.started {
                self.start_lane(index);
                self.introduce(index).await;
            }
        }
        if renamed && self.initialized {
            for list in ["tools", "prompts"] {
                let note = json!({"jsonrpc": "2.0", "method": format!("notifications/{list}/list_changed")});
                self.send_client(Bytes::from(note.to_string())).await;
            }
        }
    }

    /// Tells the client the lists an upstream with these capabilities is in have changed.
    async fn list_changed(&self, intro: &Introduced) {
        if !self.initialized {
            return;
        }
        for list in ["tools", "prompts", "resources"] {
            if intro.has(list) {
                let note = json!({"jsonrpc": "2.0", "method": format!("notifications/{list}/list_changed")});
                self.send_client(Bytes::from(note.to_string())).await;
            }
        }
    }

    /// What the client sent while the upstreams were being introduced.
    async fn release_held(&mut self) {
        self.introducing = false;
        for bytes in std::mem::take(&mut self.held) {
            Box::pin(self.client_message(bytes)).await;
        }
    }

    /// A request for one upstream; `sent` is the message as it receives it
    /// (`None`: it could not be rewritten, refused).
    async fn one(&mut self, lane: usize, m: &Message, client_id: String, sent: Option<Bytes>) {
        let Some(sent) = sent else {
            return self.refuse(&client_id, code::INVALID_PARAMS, "params could not be read").await;
        };
        let u = &self.upstreams[lane];
        if u.lane.is_none() || (u.introduced.is_none() && !u.intro_pending) {
            let text = format!("upstream \"{}\" is not running", u.name);
            return self.refuse(&client_id, code::UPSTREAM_FAILED, &text).await;
        }
        let slot = self.owe(m, client_id, 1);
        self.leg(slot, lane, &sent).await;
    }

    /// A request for every running upstream with `capability`.
    async fn fan(&mut self, m: &Message, client_id: String, capability: &str) {
        let lanes = self.lanes_with(capability);
        if lanes.is_empty() {
            return self.reply(&client_id, &json!({})).await;
        }
        let slot = self.owe(m, client_id, lanes.len());
        for lane in lanes {
            self.leg(slot, lane, &m.raw).await;
        }
    }

    /// A list: every upstream with the capability, or those a cursor names.
    async fn list(&mut self, m: Message, client_id: String) {
        let method = m.head.method.clone().unwrap_or_default();
        let capability = merge::capability_of(&method).unwrap_or("tools");
        let cursor = match params_value(&m.raw, "cursor") {
            None => None,
            Some(Value::String(cursor)) => Some(cursor),
            Some(_) => return self.refuse(&client_id, code::INVALID_PARAMS, "params.cursor must be a string").await,
        };
        let legs: Vec<(usize, Option<Bytes>)> = match cursor {
            None => self.lanes_with(capability).into_iter().map(|l| (l, Some(m.raw.clone()))).collect(),
            Some(cursor) => {
                // Only a cursor the gateway gave: each upstream it names known, and one at least.
                let cursors = merge::decode_cursor(&cursor)
                    .filter(|c| !c.is_empty() && c.keys().all(|name| self.by_name.contains_key(name)));
                let Some(cursors) = cursors else {
                    return self.refuse(&client_id, code::INVALID_PARAMS, "invalid cursor").await;
                };
                cursors
                    .iter()
                    .filter_map(|(name, c)| self.by_name.get(name).map(|&l| (l, c)))
                    .filter(|(l, _)| self.upstreams[*l].lane.is_some())
                    .map(|(l, c)| (l, rewrite::with_param(&m.raw, None, &["cursor"], c)))
                    .collect()
            }
        };
        if legs.is_empty() {
            let key = merge::list_key(&method).unwrap_or("tools");
            return self.reply(&client_id, &json!({ key: [] })).await;
        }
        let slot = self.owe(&m, client_id, legs.len());
        for (lane, sent) in legs {
            match sent {
                Some(sent) => self.leg(slot, lane, &sent).await,
                None => self.settle(slot, lane, Err("the cursor could not be passed on".into())).await,
            }
        }
    }

    /// Records a client request owed an answer from `legs` lanes.
    fn owe(&mut self, m: &Message, client_id: String, legs: usize) -> u64 {
        let slot = self.next();
        if let Some(key) = &m.head.id {
            self.by_client.insert(key.clone(), slot);
        }
        let method = m.head.method.clone().unwrap_or_default();
        self.owed.insert(slot, Owed { client_id, method, open: legs, answers: Vec::new() });
        slot
    }

    /// Sends `raw` to `lane` under a new router id, as a leg of `slot`:
    /// at once, or when the upstream has room under its `max-concurrency`.
    async fn leg(&mut self, slot: u64, lane: usize, raw: &[u8]) {
        let method = self.owed.get(&slot).map(|o| o.method.clone()).unwrap_or_default();
        let intro = method == INTRODUCE || method == jsonrpc::method::INITIALIZE;
        if method == jsonrpc::method::TOOLS_CALL {
            if let Some(until) = self.upstreams[lane].open_until {
                let now = Instant::now();
                let u = &mut self.upstreams[lane];
                if now < until || u.probing {
                    let wait = humantime::format_duration(Duration::from_secs(
                        until.saturating_duration_since(now).as_secs().max(1),
                    ));
                    let why =
                        format!("is unavailable: its circuit breaker is open after failed calls (next try in {wait})");
                    return self.settle(slot, lane, Err(why)).await;
                }
                // Half open: this call tries; the others are refused until it is answered.
                u.probing = true;
            }
        }
        let id = self.next();
        let Some(sent) = rewrite::with_id(raw, &id.to_string()) else {
            return self.settle(slot, lane, Err("the request could not be passed on".into())).await;
        };
        let progress = jsonrpc::progress_token(raw);
        if let Some(token) = &progress {
            self.progress.insert(token.clone(), lane);
        }
        self.legs.insert(id, Leg { slot, lane, progress, sent: false });
        if intro {
            // Its `initialize` goes first, whatever waits: the rest waits for its answer.
            self.upstreams[lane].intro_pending = true;
            self.upstreams[lane].waiting.push_front((id, sent));
            self.send_next(lane).await;
            return;
        }
        self.upstreams[lane].waiting.push_back((id, sent));
        self.dispatch(lane).await;
    }

    /// Sends waiting legs to `lane` while it has room, once it is introduced.
    async fn dispatch(&mut self, lane: usize) {
        let limit = self.upstreams[lane].config.max_concurrency.unwrap_or(usize::MAX);
        while self.upstreams[lane].in_flight < limit && self.upstreams[lane].introduced.is_some() {
            if !self.send_next(lane).await {
                return;
            }
        }
    }

    /// Sends the first waiting leg of `lane`; `false` when none waits.
    async fn send_next(&mut self, lane: usize) -> bool {
        {
            let Some((id, sent)) = self.upstreams[lane].waiting.pop_front() else { return false };
            // A leg cancelled or timed out while it waited is gone.
            let Some(leg) = self.legs.get_mut(&id) else { return true };
            leg.sent = true;
            // The upstream's `timeout` runs from when it has the call; an
            // `initialize` gets at most INIT_TIMEOUT, so that an upstream that
            // never answers it is left out instead of holding the session up.
            let slot = leg.slot;
            let introducing =
                self.owed.get(&slot).is_some_and(|o| o.method == INTRODUCE || o.method == jsonrpc::method::INITIALIZE);
            let mut timeout = self.upstreams[lane].config.timeout;
            if introducing {
                timeout = timeout.min(INIT_TIMEOUT);
            }
            self.deadlines.push(Reverse((Instant::now() + timeout, id)));
            self.upstreams[lane].in_flight += 1;
            let delivered = match &self.upstreams[lane].lane {
                Some(l) => l.send(sent),
                None => false,
            };
            if !delivered {
                if let Some(leg) = self.take_leg(id) {
                    let why = format!("is not reading its input ({} messages wait for it)", lane::MAX_QUEUED);
                    Box::pin(self.settle(leg.slot, lane, Err(why))).await;
                }
            }
        }
        true
    }

    /// Forgets leg `id`, freeing its room at its upstream.
    fn take_leg(&mut self, id: u64) -> Option<Leg> {
        let leg = self.legs.remove(&id)?;
        if let Some(token) = &leg.progress {
            self.progress.remove(token);
        }
        if leg.sent {
            let u = &mut self.upstreams[leg.lane];
            u.in_flight = u.in_flight.saturating_sub(1);
        }
        Some(leg)
    }

    /// Legs past their upstream's `timeout`: the upstream is told to stop
    /// (`notifications/cancelled`) and the client answered.
    async fn expire(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, id))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(leg) = self.take_leg(id) else { continue };
            let lane = leg.lane;
            if leg.sent {
                let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id, "reason": "timed out at the gateway"}});
                if let Some(l) = &self.upstreams[lane].lane {
                    l.send(Bytes::from(cancel.to_string()));
                }
            }
            let timeout = humantime::format_duration(self.upstreams[lane].config.timeout);
            self.settle(leg.slot, lane, Err(format!("did not answer within its timeout of {timeout}"))).await;
            self.dispatch(lane).await;
        }
    }

    /// Counts a call's outcome towards upstream `lane`'s circuit breaker.
    fn judge(&mut self, lane: usize, failed: bool) {
        let u = &mut self.upstreams[lane];
        let probe = std::mem::take(&mut u.probing);
        if !failed {
            u.failed_calls = 0;
            u.open_until = None;
            return;
        }
        if probe {
            // The try after the cool-down failed: open again.
            u.failed_calls = u.config.breaker.failures;
        }
        u.failed_calls = u.failed_calls.saturating_add(1);
        let breaker = u.config.breaker;
        if u.failed_calls >= breaker.failures {
            tracing::warn!(upstream = %u.name, failed = u.failed_calls, "circuit breaker open for {}", humantime::format_duration(breaker.cool_down));
            u.open_until = Some(Instant::now() + breaker.cool_down);
            // The next try after the cool-down opens it again if it fails too.
            u.failed_calls = breaker.failures.saturating_sub(1);
        }
    }

    /// A leg of `slot` is done: with the lane's answer, or why the upstream
    /// gave none.
    async fn settle(&mut self, slot: u64, lane: usize, answer: Result<Bytes, String>) {
        // Only tool calls count towards the breaker (a list or an initialize
        // answered says nothing about whether calls work).
        let is_call = self.owed.get(&slot).is_some_and(|o| o.method == jsonrpc::method::TOOLS_CALL);
        let refused_by_breaker = matches!(&answer, Err(why) if why.contains("circuit breaker is open"));
        if is_call && !refused_by_breaker {
            let failed = match &answer {
                Ok(raw) => jsonrpc::error_code(raw) == Some(i64::from(code::UPSTREAM_FAILED)),
                Err(_) => true,
            };
            self.judge(lane, failed);
        }
        let name = self.upstreams[lane].name.clone();
        let Some(owed) = self.owed.get_mut(&slot) else { return };
        let answer = answer.unwrap_or_else(|why| {
            let text = format!("upstream \"{name}\" {why} ({})", owed.method);
            jsonrpc::error_response(Some("null"), code::UPSTREAM_FAILED, &text, None)
        });
        owed.answers.push((lane, answer));
        owed.open = owed.open.saturating_sub(1);
        if owed.open > 0 {
            return;
        }
        let Some(owed) = self.owed.remove(&slot) else { return };
        self.by_client.retain(|_, s| *s != slot);
        self.answer(owed).await;
    }

    /// Answers a client request whose legs are all in.
    async fn answer(&mut self, owed: Owed) {
        let id = owed.client_id.as_str();
        match owed.method.as_str() {
            INTRODUCE => {
                let Some((lane, answer)) = owed.answers.into_iter().next() else { return };
                self.upstreams[lane].intro_pending = false;
                let Some(result) = result_of(&answer) else {
                    tracing::warn!(upstream = %self.upstreams[lane].name, "upstream did not initialize; starting it again later");
                    return self.restart_later(lane).await;
                };
                let intro = Introduced::read(&result);
                if self.initialized {
                    let note = json!({"jsonrpc": "2.0", "method": jsonrpc::method::INITIALIZED});
                    if let Some(l) = &self.upstreams[lane].lane {
                        l.send(Bytes::from(note.to_string()));
                    }
                }
                self.list_changed(&intro).await;
                self.upstreams[lane].introduced = Some(intro);
                self.dispatch(lane).await;
            }
            jsonrpc::method::INITIALIZE => {
                let mut introduced = Vec::new();
                let mut failed = Vec::new();
                for (lane, answer) in &owed.answers {
                    self.upstreams[*lane].intro_pending = false;
                    match result_of(answer) {
                        Some(result) => {
                            let intro = Introduced::read(&result);
                            self.upstreams[*lane].introduced = Some(intro);
                            introduced.push(*lane);
                        }
                        None => {
                            tracing::warn!(upstream = %self.upstreams[*lane].name, "upstream did not initialize; starting it again later");
                            failed.push(*lane);
                        }
                    }
                }
                for lane in failed {
                    self.restart_later(lane).await;
                }
                introduced.sort_unstable();
                if introduced.is_empty() {
                    self.refuse(id, code::UPSTREAM_FAILED, "no upstream of the gateway initialized").await;
                    return self.release_held().await;
                }
                let requested = self.init.as_deref().and_then(|raw| params_string(raw, &["protocolVersion"]));
                let parts: Vec<(&str, &Introduced)> = introduced
                    .iter()
                    .filter_map(|&l| {
                        self.upstreams[l].introduced.as_ref().map(|i| (self.upstreams[l].name.as_str(), i))
                    })
                    .collect();
                let result = merge::initialize_result(&parts, requested.as_deref());
                self.reply(id, &result).await;
                self.release_held().await;
            }
            method if merge::list_key(method).is_some() => {
                let key = merge::list_key(method).unwrap_or("tools");
                let mut answers = owed.answers.clone();
                answers.sort_by_key(|(lane, _)| *lane);
                let mut pages = Vec::new();
                let mut first_error = None;
                for (lane, answer) in &answers {
                    let name = &self.upstreams[*lane].name;
                    match raw_result(answer).and_then(|r| Page::read(name, key, r.as_bytes())) {
                        Some(page) => pages.push((*lane, page)),
                        None => {
                            tracing::warn!(upstream = %name, "{method} failed; its items are left out");
                            first_error.get_or_insert_with(|| answer.clone());
                        }
                    }
                }
                if pages.is_empty() {
                    if let Some(error) = first_error {
                        return self.forward_answer(id, &error).await;
                    }
                }
                for (lane, page) in &mut pages {
                    self.learn_resources(*lane, method, &page.items);
                    if method == "tools/list" {
                        self.check_pins(*lane, page);
                    }
                }
                let separator = self.separator.clone();
                let result = merge::merge_pages(method, key, &separator, pages.into_iter().map(|(_, p)| p).collect());
                self.reply(id, &result).await;
            }
            "logging/setLevel" => {
                // Set if any upstream took it; refused if every one refused it.
                let took = owed.answers.iter().any(|(_, a)| raw_result(a).is_some());
                match owed.answers.first() {
                    Some((_, error)) if !took => self.forward_answer(id, &error.clone()).await,
                    _ => self.reply(id, &json!({})).await,
                }
            }
            _ => {
                let Some((lane, answer)) = owed.answers.into_iter().next() else { return };
                if owed.method == jsonrpc::method::TOOLS_CALL {
                    self.learn_links(lane, &answer);
                }
                self.forward_answer(id, &answer).await;
            }
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
        if let (Some(sent), Some(l)) = (rewrite::with_id(&m.raw, &upstream_id), &self.upstreams[lane].lane) {
            l.send(sent);
        }
    }

    async fn lane_event(&mut self, lane: usize, event: LaneEvent) {
        match event {
            LaneEvent::Message(bytes) => {
                let Ok(m) = Message::parse(bytes) else { return };
                match m.head.kind {
                    Kind::Response | Kind::Error => {
                        let leg = m.head.id.as_deref().and_then(|k| k.parse::<u64>().ok());
                        match leg.and_then(|id| self.take_leg(id)) {
                            Some(leg) => {
                                self.settle(leg.slot, lane, Ok(m.raw)).await;
                                self.dispatch(lane).await;
                            }
                            None => tracing::debug!(upstream = %self.upstreams[lane].name, "answer to no leg dropped"),
                        }
                    }
                    Kind::Request => {
                        let Some(upstream_id) = m.head.raw_id.clone() else { return };
                        if self.asks.len() >= MAX_ASKS {
                            // One upstream cannot pile requests up at the client without end.
                            let text = "too many requests to the client are waiting for answers";
                            let refusal =
                                jsonrpc::error_response(Some(&upstream_id), code::INVALID_REQUEST, text, None);
                            if let Some(l) = &self.upstreams[lane].lane {
                                l.send(refusal);
                            }
                            return;
                        }
                        let id = self.next();
                        if let Some(sent) = rewrite::with_id(&m.raw, &id.to_string()) {
                            self.asks.insert(id, (lane, upstream_id));
                            self.send_client(sent).await;
                        }
                    }
                    Kind::Notification => self.lane_notification(lane, m).await,
                }
            }
            LaneEvent::Ended(end) => {
                self.live = self.live.saturating_sub(1);
                self.lane_ended(lane, &format!("{end:?}")).await
            }
        }
    }

    async fn lane_notification(&mut self, lane: usize, m: Message) {
        let method = m.head.method.as_deref().unwrap_or_default();
        let name = self.upstreams[lane].name.clone();
        let sent = match method {
            // Log lines say which upstream wrote them.
            "notifications/message" => rewrite::fields(&m.raw)
                .and_then(|mut f| {
                    let mut params = rewrite::nested(&f, "params")?;
                    let logger = match rewrite::string(&params, "logger") {
                        Some(own) => format!("{name}/{own}"),
                        None => name.clone(),
                    };
                    rewrite::set(&mut params, "logger", &logger);
                    rewrite::set_object(&mut f, "params", &params);
                    Some(rewrite::to_bytes(&f))
                })
                // No params to name it in: passed as it is, as any other notification.
                .or_else(|| Some(m.raw.clone())),
            // An upstream cancelling its own request: under the id the client knows.
            jsonrpc::method::CANCELLED => {
                let theirs = jsonrpc::cancelled_request(&m.raw);
                let ours = self
                    .asks
                    .iter()
                    .find(|(_, (l, id))| *l == lane && theirs.is_some() && jsonrpc::id_key(id) == theirs)
                    .map(|(k, _)| *k);
                ours.and_then(|ours| {
                    self.asks.remove(&ours);
                    let mut f = rewrite::fields(&m.raw)?;
                    let mut params = rewrite::nested(&f, "params")?;
                    rewrite::set(&mut params, "requestId", &ours);
                    rewrite::set_object(&mut f, "params", &params);
                    Some(rewrite::to_bytes(&f))
                })
            }
            // Progress only for a call this upstream has, under its token: one
            // upstream cannot report progress on another's call.
            "notifications/progress" => {
                let ours = jsonrpc::progress_token(&m.raw).is_some_and(|t| self.progress.get(&t) == Some(&lane));
                if !ours {
                    tracing::debug!(upstream = %name, "progress for no call of this upstream dropped");
                }
                ours.then(|| m.raw.clone())
            }
            _ => Some(m.raw.clone()),
        };
        if let Some(sent) = sent {
            self.send_client(sent).await;
        }
    }

    /// An upstream is gone: what it owed is answered, its items leave the lists.
    async fn lane_ended(&mut self, lane: usize, why: &str) {
        let name = self.upstreams[lane].name.clone();
        tracing::warn!(upstream = %name, "upstream ended: {why}");
        let had = self.upstreams[lane].lane.take().is_some();
        let introduced = self.upstreams[lane].introduced.take();
        self.asks.retain(|_, (l, _)| *l != lane);
        self.resources.retain(|_, l| *l != lane);
        self.templates.retain(|_, l| *l != lane);
        self.upstreams[lane].waiting.clear();
        let legs: Vec<u64> = self.legs.iter().filter(|(_, leg)| leg.lane == lane).map(|(id, _)| *id).collect();
        for id in legs {
            if let Some(leg) = self.take_leg(id) {
                self.settle(leg.slot, lane, Err("failed before answering".into())).await;
            }
        }
        if let (true, Some(intro)) = (had, &introduced) {
            self.list_changed(intro).await;
        }
        self.upstreams[lane].intro_pending = false;
        // A lane that stayed up a while starts its backoff afresh; one that
        // keeps dying right after it starts waits longer each time.
        if self.upstreams[lane].started_at.is_some_and(|at| at.elapsed() > STABLE_AFTER) {
            self.upstreams[lane].failures = 0;
        }
        if had && self.started {
            self.schedule_restart(lane);
        }
    }

    /// Running upstreams that announced `capability`, in config order.
    fn lanes_with(&self, capability: &str) -> Vec<usize> {
        (0..self.upstreams.len())
            .filter(|&i| {
                let u = &self.upstreams[i];
                u.lane.is_some() && u.introduced.as_ref().is_some_and(|intro| intro.has(capability))
            })
            .collect()
    }

    /// The upstream a prefixed name is for, and the name it knows.
    fn split(&self, name: &str) -> Option<(usize, String)> {
        let (prefix, inner) = name.split_once(self.separator.as_str())?;
        let lane = *self.by_name.get(prefix)?;
        Some((lane, inner.to_owned()))
    }

    /// The upstream a URI came from: as listed or linked, by a template's
    /// fixed start, or the only upstream with resources.
    fn lane_for_uri(&self, uri: &str) -> Option<usize> {
        if let Some(&lane) = self.resources.get(uri) {
            return Some(lane);
        }
        // By the templates whose fixed start it has: only when they are all one
        // upstream's (one upstream's template cannot capture another's URIs).
        let mut by_template = self
            .templates
            .iter()
            .filter(|(start, _)| !start.is_empty() && uri.starts_with(start.as_str()))
            .map(|(_, lane)| *lane);
        if let Some(first) = by_template.next() {
            return by_template.all(|lane| lane == first).then_some(first);
        }
        match self.lanes_with("resources").as_slice() {
            [only] => Some(*only),
            _ => None,
        }
    }

    /// Holds each tool of a `tools/list` page against its pin: a changed one
    /// is logged and audited and, as its upstream's `pin` says, kept or
    /// hidden (calls to it are refused by [`Router::refused_by_pin`], in
    /// every session). A name listed twice is left out: which of two
    /// definitions would the client trust?
    fn check_pins(&mut self, lane: usize, page: &mut Page) {
        let policy = self.upstreams[lane].config.pin;
        let upstream = self.upstreams[lane].name.clone();
        let pins = self.shared.borrow().pins.clone();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let items = std::mem::take(&mut page.items);
        let named: Vec<(String, rewrite::Fields)> =
            items.into_iter().filter_map(|item| rewrite::string(&item, "name").map(|n| (n, item))).collect();
        for (name, _) in &named {
            *seen.entry(name.clone()).or_default() += 1;
        }
        let unique: Vec<(String, &rewrite::Fields)> =
            named.iter().filter(|(n, _)| seen.get(n) == Some(&1)).map(|(n, f)| (n.clone(), f)).collect();
        if unique.len() < named.len() {
            tracing::warn!(upstream = %upstream, "tools listed twice under one name are left out");
        }
        let verdicts = pins.check(&upstream, &unique);
        let mut kept = Vec::with_capacity(unique.len());
        for ((tool, item), verdict) in unique.into_iter().zip(verdicts) {
            if let Pinned::Changed { pinned, now } = verdict {
                tracing::warn!(upstream = %upstream, tool = %tool, ?policy, "a tool changed its definition since it was pinned");
                let event = json!({"event": "tool-changed", "tool": tool, "pinned": pinned, "now": now, "policy": format!("{policy:?}").to_lowercase()});
                let at = At { session: self.opening.session.as_deref(), upstream: Some(&upstream) };
                self.setup.audit.record(Source::Host, at, &event);
                if policy == PinPolicy::Hide {
                    continue;
                }
            }
            kept.push(item.clone());
        }
        page.items = kept;
    }

    /// Whether a call to `tool` of upstream `lane` is refused by its pin:
    /// its definition changed (as any session last listed it) and its `pin`
    /// is `hide` or `refuse`.
    fn refused_by_pin(&self, lane: usize, tool: &str) -> bool {
        let u = &self.upstreams[lane];
        u.config.pin != PinPolicy::Warn && self.shared.borrow().pins.is_changed(&u.name, tool)
    }

    /// Routes `uri` to `lane`, unless another upstream gave it first: an
    /// upstream cannot take over a URI the client got from another one (by
    /// listing or linking it too); the first keeps it, and the clash is logged.
    fn bind(&mut self, uri: String, lane: usize) {
        match self.resources.get(&uri) {
            Some(&first) if first != lane && !self.upstreams[first].removed => {
                let (first, second) = (&self.upstreams[first].name, &self.upstreams[lane].name);
                tracing::warn!(first = %first, second = %second, "two upstreams give the same resource URI; it stays with the first");
            }
            Some(_) => {}
            None if self.resources.len() < MAX_ROUTES => {
                self.resources.insert(uri, lane);
            }
            None => tracing::warn!("the resource routing table is full; a URI is not routed"),
        }
    }

    fn learn_resources(&mut self, lane: usize, method: &str, items: &[rewrite::Fields]) {
        for item in items {
            match method {
                "resources/list" => {
                    if let Some(uri) = rewrite::string(item, "uri") {
                        self.bind(uri, lane);
                    }
                }
                "resources/templates/list" => {
                    if let Some(template) = rewrite::string(item, "uriTemplate") {
                        let start = template.split('{').next().unwrap_or_default().to_owned();
                        // The first upstream to give a fixed start keeps it.
                        if self.templates.len() < MAX_ROUTES {
                            self.templates.entry(start).or_insert(lane);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Resource links and embedded resources in a tool's result: their URIs
    /// can be read through the gateway.
    fn learn_links(&mut self, lane: usize, answer: &[u8]) {
        if memchr::memmem::find(answer, b"\"uri\"").is_none() {
            return;
        }
        let Some(result) = result_of(answer) else { return };
        let Some(content) = result.get("content").and_then(Value::as_array) else { return };
        for item in content {
            let uri = match item.get("type").and_then(Value::as_str) {
                Some("resource_link") => item.get("uri"),
                Some("resource") => item.get("resource").and_then(|r| r.get("uri")),
                _ => None,
            };
            if let Some(uri) = uri.and_then(Value::as_str) {
                self.bind(uri.to_owned(), lane);
            }
        }
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
    async fn forward_answer(&self, id: &str, answer: &[u8]) {
        if let Some(sent) = rewrite::with_id(answer, id) {
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
