//! The stateless era (2026-07-28) at the gateway: requests with no session.
//!
//! Modern requests share upstream sessions ("backings"). The first one probes
//! the upstream with `server/discover`: an upstream that answers it speaks the
//! modern era and one backing carries every request as it is. Any other answer
//! means a legacy upstream: then there is a backing per set of client
//! capabilities, opened by Warden's own `initialize` declaring them (a legacy
//! server fixes capabilities per session), and Warden bridges:
//! - `server/discover` is answered from the backing's `initialize` result;
//! - results gain `resultType: "complete"`, list and read results caching hints,
//!   and the retired `-32002` becomes `-32602`;
//! - a server→client request during a call (sampling, elicitation, roots) ends
//!   the response with an `input_required` result; the client's retry brings the
//!   answer, which goes upstream, and the retry then carries on with the call,
//!   which never stopped upstream. `requestState` is a single-use random handle;
//! - the upstream's `ping` is answered by Warden;
//! - `subscriptions/listen` is served by Warden from the backing's change
//!   notifications;
//! - a legacy server's sampling, elicitation or roots request names no call
//!   (stdio says nothing of which call asked), so clients whose capabilities
//!   allow those requests never share a backing's calls: each call leases a
//!   backing of its own from a pool per capability set, returned when the
//!   call is answered and closed when it is cancelled. Clients that declare
//!   none of them share one backing (the server may not ask them anything).
//!
//! Either way each request goes up under an id of Warden's (clients' ids
//! collide) and its answer comes back under the client's, and a client that
//! closes its response stream cancels the call (`notifications/cancelled` upstream).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, OnceCell, OwnedSemaphorePermit, Semaphore};

use crate::era::{self, Facts};
use crate::jsonrpc::{self, code, Head, Kind};
use crate::plugin::instances::Transport;
use crate::serve::streams::{Event, Receiver};
use crate::serve::{lock, Gateway, HttpSession, SessionError};

/// How long the `server/discover` probe and Warden's own `initialize` may take.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// How long a call waiting for its client's retry is kept.
const PARKED_FOR: Duration = Duration::from_secs(300);
/// Most backings (distinct callers and client capability sets).
const MAX_BACKINGS: usize = 64;
/// Most calls at once, each on a backing of its own, per capability set that
/// lets the server ask the client for input.
const MAX_LEASED: usize = 32;
/// Leased backings kept idle per capability set; more are closed when returned.
const MAX_IDLE: usize = 4;
/// How long a call may wait for a leased backing to come free.
const LEASE_WAIT: Duration = Duration::from_secs(30);
/// The client capabilities that let a legacy server send it requests.
const INPUT_CAPABILITIES: &[&str] = &["sampling", "elicitation", "roots"];
/// Server→client requests that travel inside an `input_required` result.
const INPUT_METHODS: &[&str] = &["sampling/createMessage", "elicitation/create", "roots/list"];
/// The methods whose complete results carry caching hints.
const CACHEABLE: &[&str] =
    &["tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read", "server/discover"];

/// What the probe found the upstream to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpstreamEra {
    Modern,
    Legacy,
}

/// The key of the one input a bridged `input_required` result asks for.
const INPUT_KEY: &str = "input";

/// The modern side of one gateway.
#[derive(Default)]
pub struct Modern {
    era: OnceCell<UpstreamEra>,
    backings: Mutex<HashMap<Key, Arc<OnceCell<Arc<Backing>>>>>,
    /// Backings lent to one call at a time, by capability set.
    pools: Mutex<HashMap<Key, Arc<Pool>>>,
    parked: Mutex<HashMap<String, Parked>>,
    next_id: AtomicU64,
}

/// What modern requests share a backing by: the same caller and, against a
/// legacy upstream, the same client capabilities (its session fixes them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    caller: Option<Arc<str>>,
    /// Whose quota it counts against: the caller, or without tokens its address.
    owner: Arc<str>,
    capabilities: String,
}

/// An upstream session shared by modern requests.
struct Backing {
    session: Arc<HttpSession>,
    era: UpstreamEra,
    /// The legacy upstream's `initialize` result.
    init: Value,
    subscribers: Mutex<Vec<Subscriber>>,
}

/// The backings of one capability set that carry one call at a time.
struct Pool {
    idle: Mutex<Vec<Arc<Backing>>>,
    permits: Arc<Semaphore>,
}

