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

use super::{Output, Upstream};
use crate::era;
use crate::jsonrpc::{self, method, Kind};
use crate::transport::framing::{Frame, Outgoing};
use crate::transport::QUEUE;

mod input;
mod listens;
mod modes;

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
