//! How the globs and the CEL rules combine into one decision about a request:
//! deny overrides approve, approve overrides allow, and a request is allowed
//! only when some allow (a glob or a rule) matches.

use serde_json::{json, Value};

use crate::cel_rules::{Action, Target};
use crate::ToolPolicy;

/// What is asked for.
pub struct Ask<'a> {
    pub target: Target,
    /// The tool or prompt name, or the resource URI.
    pub name: &'a str,
    /// The tool call's arguments; `None` when judging a list, where rules that
    /// read them are left to the call.
    pub arguments: Option<&'a Value>,
}

pub enum Decision {
    Allow,
    Deny { why: String, data: Value },
    Approve(String),
}

impl Ask<'_> {
    fn noun(&self) -> String {
        match self.target {
            Target::Tool => format!("tool \"{}\"", self.name),
            Target::Prompt => format!("prompt \"{}\"", self.name),
            Target::Resource => format!("resource \"{}\"", self.name),
        }
    }

    fn key(&self) -> &'static str {
        match self.target {
            Target::Tool => "tool",
            Target::Prompt => "prompt",
            Target::Resource => "resource",
        }
    }
}

impl ToolPolicy {
    /// The decision about `ask`, its CEL rules evaluated in `scope`.
    pub(crate) fn decide(&self, ask: &Ask, scope: &cel::Context) -> Decision {
        if ask.target == Target::Tool {
            if let Some(why) = self.glob_refusal(ask.name) {
                return Decision::Deny { why, data: json!({ "tool": ask.name }) };
            }
        }
        let mut approve = None;
        let mut allowed = ask.target == Target::Tool && self.allow.is_match(ask.name);
        let mut governed = ask.target == Target::Tool;
        for rule in self.cel.iter().filter(|r| r.concerns(ask.target)) {
            let unknown = ask.arguments.is_none() && rule.reads("arguments");
            match rule.action {
                Action::Allow => {
                    governed = true;
                    // In a list, an allow that depends on the arguments may match at the call.
                    allowed = allowed || unknown || rule.matches(scope);
                }
                Action::Deny if !unknown && rule.matches(scope) => {
                    let why = format!("{} is denied by rule \"{}\"", ask.noun(), rule.name);
                    return Decision::Deny { why, data: json!({ ask.key(): ask.name, "rule": rule.name }) };
                }
                Action::Approve if approve.is_none() && !unknown && rule.matches(scope) => {
                    governed = true;
                    approve = Some(format!("{} needs approval by rule \"{}\"", ask.noun(), rule.name));
                }
                Action::Approve => governed = true,
                Action::Deny => {}
            }
        }
        if let Some(prompt) = approve {
            return Decision::Approve(prompt);
        }
        if allowed || !governed {
            return Decision::Allow;
        }
        let why = match ask.target {
            Target::Tool => format!("{} is not in the allow list and no allow rule matches", ask.noun()),
            _ => format!("{}: no allow rule matches", ask.noun()),
        };
        Decision::Deny { why, data: json!({ ask.key(): ask.name }) }
    }

    /// Whether some rule about `target` depends on who is calling (so lists
    /// filtered by it are the caller's own).
    pub(crate) fn per_caller(&self, target: Target) -> bool {
        self.cel.iter().any(|r| r.concerns(target) && r.reads("caller"))
    }

    /// Whether any rule judges requests about `target` (tools always are).
    pub(crate) fn judges(&self, target: Target) -> bool {
        target == Target::Tool || self.cel.iter().any(|r| r.concerns(target))
    }
}