/// A backing lent to one call. Dropped, it goes back to its pool, unless the
/// call was cancelled: then the upstream may still be busy with it (and ask
/// for input about it), so the backing is closed instead.
struct Lease {
    pool: Arc<Pool>,
    backing: Arc<Backing>,
    spoiled: AtomicBool,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut idle = lock(&self.pool.idle);
        if self.spoiled.load(Ordering::Relaxed) || self.backing.session.ended() || idle.len() >= MAX_IDLE {
            self.backing.session.close();
        } else {
            idle.push(self.backing.clone());
        }
    }
}

/// A `subscriptions/listen` Warden serves from a legacy backing.
struct Subscriber {
    id: String,
    wants: Vec<&'static str>,
    out: mpsc::UnboundedSender<Event>,
}

/// A call waiting for its client to retry with the input it asked for.
struct Parked {
    call: Call,
    stream: Receiver,
    /// The upstream's request the input answers: its id (JSON text) and `{method, params}`.
    asked: String,
    request: Value,
}

/// One modern request in flight on a backing.
struct Call {
    modern: Arc<Modern>,
    backing: Arc<Backing>,
    /// The backing is the call's alone (see [`Pool`]).
    lease: Option<Lease>,
    /// Warden's id for it upstream (JSON text).
    upstream_id: String,
    /// The client's id for it (JSON text); a retry brings a new one.
    client_id: String,
    /// The client's progress token (JSON text), if it asked for progress.
    progress: Option<String>,
    method: String,
    name: Option<String>,
}

/// What a modern POST gets.
pub enum ModernReply {
    /// An HTTP error status with a JSON-RPC error body.
    Refused(hyper::StatusCode, Bytes),
    /// What the server says about the request, ending with the answer.
    Events(mpsc::UnboundedReceiver<Event>),
    /// A notification, accepted.
    Accepted,
}

impl Modern {
    /// Serves one modern message (already checked against its headers).
    pub async fn serve(
        self: &Arc<Self>,
        gateway: &Gateway,
        head: &Head,
        raw: &Bytes,
        facts: Facts,
        caller: Option<Arc<str>>,
        owner: Arc<str>,
    ) -> ModernReply {
        // Answered under the id exactly as the client wrote it.
        let Some(client_id) = head.raw_id.clone().filter(|_| head.kind == Kind::Request) else {
            // The core defines no client notifications over HTTP.
            return ModernReply::Accepted;
        };
        if matches!(facts.method.as_str(), jsonrpc::method::INITIALIZE | jsonrpc::method::INITIALIZED) {
            let why = "2026-07-28 has no initialize handshake";
            return refused(hyper::StatusCode::NOT_FOUND, Some(&client_id), code::METHOD_NOT_FOUND, why);
        }
        let era = match self.era.get_or_try_init(|| probe(gateway)).await {
            Ok(era) => *era,
            Err(why) => return failed(&client_id, &why),
        };
        if era == UpstreamEra::Legacy {
            if let Some(state) = facts.request_state.as_deref() {
                return self.resume(&client_id, &facts, state, &owner);
            }
        }
        // Callers never share an upstream session (plugins see one caller per session).
        let capabilities = match era {
            UpstreamEra::Modern => "",
            UpstreamEra::Legacy => facts.capabilities.as_deref().unwrap_or("{}"),
        };
        let key = Key { caller: caller.clone(), owner, capabilities: capabilities.to_owned() };
        // Discover and listen start no call: the shared backing serves them.
        let shared = era == UpstreamEra::Modern
            || matches!(facts.method.as_str(), "server/discover" | "subscriptions/listen")
            || !asks_for_input(&key.capabilities);
        let (backing, lease) = if shared {
            match self.backing(gateway, era, key, &facts).await {
                Ok(backing) => (backing, None),
                Err(why) => return failed(&client_id, &why),
            }
        } else {
            match self.lease(gateway, key, &facts).await {
                Ok(lease) => (lease.backing.clone(), Some(lease)),
                Err(why) => return failed(&client_id, &why),
            }
        };
        if era == UpstreamEra::Legacy {
            match facts.method.as_str() {
                "server/discover" => return answered(&client_id, &discover_result(&backing.init)),
                "subscriptions/listen" => return backing.listen(&client_id, raw),
                _ => {}
            }
        }
        let upstream_id = format!("\"w{}\"", self.next_id.fetch_add(1, Ordering::Relaxed));
        // Clients' progress tokens collide as their ids do: the upstream sees Warden's id as the token.
        let progress = jsonrpc::progress_token(raw);
        let Some(message) = rewrite(raw, &upstream_id, progress.is_some(), era == UpstreamEra::Legacy) else {
            return refused(
                hyper::StatusCode::BAD_REQUEST,
                Some(&client_id),
                code::INVALID_REQUEST,
                "unreadable request",
            );
        };
        let stream = match backing.session.call(upstream_id.clone(), message).await {
            Ok((_, stream)) => stream,
            Err(e) => return failed(&client_id, &e.to_string()),
        };
        let call = Call {
            modern: self.clone(),
            backing,
            lease,
            upstream_id,
            client_id,
            progress,
            method: facts.method,
            name: facts.name,
        };
        let (out, events) = mpsc::unbounded_channel();
        tokio::spawn(call.run(stream, out));
        ModernReply::Events(events)
    }

