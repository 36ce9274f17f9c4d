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

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Relay;
use crate::audit::chain::to_hex;
use crate::audit::At;
use crate::jsonrpc::{Message, Reply};
use crate::plugin::instances::{Direction, Transport};
use crate::plugin::Instances;
use crate::telemetry::metrics;

/// What a request's record keeps until its answer (for the audit trail and the metrics).
#[derive(Debug)]
pub(super) struct Opened {
    pub(super) started: Instant,
    /// When it was sent on to the peer, after the chain.
    pub(super) sent: Option<Instant>,
    /// How long the peer took to answer.
    pub(super) peer_took: Option<std::time::Duration>,
    direction: Direction,
    id: String,
    /// The arguments' digest, what it is of, and (with `include-arguments`) the arguments.
    arguments: Option<Arguments>,
    /// What the plugins said (kept only for the audit trail).
    verdicts: Vec<Said>,
    /// Whether a plugin rejected it.
    pub(super) denied: bool,
    /// Its trace span, while tracing is on.
    pub(super) span: Option<tracing::Span>,
    /// The span of its call to the upstream.
    pub(super) upstream_span: Option<tracing::Span>,
    /// `plugin=verdict, …` for the span.
    pub(super) trace_verdicts: String,
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
    /// nothing is audited or counted).
    pub(super) fn start(
        relay: &Relay,
        from: Direction,
        request: &Message,
        started: Instant,
        span: Option<tracing::Span>,
    ) -> Option<Box<Opened>> {
        let audited = relay.audit.enabled();
        if !audited && !metrics::enabled() && span.is_none() {
            return None;
        }
        Some(Box::new(Opened {
            started,
            sent: None,
            peer_took: None,
            direction: from,
            id: request.head.raw_id.clone().unwrap_or_default(),
            arguments: if audited { arguments_of(request, relay.audit.includes_arguments()) } else { None },
            verdicts: Vec::new(),
            denied: false,
            span,
            upstream_span: None,
            trace_verdicts: String::new(),
        }))
    }

    /// Starts the record of a request streamed on as it arrives (too long to
    /// be read whole, wanted by no plugin): its arguments are not digested.
    pub(super) fn streamed(relay: &Relay, from: Direction, raw_id: &str) -> Option<Box<Opened>> {
        (relay.audit.enabled() || metrics::enabled()).then(|| {
            let now = Instant::now();
            Box::new(Opened {
                started: now,
                sent: Some(now),
                peer_took: None,
                direction: from,
                id: raw_id.to_owned(),
                arguments: None,
                verdicts: Vec::new(),
                denied: false,
                span: None,
                upstream_span: None,
                trace_verdicts: String::new(),
            })
        })
    }

    /// Which way the request went.
    pub(super) fn direction(&self) -> Direction {
        self.direction
    }

    /// The request went on as `passed` (a plugin changed it): its arguments are
    /// what the upstream runs, and what the record says.
    pub(super) fn passed_as(&mut self, relay: &Relay, passed: &Message) {
        if relay.audit.enabled() {
            self.arguments = arguments_of(passed, relay.audit.includes_arguments());
        }
    }

    /// Its peer's answer arrived now.
    pub(super) fn answered(&mut self) {
        self.peer_took = self.sent.map(|sent| sent.elapsed());
        self.upstream_span = None;
    }

    /// Adds what the plugins the last walk of `instances` called said.
    pub(super) fn verdicts(&mut self, audited: bool, instances: &Instances, hook: &'static str) {
        for (plugin, verdict) in instances.verdicts() {
            self.denied |= verdict == "reject";
            if self.span.is_some() {
                if !self.trace_verdicts.is_empty() {
                    self.trace_verdicts.push_str(", ");
                }
                self.trace_verdicts.push_str(&format!("{}={verdict}", plugin.name));
            }
            if !audited {
                continue;
            }
            self.verdicts.push(Said {
                plugin: plugin.name.clone(),
                component: Component(plugin.digest.clone()),
                hook,
                verdict,
            });
        }
    }
}

