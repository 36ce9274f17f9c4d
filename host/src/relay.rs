//! The session relay: every message, both ways, through the plugin chain.
//!
//! The relay is transport-agnostic. It is fed frames from the client side and
//! from the upstream side, keeps the two pending tables (requests each way that
//! await an answer, keyed by id), runs the chain and sends the results on
//! through two queues. It never waits for an answer, so requests stay pipelined.
//!
//! A long message arrives in pieces ([`Frame::Start`] ...). If no plugin wants
//! it and its head came early enough to route it, it is streamed on while it
//! arrives (cut-through), and anything else for that side waits until its last
//! piece has gone; otherwise it is gathered and handled whole.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::audit::{AuditSink, Source};
use crate::jsonrpc::{self, code, Kind, Message};
use crate::plugin::instances::Direction;
use crate::plugin::{Chain, Instances, MessageContext, Outcome};
use crate::transport::framing::{Frame, Outgoing};

/// Requests one side may have in flight before new ones are refused.
const MAX_PENDING: usize = 16_384;

/// What is remembered about a request until its answer passes.
#[derive(Debug)]
struct Pending {
    /// The request's id as its sender wrote it: its answer goes back under it.
    raw_id: String,
    method: String,
    tool: Option<String>,
    /// The chain the request went through; its answer goes back through the same one.
    generation: u64,
}

/// A long message arriving in pieces from one side.
#[derive(Debug)]
struct Partial {
    /// Bytes so far.
    len: usize,
    way: Way,
    /// The top-level keys so far, while streaming: a key given twice cuts it off.
    keys: jsonrpc::stream::TopKeys,
}

#[derive(Debug)]
enum Way {
    /// Forwarded as it arrives. `id` is the request it carries or answers
    /// (by value), which stays in its pending table until the last piece has gone.
    Stream { id: String, raw_id: String, answer: bool },
    /// Was streaming, cut off at a top-level key given twice: skipped to its
    /// end, then its sender (or, for an answer, the one it was owed to) is told.
    Cut { id: String, raw_id: String, answer: bool, why: String },
    /// Gathered, to be handled whole: the pieces so far, joined once at the end.
    Gather(Vec<Bytes>),
    /// Over the size limit: skipped to its end, then answered.
    Skip(Option<String>),
}

/// Client batches (2025-03-26) still owed answers: each goes back as one array.
#[derive(Debug, Default)]
struct Batches {
    next: u64,
    /// By request id, the batch it came in.
    of: HashMap<String, u64>,
    open: HashMap<u64, Batch>,
}

#[derive(Debug, Default)]
struct Batch {
    /// Answers still to come.
    waiting: usize,
    answers: Vec<Bytes>,
    /// All its messages have been handled: it goes back once nothing is waited for.
    closed: bool,
}

impl Batches {
    fn open(&mut self) -> u64 {
        self.next += 1;
        self.open.insert(self.next, Batch::default());
        self.next
    }

    /// Expects an answer to request `id`; false if another request of an open batch has it.
    fn expect(&mut self, batch: u64, id: &str) -> bool {
        if self.of.contains_key(id) {
            return false;
        }
        self.of.insert(id.to_owned(), batch);
        if let Some(b) = self.open.get_mut(&batch) {
            b.waiting += 1;
        }
        true
    }

    /// An answer Warden makes itself while reading the batch (an invalid member).
    fn answer_now(&mut self, batch: u64, answer: Bytes) {
        if let Some(b) = self.open.get_mut(&batch) {
            b.answers.push(answer);
        }
    }

    /// Whether `id`'s answer belongs to a batch.
    fn holds(&self, id: &str) -> bool {
        self.of.contains_key(id)
    }

    /// Settles `id` with its answer (`None`: it was cancelled and gets none).
    /// Returns the whole batch's answer once it is complete.
    fn settle(&mut self, id: &str, answer: Option<Bytes>) -> Option<Bytes> {
        let number = self.of.remove(id)?;
        let batch = self.open.get_mut(&number)?;
        batch.waiting = batch.waiting.saturating_sub(1);
        batch.answers.extend(answer);
        self.finish(number)
    }

    /// All of a batch's messages have been handled.
    fn close(&mut self, number: u64) -> Option<Bytes> {
        self.open.get_mut(&number)?.closed = true;
        self.finish(number)
    }

    fn finish(&mut self, number: u64) -> Option<Bytes> {
        let batch = self.open.get(&number)?;
        if !batch.closed || batch.waiting > 0 {
            return None;
        }
        let batch = self.open.remove(&number)?;
        // A batch of notifications and responses only is answered with nothing.
        (!batch.answers.is_empty()).then(|| jsonrpc::join_batch(&batch.answers))
    }
}

