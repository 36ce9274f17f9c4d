//! audit-log: one audit event per request, notification and response.
//!
//! Place it first in the chain (e.g. `00-audit-log.wasm`): requests reach it
//! before any other plugin decides, and answers, including the errors other
//! plugins rejected with, reach it last. Events carry the method, tool, id,
//! direction and outcome; arguments and results are left out unless
//! `include_params = true`, because they may hold secrets.

use serde::Deserialize;
use serde_json::{json, Value};
use warden_sdk::{audit, export_plugin, mcp, Config, Context, Direction, MessageKind, Plugin, Verdict};

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

    fn on_request(&mut self, ctx: &Context, message: &str) -> Verdict {
        let kind = if ctx.kind == MessageKind::Request { "request" } else { "notification" };
        let mut event = json!({
            "type": kind,
            "direction": direction(ctx),
            "method": ctx.method,
            "id": ctx.id,
            "tool": ctx.tool,
            "caller": ctx.caller.as_ref().map(|c| &c.subject),
        });
        if self.include_params {
            if let Some(params) = mcp::parse(message).and_then(|mut v| v.get_mut("params").map(Value::take)) {
                event["params"] = params;
            }
        }
        audit::emit(&event);
        Verdict::Forward
    }

    fn on_response(&mut self, ctx: &Context, message: &str) -> Verdict {
        let mut event = json!({
            "type": "response",
            "direction": direction(ctx),
            "method": ctx.method,
            "id": ctx.id,
            "tool": ctx.tool,
            "outcome": if ctx.kind == MessageKind::Error { "error" } else { "result" },
        });
        if ctx.kind == MessageKind::Error {
            if let Some(error) = mcp::parse(message).and_then(|mut v| v.get_mut("error").map(Value::take)) {
                event["error"] = json!({ "code": error["code"], "message": error["message"] });
            }
        } else if message.contains("\"isError\":true") {
            event["outcome"] = json!("tool-error");
        }
        audit::emit(&event);
        Verdict::Forward
    }
}

export_plugin!(AuditLog);
