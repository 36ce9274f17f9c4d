//! A request's trace spans while tracing is on: the request's own (from its
//! arrival to its answer, a child of the `traceparent` it carried), the
//! plugin hooks' under it (made by the chain), and the upstream call's (from
//! its sending to the answer), whose context goes on in `_meta.traceparent`.

use bytes::Bytes;
use tracing::field::Empty;

use super::record::{Ended, Opened};
use super::Relay;
use crate::jsonrpc::{rewrite, Message, Reply};
use crate::plugin::instances::Transport;
use crate::telemetry::traces::{self, TARGET};

impl Relay {
    /// The span of `request`, a child of its `_meta.traceparent`.
    pub(super) fn request_span(&self, request: &Message) -> tracing::Span {
        let facts = self.instances.session();
        let method = request.head.method.as_deref().unwrap_or_default();
        let tool = request.head.tool.as_deref();
        let name = match tool {
            Some(tool) => format!("{method} {tool}"),
            None => method.to_owned(),
        };
        let transport = match facts.transport {
            Transport::Stdio => "pipe",
            Transport::StreamableHttp | Transport::HttpSse => "tcp",
        };
        let span = tracing::info_span!(
            target: TARGET,
            "mcp.request",
            otel.name = %name,
            otel.kind = "server",
            otel.status_code = Empty,
            mcp.method.name = %method,
            gen_ai.tool.name = tool,
            mcp.session.id = facts.id.as_deref(),
            mcp.protocol.version = facts.protocol_version.as_deref(),
            jsonrpc.request.id = request.head.raw_id.as_deref(),
            network.transport = transport,
            warden.upstream = %facts.upstream,
            warden.verdicts = Empty,
            error.type = Empty,
            rpc.response.status_code = Empty,
        );
        traces::adopt(&span, rewrite::traceparent(&request.raw).as_deref());
        span
    }
}

impl Opened {
    /// The request goes to its upstream now: the upstream call's span starts,
    /// and the bytes to send carry its context in `_meta.traceparent`.
    pub(super) fn sending(&mut self, relay: &Relay, request: &Message) -> Option<Bytes> {
        let parent = self.span.as_ref()?;
        let method = request.head.method.as_deref().unwrap_or_default();
        let upstream = &relay.instances.session().upstream;
        let span = tracing::info_span!(
            target: TARGET,
            parent: parent,
            "mcp.upstream",
            otel.name = %format!("{method} {upstream}"),
            otel.kind = "client",
            mcp.method.name = %method,
            gen_ai.tool.name = request.head.tool.as_deref(),
            warden.upstream = %upstream,
        );
        let stamped = traces::traceparent_of(&span).and_then(|tp| rewrite::with_traceparent(&request.raw, &tp));
        self.upstream_span = Some(span);
        stamped
    }

    /// Ends the request's span as `ended`.
    pub(super) fn end_span(&mut self, ended: &Ended<'_>) {
        self.upstream_span = None;
        let Some(span) = self.span.take() else { return };
        if !self.trace_verdicts.is_empty() {
            span.record("warden.verdicts", self.trace_verdicts.as_str());
        }
        let code = match ended {
            Ended::Answer(message) => match &message.head.reply {
                Some(Reply::Error { code, .. }) => Some(code.map_or_else(|| "unknown".to_owned(), |c| c.to_string())),
                _ => None,
            },
            Ended::Error(code) => Some(code.to_string()),
            Ended::Cancelled => Some("cancelled".to_owned()),
            Ended::Streamed => None,
        };
        if let Some(code) = code {
            span.record("error.type", code.as_str());
            span.record("rpc.response.status_code", code.as_str());
            span.record("otel.status_code", "ERROR");
        }
    }
}