    /// A retry carrying `requestState`: its input goes to the upstream's
    /// waiting request, and the retry takes over the parked call.
    fn resume(self: &Arc<Self>, client_id: &str, facts: &Facts, state: &str, owner: &str) -> ModernReply {
        let mut parked_calls = lock(&self.parked);
        // Another caller's handle does not exist for this one (and using it
        // wrongly does not use it up: its own caller may still retry).
        let mine = parked_calls.get(state).filter(|p| &*p.call.backing.session.owner == owner);
        let Some(found) = mine else {
            let why = "requestState is unknown, used or expired; send the request again without it";
            return refused(hyper::StatusCode::BAD_REQUEST, Some(client_id), code::INVALID_PARAMS, why);
        };
        if found.call.method != facts.method || found.call.name != facts.name {
            let why = "requestState belongs to another request";
            return refused(hyper::StatusCode::BAD_REQUEST, Some(client_id), code::INVALID_PARAMS, why);
        }
        let Some(mut parked) = parked_calls.remove(state) else {
            let why = "requestState is unknown, used or expired; send the request again without it";
            return refused(hyper::StatusCode::BAD_REQUEST, Some(client_id), code::INVALID_PARAMS, why);
        };
        drop(parked_calls);
        parked.call.client_id = client_id.to_owned();
        let (out, events) = mpsc::unbounded_channel();
        let responses: Option<Value> = facts.input_responses.as_deref().and_then(|r| serde_json::from_str(r).ok());
        let Some(input) = responses.as_ref().and_then(|r| r.get(INPUT_KEY)) else {
            // The input is missing: ask for it again.
            let Some(token) = parked_token() else {
                tokio::spawn(async move { parked.call.cancel().await });
                return failed(client_id, "no OS random source for a requestState handle");
            };
            let message = input_required(client_id, &parked.request)(&token);
            // Parked before the client can read the token and retry.
            self.park(token, parked);
            let _ = out.send(Event { id: None, message, last: true });
            return ModernReply::Events(events);
        };
        let reply = Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{},"result":{input}}}"#, parked.asked));
        let Parked { call, stream, .. } = parked;
        tokio::spawn(async move {
            if call.backing.session.submit(reply).await.is_err() {
                tracing::debug!("the backing session ended before the client's input reached it");
            }
            call.run(stream, out).await;
        });
        ModernReply::Events(events)
    }

    /// Keeps a call for its client's retry; after a while it is cancelled.
    fn park(self: &Arc<Self>, token: String, parked: Parked) {
        lock(&self.parked).insert(token.clone(), parked);
        let modern = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(PARKED_FOR).await;
            let expired = lock(&modern.parked).remove(&token);
            if let Some(parked) = expired {
                tracing::info!(method = %parked.call.method, "a call waited too long for its client's input; cancelled");
                parked.call.cancel().await;
            }
        });
    }

    /// A legacy backing of its own for one call, from the pool for `key`:
    /// an idle one, or a new one while fewer than [`MAX_LEASED`] are out.
    async fn lease(&self, gateway: &Gateway, key: Key, facts: &Facts) -> Result<Lease, String> {
        let caller = key.caller.clone();
        let owner = key.owner.clone();
        if !lock(&self.pools).contains_key(&key) {
            self.make_room(&key.owner, gateway.options().max_backings_per_caller)?;
        }
        let pool = {
            let mut pools = lock(&self.pools);
            pools
                .entry(key)
                .or_insert_with(|| {
                    Arc::new(Pool { idle: Mutex::new(Vec::new()), permits: Arc::new(Semaphore::new(MAX_LEASED)) })
                })
                .clone()
        };
        let permit = match tokio::time::timeout(LEASE_WAIT, pool.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(format!("all {MAX_LEASED} upstream sessions for these client capabilities are busy")),
        };
        let idle = {
            let mut idle = lock(&pool.idle);
            idle.retain(|b| !b.session.ended());
            idle.pop()
        };
        let backing = match idle {
            Some(backing) => backing,
            None => {
                // Every upstream session is a process: a caller's count (leased
                // ones included, this one too) and the lane's are bounded.
                let per_owner = gateway.options().max_backings_per_caller;
                let (mine, all) = self.backing_count(&owner);
                if mine > per_owner {
                    return Err(format!(
                        "this caller has {per_owner} upstream sessions in use (--max-backings-per-caller)"
                    ));
                }
                if all > gateway.options().max_sessions {
                    let limit = gateway.options().max_sessions;
                    return Err(format!("the 2026-07-28 lane has {limit} upstream sessions in use (--max-sessions)"));
                }
                Backing::open(gateway, UpstreamEra::Legacy, facts, caller, owner).await?
            }
        };
        Ok(Lease { pool, backing, spoiled: AtomicBool::new(false), _permit: permit })
    }

    /// The backing for `key`, opened (and, for a legacy upstream, initialized) on first use.
    async fn backing(
        &self,
        gateway: &Gateway,
        era: UpstreamEra,
        key: Key,
        facts: &Facts,
    ) -> Result<Arc<Backing>, String> {
        let caller = key.caller.clone();
        let owner = key.owner.clone();
        let known = {
            let mut backings = lock(&self.backings);
            // A backing whose upstream ended is replaced.
            backings.retain(|_, cell| cell.get().is_none_or(|b| !b.session.ended()));
            backings.contains_key(&key)
        };
        if !known {
            self.make_room(&key.owner, gateway.options().max_backings_per_caller)?;
        }
        let cell = lock(&self.backings).entry(key).or_default().clone();
        let backing = cell.get_or_try_init(|| Backing::open(gateway, era, facts, caller, owner)).await?;
        backing.session.touch();
        Ok(backing.clone())
    }

    /// Upstream sessions of the lane held by `owner` and by everyone: shared
    /// backings, and the leased ones of every pool (lent out or idle).
    fn backing_count(&self, owner: &str) -> (usize, usize) {
        let (mut mine, mut all) = (0, 0);
        for (key, cell) in lock(&self.backings).iter() {
            if cell.get().is_some() {
                all += 1;
                mine += usize::from(&*key.owner == owner);
            }
        }
        for (key, pool) in lock(&self.pools).iter() {
            let held = MAX_LEASED - pool.permits.available_permits() + lock(&pool.idle).len();
            all += held;
            if &*key.owner == owner {
                mine += held;
            }
        }
        (mine, all)
    }

    /// Closes idle backings until `owner` may have one more (at most
    /// `per_owner`) and the lane one more (at most [`MAX_BACKINGS`]): the
    /// owner's least recently used idle one first, else anyone's. Busy ones
    /// are never taken: then the request is refused.
    fn make_room(&self, owner: &str, per_owner: usize) -> Result<(), String> {
        // Candidates: (key, idle for, is it a pool).
        let mut candidates: Vec<(Key, Duration, bool)> = Vec::new();
        for (key, cell) in lock(&self.backings).iter() {
            // Busy: a call in flight, or a client's `subscriptions/listen` on it.
            let busy = |b: &Arc<Backing>| b.session.calls_in_flight() || !lock(&b.subscribers).is_empty();
            if let Some(b) = cell.get().filter(|b| !busy(b)) {
                candidates.push((key.clone(), b.session.idle_for(), false));
            }
        }
        let (mut owned, mut total) = {
            let backings = lock(&self.backings);
            let pools = lock(&self.pools);
            let owned = backings.keys().chain(pools.keys()).filter(|k| &*k.owner == owner).count();
            (owned, backings.len() + pools.len())
        };
        for (key, pool) in lock(&self.pools).iter() {
            if pool.permits.available_permits() == MAX_LEASED {
                let idle = lock(&pool.idle).iter().map(|b| b.session.idle_for()).min().unwrap_or(Duration::MAX);
                candidates.push((key.clone(), idle, true));
            }
        }
        // Least recently used first.
        candidates.sort_by_key(|(_, idle, _)| std::cmp::Reverse(*idle));
        while owned >= per_owner || total >= MAX_BACKINGS {
            let mine = owned >= per_owner;
            let Some(at) = candidates.iter().position(|(k, _, _)| !mine || &*k.owner == owner) else {
                return Err(if mine {
                    format!("this caller holds {per_owner} upstream sessions, all busy (--max-backings-per-caller)")
                } else {
                    format!("too many distinct callers and client capability sets (limit {MAX_BACKINGS}), all busy")
                });
            };
            let (key, _, pool) = candidates.remove(at);
            if &*key.owner == owner {
                owned -= 1;
            }
            total -= 1;
            tracing::info!(owner = %key.owner, "idle upstream session of the 2026-07-28 lane closed to make room");
            if pool {
                if let Some(pool) = lock(&self.pools).remove(&key) {
                    for backing in lock(&pool.idle).drain(..) {
                        backing.session.close();
                    }
                }
            } else if let Some(cell) = lock(&self.backings).remove(&key) {
                if let Some(backing) = cell.get() {
                    backing.session.close();
                }
            }
        }
        Ok(())
    }
}

