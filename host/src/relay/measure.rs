//! What a request counts in the metrics when it ends. The relay the client
//! talks to (the front) times it end to end; the relay that sends it to its
//! upstream counts it under that upstream's name (and its tools' names as the
//! upstream listed them) and times the upstream. A single-upstream relay is
//! both; in a gateway the session's relay is the front and each lane faces
//! its upstream (the shared chain runs in the lanes). A request the front
//! answers without sending it on is counted by the front.

use super::record::{Ended, Opened};
use super::Relay;
use crate::jsonrpc::{method, Message, Reply};
use crate::plugin::instances::{Direction, Transport};
use crate::telemetry::metrics::{self, ClientLabels, Code, RequestLabels, ServerLabels, METRICS};

/// Which metrics a relay counts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Role {
    /// It is the relay the client talks to.
    pub(super) front: bool,
    /// It sends to the upstream itself.
    pub(super) upstream: bool,
}

impl Relay {
    /// Learns the tools an upstream lists from its answer to `tools/list`, as
    /// it sent it (before the chain hides any): they may be label values.
    pub(super) fn learn_tools(&self, answered: &str, from: Direction, answer: &Message) {
        if answered != method::TOOLS_LIST || from != Direction::ServerToClient || !metrics::enabled() {
            return;
        }
        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&answer.raw) else { return };
        if let Some(result) = value.get_mut("result") {
            metrics::learn_tools(&self.instances.session().upstream, result);
        }
    }

    /// Counts a request `method` (`tool`) that ended so.
    pub(super) fn measure(&self, opened: &Opened, method_name: &str, tool: Option<&str>, ended: &Ended<'_>) {
        // Requests the server asked the client are not what operators count here.
        if opened.direction() != Direction::ClientToServer {
            return;
        }
        let facts = self.instances.session();
        let upstream = &facts.upstream;
        let (outcome, error_type) = match ended {
            Ended::Answer(message) => match &message.head.reply {
                Some(Reply::Result { .. }) if opened.denied => ("denied", Code::None),
                Some(Reply::Result { tool_error: false }) => ("success", Code::None),
                Some(Reply::Result { tool_error: true }) => ("tool-error", Code::None),
                Some(Reply::Error { code, .. }) => {
                    (if opened.denied { "denied" } else { "error" }, Code::of(code.map(i64::from)))
                }
                None => ("error", Code::None),
            },
            Ended::Error(code) => ("error", Code::of(Some(*code))),
            Ended::Cancelled => ("cancelled", Code::None),
            Ended::Streamed => ("streamed", Code::None),
        };
        let mcp_method_name = metrics::method_label(method_name);
        let gen_ai_tool_name = match tool {
            Some(name) => METRICS.tool_label(upstream, name),
            None => metrics::no_label(),
        };
        if self.role.upstream || opened.sent.is_none() {
            let labels = RequestLabels {
                upstream: upstream.clone(),
                mcp_method_name,
                gen_ai_tool_name: gen_ai_tool_name.clone(),
                outcome,
                error_type,
            };
            METRICS.requests.get_or_create(&labels).inc();
        }
        if self.role.front {
            let labels = ServerLabels {
                mcp_method_name,
                network_transport: match facts.transport {
                    Transport::Stdio => "pipe",
                    Transport::StreamableHttp | Transport::HttpSse => "tcp",
                },
                mcp_protocol_version: metrics::version_label(facts.protocol_version.as_deref()),
                error_type,
            };
            METRICS.server_duration.get_or_create(&labels).observe(metrics::seconds(opened.started.elapsed()));
        }
        if self.role.upstream {
            let took = opened.peer_took.or_else(|| opened.sent.map(|sent| sent.elapsed()));
            if let Some(took) = took {
                let labels = ClientLabels { upstream: upstream.clone(), mcp_method_name, error_type };
                METRICS.client_duration.get_or_create(&labels).observe(metrics::seconds(took));
            }
        }
    }
}
