//! Misbehaves on demand, for tests of the sandbox and the verdicts.
//!
//! Config: `action` (what to do), `tool` (only `tools/call` requests to this
//! tool trigger it; every other message is forwarded), `methods` (what to
//! register for; default `["tools/call"]`), and `requests` / `responses` to
//! register each hook apart, `from` (`"client"` or `"server"`: the one way
//! both hooks want) and `context_only` (hand the hooks no text). The `record`
//! action writes an audit event for every hook call instead, whatever the
//! tool: its method, direction, how many bytes of text it was handed and, for
//! answers, the outcome the host read. Each instance logs when it starts.

use serde::Deserialize;
use serde_json::json;
use warden_sdk::{
    audit, export_plugin, log, mcp, state, Config, Context, Direction, Interest, Outcome, Plugin, Verdict,
};

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum Action {
    Trap,
    Loop,
    Hog,
    Approve,
    Respond,
    BadModify,
    Shout,
    Print,
    Limit,
    Probe,
    Nothing,
    Record,
    Swell,
    /// Denies every request it registered for, whatever the tool.
    Deny,
    /// Denies the answers to calls of `tool`.
    DenyAnswers,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Misbehave {
    action: Action,
    #[serde(default)]
    tool: String,
    #[serde(default = "calls")]
    methods: Vec<String>,
    requests: Option<Vec<String>>,
    responses: Option<Vec<String>>,
    from: Option<String>,
    #[serde(default)]
    context_only: bool,
    #[serde(skip)]
    hoard: Vec<Vec<u8>>,
}

fn calls() -> Vec<String> {
    vec!["tools/call".into()]
}

impl Misbehave {
    fn narrow(&self, interest: Interest) -> Interest {
        let interest = match self.from.as_deref() {
            Some("client") => interest.from_client(),
            Some("server") => interest.from_server(),
            _ => interest,
        };
        if self.context_only {
            interest.context_only()
        } else {
            interest
        }
    }
}

fn record(hook: &str, ctx: &Context, message: &str) {
    let direction = match ctx.direction {
        Direction::ClientToServer => "client-to-server",
        Direction::ServerToClient => "server-to-client",
    };
    let outcome = match &ctx.outcome {
        None => json!(null),
        Some(Outcome::Success) => json!("success"),
        Some(Outcome::ToolError) => json!("tool-error"),
        Some(Outcome::Error(e)) => json!({ "code": e.code, "message": e.message }),
    };
    let caller = ctx
        .caller
        .as_ref()
        .map(|c| json!({"subject": c.subject, "claims": serde_json::from_str::<serde_json::Value>(&c.claims).ok()}));
    audit::emit(&json!({
        "hook": hook,
        "method": ctx.method,
        "direction": direction,
        "bytes": message.len(),
        "outcome": outcome,
        "caller": caller,
    }));
}

impl Plugin for Misbehave {
    fn init(config: Config) -> Result<Self, String> {
        log::info("misbehave: instance started");
        config.parse()
    }

    fn methods(&self) -> Vec<String> {
        self.methods.clone()
    }

    fn request_methods(&self) -> Vec<String> {
        self.requests.clone().unwrap_or_else(|| self.methods())
    }

    fn response_methods(&self) -> Vec<String> {
        self.responses.clone().unwrap_or_else(|| self.methods())
    }

    fn requests(&self) -> Interest {
        self.narrow(Interest::new(self.request_methods()))
    }

    fn responses(&self) -> Interest {
        self.narrow(Interest::new(self.response_methods()))
    }

    fn on_response(&mut self, ctx: &Context, message: &str) -> Verdict {
        if self.action == Action::Record {
            record("response", ctx, message);
        }
        if self.action == Action::DenyAnswers && ctx.tool.as_deref() == Some(self.tool.as_str()) {
            return mcp::deny("misbehave: answer withheld");
        }
        Verdict::Forward
    }

    fn on_request(&mut self, ctx: &Context, message: &str) -> Verdict {
        if self.action == Action::Record {
            record("request", ctx, message);
            return Verdict::Forward;
        }
        if self.action == Action::Deny {
            return mcp::deny(format!("misbehave: {} refused", ctx.method));
        }
        if ctx.tool.as_deref() != Some(self.tool.as_str()) {
            return Verdict::Forward;
        }
        match self.action {
            Action::Trap => panic!("misbehave: trapping as asked"),
            Action::Loop => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Action::Hog => loop {
                self.hoard.push(vec![1u8; 1 << 20]);
            },
            Action::Approve => Verdict::RequireApproval(format!("call {} with these arguments?", self.tool)),
            Action::Respond => mcp::respond(&json!({"content": [{"type": "text", "text": "answered by plugin"}]})),
            Action::BadModify => Verdict::Modify("{not json".into()),
            Action::Shout => match mcp::tool_call(message) {
                Some(call) => {
                    let text = call.arguments["text"].as_str().unwrap_or_default().to_uppercase();
                    mcp::set_arguments(message, json!({ "text": text }))
                }
                None => Verdict::Forward,
            },
            Action::Print => {
                println!("misbehave: printing to stdout");
                eprintln!("misbehave: printing to stderr");
                log::info("misbehave: logging through the host");
                Verdict::Forward
            }
            // A rate limit through the host's key-value state: two calls a minute.
            Action::Limit => {
                let key = format!("calls:{}", self.tool);
                let calls = state::increment(&key, 1, Some(60_000));
                if calls > 2 {
                    return mcp::deny(format!("rate limit: call {calls} of 2 allowed per minute"));
                }
                state::set("last-tool", &self.tool, None);
                Verdict::Forward
            }
            // Reports which ambient capabilities it can reach; the sandbox should grant none.
            Action::Probe => mcp::respond(&json!({"content": [{"type": "text", "text": json!({
                "env": std::env::vars().count(),
                "args": std::env::args().count(),
                "read_root": std::fs::read_dir("/").is_ok(),
                "read_etc": std::fs::read("/etc/hostname").is_ok(),
                "write_tmp": std::fs::write("/tmp/warden-probe", b"x").is_ok(),
                "tcp": std::net::TcpStream::connect("127.0.0.1:9").map(|_| true).unwrap_or_else(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
                "clock": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).is_ok(),
            }).to_string()}]})),
            // Keeps 13 MiB more each call, like a runtime that leaks, and carries on.
            Action::Swell => {
                self.hoard.push(vec![1u8; 13 << 20]);
                Verdict::Forward
            }
            Action::Nothing | Action::Record | Action::Deny | Action::DenyAnswers => Verdict::Forward,
        }
    }
}

export_plugin!(Misbehave);