/// Asks the upstream `server/discover` on a session of its own: a discover
/// result means a modern upstream; anything else (an error, silence) a legacy one.
async fn probe(gateway: &Gateway) -> Result<UpstreamEra, String> {
    let session = gateway
        .start_session("probe".to_owned(), false, Transport::StreamableHttp, None, Arc::from("warden"))
        .map_err(|e| e.to_string())?;
    let discover = json!({
        "jsonrpc": "2.0", "id": "warden-probe", "method": "server/discover",
        "params": {"_meta": {era::meta::PROTOCOL_VERSION: era::MODERN, era::meta::CLIENT_CAPABILITIES: {}}}
    });
    let answer = session.ask("\"warden-probe\"", Bytes::from(discover.to_string())).await;
    session.close();
    let modern = answer.is_some_and(|a| {
        let versions = &a["result"]["supportedVersions"];
        versions.as_array().is_some_and(|v| v.iter().any(|v| v.as_str().is_some_and(era::is_modern)))
    });
    let era = if modern { UpstreamEra::Modern } else { UpstreamEra::Legacy };
    tracing::info!(?era, "the upstream's era, as probed with server/discover");
    Ok(era)
}

impl Backing {
    async fn open(
        gateway: &Gateway,
        era: UpstreamEra,
        facts: &Facts,
        caller: Option<Arc<str>>,
        owner: Arc<str>,
    ) -> Result<Arc<Backing>, String> {
        let session = gateway
            .start_session("modern".to_owned(), false, Transport::StreamableHttp, caller, owner)
            .map_err(|e: SessionError| e.to_string())?;
        let init = match era {
            UpstreamEra::Modern => Value::Null,
            UpstreamEra::Legacy => {
                let capabilities: Value =
                    facts.capabilities.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or(json!({}));
                let client_info: Value = facts
                    .client_info
                    .as_deref()
                    .and_then(|c| serde_json::from_str(c).ok())
                    .unwrap_or(json!({"name": "warden", "version": env!("CARGO_PKG_VERSION")}));
                let initialize = json!({
                    "jsonrpc": "2.0", "id": "warden-init", "method": "initialize",
                    "params": {"protocolVersion": era::LATEST_LEGACY, "capabilities": capabilities, "clientInfo": client_info}
                });
                let answer = session.ask("\"warden-init\"", Bytes::from(initialize.to_string())).await;
                let Some(result) = answer.and_then(|mut a| a.get_mut("result").map(Value::take)) else {
                    session.close();
                    return Err("the upstream did not answer Warden's initialize".to_owned());
                };
                let initialized = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
                session.submit(initialized).await.map_err(|e| e.to_string())?;
                result
            }
        };
        let backing = Arc::new(Backing { session, era, init, subscribers: Mutex::new(Vec::new()) });
        if era == UpstreamEra::Legacy {
            tokio::spawn(backing.clone().fan_out());
        }
        Ok(backing)
    }

