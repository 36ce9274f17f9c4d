//! A handshake-era client in front of an upstream that may speak only the
//! stateless 2026-07-28 era.
//!
//! It sits between the relay and the upstream, so plugins see the client's
//! own messages. The client's `initialize` goes on as it is; a server that
//! accepts it (a legacy or dual-era one) is left alone for the session. One
//! that refuses it is asked `server/discover` (the era probe), and if it
//! answers with a modern version the session is bridged:
//! - `initialize` is answered from the discover result, `notifications/initialized`
//!   goes no further, `ping` and `logging/setLevel` are answered here (the level
//!   then rides on each request as `_meta` `logLevel`);
//! - every request gets the `_meta` envelope (protocol version, the client's
//!   capabilities and info from its `initialize`);
//! - an `input_required` result becomes real server→client requests (sampling,
//!   elicitation, roots); once the client has answered them all, the request is
//!   sent again with a new id, the `inputResponses` and the untouched
//!   `requestState`, and the final answer goes back under the client's id.
//!
//! - `resources/subscribe` / `unsubscribe` and the list-changed notifications
//!   the server declared are carried by one `subscriptions/listen` of Warden's:
//!   each change of the subscribed set opens a new listen, answers the client
//!   once it is acknowledged, then cancels the old one. Acknowledgements and
//!   the listens' own ends stay here; their notifications go to the client.
//!
//! Any other answer to the probe (an error, or nothing within a few seconds)
//! means the refusal stands: the client gets it.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::era;
use crate::jsonrpc::{self, code, method, Kind};
use super::{Output, Upstream};
use crate::transport::QUEUE;
use crate::transport::framing::{Frame, Outgoing};

/// How long the upstream may take to answer the probe.
const PROBE_WAIT: Duration = Duration::from_secs(3);
/// The probe's id.
const PROBE_ID: &str = "\"warden-discover\"";
/// The methods an `input_required` result may answer.
const RETRIABLE: &[&str] = &[method::TOOLS_CALL, "prompts/get", "resources/read"];

/// Puts the bridge between the relay and `upstream`.
pub fn bridge(upstream: Upstream, to_upstream: mpsc::Sender<Outgoing>) -> (Upstream, mpsc::Sender<Outgoing>) {
    let (from_client_tx, from_client) = mpsc::channel(QUEUE);
    let (to_client, mut to_client_rx) = mpsc::channel(QUEUE);
    let upstream = upstream.map_output(|output| {
        let bridge = Bridge::new(to_upstream, to_client);
        tokio::spawn(bridge.run(from_client, output));
        let output: Output = Box::pin(futures::stream::poll_fn(move |cx| to_client_rx.poll_recv(cx)));
        output
    });
    (upstream, from_client_tx)
}

enum Mode {
    /// Waiting for the client's first message.
    Start,
    /// The client's `initialize` is out; what follows it waits for its answer.
    Initializing { initialize: Bytes, id: String, held: Vec<Bytes> },
    /// `initialize` was refused and the probe is out.
    Probing { initialize: Bytes, refusal: Bytes, held: Vec<Bytes> },
    /// A legacy upstream: everything passes.
    Legacy,
    /// A modern upstream, bridged.
    Modern,
}

/// The client's subscriptions, carried by Warden's `subscriptions/listen` upstream.
#[derive(Default)]
struct Listening {
    /// `resources/subscribe` URIs.
    uris: std::collections::BTreeSet<String>,
    /// `toolsListChanged` and the like, for the list changes the server declared.
    lists: Map<String, Value>,
    /// The acknowledged listen (its id as JSON text).
    live: Option<String>,
    /// Listens sent but not yet acknowledged: the client requests they answer.
    opening: HashMap<String, Vec<Value>>,
    next: u64,
}

/// A request waiting for its client to answer input requests.
struct Awaiting {
    /// The client's id for the request.
    client_id: String,
    /// The answers so far, by input key.
    responses: Map<String, Value>,
    /// Input requests still unanswered.
    outstanding: usize,
    request_state: Option<Value>,
}

