//! The chain run both ways: a request or notification on its way, and the
//! answer that comes back through the same chain.

use bytes::Bytes;

use super::pending::{Pending, MAX_PENDING};
use super::record::{Ended, Opened};
use super::reply::Onward;
use super::{opposite, side, Relay};
use crate::jsonrpc::{self, code, Kind, Message};
use crate::plugin::instances::Direction;
use crate::plugin::{ChainOutcome, MessageContext};
use crate::telemetry::traces;
use tracing::Instrument as _;

impl Relay {
    /// A request or notification travelling `from` one side to the other.
    pub(super) async fn call(&mut self, from: Direction, message: Message) {
        let started = std::time::Instant::now();
        let head = &message.head;
        let method = head.method.as_deref().unwrap_or_default();
        if head.kind == Kind::Request {
            let refused = match &head.id {
                _ if self.pending(from).len() >= MAX_PENDING => {
                    Some((code::INVALID_REQUEST, format!("too many requests in flight (limit {MAX_PENDING})")))
                }
                // Nothing is served unrecorded when the trail is required.
                _ if from == Direction::ClientToServer && self.audit.refusing() => Some((
                    code::AUDIT_UNAVAILABLE,
                    "the audit trail cannot be written, and it is required: calls are refused until it can".to_owned(),
                )),
                // Its answer could not be told from the first one's.
                Some(id) if self.pending(from).contains_key(id) => {
                    Some((code::INVALID_REQUEST, "a request with this id is already in flight".to_owned()))
                }
                _ => None,
            };
            if let Some((refusal, text)) = refused {
                tracing::warn!(
                    from = side(from),
                    id = head.raw_id.as_deref().unwrap_or("-"),
                    "request refused: {text}"
                );
                let reply = jsonrpc::error_response(head.raw_id.as_deref(), refusal, &text, None);
                return self.send_back(from, reply).await;
            }
        }
        self.refresh();
        let walked = self.instances.chain().wants_request(method, from);
        let traced = head.kind == Kind::Request && from == Direction::ClientToServer && traces::on();
        let span = traced.then(|| self.request_span(&message));
        let (outcome, stopped_at) = if walked {
            let cx = MessageContext { direction: from, method, tool: head.tool.as_deref() };
            let walk = self.instances.on_request(cx, &message);
            match &span {
                Some(span) => walk.instrument(span.clone()).await,
                None => walk.await,
            }
        } else {
            (ChainOutcome::Forward(None), 0)
        };
        let mut record = match message.head.kind {
            Kind::Request => Opened::start(self, from, &message, started, span),
            _ => None,
        };
        if let (Some(record), true) = (record.as_mut(), walked) {
            record.verdicts(self.audit.enabled(), &self.instances, "request");
        }
        let id = head.raw_id.clone();
        let reply = match self.onward(outcome, &message, id.as_deref(), None) {
            Onward::Pass(replacement) => {
                let raw_id = message.head.raw_id.clone();
                let message = match (replacement, record.as_mut()) {
                    (Some(replacement), Some(record)) => {
                        record.passed_as(self, &replacement);
                        replacement
                    }
                    (replacement, _) => replacement.unwrap_or(message),
                };
                // A cancellation the chain let through: the request is no longer
                // waited for. One it stopped never reached the peer: it still is.
                if message.head.method.as_deref() == Some(jsonrpc::method::CANCELLED) {
                    if let Some(answers) = self.forget_cancelled(from, &message) {
                        self.send_back(from, answers).await;
                    }
                }
                let mut stamped = None;
                if let (Some(id), Some(raw_id)) = (&message.head.id, raw_id) {
                    if let Some(record) = record.as_mut() {
                        record.sent = Some(std::time::Instant::now());
                        stamped = record.sending(self, &message);
                    }
                    let pending = Pending {
                        raw_id,
                        method: message.head.method.clone().unwrap_or_default(),
                        tool: message.head.tool.clone(),
                        generation: self.instances.chain().generation(),
                        record,
                    };
                    self.pending(from).insert(id.clone(), pending);
                }
                return self.send_on(from, stamped.unwrap_or(message.raw)).await;
            }
            // Notifications that were stopped are simply dropped; there is nobody to answer.
            Onward::Answer(reply) => reply.filter(|_| id.is_some()),
        };
        if let Some(reply) = reply {
            let mut reply = self.unwind(from, stopped_at, &message, reply).await;
            if let (Some(record), Ok(answer)) = (record, Message::parse(reply.clone())) {
                let method = message.head.method.as_deref().unwrap_or_default();
                if !self.close_record(*record, method, message.head.tool.as_deref(), Ended::Answer(&answer)) {
                    reply = withheld(message.head.raw_id.as_deref());
                }
            }
            self.send_back(from, reply).await;
        }
    }

