//! The host's own audit record of each request, whatever the plugins do:
//! one record when the request is answered (or refused, or its upstream is
//! gone, or it is cancelled), with who asked, what, a digest of the
//! arguments, every plugin's verdict with its component digest, the outcome
//! and the latency. Never the arguments or the answer themselves: they may
//! hold secrets.
//!
//! ```json
//! {"type":"request","direction":"client-to-server","transport":"stdio","protocol":"2025-06-18",
//!  "id":"7","method":"tools/call","tool":"echo","arguments_sha256":"…",
//!  "verdicts":[{"plugin":"10-policy","component":"sha256:…","hook":"request","verdict":"forward"}],
//!  "outcome":{"result":"success"},"latency_us":412}
//! ```
//!
//! `arguments_sha256` is the sha256 of the arguments' RFC 8785 canonical
//! JSON, so the same arguments give the same digest however they were written.

use std::time::Instant;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::Relay;
use crate::audit::{At, Source};
use crate::jsonrpc::{Message, Reply};
use crate::plugin::instances::{Direction, Transport};
use crate::plugin::Instances;

/// What a request's record keeps until its answer.
#[derive(Debug)]
pub(super) struct Opened {
    started: Instant,
    direction: Direction,
    id: String,
    arguments: Option<String>,
    verdicts: Vec<Value>,
}

/// How a request ended.
pub(super) enum Ended<'a> {
    /// With this answer (a result or an error).
    Answer(&'a Message),
    /// With an error Warden made (`code`).
    Error(i64),
    /// Cancelled by its sender.
    Cancelled,
    /// With an answer streamed on as it arrived (not read whole).
    Streamed,
}

impl Opened {
    /// Starts the record of `request`, going `from` one side (`None` when
    /// nothing is audited).
    pub(super) fn start(relay: &Relay, from: Direction, request: &Message, started: Instant) -> Option<Box<Opened>> {
        if !relay.audit.enabled() {
            return None;
        }
        Some(Box::new(Opened {
            started,
            direction: from,
            id: request.head.raw_id.clone().unwrap_or_default(),
            arguments: arguments_digest(request),
            verdicts: Vec::new(),
        }))
    }

    /// Starts the record of a request streamed on as it arrives (too long to
    /// be read whole, wanted by no plugin): its arguments are not digested.
    pub(super) fn streamed(relay: &Relay, from: Direction, raw_id: &str) -> Option<Box<Opened>> {
        relay.audit.enabled().then(|| {
            Box::new(Opened {
                started: Instant::now(),
                direction: from,
                id: raw_id.to_owned(),
                arguments: None,
                verdicts: Vec::new(),
            })
        })
    }

    /// Adds what the plugins the last walk of `instances` called said.
    pub(super) fn verdicts(&mut self, instances: &Instances, hook: &str) {
        for (plugin, verdict) in instances.verdicts() {
            self.verdicts.push(json!({
                "plugin": &*plugin.name,
                "component": format!("sha256:{}", plugin.digest),
                "hook": hook,
                "verdict": verdict,
            }));
        }
    }
}

impl Relay {
    /// Writes the record of a request `method` (`tool`) that ended so.
    pub(super) fn close_record(&self, opened: Opened, method: &str, tool: Option<&str>, ended: Ended<'_>) {
        let outcome = match ended {
            Ended::Answer(message) => match &message.head.reply {
                Some(Reply::Result { tool_error: false }) => json!({"result": "success"}),
                Some(Reply::Result { tool_error: true }) => json!({"result": "tool-error"}),
                Some(Reply::Error { code, .. }) => json!({"error": code}),
                None => json!({"result": "unread"}),
            },
            Ended::Error(code) => json!({"error": code}),
            Ended::Cancelled => json!({"cancelled": true}),
            Ended::Streamed => json!({"result": "streamed"}),
        };
        let facts = self.instances.session();
        let event = json!({
            "type": "request",
            "direction": direction_name(opened.direction),
            "transport": transport_name(facts.transport),
            "protocol": facts.protocol_version,
            "id": opened.id,
            "method": method,
            "tool": tool,
            "arguments_sha256": opened.arguments,
            "verdicts": opened.verdicts,
            "outcome": outcome,
            "latency_us": u64::try_from(opened.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        });
        let caller = facts.caller.as_ref().map(|c| c.subject.as_str());
        let at = At { session: facts.id.as_deref(), upstream: Some(&facts.upstream), caller };
        self.audit.record(Source::Host, at, &event);
    }
}

/// sha256 (hex) of the RFC 8785 form of `params.arguments`, when there are any.
fn arguments_digest(request: &Message) -> Option<String> {
    let value: Value = serde_json::from_slice(&request.raw).ok()?;
    let arguments = value.get("params")?.get("arguments")?;
    let canonical = serde_json_canonicalizer::to_string(arguments).ok()?;
    Some(hex::encode(Sha256::digest(canonical.as_bytes())))
}

fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::ClientToServer => "client-to-server",
        Direction::ServerToClient => "server-to-client",
    }
}

fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Stdio => "stdio",
        Transport::StreamableHttp => "streamable-http",
        Transport::HttpSse => "http-sse",
    }
}