    /// Serves `subscriptions/listen` from a legacy upstream's change notifications.
    fn listen(&self, client_id: &str, raw: &Bytes) -> ModernReply {
        let asked: Value = serde_json::from_slice::<Value>(raw)
            .ok()
            .map(|mut v| v["params"]["notifications"].take())
            .unwrap_or_default();
        let offered = |kind: &str| self.init["capabilities"][kind]["listChanged"].as_bool().unwrap_or(false);
        let mut wants = Vec::new();
        let mut honoured = Map::new();
        for (flag, kind, method) in [
            ("toolsListChanged", "tools", "notifications/tools/list_changed"),
            ("promptsListChanged", "prompts", "notifications/prompts/list_changed"),
            ("resourcesListChanged", "resources", "notifications/resources/list_changed"),
        ] {
            if asked[flag].as_bool() == Some(true) && offered(kind) {
                wants.push(method);
                honoured.insert(flag.to_owned(), Value::Bool(true));
            }
        }
        let (out, events) = mpsc::unbounded_channel();
        let id: Value = serde_json::from_str(client_id).unwrap_or(Value::Null);
        let ack = json!({
            "jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": honoured, "_meta": {era::meta::SUBSCRIPTION_ID: id}}
        });
        let _ = out.send(Event { id: None, message: Bytes::from(ack.to_string()), last: false });
        lock(&self.subscribers).push(Subscriber { id: client_id.to_owned(), wants, out });
        ModernReply::Events(events)
    }

    /// Passes the backing's change notifications to the subscriptions that asked for them.
    async fn fan_out(self: Arc<Self>) {
        let Ok(mut changes) = self.session.listen(None) else { return };
        while let Some(event) = changes.recv().await {
            let Ok(head) = jsonrpc::parse_head(&event.message) else { continue };
            let method = head.method.unwrap_or_default();
            let mut subscribers = lock(&self.subscribers);
            subscribers.retain(|s| !s.out.is_closed());
            for subscriber in subscribers.iter().filter(|s| s.wants.contains(&method.as_str())) {
                let id: Value = serde_json::from_str(&subscriber.id).unwrap_or(Value::Null);
                let note =
                    json!({"jsonrpc": "2.0", "method": method, "params": {"_meta": {era::meta::SUBSCRIPTION_ID: id}}});
                let _ = subscriber.out.send(Event { id: None, message: Bytes::from(note.to_string()), last: false });
            }
        }
        // The upstream is gone: subscriptions end.
        lock(&self.subscribers).clear();
    }
}