/// One session's relay state.
pub struct Relay {
    /// Instances of the chain in force.
    instances: Instances,
    /// Instances of earlier chains, kept while answers to requests that went
    /// through them are still to come.
    retired: Vec<Instances>,
    /// News of a reloaded chain.
    chain_updates: Option<watch::Receiver<Arc<Chain>>>,
    /// Client→server requests awaiting the server's answer.
    upstream_pending: HashMap<String, Pending>,
    /// Server→client requests awaiting the client's answer.
    client_pending: HashMap<String, Pending>,
    to_client: mpsc::Sender<Outgoing>,
    to_upstream: Option<mpsc::Sender<Outgoing>>,
    /// Whether the client side is a byte stream that may be written in pieces.
    client_streams: bool,
    /// The same for the upstream side (a child's stdin, not an HTTP request).
    upstream_streams: bool,
    /// Long messages arriving, by the way they travel.
    partial: [Option<Partial>; 2],
    /// Messages held back while a message streams the same way.
    held: [VecDeque<Bytes>; 2],
    /// Batches from the client still owed answers.
    batches: Batches,
    audit: AuditSink,
    max_message_bytes: usize,
}

impl Relay {
    /// A relay that sends to the client and the upstream through these queues.
    pub fn new(
        instances: Instances,
        to_client: mpsc::Sender<Outgoing>,
        to_upstream: mpsc::Sender<Outgoing>,
        audit: AuditSink,
        max_message_bytes: usize,
    ) -> Relay {
        Relay {
            instances,
            retired: Vec::new(),
            chain_updates: None,
            upstream_pending: HashMap::new(),
            client_pending: HashMap::new(),
            to_client,
            to_upstream: Some(to_upstream),
            client_streams: false,
            upstream_streams: false,
            partial: [None, None],
            held: [VecDeque::new(), VecDeque::new()],
            batches: Batches::default(),
            audit,
            max_message_bytes,
        }
    }

    /// Follows reloads: each new message uses the chain in force when it arrives.
    pub fn follow(mut self, updates: watch::Receiver<Arc<Chain>>) -> Relay {
        self.chain_updates = Some(updates);
        self
    }

    /// Puts a reloaded chain in force for the messages to come. The instances
    /// of the one before stay while answers to requests that went through them
    /// are still to come.
    fn refresh(&mut self) {
        let Some(updates) = self.chain_updates.as_mut() else { return };
        if !updates.has_changed().unwrap_or(false) {
            return;
        }
        let chain = updates.borrow_and_update().clone();
        if chain.generation() == self.instances.chain().generation() {
            return;
        }
        let next = self.instances.successor(chain);
        let previous = std::mem::replace(&mut self.instances, next);
        tracing::debug!(
            session = self.instances.session().id.as_deref().unwrap_or("-"),
            generation = self.instances.chain().generation(),
            "next messages use the reloaded chain"
        );
        self.retired.push(previous);
        self.release_retired();
    }

    /// Frees the instances of earlier chains no pending request needs any more
    /// (a scan of the pending tables, done only when an earlier chain may have
    /// just been released: a swap, an answer through it, a cancellation).
    fn release_retired(&mut self) {
        if self.retired.is_empty() {
            return;
        }
        let (upstream, client) = (&self.upstream_pending, &self.client_pending);
        self.retired.retain(|old| {
            let generation = old.chain().generation();
            upstream.values().chain(client.values()).any(|p| p.generation == generation)
        });
    }

    /// The instances of the chain `generation` (the one in force if it is gone).
    fn instances_of(&mut self, generation: u64) -> &mut Instances {
        match self.retired.iter().position(|i| i.chain().generation() == generation) {
            Some(index) => &mut self.retired[index],
            None => &mut self.instances,
        }
    }

    /// Whether messages to the client may be written in pieces as they arrive
    /// (the client is a byte stream, as in `warden wrap`; not an HTTP response).
    pub fn stream_to_client(mut self, pieces: bool) -> Relay {
        self.client_streams = pieces;
        self
    }

    /// The same towards the upstream (a child's stdin; an HTTP upstream takes
    /// whole messages only).
    pub fn stream_to_upstream(mut self, pieces: bool) -> Relay {
        self.upstream_streams = pieces;
        self
    }

    /// Handles one frame read from the client.
    pub async fn from_client(&mut self, frame: Frame) {
        self.frame(Direction::ClientToServer, frame).await;
    }

    /// Handles one frame read from the upstream.
    pub async fn from_upstream(&mut self, frame: Frame) {
        self.frame(Direction::ServerToClient, frame).await;
    }

    /// The client will send nothing more: close the upstream's input so it can finish.
    pub fn close_upstream(&mut self) {
        self.to_upstream = None;
    }