struct Bridge {
    mode: Mode,
    /// `None` once the client is done: the upstream's input closes.
    to_upstream: Option<mpsc::Sender<Outgoing>>,
    to_client: mpsc::Sender<std::io::Result<Frame>>,
    /// `_meta` every modern request carries.
    envelope: Map<String, Value>,
    /// The retriable requests in flight, by client id: their original message.
    originals: HashMap<String, Value>,
    /// Retries in flight: Warden's id → the client's.
    retries: HashMap<String, String>,
    /// Server→client requests Warden sent for an `input_required`: their id → (request key, input key).
    asked: HashMap<String, (u64, String)>,
    awaiting: HashMap<u64, Awaiting>,
    next: u64,
    /// Pieces of a long upstream message being gathered.
    pieces: BytesMut,
    listening: Listening,
}

impl Bridge {
    fn new(to_upstream: mpsc::Sender<Outgoing>, to_client: mpsc::Sender<std::io::Result<Frame>>) -> Bridge {
        Bridge {
            mode: Mode::Start,
            to_upstream: Some(to_upstream),
            to_client,
            envelope: Map::new(),
            originals: HashMap::new(),
            retries: HashMap::new(),
            asked: HashMap::new(),
            awaiting: HashMap::new(),
            next: 0,
            pieces: BytesMut::new(),
            listening: Listening::default(),
        }
    }

    async fn run(mut self, mut from_client: mpsc::Receiver<Outgoing>, mut output: Output) {
        let mut client_open = true;
        let mut client_done = false;
        let probe_deadline = tokio::time::sleep(Duration::MAX);
        tokio::pin!(probe_deadline);
        let mut client_pieces = BytesMut::new();
        loop {
            tokio::select! {
                item = from_client.recv(), if client_open => match item {
                    Some(Outgoing::Part(part)) => client_pieces.extend_from_slice(&part),
                    Some(Outgoing::Message(last)) => {
                        let message = if client_pieces.is_empty() {
                            last
                        } else {
                            client_pieces.extend_from_slice(&last);
                            client_pieces.split().freeze()
                        };
                        self.on_client(message).await;
                    }
                    None => {
                        // The client is done: so is the upstream's input, once what is held back went on.
                        client_open = false;
                        client_done = true;
                        if matches!(self.mode, Mode::Start | Mode::Legacy | Mode::Modern) {
                            self.to_upstream = None;
                        }
                    }
                },
                frame = output.next() => match frame {
                    Some(Ok(frame)) => {
                        if self.on_upstream(frame).await {
                            probe_deadline.as_mut().reset(tokio::time::Instant::now() + PROBE_WAIT);
                        }
                        if client_done && matches!(self.mode, Mode::Legacy | Mode::Modern) {
                            self.to_upstream = None;
                        }
                    }
                    Some(Err(e)) => {
                        let _ = self.to_client.send(Err(e)).await;
                        return;
                    }
                    None => return,
                },
                () = &mut probe_deadline, if matches!(self.mode, Mode::Probing { .. }) => {
                    tracing::debug!("no answer to server/discover; the refusal of initialize stands");
                    let refusal = match &mut self.mode {
                        Mode::Probing { refusal, .. } => std::mem::take(refusal),
                        _ => Bytes::new(),
                    };
                    self.settle(None, Some(refusal)).await;
                    if client_done {
                        self.to_upstream = None;
                    }
                }
            }
        }
    }

    /// A message from the client.
    async fn on_client(&mut self, message: Bytes) {
        match &mut self.mode {
            Mode::Start => {
                let head = jsonrpc::parse_head(&message).ok();
                let id = head.as_ref().filter(|h| h.method.as_deref() == Some(method::INITIALIZE)).and_then(|h| h.id.clone());
                match id {
                    Some(id) => {
                        self.up(message.clone()).await;
                        self.mode = Mode::Initializing { initialize: message, id, held: Vec::new() };
                    }
                    None => {
                        // Not a handshake client (a modern one, or a stray message): nothing to bridge.
                        self.mode = Mode::Legacy;
                        self.up(message).await;
                    }
                }
            }
            Mode::Initializing { held, .. } | Mode::Probing { held, .. } => held.push(message),
            Mode::Legacy => self.up(message).await,
            Mode::Modern => self.modern_from_client(message).await,
        }
    }