impl Call {
    /// Relays what the upstream says about the call until its answer, an
    /// input request (then the call is parked), or the client leaving (then
    /// the call is cancelled upstream).
    async fn run(self, mut stream: Receiver, out: mpsc::UnboundedSender<Event>) {
        loop {
            let event = tokio::select! {
                event = stream.recv() => event,
                () = out.closed() => {
                    self.cancel().await;
                    return;
                }
            };
            let Some(event) = event else {
                let _ = out.send(Event {
                    id: None,
                    message: failure(&self.client_id, "the upstream session ended"),
                    last: true,
                });
                return;
            };
            if event.last {
                let answer = self.answer(&event.message);
                let _ = out.send(Event { id: None, message: answer, last: true });
                return;
            }
            let Ok(head) = jsonrpc::parse_head(&event.message) else { continue };
            match head.kind {
                Kind::Notification => {
                    let message = match (&self.progress, head.method.as_deref()) {
                        (Some(token), Some("notifications/progress")) => match with_token(&event.message, token) {
                            Some(message) => message,
                            None => {
                                tracing::warn!("progress notification without a params object dropped");
                                continue;
                            }
                        },
                        _ => event.message,
                    };
                    let _ = out.send(Event { id: None, message, last: false });
                }
                Kind::Request if self.backing.era == UpstreamEra::Legacy => {
                    let method = head.method.as_deref().unwrap_or_default();
                    let asked = head.id.unwrap_or_else(|| "null".to_owned());
                    if method == "ping" {
                        let pong = Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{asked},"result":{{}}}}"#));
                        let _ = self.backing.session.submit(pong).await;
                    } else if INPUT_METHODS.contains(&method) && self.lease.is_none() {
                        // A shared backing's clients declared no such capability: the
                        // request cannot be theirs to answer (nor told apart from another call's).
                        let why = format!("{method}: the client declared no capability for it");
                        let refusal = jsonrpc::error_response(Some(&asked), code::METHOD_NOT_FOUND, &why, None);
                        let _ = self.backing.session.submit(refusal).await;
                    } else if INPUT_METHODS.contains(&method) {
                        let request = server_request(&event.message);
                        let Some(token) = parked_token() else {
                            let why = "no OS random source for a requestState handle";
                            let _ = out.send(Event { id: None, message: failure(&self.client_id, why), last: true });
                            self.cancel().await;
                            return;
                        };
                        let message = input_required(&self.client_id, &request)(&token);
                        // Parked before the client can read the token and retry.
                        let modern = self.modern.clone();
                        modern.park(token, Parked { call: self, stream, asked, request });
                        let _ = out.send(Event { id: None, message, last: true });
                        return;
                    } else {
                        let why = format!("{method} has no carrier to a 2026-07-28 client");
                        let refusal = jsonrpc::error_response(Some(&asked), code::METHOD_NOT_FOUND, &why, None);
                        let _ = self.backing.session.submit(refusal).await;
                    }
                }
                _ => tracing::debug!(kind = ?head.kind, "unexpected message on a modern call's stream dropped"),
            }
        }
    }

    /// The upstream's answer, under the client's id (and bridged for a legacy upstream).
    fn answer(&self, message: &[u8]) -> Bytes {
        let Ok(mut value) = serde_json::from_slice::<Value>(message) else {
            return failure(&self.client_id, "the upstream's answer is not JSON");
        };
        if !jsonrpc::set_in(&mut value, &["id"], serde_json::from_str(&self.client_id).unwrap_or(Value::Null)) {
            return failure(&self.client_id, "the upstream's answer is not a JSON-RPC object");
        }
        if self.backing.era == UpstreamEra::Legacy {
            if let Some(result) = value.get_mut("result").and_then(Value::as_object_mut) {
                complete(result, &self.method);
            }
            if let Some(error) = value.get_mut("error").and_then(Value::as_object_mut) {
                if error.get("code").and_then(Value::as_i64) == Some(era::code::LEGACY_RESOURCE_NOT_FOUND.into()) {
                    error.insert("code".to_owned(), code::INVALID_PARAMS.into());
                }
            }
        }
        Bytes::from(value.to_string())
    }

    /// Tells the upstream the call is no longer wanted.
    async fn cancel(&self) {
        let note = json!({
            "jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": serde_json::from_str::<Value>(&self.upstream_id).unwrap_or(Value::Null),
                       "reason": "the client closed its response stream"}
        });
        tracing::debug!(method = %self.method, "client left; cancelling the call upstream");
        if let Some(lease) = &self.lease {
            lease.spoiled.store(true, Ordering::Relaxed);
        }
        self.backing.session.forget(&self.upstream_id);
        let _ = self.backing.session.submit(Bytes::from(note.to_string())).await;
    }
}