    /// Whether a client frame can be handled without waiting on a full queue:
    /// it sends at most one message, to either side.
    pub fn client_ready(&self) -> bool {
        self.to_client.capacity() > 0 && self.to_upstream.as_ref().is_none_or(|tx| tx.capacity() > 0)
    }

    /// Whether an upstream frame can be handled without waiting: it sends at
    /// most one message to the client (its rare replies to the upstream never
    /// wait, see `send_on`). Reading the upstream must not depend on room in
    /// the upstream's own queue, or a server blocked writing its answers and
    /// Warden blocked writing it requests would wait for each other forever.
    pub fn upstream_ready(&self) -> bool {
        self.to_client.capacity() > 0
    }

    /// Resolves once [`Relay::client_ready`] holds, or a queue closes.
    pub fn until_ready(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let client = self.to_client.clone();
        let upstream = self.to_upstream.clone();
        async move {
            if client.capacity() == 0 {
                drop(client.reserve().await);
            }
            if let Some(tx) = upstream.filter(|tx| tx.capacity() == 0) {
                drop(tx.reserve().await);
            }
        }
    }

    /// Requests still awaiting the upstream.
    pub fn pending_upstream(&self) -> usize {
        self.upstream_pending.len()
    }

    /// The upstream is gone: answer everything it still owed the client.
    pub async fn upstream_gone(&mut self, why: &str) {
        let upstream = self.instances.session().upstream.clone();
        // An answer cut off half-way still ends its line, so what follows can be read.
        if self.streaming(Direction::ServerToClient) {
            self.partial[way(Direction::ServerToClient)] = None;
            self.push(Direction::ServerToClient, Outgoing::Message(Bytes::new())).await;
            self.release(Direction::ServerToClient).await;
        }
        for pending in std::mem::take(&mut self.upstream_pending).into_values() {
            let message = format!("upstream \"{upstream}\" {why} before answering {}", pending.method);
            let reply = jsonrpc::error_response(Some(&pending.raw_id), code::UPSTREAM_FAILED, &message, None);
            self.send_on(Direction::ServerToClient, reply).await;
        }
    }

    async fn frame(&mut self, from: Direction, frame: Frame) {
        self.route(from, frame).await;
        // Whatever the message produced in the audit trail goes out after it.
        self.audit.schedule_flush();
    }

    async fn route(&mut self, from: Direction, frame: Frame) {
        let frame = match frame {
            Frame::Start(prefix) => return self.start(from, prefix).await,
            Frame::More(part) => return self.more(from, part).await,
            Frame::End(part) => match self.end(from, part).await {
                Some(whole) => whole,
                None => return,
            },
            whole => whole,
        };
        match frame {
            // Pieces were dealt with above.
            Frame::Start(_) | Frame::More(_) | Frame::End(_) => {}
            Frame::Line(raw) if jsonrpc::is_batch(&raw) => self.batch(from, raw).await,
            Frame::Line(raw) => self.line(from, raw).await,
            Frame::TooLarge { len, id } => {
                let limit = self.max_message_bytes;
                let text = format!("message of {len} bytes exceeds the {limit}-byte limit");
                tracing::warn!(from = side(from), id = id.as_deref().unwrap_or("-"), "{text}");
                match (from, id) {
                    (Direction::ClientToServer, id) => {
                        let reply = jsonrpc::error_response(id.as_deref(), code::MESSAGE_TOO_LARGE, &text, None);
                        self.send_back(from, reply).await;
                    }
                    // An oversized answer from the server: the client still gets an answer.
                    (Direction::ServerToClient, Some(id)) => {
                        let owed = jsonrpc::id_key(&id).and_then(|key| self.upstream_pending.remove(&key));
                        if let Some(pending) = owed {
                            let text = format!("upstream answer dropped: {text}");
                            let reply =
                                jsonrpc::error_response(Some(&pending.raw_id), code::MESSAGE_TOO_LARGE, &text, None);
                            self.send_on(from, reply).await;
                        }
                    }
                    (Direction::ServerToClient, None) => {}
                }
            }
        }
    }

    async fn line(&mut self, from: Direction, raw: Bytes) {
        match Message::parse(raw) {
            Ok(message) => self.message(from, message).await,
            Err(e) => self.unreadable(from, e).await,
        }
    }

