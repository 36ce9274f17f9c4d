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

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::audit::AuditSink;
use crate::jsonrpc::{self, code, Message};
use crate::plugin::instances::Direction;
use crate::plugin::{Chain, Instances};
use crate::transport::framing::{Frame, Outgoing};

mod batch;
mod exchange;
mod measure;
mod pending;
mod record;
mod reply;
mod spans;
mod stream;

use batch::Batches;
use measure::Role;
use pending::Pending;
use stream::Partial;

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
    /// Which metrics it counts.
    role: Role,
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
            role: Role { front: true, upstream: true },
        }
    }

    /// In a gateway: the session's relay (`front`, its upstream the router)
    /// or a lane's (facing its upstream); the metrics each counts differ.
    pub fn in_gateway(mut self, front: bool) -> Relay {
        self.role = Role { front, upstream: !front };
        self
    }

    /// Follows reloads: each new message uses the chain in force when it arrives.
    pub fn follow(mut self, updates: watch::Receiver<Arc<Chain>>) -> Relay {
        self.chain_updates = Some(updates);
        self
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
        for mut pending in std::mem::take(&mut self.upstream_pending).into_values() {
            if let Some(record) = pending.record.take() {
                // An error either way: nothing to withhold.
                let _ = self.close_record(
                    *record,
                    &pending.method,
                    pending.tool.as_deref(),
                    record::Ended::Error(code::UPSTREAM_FAILED.into()),
                );
            }
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
                        if let Some(mut pending) = owed {
                            self.settled(Some(&mut pending), record::Ended::Error(code::MESSAGE_TOO_LARGE.into()));
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
                let Some(mut pending) = e.id_key().and_then(|key| self.upstream_pending.remove(&key)) else { return };
                self.settled(Some(&mut pending), record::Ended::Error(code::UPSTREAM_FAILED.into()));
                let text = format!("upstream sent an unreadable answer: {e}");
                let reply = jsonrpc::error_response(Some(&pending.raw_id), code::UPSTREAM_FAILED, &text, None);
                self.send_on(from, reply).await;
            }
        }
    }

    async fn message(&mut self, from: Direction, message: Message) {
        if message.head.kind.is_call() {
            self.call(from, message).await;
        } else {
            self.answer(from, message).await;
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
