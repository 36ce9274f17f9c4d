//! audit-log: one audit event per request, notification and response.
//!
//! Place it first in the chain (e.g. `00-audit-log.wasm`): requests reach it
//! before any other plugin decides, and answers, including the errors other
//! plugins rejected with, reach it last. Events carry the method, tool, id,
//! direction and outcome; arguments and results are left out unless
//! `include_params = true`, because they may hold secrets.
//!
//! It decides on the context alone (the outcome of an answer is in it), so it
//! registers `context-only`: Warden never copies a message's text into it,
//! except the requests' when `include_params` is on.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use warden_sdk::{
    audit, export_plugin, mcp, Config, Context, Direction, Interest, MessageKind, Outcome, Plugin, Verdict,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "everything")]
    methods: Vec<String>,
    #[serde(default)]
    include_params: bool,
}

fn everything() -> Vec<String> {
    vec!["*".into()]
}

/// The audit logger.
pub struct AuditLog {
    methods: Vec<String>,
    include_params: bool,
}

fn direction(ctx: &Context) -> &'static str {
    match ctx.direction {
        Direction::ClientToServer => "client-to-server",
        Direction::ServerToClient => "server-to-client",
    }
}

impl Plugin for AuditLog {
    fn init(config: Config) -> Result<Self, String> {
        let raw: RawConfig = config.parse()?;
        Ok(AuditLog { methods: raw.methods, include_params: raw.include_params })
    }

    fn methods(&self) -> Vec<String> {
        self.methods.clone()
    }

    fn requests(&self) -> Interest {
        match self.include_params {
            true => Interest::new(self.methods()),
            false => Interest::new(self.methods()).context_only(),
        }
    }

    fn responses(&self) -> Interest {
        Interest::new(self.methods()).context_only()
    }

    fn on_request(&mut self, ctx: &Context, message: &str) -> Verdict {
        let kind = if ctx.kind == MessageKind::Request { "request" } else { "notification" };
        let params = if self.include_params {
            mcp::parse(message).and_then(|mut v| v.get_mut("params").map(Value::take))
        } else {
            None
        };
        audit::emit(&Event {
            kind,
            direction: direction(ctx),
            method: &ctx.method,
            id: ctx.id.as_deref(),
            tool: ctx.tool.as_deref(),
            caller: ctx.caller.as_ref().map(|c| c.subject.as_str()),
            outcome: None,
            error: None,
            params,
        });
        Verdict::Forward
    }

    fn on_response(&mut self, ctx: &Context, _message: &str) -> Verdict {
        let (outcome, error) = match &ctx.outcome {
            Some(Outcome::Error(e)) => ("error", Some(json!({ "code": e.code, "message": e.message }))),
            Some(Outcome::ToolError) => ("tool-error", None),
            Some(Outcome::Success) | None => ("result", None),
        };
        audit::emit(&Event {
            kind: "response",
            direction: direction(ctx),
            method: &ctx.method,
            id: ctx.id.as_deref(),
            tool: ctx.tool.as_deref(),
            caller: None,
            outcome: Some(outcome),
            error,
            params: None,
        });
        Verdict::Forward
    }
}

/// One audit event; absent fields are left out.
#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    direction: &'a str,
    method: &'a str,
    id: Option<&'a str>,
    tool: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    caller: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<Value>,
}

export_plugin!(AuditLog);