    async fn unreadable(&mut self, from: Direction, e: jsonrpc::ParseError) {
        tracing::warn!(from = side(from), "message refused: {e}");
        // Only the client gets told: a server must not be sent errors it
        // cannot match, and the client is who waits for an answer. When the
        // server's unreadable message names a request the client is waiting
        // on, that request is answered with the reason instead.
        match from {
            Direction::ClientToServer => {
                let reply = jsonrpc::error_response(e.id(), e.code(), &e.to_string(), None);
                self.send_back(from, reply).await;
            }
            Direction::ServerToClient => {
                let Some(pending) = e.id_key().and_then(|key| self.upstream_pending.remove(&key)) else { return };
                let text = format!("upstream sent an unreadable answer: {e}");
                let reply = jsonrpc::error_response(Some(&pending.raw_id), code::UPSTREAM_FAILED, &text, None);
                self.send_on(from, reply).await;
            }
        }
    }

    /// A JSON-RPC batch (2025-03-26). Its messages go through the chain and on
    /// to the other side one by one, as if sent singly, so no plugin can be
    /// passed by batching; the client gets its answers back as one array.
    /// A server's batch is simply taken apart.
    async fn batch(&mut self, from: Direction, raw: Bytes) {
        let parts = match jsonrpc::split_batch(&raw) {
            Ok(parts) => parts,
            Err(e) => return self.unreadable(from, e).await,
        };
        if from == Direction::ServerToClient {
            for part in parts {
                self.line(from, part).await;
            }
            return;
        }
        // Before the handshake settles a version, the server is the judge.
        let version = self.instances.session().protocol_version.as_deref();
        if let Some(why) = version.and_then(jsonrpc::batch_refused) {
            let reply = jsonrpc::error_response(None, code::INVALID_REQUEST, &why, None);
            return self.send_back(from, reply).await;
        }
        let batch = self.batches.open();
        let mut messages = Vec::with_capacity(parts.len());
        for part in parts {
            let message = match Message::parse(part) {
                Ok(message) => message,
                Err(e) => {
                    self.batches.answer_now(batch, jsonrpc::error_response(e.id(), e.code(), &e.to_string(), None));
                    continue;
                }
            };
            let id = message.head.id.as_deref().filter(|_| message.head.kind == Kind::Request);
            let refused = match id {
                _ if message.head.method.as_deref() == Some(jsonrpc::method::INITIALIZE) => {
                    Some(jsonrpc::BATCHED_INITIALIZE)
                }
                Some(id) if self.upstream_pending.contains_key(id) || !self.batches.expect(batch, id) => {
                    Some("a request with this id is already in flight")
                }
                _ => None,
            };
            match refused {
                Some(why) => {
                    let reply =
                        jsonrpc::error_response(message.head.raw_id.as_deref(), code::INVALID_REQUEST, why, None);
                    self.batches.answer_now(batch, reply);
                }
                None => messages.push(message),
            }
        }
        for message in messages {
            self.message(from, message).await;
        }
        if let Some(answers) = self.batches.close(batch) {
            self.send_back(from, answers).await;
        }
    }

    async fn message(&mut self, from: Direction, message: Message) {
        if message.head.kind.is_call() {
            self.call(from, message).await;
        } else {
            self.answer(from, message).await;
        }
    }

    /// A request or notification travelling `from` one side to the other.
    async fn call(&mut self, from: Direction, message: Message) {
        let head = &message.head;
        let method = head.method.as_deref().unwrap_or_default();
        if head.kind == Kind::Request {
            let refused = match &head.id {
                _ if self.pending(from).len() >= MAX_PENDING => {
                    Some(format!("too many requests in flight (limit {MAX_PENDING})"))
                }
                // Its answer could not be told from the first one's.
                Some(id) if self.pending(from).contains_key(id) => {
                    Some("a request with this id is already in flight".to_owned())
                }
                _ => None,
            };
            if let Some(text) = refused {
                tracing::warn!(
                    from = side(from),
                    id = head.raw_id.as_deref().unwrap_or("-"),
                    "request refused: {text}"
                );
                let reply = jsonrpc::error_response(head.raw_id.as_deref(), code::INVALID_REQUEST, &text, None);
                return self.send_back(from, reply).await;
            }
        }
        if method == jsonrpc::method::CANCELLED {
            if let Some(answers) = self.forget_cancelled(from, &message) {
                self.send_back(from, answers).await;
            }
        }
        self.refresh();
        let (outcome, stopped_at) = if self.instances.chain().wants_request(method, from) {
            let cx = MessageContext { direction: from, method, tool: head.tool.as_deref() };
            self.instances.on_request(cx, &message).await
        } else {
            (Outcome::Forward(None), 0)
        };
        let id = head.raw_id.clone();
        let reply = match outcome {
            Outcome::Forward(replacement) => {
                let raw_id = message.head.raw_id.clone();
                let message = replacement.unwrap_or(message);
                if let (Some(id), Some(raw_id)) = (&message.head.id, raw_id) {
                    let pending = Pending {
                        raw_id,
                        method: message.head.method.clone().unwrap_or_default(),
                        tool: message.head.tool.clone(),
                        generation: self.instances.chain().generation(),
                    };
                    self.pending(from).insert(id.clone(), pending);
                }
                return self.send_on(from, message.raw).await;
            }
            Outcome::Respond { plugin, result } => {
                self.decision(&plugin, "respond", &message, None);
                id.map(|id| jsonrpc::result_response(&id, &result))
            }
            other => {
                let (code, text, data) = self.refusal(other, &message);
                id.map(|id| jsonrpc::error_response(Some(&id), code, &text, data.as_deref()))
            }
        };
        // Notifications that were stopped are simply dropped; there is nobody to answer.
        if let Some(reply) = reply {
            let reply = self.unwind(from, stopped_at, &message, reply).await;
            self.send_back(from, reply).await;
        }
    }