    /// The session's mode is settled: with `discover`, bridged; without, as it
    /// is (`answer`, if any, goes to the client first). What the client sent
    /// meanwhile goes on.
    async fn settle(&mut self, discover: Option<Value>, answer: Option<Bytes>) {
        let (initialize, held) = match std::mem::replace(&mut self.mode, Mode::Legacy) {
            Mode::Initializing { initialize, held, .. } | Mode::Probing { initialize, held, .. } => (initialize, held),
            other => {
                self.mode = other;
                return;
            }
        };
        match discover {
            Some(discover) => {
                tracing::info!("the upstream refused initialize and speaks 2026-07-28; bridging this session");
                self.mode = Mode::Modern;
                self.answer_initialize(&initialize, &discover).await;
                // The list changes the server declared reach the client as they did on a legacy session.
                let capabilities = &discover["capabilities"];
                for (kind, flag) in [
                    ("tools", "toolsListChanged"),
                    ("prompts", "promptsListChanged"),
                    ("resources", "resourcesListChanged"),
                ] {
                    if capabilities[kind]["listChanged"] == true {
                        self.listening.lists.insert(flag.to_owned(), Value::Bool(true));
                    }
                }
                if !self.listening.lists.is_empty() {
                    self.relisten(None).await;
                }
            }
            None => {
                if let Some(answer) = answer {
                    self.down(answer).await;
                }
            }
        }
        for message in held {
            Box::pin(self.on_client(message)).await;
        }
    }

    /// A frame from the upstream. Returns whether it started the probe.
    async fn on_upstream(&mut self, frame: Frame) -> bool {
        // A session settled as legacy passes everything as it comes, unread;
        // an oversized message is the relay's to answer.
        if matches!(self.mode, Mode::Legacy) || matches!(frame, Frame::TooLarge { .. }) {
            let _ = self.to_client.send(Ok(frame)).await;
            return false;
        }
        let message = match frame {
            Frame::Line(line) => line,
            Frame::TooLarge { .. } => return false,
            Frame::Start(part) | Frame::More(part) => {
                self.pieces.extend_from_slice(&part);
                return false;
            }
            Frame::End(part) => {
                self.pieces.extend_from_slice(&part);
                self.pieces.split().freeze()
            }
        };
        let head = jsonrpc::parse_head(&message).ok();
        let answer_id =
            head.as_ref().filter(|h| matches!(h.kind, Kind::Response | Kind::Error)).and_then(|h| h.id.clone());
        match &mut self.mode {
            Mode::Initializing { id, initialize, held } if answer_id.as_ref() == Some(id) => {
                if head.as_ref().is_some_and(|h| h.kind == Kind::Response) {
                    self.settle(None, Some(message)).await;
                    return false;
                }
                // Refused: perhaps a server of the 2026-07-28 era only. Ask it.
                let (initialize, held) = (std::mem::take(initialize), std::mem::take(held));
                self.mode = Mode::Probing { initialize, refusal: message, held };
                let discover = json!({
                    "jsonrpc": "2.0", "id": "warden-discover", "method": "server/discover",
                    "params": {"_meta": {era::meta::PROTOCOL_VERSION: era::MODERN, era::meta::CLIENT_CAPABILITIES: {}}}
                });
                self.up(Bytes::from(discover.to_string())).await;
                return true;
            }
            Mode::Probing { refusal, .. } if answer_id.as_deref() == Some(PROBE_ID) => {
                let refusal = std::mem::take(refusal);
                let value: Value = serde_json::from_slice(&message).unwrap_or_default();
                let versions = value["result"]["supportedVersions"].as_array().cloned().unwrap_or_default();
                let modern = versions.iter().any(|v| v.as_str().is_some_and(era::is_modern));
                self.settle(modern.then(|| value["result"].clone()), Some(refusal)).await;
                return false;
            }
            Mode::Modern => {
                if !self.listen_message(head.as_ref(), answer_id.as_deref(), &message).await {
                    match answer_id {
                        Some(id) => self.modern_answer(id, message).await,
                        None => self.down(message).await,
                    }
                }
            }
            _ => self.down(message).await,
        }
        false
    }