    /// Passes an answer the chain made (at position `stop`) back through the
    /// plugins in front of `stop`, as if it had come from the peer.
    pub(super) async fn unwind(&mut self, from: Direction, stop: usize, request: &Message, reply: Bytes) -> Bytes {
        let Ok(answer) = Message::parse(reply.clone()) else { return reply };
        let method = request.head.method.as_deref().unwrap_or_default();
        let cx = MessageContext { direction: opposite(from), method, tool: request.head.tool.as_deref() };
        let outcome = self.instances.on_response_before(stop, cx, &answer).await;
        match self.onward(outcome, request, request.head.raw_id.as_deref(), None) {
            Onward::Pass(None) | Onward::Answer(None) => reply,
            Onward::Pass(Some(replacement)) => replacement.raw,
            Onward::Answer(Some(answer)) => answer,
        }
    }

    /// An answer a plugin at `stop` replaced (`answer`), through the plugins in
    /// front of it, with what they make of it.
    async fn unwind_answer(
        &mut self,
        generation: u64,
        stop: usize,
        cx: MessageContext<'_>,
        original: &Message,
        answer: Bytes,
    ) -> Bytes {
        let Ok(replaced) = Message::parse(answer.clone()) else { return answer };
        let outcome = self.instances_of(generation).on_response_before(stop, cx, &replaced).await;
        match self.onward(outcome, original, original.head.raw_id.as_deref(), Some(cx.method)) {
            Onward::Pass(None) | Onward::Answer(None) => answer,
            Onward::Pass(Some(replacement)) => replacement.raw,
            Onward::Answer(Some(again)) => again,
        }
    }

    /// A response or error travelling `from` one side, answering a request that went the other way.
    pub(super) async fn answer(&mut self, from: Direction, message: Message) {
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
        let (method, tool, mut record) = pending.map(|p| (p.method, p.tool, p.record)).unwrap_or_default();
        if let Some(record) = record.as_mut() {
            record.answered();
        }
        let audited = self.audit.enabled();
        self.learn_tools(&method, from, &message);
        if method == jsonrpc::method::INITIALIZE && from == Direction::ServerToClient {
            self.note_protocol_version(&message);
        }
        // Only an answer through an earlier chain can be the last one it owed.
        let retiring = generation != self.instances.chain().generation();
        let (outcome, stopped_at) = {
            let instances = self.instances_of(generation);
            if !instances.chain().wants_response(&method, from) {
                if retiring {
                    self.release_retired();
                }
                if let Some(record) = record {
                    if !self.close_record(*record, &method, tool.as_deref(), Ended::Answer(&message)) {
                        return self.send_on(from, withheld(message.head.raw_id.as_deref())).await;
                    }
                }
                return self.send_on(from, message.raw).await;
            }
            let cx = MessageContext { direction: from, method: &method, tool: tool.as_deref() };
            let walk = instances.on_response(cx, &message);
            let walked = match record.as_ref().and_then(|r| r.span.clone()) {
                Some(span) => walk.instrument(span).await,
                None => walk.await,
            };
            if let Some(record) = record.as_mut() {
                record.verdicts(audited, instances, "response");
            }
            walked
        };
        let id = message.head.raw_id.as_deref();
        let mut onward = match self.onward(outcome, &message, id, Some(&method)) {
            Onward::Pass(replacement) => replacement.map_or(message.raw.clone(), |m| m.raw),
            Onward::Answer(answer) => {
                // What a plugin made of the answer goes on through the plugins it
                // has yet to pass (those in front of it): an audit plugin in front
                // sees the answer the peer gets.
                let answer = answer.unwrap_or_else(|| message.raw.clone());
                let cx = MessageContext { direction: from, method: &method, tool: tool.as_deref() };
                self.unwind_answer(generation, stopped_at, cx, &message, answer).await
            }
        };
        if retiring {
            self.release_retired();
        }
        if let Some(record) = record {
            let answered = if onward == message.raw { Some(message) } else { Message::parse(onward.clone()).ok() };
            if let Some(answered) = answered {
                if !self.close_record(*record, &method, tool.as_deref(), Ended::Answer(&answered)) {
                    onward = withheld(answered.head.raw_id.as_deref());
                }
            }
        }
        self.send_on(from, onward).await;
    }
}

/// The answer instead of one whose audit record could not be written while
/// the trail is required: the call's outcome is not released unrecorded.
fn withheld(id: Option<&str>) -> Bytes {
    let text = "the answer is withheld: its audit record could not be written, and the trail is required";
    jsonrpc::error_response(id, code::AUDIT_UNAVAILABLE, text, None)
}