    /// Passes an answer the chain made (at position `stop`) back through the
    /// plugins in front of `stop`, as if it had come from the peer.
    async fn unwind(&mut self, from: Direction, stop: usize, request: &Message, reply: Bytes) -> Bytes {
        let Ok(answer) = Message::parse(reply.clone()) else { return reply };
        let method = request.head.method.as_deref().unwrap_or_default();
        let cx = MessageContext { direction: opposite(from), method, tool: request.head.tool.as_deref() };
        match self.instances.on_response_before(stop, cx, &answer).await {
            Outcome::Forward(None) => reply,
            Outcome::Forward(Some(replacement)) => replacement.raw,
            Outcome::Respond { plugin, result } => {
                self.decision(&plugin, "respond", request, None);
                request.head.raw_id.as_deref().map_or(reply, |id| jsonrpc::result_response(id, &result))
            }
            other => {
                let (code, text, data) = self.refusal(other, request);
                jsonrpc::error_response(request.head.raw_id.as_deref(), code, &text, data.as_deref())
            }
        }
    }

    /// A response or error travelling `from` one side, answering a request that went the other way.
    async fn answer(&mut self, from: Direction, message: Message) {
        let pending = message.head.id.as_ref().and_then(|id| self.answered(from).remove(id));
        if pending.is_none() && message.head.id.is_some() {
            // Nothing in flight has this id: it would reach the peer past the
            // response chain, as an answer to nothing it asked.
            let id = message.head.raw_id.as_deref().unwrap_or("-");
            tracing::warn!(from = side(from), id, "answer dropped: no request with this id is in flight");
            return;
        }
        let generation = pending.as_ref().map_or(self.instances.chain().generation(), |p| p.generation);
        // The peer that asked gets its answer under its id exactly as it wrote it.
        let message = match &pending {
            Some(p) if message.head.raw_id.as_deref() != Some(p.raw_id.as_str()) => {
                let raw = message.with_raw_id(&p.raw_id);
                Message::parse(raw).unwrap_or(message)
            }
            _ => message,
        };
        let (method, tool) = pending.map(|p| (p.method, p.tool)).unwrap_or_default();
        if method == jsonrpc::method::INITIALIZE && from == Direction::ServerToClient {
            self.note_protocol_version(&message);
        }
        // Only an answer through an earlier chain can be the last one it owed.
        let retiring = generation != self.instances.chain().generation();
        let outcome = {
            let instances = self.instances_of(generation);
            if !instances.chain().wants_response(&method, from) {
                if retiring {
                    self.release_retired();
                }
                return self.send_on(from, message.raw).await;
            }
            let cx = MessageContext { direction: from, method: &method, tool: tool.as_deref() };
            instances.on_response(cx, &message).await
        };
        if retiring {
            self.release_retired();
        }
        let id = message.head.raw_id.as_deref();
        let onward = match outcome {
            Outcome::Forward(replacement) => replacement.map_or(message.raw.clone(), |m| m.raw),
            Outcome::Respond { plugin, result } => {
                self.decision(&plugin, "respond", &message, Some(&method));
                match id {
                    Some(id) => jsonrpc::result_response(id, &result),
                    None => message.raw.clone(),
                }
            }
            other => {
                let (code, text, data) = self.refusal(other, &message);
                jsonrpc::error_response(id, code, &text, data.as_deref())
            }
        };
        self.send_on(from, onward).await;
    }