impl HttpSession {
    /// Sends a request of Warden's own and waits for its answer (parsed).
    async fn ask(&self, id: &str, message: Bytes) -> Option<Value> {
        let (_, mut stream) = self.call(id.to_owned(), message).await.ok()?;
        let answer = tokio::time::timeout(HANDSHAKE, async {
            while let Some(event) = stream.recv().await {
                if event.last {
                    return Some(event.message);
                }
            }
            None
        });
        let message = answer.await.ok().flatten()?;
        serde_json::from_slice(&message).ok()
    }
}

/// Whether clients with these capabilities (JSON text) may be sent requests
/// by a legacy server.
fn asks_for_input(capabilities: &str) -> bool {
    let capabilities: Value = serde_json::from_str(capabilities).unwrap_or(Value::Null);
    INPUT_CAPABILITIES.iter().any(|c| capabilities.get(c).is_some_and(|v| !v.is_null()))
}

/// A complete result as a 2026-07-28 client expects it.
fn complete(result: &mut Map<String, Value>, method: &str) {
    result.entry("resultType").or_insert_with(|| "complete".into());
    if CACHEABLE.contains(&method) {
        result.entry("ttlMs").or_insert_with(|| 0.into());
        result.entry("cacheScope").or_insert_with(|| "private".into());
    }
}

/// `server/discover`'s result for a legacy upstream, from its `initialize` result.
fn discover_result(init: &Value) -> Value {
    let mut result = Map::new();
    result.insert("supportedVersions".to_owned(), json!([era::MODERN]));
    result.insert("capabilities".to_owned(), init.get("capabilities").cloned().unwrap_or(json!({})));
    if let Some(instructions) = init.get("instructions") {
        result.insert("instructions".to_owned(), instructions.clone());
    }
    if let Some(info) = init.get("serverInfo") {
        result.insert("_meta".to_owned(), json!({era::meta::SERVER_INFO: info}));
    }
    complete(&mut result, "server/discover");
    Value::Object(result)
}

/// `{method, params}` of a server→client request.
fn server_request(message: &[u8]) -> Value {
    let value: Value = serde_json::from_slice(message).unwrap_or_default();
    json!({"method": value["method"], "params": value.get("params").cloned().unwrap_or(json!({}))})
}

/// An `input_required` answer to `client_id` asking for `request`, given its state token.
fn input_required(client_id: &str, request: &Value) -> impl Fn(&str) -> Bytes {
    let id: Value = serde_json::from_str(client_id).unwrap_or(Value::Null);
    let request = request.clone();
    move |token| {
        let answer = json!({
            "jsonrpc": "2.0", "id": id,
            "result": {"resultType": "input_required", "inputRequests": {INPUT_KEY: request}, "requestState": token}
        });
        Bytes::from(answer.to_string())
    }
}

/// A `requestState` handle: 128 random bits as hex. `None` without an OS
/// random source (a guessable handle would let others take over the call).
fn parked_token() -> Option<String> {
    let mut bytes = [0u8; 16];
    match getrandom::fill(&mut bytes) {
        Ok(()) => Some(hex::encode(bytes)),
        Err(e) => {
            tracing::error!("no OS random source for a requestState handle: {e}");
            None
        }
    }
}