    /// Answers the client's `initialize` from the upstream's discover result.
    async fn answer_initialize(&mut self, initialize: &[u8], discover: &Value) {
        let request: Value = serde_json::from_slice(initialize).unwrap_or_default();
        let params = &request["params"];
        self.envelope.insert(era::meta::PROTOCOL_VERSION.to_owned(), era::MODERN.into());
        let capabilities = params.get("capabilities").cloned().unwrap_or(json!({}));
        self.envelope.insert(era::meta::CLIENT_CAPABILITIES.to_owned(), capabilities);
        if let Some(info) = params.get("clientInfo") {
            self.envelope.insert(era::meta::CLIENT_INFO.to_owned(), info.clone());
        }
        let requested = params["protocolVersion"].as_str().unwrap_or(era::LATEST_LEGACY);
        let version = if era::LEGACY_VERSIONS.contains(&requested) { requested } else { era::LATEST_LEGACY };
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": discover.get("capabilities").cloned().unwrap_or(json!({})),
            "serverInfo": discover["_meta"][era::meta::SERVER_INFO].clone(),
        });
        if result["serverInfo"].is_null() {
            result["serverInfo"] = json!({"name": "upstream", "version": "unknown"});
        }
        if let Some(instructions) = discover.get("instructions") {
            result["instructions"] = instructions.clone();
        }
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        self.down_value(json!({"jsonrpc": "2.0", "id": id, "result": result})).await;
    }

    async fn modern_from_client(&mut self, message: Bytes) {
        let Ok(mut value) = serde_json::from_slice::<Value>(&message) else {
            return self.up(message).await;
        };
        let method = value.get("method").and_then(Value::as_str).map(str::to_owned);
        let id = value.get("id").filter(|id| !id.is_null()).cloned();
        match (method.as_deref(), id) {
            (Some(method::INITIALIZED), None) => {}
            (Some("ping"), Some(id)) => self.down_value(json!({"jsonrpc": "2.0", "id": id, "result": {}})).await,
            (Some("logging/setLevel"), Some(id)) => {
                if let Some(level) = value["params"].get("level") {
                    self.envelope.insert(era::meta::LOG_LEVEL.to_owned(), level.clone());
                }
                self.down_value(json!({"jsonrpc": "2.0", "id": id, "result": {}})).await;
            }
            (Some(method @ ("resources/subscribe" | "resources/unsubscribe")), Some(id)) => {
                let Some(uri) = value["params"]["uri"].as_str() else {
                    let error = json!({"code": code::INVALID_PARAMS, "message": "params.uri must be a string"});
                    return self.down_value(json!({"jsonrpc": "2.0", "id": id, "error": error})).await;
                };
                let changed = if method == "resources/subscribe" {
                    self.listening.uris.insert(uri.to_owned())
                } else {
                    self.listening.uris.remove(uri)
                };
                if changed {
                    self.relisten(Some(id)).await;
                } else {
                    self.down_value(json!({"jsonrpc": "2.0", "id": id, "result": {}})).await;
                }
            }
            (Some(method), Some(id)) => {
                self.stamp(&mut value);
                if RETRIABLE.contains(&method) {
                    self.originals.insert(id.to_string(), value.clone());
                }
                self.up_value(&value).await;
            }
            (None, Some(id)) => self.input_answered(id.to_string(), value).await,
            _ => self.up(message).await,
        }
    }

    /// Opens a listen for what the client follows now; `answer` is the
    /// client request it answers once acknowledged. With nothing to follow,
    /// the live listen is only cancelled.
    async fn relisten(&mut self, answer: Option<Value>) {
        let listening = &mut self.listening;
        if listening.uris.is_empty() && listening.lists.is_empty() {
            self.cancel_listen().await;
            if let Some(id) = answer {
                self.down_value(json!({"jsonrpc": "2.0", "id": id, "result": {}})).await;
            }
            return;
        }
        listening.next += 1;
        let id = format!("warden-listen-{}", listening.next);
        let mut filter = listening.lists.clone();
        if !listening.uris.is_empty() {
            filter.insert("resourceSubscriptions".to_owned(), listening.uris.iter().cloned().collect());
        }
        listening.opening.insert(Value::from(id.as_str()).to_string(), answer.into_iter().collect());
        let mut listen =
            json!({"jsonrpc": "2.0", "id": id, "method": "subscriptions/listen", "params": {"notifications": filter}});
        self.stamp(&mut listen);
        self.up_value(&listen).await;
    }

    /// Ends the live listen, if any.
    async fn cancel_listen(&mut self) {
        if let Some(old) = self.listening.live.take() {
            let id: Value = serde_json::from_str(&old).unwrap_or(Value::Null);
            let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id, "reason": "subscriptions changed"}});
            self.up_value(&cancel).await;
        }
    }

    /// A message about one of Warden's listens: its acknowledgement, its end
    /// (a final answer, an error, or the server's `notifications/cancelled`).
    /// Returns whether it was one (and so stays here).
    async fn listen_message(&mut self, head: Option<&jsonrpc::Head>, answer_id: Option<&str>, message: &Bytes) -> bool {
        let Some(head) = head else { return false };
        let method = head.method.as_deref();
        let ours = |listening: &Listening, listen: &str| {
            listening.live.as_deref() == Some(listen) || listening.opening.contains_key(listen)
        };
        // Every listen message names its listen: the answer by id (read before
        // any parse: most answers are not a listen's), the notifications by
        // `_meta` or `requestId`.
        if answer_id.is_some_and(|id| !ours(&self.listening, id))
            || (answer_id.is_none()
                && !matches!(method, Some("notifications/subscriptions/acknowledged" | method::CANCELLED)))
        {
            return false;
        }
        let value: Value = serde_json::from_slice(message).unwrap_or_default();
        let listen = match answer_id {
            Some(id) => id.to_owned(),
            None if method == Some(method::CANCELLED) => value["params"]["requestId"].to_string(),
            None => value["params"]["_meta"][era::meta::SUBSCRIPTION_ID].to_string(),
        };
        if !ours(&self.listening, &listen) {
            return false;
        }
        if method == Some("notifications/subscriptions/acknowledged") {
            let waiting = self.listening.opening.remove(&listen).unwrap_or_default();
            self.cancel_listen().await;
            self.listening.live = Some(listen);
            for id in waiting {
                self.down_value(json!({"jsonrpc": "2.0", "id": id, "result": {}})).await;
            }
            return true;
        }
        // The listen ended (or was refused): the clients waiting on it get the refusal.
        if self.listening.live.as_deref() == Some(listen.as_str()) {
            tracing::info!("the upstream ended Warden's subscriptions/listen");
            self.listening.live = None;
        }
        let waiting = self.listening.opening.remove(&listen).unwrap_or_default();
        let error = value.get("error").cloned().unwrap_or_else(
            || json!({"code": code::UPSTREAM_FAILED, "message": "the upstream ended the subscription"}),
        );
        for id in waiting {
            self.down_value(json!({"jsonrpc": "2.0", "id": id, "error": error})).await;
        }
        true
    }

    /// Puts the `_meta` envelope on a request.
    fn stamp(&self, request: &mut Value) {
        if !request.get("params").is_some_and(Value::is_object) {
            jsonrpc::set_in(request, &["params"], json!({}));
        }
        if !request.pointer("/params/_meta").is_some_and(Value::is_object) {
            jsonrpc::set_in(request, &["params", "_meta"], json!({}));
        }
        if let Some(meta) = request.pointer_mut("/params/_meta").and_then(Value::as_object_mut) {
            for (key, value) in &self.envelope {
                meta.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
    }

    /// An answer from a modern upstream: a retry's answer goes back under the
    /// client's id; an `input_required` result becomes requests to the client.
    async fn modern_answer(&mut self, upstream_id: String, message: Bytes) {
        let client_id = self.retries.remove(&upstream_id).unwrap_or_else(|| upstream_id.clone());
        let input_required = memchr::memmem::find(&message, b"input_required").is_some();
        let value = if input_required || client_id != upstream_id {
            serde_json::from_slice::<Value>(&message).ok()
        } else {
            None
        };
        let Some(mut value) = value else {
            self.originals.remove(&client_id);
            return self.down(message).await;
        };
        if value["result"]["resultType"] == "input_required" && self.originals.contains_key(&client_id) {
            return self.ask_client(client_id, value["result"].take()).await;
        }
        self.originals.remove(&client_id);
        if !jsonrpc::set_in(&mut value, &["id"], serde_json::from_str(&client_id).unwrap_or(Value::Null)) {
            tracing::warn!("an upstream answer that is no JSON-RPC object dropped");
            return;
        }
        self.down_value(value).await;
    }

    /// Sends the client the requests an `input_required` result names.
    async fn ask_client(&mut self, client_id: String, result: Value) {
        let key = self.next;
        self.next += 1;
        let inputs = result.get("inputRequests").and_then(Value::as_object).cloned().unwrap_or_default();
        let awaiting = Awaiting {
            client_id,
            responses: Map::new(),
            outstanding: inputs.len(),
            request_state: result.get("requestState").cloned(),
        };
        self.awaiting.insert(key, awaiting);
        if inputs.is_empty() {
            return self.retry(key).await;
        }
        for (name, request) in inputs {
            let id = format!("warden-input-{key}-{name}");
            self.asked.insert(Value::from(id.as_str()).to_string(), (key, name));
            let mut ask = json!({"jsonrpc": "2.0", "id": id, "method": request["method"]});
            if let Some(params) = request.get("params") {
                ask["params"] = params.clone();
            }
            self.down_value(ask).await;
        }
    }

    /// The client answered one of Warden's input requests.
    async fn input_answered(&mut self, id: String, answer: Value) {
        let Some((key, name)) = self.asked.remove(&id) else {
            // An answer to something else: pass it on.
            return self.up_value(&answer).await;
        };
        let Some(awaiting) = self.awaiting.get_mut(&key) else { return };
        // A refusal travels as the error it was; the server decides what it means.
        let response = answer.get("result").cloned().unwrap_or_else(|| json!({"error": answer.get("error")}));
        awaiting.responses.insert(name, response);
        awaiting.outstanding = awaiting.outstanding.saturating_sub(1);
        if awaiting.outstanding == 0 {
            self.retry(key).await;
        }
    }

    /// Sends the request again with the client's input, under a new id.
    async fn retry(&mut self, key: u64) {
        let Some(awaiting) = self.awaiting.remove(&key) else { return };
        let Some(mut request) = self.originals.get(&awaiting.client_id).cloned() else { return };
        let retry_id = format!("warden-retry-{key}");
        let placed = jsonrpc::set_in(&mut request, &["id"], Value::from(retry_id.as_str()))
            && jsonrpc::set_in(&mut request, &["params", "inputResponses"], Value::Object(awaiting.responses));
        if !placed {
            tracing::warn!("a request to retry with its input is no JSON-RPC object; dropped");
            return;
        }
        match awaiting.request_state {
            Some(state) => {
                jsonrpc::set_in(&mut request, &["params", "requestState"], state);
            }
            None => {
                if let Some(params) = request["params"].as_object_mut() {
                    params.remove("requestState");
                }
            }
        }
        self.retries.insert(Value::from(retry_id).to_string(), awaiting.client_id);
        self.up_value(&request).await;
    }

    async fn up(&self, message: Bytes) {
        if let Some(upstream) = &self.to_upstream {
            let _ = upstream.send(Outgoing::Message(message)).await;
        }
    }

    async fn up_value(&self, value: &Value) {
        self.up(Bytes::from(value.to_string())).await;
    }

    async fn down(&self, message: Bytes) {
        let _ = self.to_client.send(Ok(Frame::Line(message))).await;
    }

    async fn down_value(&self, value: Value) {
        self.down(Bytes::from(value.to_string())).await;
    }
}