    /// The error for a message the chain stopped, recorded in the audit trail.
    fn refusal(&self, outcome: Outcome, message: &Message) -> (i32, String, Option<String>) {
        match outcome {
            Outcome::Reject { plugin, error } => {
                self.decision(&plugin, "reject", message, None);
                (error.code, error.message, error.data)
            }
            Outcome::Approval { plugin, prompt } => {
                self.decision(&plugin, "require-approval", message, None);
                let text = format!(
                    "plugin \"{plugin}\" requires human approval ({prompt}), but approval is not available in this Warden"
                );
                (code::APPROVAL_UNAVAILABLE, text, None)
            }
            Outcome::Failed(fault) => {
                self.decision(&fault.plugin, fault.kind.tag(), message, None);
                (code::PLUGIN_FAILED, fault.to_string(), None)
            }
            Outcome::Forward(_) | Outcome::Respond { .. } => {
                (code::PLUGIN_FAILED, "internal: not a refusal".to_owned(), None)
            }
        }
    }

    /// One audit record per decision that was not "forward". Never the message body:
    /// it may hold secrets.
    fn decision(&self, plugin: &str, verdict: &str, message: &Message, answered: Option<&str>) {
        if !self.audit.enabled() {
            return;
        }
        let head = &message.head;
        let event = json!({
            "type": "decision",
            "verdict": verdict,
            "plugin": plugin,
            "method": answered.or(head.method.as_deref()),
            "tool": head.tool,
            "id": head.id,
        });
        let session = self.instances.session().id.clone();
        self.audit.record(Source::Host, session.as_deref(), &event);
    }

    fn note_protocol_version(&mut self, message: &Message) {
        if let Some(v) = jsonrpc::negotiated_version(&message.raw) {
            self.instances.session_mut().protocol_version = Some(v);
        }
    }

    /// A cancelled request may never be answered; stop waiting for it. Returns
    /// the answer to the client's batch it completes, if it was in one.
    fn forget_cancelled(&mut self, from: Direction, message: &Message) -> Option<Bytes> {
        let id = jsonrpc::cancelled_request(&message.raw)?;
        self.pending(from).remove(&id);
        self.release_retired();
        (from == Direction::ClientToServer).then(|| self.batches.settle(&id, None)).flatten()
    }

    /// The table of requests sent `from` this side.
    fn pending(&mut self, from: Direction) -> &mut HashMap<String, Pending> {
        match from {
            Direction::ClientToServer => &mut self.upstream_pending,
            Direction::ServerToClient => &mut self.client_pending,
        }
    }

    /// The table an answer coming `from` this side settles.
    fn answered(&mut self, from: Direction) -> &mut HashMap<String, Pending> {
        match from {
            Direction::ClientToServer => &mut self.client_pending,
            Direction::ServerToClient => &mut self.upstream_pending,
        }
    }