/// A request with its id replaced by `id` (JSON text), and its progress token
/// too if `progress`. For a legacy upstream the 2026-07-28 envelope (`_meta`
/// protocol version, capabilities, client info, log level) is taken off: the
/// session's `initialize` said all that, and some legacy servers refuse it.
fn rewrite(message: &[u8], id: &str, progress: bool, legacy: bool) -> Option<Bytes> {
    let mut value: Value = serde_json::from_slice(message).ok()?;
    let id: Value = serde_json::from_str(id).ok()?;
    if progress && !jsonrpc::set_in(&mut value, &["params", "_meta", "progressToken"], id.clone()) {
        return None;
    }
    if legacy {
        if let Some(params) = value.get_mut("params").and_then(Value::as_object_mut) {
            if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
                meta.retain(|key, _| !era::meta::ENVELOPE.contains(&key.as_str()));
                if meta.is_empty() {
                    params.remove("_meta");
                }
            }
        }
    }
    jsonrpc::set_in(&mut value, &["id"], id).then(|| Bytes::from(value.to_string()))
}

/// A `notifications/progress` with the client's token put back; `None` when
/// it has no `params` object to put it in (it names no progress, then).
fn with_token(message: &Bytes, token: &str) -> Option<Bytes> {
    let mut value = serde_json::from_slice::<Value>(message).ok()?;
    let token = serde_json::from_str(token).unwrap_or(Value::Null);
    jsonrpc::set_in(&mut value, &["params", "progressToken"], token).then(|| Bytes::from(value.to_string()))
}

fn answered(client_id: &str, result: &Value) -> ModernReply {
    let (out, events) = mpsc::unbounded_channel();
    let id: Value = serde_json::from_str(client_id).unwrap_or(Value::Null);
    let message = json!({"jsonrpc": "2.0", "id": id, "result": result});
    let _ = out.send(Event { id: None, message: Bytes::from(message.to_string()), last: true });
    ModernReply::Events(events)
}

fn failure(client_id: &str, why: &str) -> Bytes {
    jsonrpc::error_response(Some(client_id), code::UPSTREAM_FAILED, why, None)
}

fn failed(client_id: &str, why: &str) -> ModernReply {
    tracing::warn!("modern request failed: {why}");
    ModernReply::Refused(hyper::StatusCode::BAD_GATEWAY, failure(client_id, why))
}

fn refused(status: hyper::StatusCode, id: Option<&str>, code: i32, why: &str) -> ModernReply {
    ModernReply::Refused(status, jsonrpc::error_response(id, code, why, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_results_become_complete_modern_ones() {
        let mut list = Map::new();
        complete(&mut list, "tools/list");
        assert_eq!(Value::Object(list), json!({"resultType": "complete", "ttlMs": 0, "cacheScope": "private"}));
        let mut call = serde_json::from_str::<Map<String, Value>>(r#"{"resultType":"input_required"}"#).unwrap();
        complete(&mut call, "tools/call");
        assert_eq!(call["resultType"], "input_required", "an upstream's own resultType stays");
        let discover = discover_result(&json!({"capabilities": {"tools": {}}, "serverInfo": {"name": "s"}}));
        assert_eq!(discover["supportedVersions"], json!(["2026-07-28"]));
        assert_eq!(discover["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "s");
    }

    #[test]
    fn ids_are_replaced_whatever_their_type() {
        let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"progressToken":1}}}"#;
        let value: Value = serde_json::from_slice(&rewrite(call, "\"w7\"", true, false).unwrap()).unwrap();
        assert_eq!((&value["id"], &value["params"]["_meta"]["progressToken"]), (&json!("w7"), &json!("w7")));
        let modern = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"x":1}}}"#;
        let value: Value = serde_json::from_slice(&rewrite(modern, "2", false, true).unwrap()).unwrap();
        assert_eq!(value["params"], json!({"_meta": {"x": 1}}), "a legacy upstream gets no modern envelope");
        let note = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"w7"}}"#,
        );
        let value: Value = serde_json::from_slice(&with_token(&note, "1").unwrap()).unwrap();
        let array = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/progress","params":[1]}"#);
        assert_eq!(with_token(&array, "1"), None, "params as an array: no panic, dropped");
        assert_eq!(value["params"]["progressToken"], 1);
        let asked = input_required("3", &json!({"method": "roots/list", "params": {}}))("t");
        let value: Value = serde_json::from_slice(&asked).unwrap();
        assert_eq!(value["id"], 3);
        assert_eq!(value["result"]["inputRequests"]["input"]["method"], "roots/list");
        assert_eq!(value["result"]["requestState"], "t");
    }
}