impl Relay {
    /// Writes the record of a request `method` (`tool`) that ended so.
    /// `false`: the record could not be written and the trail is required, so
    /// its answer must not be released.
    #[must_use = "an answer whose record failed must not go out when the trail is required"]
    pub(super) fn close_record(&self, mut opened: Opened, method: &str, tool: Option<&str>, ended: Ended<'_>) -> bool {
        opened.end_span(&ended);
        if metrics::enabled() {
            self.measure(&opened, method, tool, &ended);
        }
        if !self.audit.enabled() {
            return true;
        }
        let outcome = match ended {
            Ended::Answer(message) => match &message.head.reply {
                Some(Reply::Result { tool_error: false }) => Outcome::Result { result: "success" },
                Some(Reply::Result { tool_error: true }) => Outcome::Result { result: "tool-error" },
                Some(Reply::Error { code, .. }) => Outcome::Error { error: code.map(i64::from) },
                None => Outcome::Result { result: "unread" },
            },
            Ended::Error(code) => Outcome::Error { error: Some(code) },
            Ended::Cancelled => Outcome::Cancelled { cancelled: true },
            Ended::Streamed => Outcome::Result { result: "streamed" },
        };
        let facts = self.instances.session();
        let event = RequestEvent {
            kind: "request",
            direction: direction_name(opened.direction),
            transport: transport_name(facts.transport),
            protocol: facts.protocol_version.as_deref(),
            id: &opened.id,
            method,
            tool,
            arguments_sha256: opened.arguments.as_ref().map(|a| a.digest.as_str()),
            arguments_form: opened.arguments.as_ref().and_then(|a| (!a.canonical).then_some("as-sent")),
            // Only a tool call's, and only once it passed the whole chain (and so its redaction).
            arguments: opened
                .arguments
                .as_ref()
                .and_then(|a| a.kept.as_deref())
                .filter(|_| opened.sent.is_some() && method == crate::jsonrpc::method::TOOLS_CALL),
            verdicts: &opened.verdicts,
            outcome,
            latency_us: u64::try_from(opened.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        };
        let Ok(event) = serde_json::to_string(&event) else { return !self.audit.required() };
        let caller = facts.caller.as_ref().map(|c| c.subject.as_str());
        let at = At { session: facts.id.as_deref(), upstream: Some(&facts.upstream), caller };
        self.audit.record_request(at, &event) || !self.audit.required()
    }
}

/// The record's `event`, written as it is declared (members in this order).
#[derive(Serialize)]
struct RequestEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    direction: &'static str,
    transport: &'static str,
    protocol: Option<&'a str>,
    id: &'a str,
    method: &'a str,
    tool: Option<&'a str>,
    arguments_sha256: Option<&'a str>,
    /// `as-sent` when the digest is of the arguments' text as sent: their
    /// numbers are not all ones a double holds, and RFC 8785 would merge them.
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments_form: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a RawValue>,
    verdicts: &'a [Said],
    outcome: Outcome,
    latency_us: u64,
}

/// One plugin's verdict on one hook.
#[derive(Debug, Serialize)]
pub(super) struct Said {
    #[serde(serialize_with = "as_str")]
    plugin: std::sync::Arc<str>,
    component: Component,
    hook: &'static str,
    verdict: &'static str,
}

fn as_str<S: serde::Serializer>(name: &std::sync::Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(name)
}

/// A component digest, written `sha256:<hex>`.
#[derive(Debug)]
struct Component(String);

impl Serialize for Component {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("sha256:{}", self.0))
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum Outcome {
    Result { result: &'static str },
    Error { error: Option<i64> },
    Cancelled { cancelled: bool },
}

/// A request's arguments, as its record says them.
#[derive(Debug)]
struct Arguments {
    /// sha256 (hex) of their RFC 8785 form, or of their text as sent.
    digest: String,
    /// Whether the digest is of the RFC 8785 form.
    canonical: bool,
    /// The arguments themselves, when records carry them.
    kept: Option<Box<RawValue>>,
}

/// The digest of `params.arguments`, when there are any: of their RFC 8785
/// form, unless a number in them is not one a double holds exactly (RFC 8785
/// would write two different arguments alike), then of their text as sent.
/// With `kept`, the arguments themselves in the same form.
fn arguments_of(request: &Message, kept: bool) -> Option<Arguments> {
    // Only `params.arguments` is read into values; the rest is skipped over.
    #[derive(serde::Deserialize)]
    struct Request<'a> {
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Params<'a> {
        #[serde(borrow)]
        arguments: Option<&'a RawValue>,
    }
    let request: Request<'_> = serde_json::from_slice(&request.raw).ok()?;
    let raw = request.params?.arguments?.get();
    if !crate::jsonrpc::numbers_are_exact(raw) {
        let digest = to_hex(&Sha256::digest(raw.as_bytes()));
        let kept = if kept { RawValue::from_string(raw.to_owned()).ok() } else { None };
        return Some(Arguments { digest, canonical: false, kept });
    }
    let arguments: Value = serde_json::from_str(raw).ok()?;
    let canonical = serde_json_canonicalizer::to_string(&arguments).ok()?;
    let digest = to_hex(&Sha256::digest(canonical.as_bytes()));
    let kept = if kept { RawValue::from_string(canonical).ok() } else { None };
    Some(Arguments { digest, canonical: true, kept })
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