    /// Sends towards the other side.
    async fn send_on(&mut self, from: Direction, bytes: Bytes) {
        if self.streaming(from) {
            // A message is streaming this way: this one follows its last piece.
            self.held[way(from)].push_back(bytes);
            return;
        }
        match from {
            Direction::ClientToServer => match &self.to_upstream {
                // Client frames are only taken when there is room, so this waits only
                // for answers the chain made to the upstream's own requests: those go
                // on without holding up the reading of the upstream.
                Some(tx) => match tx.try_send(Outgoing::Message(bytes)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(bytes)) => {
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            let _ = tx.send(bytes).await;
                        });
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        tracing::debug!("upstream input closed; message dropped")
                    }
                },
                None => tracing::debug!("upstream input closed; message dropped"),
            },
            Direction::ServerToClient => {
                let Some(bytes) = self.unbatched(bytes) else { return };
                let _ = self.to_client.send(Outgoing::Message(bytes)).await;
            }
        }
    }

    /// An answer to a request of a client's batch is kept until the batch is
    /// complete; then the batch's answer goes instead. Other messages go as they are.
    fn unbatched(&mut self, bytes: Bytes) -> Option<Bytes> {
        if self.batches.of.is_empty() || jsonrpc::is_batch(&bytes) {
            return Some(bytes);
        }
        let id = match jsonrpc::parse_head(&bytes) {
            Ok(head) if matches!(head.kind, Kind::Response | Kind::Error) => head.id,
            _ => None,
        };
        match id {
            Some(id) if self.batches.holds(&id) => self.batches.settle(&id, Some(bytes)),
            _ => Some(bytes),
        }
    }

    /// Whether a message is being streamed `travel`-wards.
    fn streaming(&self, travel: Direction) -> bool {
        matches!(self.partial[way(travel)], Some(Partial { way: Way::Stream { .. }, .. }))
    }

    /// Sends a piece of a streaming message, in order with everything before it.
    /// A stdio line holds no LF; a lone CR in it, which some stdio readers
    /// take for a line end, goes on as a space (it can only be whitespace
    /// where a peer would not refuse the line anyway).
    async fn push(&mut self, travel: Direction, item: Outgoing) {
        let item = match item {
            Outgoing::Part(part) => Outgoing::Part(jsonrpc::one_line(part)),
            Outgoing::Message(last) => Outgoing::Message(jsonrpc::one_line(last)),
        };
        let tx = match travel {
            Direction::ClientToServer => self.to_upstream.as_ref(),
            Direction::ServerToClient => Some(&self.to_client),
        };
        if let Some(tx) = tx {
            let _ = tx.send(item).await;
        }
    }

    /// Sends what was held back while a message streamed `travel`-wards.
    async fn release(&mut self, travel: Direction) {
        while let Some(bytes) = self.held[way(travel)].pop_front() {
            self.send_on(travel, bytes).await;
        }
    }

    /// The first piece of a long message: stream it on, or start gathering it.
    async fn start(&mut self, from: Direction, prefix: Bytes) {
        let len = prefix.len();
        let mut keys = jsonrpc::stream::TopKeys::default();
        // A prefix that already names a key twice is gathered, then refused whole.
        let stream = match keys.feed(&prefix) {
            Ok(()) => self.streamable(from, &jsonrpc::prefix_head(&prefix)),
            Err(_) => None,
        };
        let way = match stream {
            Some(stream) => {
                self.push(from, Outgoing::Part(prefix)).await;
                stream
            }
            None if len > self.max_message_bytes => Way::Skip(sniff(&prefix)),
            None => Way::Gather(vec![prefix]),
        };
        self.partial[self::way(from)] = Some(Partial { len, way, keys });
    }

    /// Whether a message starting with `head` may be streamed: its side takes
    /// pieces, its head came early, and no plugin wants to see it (nor, for a
    /// request, its answer, whose context would lack the tool name).
    fn streamable(&mut self, from: Direction, head: &jsonrpc::PrefixHead) -> Option<Way> {
        let takes_pieces = match from {
            Direction::ClientToServer => self.upstream_streams,
            Direction::ServerToClient => self.client_streams,
        };
        if !takes_pieces {
            return None;
        }
        let raw_id = head.id.clone()?;
        let id = jsonrpc::id_key(&raw_id)?;
        let chain = self.instances.chain().clone();
        match &head.method {
            Some(method) => {
                let quiet = !chain.wants_request(method, from) && !chain.wants_response(method, opposite(from));
                let special = matches!(method.as_str(), jsonrpc::method::INITIALIZE | jsonrpc::method::CANCELLED);
                let pending = self.pending(from);
                if !quiet || special || pending.len() >= MAX_PENDING || pending.contains_key(&id) {
                    return None;
                }
                let generation = chain.generation();
                let entry = Pending { raw_id: raw_id.clone(), method: method.clone(), tool: None, generation };
                self.pending(from).insert(id.clone(), entry);
                Some(Way::Stream { id, raw_id, answer: false })
            }
            // An answer owed to a client's batch is gathered: it goes back inside the batch's array.
            None if head.answer && from == Direction::ServerToClient && self.batches.holds(&id) => None,
            None if head.answer => {
                let pending = self.answered(from).get(&id)?;
                // An answer under an id written otherwise than the request's is
                // gathered, so that it can go back under the asker's spelling.
                if chain.wants_response(&pending.method, from)
                    || pending.method == jsonrpc::method::INITIALIZE
                    || pending.raw_id != raw_id
                {
                    return None;
                }
                Some(Way::Stream { id, raw_id, answer: true })
            }
            None => None,
        }
    }

    /// A middle piece of a long message.
    async fn more(&mut self, from: Direction, part: Bytes) {
        let Some(mut partial) = self.partial[way(from)].take() else { return };
        partial.len += part.len();
        let over = partial.len > self.max_message_bytes;
        partial.way = match partial.way {
            Way::Stream { id, raw_id, answer } if over => {
                // Cut the line short where the limit was passed; the rest is skipped
                // and the message answered as too large once its end arrives.
                self.cut_stream(from, &id, answer).await;
                Way::Skip(Some(raw_id))
            }
            Way::Stream { id, raw_id, answer } => match partial.keys.feed(&part) {
                Ok(()) => {
                    self.push(from, Outgoing::Part(part)).await;
                    Way::Stream { id, raw_id, answer }
                }
                Err(why) => {
                    self.cut_stream(from, &id, answer).await;
                    Way::Cut { id, raw_id, answer, why }
                }
            },
            Way::Gather(pieces) if over => Way::Skip(pieces.first().and_then(|p| sniff(p))),
            Way::Gather(mut pieces) => {
                pieces.push(part);
                Way::Gather(pieces)
            }
            other @ (Way::Skip(_) | Way::Cut { .. }) => other,
        };
        self.partial[way(from)] = Some(partial);
    }

    /// Ends a streaming line short, so the peer sees it malformed and acts on
    /// none of it. A request cut off is no longer in flight.
    async fn cut_stream(&mut self, from: Direction, id: &str, answer: bool) {
        if !answer {
            self.pending(from).remove(id);
        }
        self.push(from, Outgoing::Message(Bytes::new())).await;
        self.release(from).await;
    }

    /// The last piece of a long message. Returns what is left to handle: the
    /// gathered message, or a too-large one to answer.
    async fn end(&mut self, from: Direction, part: Bytes) -> Option<Frame> {
        let mut partial = self.partial[way(from)].take()?;
        partial.len += part.len();
        let over = partial.len > self.max_message_bytes;
        match partial.way {
            Way::Stream { id, raw_id, answer } => {
                let twice = partial.keys.feed(&part).err();
                if over || twice.is_some() {
                    self.cut_stream(from, &id, answer).await;
                    return match twice {
                        Some(why) if !over => {
                            self.refuse_cut(from, &id, raw_id, answer, why).await;
                            None
                        }
                        _ => Some(Frame::TooLarge { len: partial.len, id: Some(raw_id) }),
                    };
                }
                if answer {
                    self.answered(from).remove(&id);
                }
                self.push(from, Outgoing::Message(part)).await;
                self.release(from).await;
                None
            }
            Way::Cut { id, raw_id, answer, why } => {
                self.refuse_cut(from, &id, raw_id, answer, why).await;
                None
            }
            Way::Gather(pieces) if over => {
                Some(Frame::TooLarge { len: partial.len, id: pieces.first().and_then(|p| sniff(p)) })
            }
            Way::Gather(mut pieces) => {
                pieces.push(part);
                let mut line = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
                for piece in &pieces {
                    line.extend_from_slice(piece);
                }
                Some(Frame::Line(line.freeze()))
            }
            Way::Skip(id) => Some(Frame::TooLarge { len: partial.len, id }),
        }
    }

    /// Tells whoever waits on a message that was cut off for naming a key twice:
    /// its sender (a request) or the one it answered (an answer).
    async fn refuse_cut(&mut self, from: Direction, id: &str, raw_id: String, answer: bool, why: String) {
        tracing::warn!(from = side(from), id = raw_id.as_str(), "streaming message cut off: {why}");
        if answer {
            let Some(pending) = self.answered(from).remove(id) else { return };
            if from == Direction::ServerToClient {
                let text = format!("upstream sent an unreadable answer: {why}");
                let reply = jsonrpc::error_response(Some(&pending.raw_id), code::UPSTREAM_FAILED, &text, None);
                self.send_on(from, reply).await;
            }
        } else if from == Direction::ClientToServer {
            let reply = jsonrpc::error_response(Some(&raw_id), code::INVALID_REQUEST, &why, None);
            self.send_back(from, reply).await;
        }
    }

    /// Sends back to the side a message came from.
    async fn send_back(&mut self, from: Direction, bytes: Bytes) {
        self.send_on(opposite(from), bytes).await;
    }
}

