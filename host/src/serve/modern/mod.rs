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
use serde_json::Value;
use tokio::sync::{mpsc, OnceCell, OwnedSemaphorePermit, Semaphore};

use crate::era::Facts;
use crate::jsonrpc::{self, code, Head, Kind};
use crate::serve::streams::{Event, Receiver};
use crate::serve::{lock, Gateway, HttpSession};
use crate::upstream::Forwarded;

mod backing;
mod call;
mod error;
mod pool;
mod translate;

use backing::probe;

use translate::{
    answered, asks_for_input, discover_result, failed, input_required, lane_failed, parked_token, refused, rewrite,
};

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
    /// The client headers its upstreams may be given: requests that differ
    /// in them never share an upstream session.
    forwarded: Forwarded,
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
    /// Serves one modern message (already checked against its headers) for
    /// `asker`: its caller, whose quota it counts against, and the headers
    /// its upstreams may be given.
    pub async fn serve(
        self: &Arc<Self>,
        gateway: &Gateway,
        head: &Head,
        raw: &Bytes,
        facts: Facts,
        asker: (Option<Arc<str>>, Arc<str>, Forwarded),
    ) -> ModernReply {
        let (caller, owner, forwarded) = asker;
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
            Err(why) => return lane_failed(&client_id, &why),
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
        let key = Key { caller: caller.clone(), owner, capabilities: capabilities.to_owned(), forwarded };
        // Discover and listen start no call: the shared backing serves them.
        let shared = era == UpstreamEra::Modern
            || matches!(facts.method.as_str(), "server/discover" | "subscriptions/listen")
            || !asks_for_input(&key.capabilities);
        let (backing, lease) = if shared {
            match self.backing(gateway, era, key, &facts).await {
                Ok(backing) => (backing, None),
                Err(why) => return lane_failed(&client_id, &why),
            }
        } else {
            match self.lease(gateway, key, &facts).await {
                Ok(lease) => (lease.backing.clone(), Some(lease)),
                Err(why) => return lane_failed(&client_id, &why),
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
}
