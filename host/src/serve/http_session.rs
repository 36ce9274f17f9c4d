//! One legacy session of the gateway: its queue into the relay, its streams,
//! and the task that routes what the relay sends to the request it answers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::streams::{self, Streams};
use super::{lock, SessionError};
use crate::era;
use crate::jsonrpc::{self, Kind};
use crate::transport::framing::Outgoing;

/// One legacy session.
pub struct HttpSession {
    /// The `Mcp-Session-Id`.
    pub id: String,
    /// The authenticated caller that opened it; only it may use it.
    pub(super) caller: Option<Arc<str>>,
    /// Whose quota it counts against: the caller, or its address.
    pub(super) owner: Arc<str>,
    pub(super) input: Mutex<Option<mpsc::Sender<Bytes>>>,
    pub(super) streams: Mutex<Streams>,
    /// The protocol version `initialize` settled on.
    pub(super) version: Mutex<Option<String>>,
    /// The one event stream of an HTTP+SSE (2024-11-05) session.
    pub(super) old_sse: Mutex<Option<mpsc::UnboundedSender<streams::Event>>>,
    pub(super) last_seen: Mutex<Instant>,
}

impl HttpSession {
    pub(super) fn touch(&self) {
        *lock(&self.last_seen) = Instant::now();
    }

    /// Hands a client message to the relay.
    pub async fn submit(&self, message: Bytes) -> Result<(), SessionError> {
        let input = lock(&self.input).clone().ok_or(SessionError::Ended)?;
        input.send(message).await.map_err(|_| SessionError::Ended)
    }

    /// Hands a client request to the relay; its answer, and what the server
    /// says meanwhile, come on the stream returned (its number and receiver).
    pub async fn call(&self, id: String, message: Bytes) -> Result<(u64, streams::Receiver), SessionError> {
        let progress = jsonrpc::progress_token(&message);
        let opened = {
            let mut streams = lock(&self.streams);
            if streams.ended() {
                return Err(SessionError::Ended);
            }
            if streams.is_waiting(&id) {
                return Err(SessionError::IdInFlight(id));
            }
            streams.open_request(id, progress)
        };
        self.submit(message).await?;
        Ok(opened)
    }

    /// The protocol version `initialize` settled on, once answered.
    pub fn protocol_version(&self) -> Option<String> {
        lock(&self.version).clone()
    }

    /// Stream `number` goes out as SSE. Returns the id for a priming event
    /// when the session's protocol version has clients expect one (2025-11-25 and later).
    pub fn streamed(&self, number: u64) -> Option<streams::EventId> {
        let version = lock(&self.version).as_deref().and_then(era::Version::parse);
        let primed = version.is_some_and(era::Version::primes_streams);
        let id = lock(&self.streams).streamed(number);
        id.filter(|_| primed)
    }

    /// Opens the GET stream for server messages unrelated to a request, or,
    /// given the last event id a client saw, resumes the stream it names.
    pub fn listen(&self, last_event: Option<&str>) -> Result<streams::Receiver, SessionError> {
        let mut streams = lock(&self.streams);
        if streams.ended() {
            return Err(SessionError::Ended);
        }
        if let Some(rx) = last_event.and_then(|id| streams.resume(id)) {
            return Ok(rx);
        }
        Ok(streams.open_listener())
    }

    /// Makes `stream` the session's one HTTP+SSE event stream.
    pub fn attach_sse(&self, stream: mpsc::UnboundedSender<streams::Event>) {
        *lock(&self.old_sse) = Some(stream);
    }

    /// The session's HTTP+SSE event stream, if it is such a session.
    pub fn sse(&self) -> Option<mpsc::UnboundedSender<streams::Event>> {
        lock(&self.old_sse).clone()
    }

    /// Stops waiting for the answer to the request `id` (JSON text): it was cancelled.
    pub fn forget(&self, id: &str) {
        lock(&self.streams).forget(id);
    }

    pub(crate) fn close(&self) {
        lock(&self.input).take();
    }

    /// Whether its upstream has gone.
    pub(crate) fn ended(&self) -> bool {
        lock(&self.streams).ended()
    }

    pub(super) fn idle_for(&self) -> Duration {
        lock(&self.last_seen).elapsed()
    }

    /// Whether a call awaits its answer (a backing's own listener aside).
    pub(super) fn calls_in_flight(&self) -> bool {
        lock(&self.streams).calls_in_flight()
    }

    pub(super) fn has_open_streams(&self) -> bool {
        lock(&self.streams).busy()
    }
}

/// Routes what the relay sends to the client onto the session's HTTP streams.
pub(super) async fn route(session: Arc<HttpSession>, mut from_relay: mpsc::Receiver<Outgoing>) {
    while let Some(item) = from_relay.recv().await {
        // The relay never streams to an HTTP client (see `Relay::stream_to_client`).
        let Outgoing::Message(message) = item else {
            tracing::error!(session = %session.id, "internal: a message piece reached the HTTP router; dropped");
            continue;
        };
        let head = match jsonrpc::parse_head(&message) {
            Ok(head) => head,
            Err(e) => {
                tracing::warn!(session = %session.id, "unroutable message to the client dropped: {e}");
                continue;
            }
        };
        if head.kind == Kind::Response && lock(&session.version).is_none() {
            if let Some(version) = jsonrpc::negotiated_version(&message) {
                *lock(&session.version) = Some(version);
            }
        }
        let delivered = lock(&session.streams).deliver(&head, message);
        if !delivered {
            let method = head.method.as_deref().unwrap_or_default();
            let why = format!("{method}: no client call is open to carry it");
            let refusal = jsonrpc::error_response(head.raw_id.as_deref(), jsonrpc::code::METHOD_NOT_FOUND, &why, None);
            let _ = session.submit(refusal).await;
        }
    }
    // The relay is gone: the session has ended. Streams still waiting close empty.
    lock(&session.streams).end();
}