/// Index of the per-way state: by the way a message travels.
fn way(travel: Direction) -> usize {
    match travel {
        Direction::ClientToServer => 0,
        Direction::ServerToClient => 1,
    }
}

/// The id of a message too large to keep, from its first bytes.
fn sniff(start: &[u8]) -> Option<String> {
    jsonrpc::sniff_id(&start[..start.len().min(4096)])
}

fn opposite(direction: Direction) -> Direction {
    match direction {
        Direction::ClientToServer => Direction::ServerToClient,
        Direction::ServerToClient => Direction::ClientToServer,
    }
}

fn side(direction: Direction) -> &'static str {
    match direction {
        Direction::ClientToServer => "client",
        Direction::ServerToClient => "upstream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_goes_back_once_closed_and_every_answer_is_in() {
        let mut batches = Batches::default();
        let n = batches.open();
        assert!(batches.expect(n, "1") && batches.expect(n, "2"));
        assert!(!batches.expect(n, "1"), "a duplicate id is refused");
        batches.answer_now(n, Bytes::from_static(b"{\"e\":0}"));
        // An answer before the batch has been read through is kept.
        assert_eq!(batches.settle("1", Some(Bytes::from_static(b"{\"a\":1}"))), None);
        assert_eq!(batches.close(n), None, "2 is still owed");
        // A cancelled request is owed nothing.
        let done = batches.settle("2", None).expect("complete");
        assert_eq!(&done[..], b"[{\"e\":0},{\"a\":1}]");
        assert!(batches.open.is_empty() && batches.of.is_empty());
        assert_eq!(batches.settle("3", None), None, "not batched");
        let notes_only = batches.open();
        assert_eq!(batches.close(notes_only), None, "notifications only: no answer");
        assert!(batches.open.is_empty());
    }
}
