//! How the globs and the CEL rules combine into one decision about a request:
//! deny overrides approve, approve overrides allow, and a request is allowed
//! only when some allow (a glob or a rule) matches.
//!
//! Rules are evaluated in two parts. Those that do not read `arguments` see
//! only the caller, the upstream, the method and the name: their verdict is
//! kept per request kind and name while the caller stays the same (CEL is
//! pure), so a session pays for them once per tool. Those that read
//! `arguments` are evaluated at every call, unless a guard rules them out.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::cel_rules::{map_of, to_cel, Action, CelRule, Target};
use crate::ToolPolicy;

/// Most verdicts kept (then they all go).
const MAX_KEPT: usize = 4096;

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

/// What some of the rules said.
#[derive(Clone, Default)]
pub struct Partial {
    /// The first deny that matched: its rule's name.
    deny: Option<String>,
    /// The first approve that matched: its rule's name.
    approve: Option<String>,
    allowed: bool,
    /// Whether some allow or approve rule concerns the request (a request
    /// nothing governs is allowed; tools always are governed).
    governed: bool,
}

/// Verdicts of the rules that do not read `arguments`, by what was asked.
#[derive(Default)]
pub struct Kept(HashMap<(String, String, Target, String), Partial>);

impl Kept {
    pub fn clear(&mut self) {
        self.0.clear();
    }
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

/// Adds what `rules` say in `scope` to `partial`; stops at a deny.
fn evaluate<'r>(rules: impl Iterator<Item = &'r CelRule>, scope: &cel::Context, partial: &mut Partial) {
    for rule in rules {
        match rule.action {
            Action::Allow => {
                partial.governed = true;
                partial.allowed = partial.allowed || rule.matches(scope);
            }
            Action::Deny => {
                if rule.matches(scope) {
                    partial.deny = Some(rule.name.clone());
                    return;
                }
            }
            Action::Approve => {
                partial.governed = true;
                if partial.approve.is_none() && rule.matches(scope) {
                    partial.approve = Some(rule.name.clone());
                }
            }
        }
    }
}

impl ToolPolicy {
    /// The decision about `ask` for a caller, given as CEL sees it.
    pub(crate) fn decide(&mut self, ctx: &warden_sdk::Context, caller: cel::Value, ask: &Ask) -> Decision {
        if ask.target == Target::Tool {
            if let Some(why) = self.glob_refusal(ask.name) {
                return Decision::Deny { why, data: json!({ "tool": ask.name }) };
            }
        }
        let mut partial = self.fixed_part(ctx, &caller, ask);
        if partial.deny.is_none() {
            self.argument_part(ctx, caller, ask, &mut partial);
        }
        if let Some(rule) = partial.deny {
            let why = format!("{} is denied by rule \"{rule}\"", ask.noun());
            return Decision::Deny { why, data: json!({ ask.key(): ask.name, "rule": rule }) };
        }
        if let Some(rule) = partial.approve {
            return Decision::Approve(format!("{} needs approval by rule \"{rule}\"", ask.noun()));
        }
        let allowed = partial.allowed || (ask.target == Target::Tool && self.allow.is_match(ask.name));
        if allowed || !(partial.governed || ask.target == Target::Tool) {
            return Decision::Allow;
        }
        let why = match ask.target {
            Target::Tool => format!("{} is not in the allow list and no allow rule matches", ask.noun()),
            _ => format!("{}: no allow rule matches", ask.noun()),
        };
        Decision::Deny { why, data: json!({ ask.key(): ask.name }) }
    }

    /// What the rules that do not read `arguments` say: kept, or evaluated now.
    fn fixed_part(&mut self, ctx: &warden_sdk::Context, caller: &cel::Value, ask: &Ask) -> Partial {
        let key = (ctx.upstream.clone(), ctx.method.clone(), ask.target, ask.name.to_owned());
        if let Some(partial) = self.kept.0.get(&key) {
            return partial.clone();
        }
        let mut partial = Partial::default();
        let mut rules = self
            .cel
            .iter()
            .filter(|r| r.concerns(ask.target) && !r.reads("arguments"))
            .filter(|r| !r.ruled_out(ask.target, ask.name, None))
            .peekable();
        if rules.peek().is_some() {
            let scope = scope(&self.root, ctx, caller.clone(), ask, None);
            evaluate(rules, &scope, &mut partial);
        }
        // Allow and approve rules ruled out by a guard still govern the request.
        partial.governed |=
            self.cel.iter().any(|r| r.concerns(ask.target) && !r.reads("arguments") && r.action != Action::Deny);
        if self.kept.0.len() >= MAX_KEPT {
            self.kept.clear();
        }
        self.kept.0.insert(key, partial.clone());
        partial
    }

    /// What the rules that read `arguments` add. In a list (no arguments),
    /// an allow among them may match at the call: the item stays listed.
    fn argument_part(&self, ctx: &warden_sdk::Context, caller: cel::Value, ask: &Ask, partial: &mut Partial) {
        let concerned = || self.cel.iter().filter(|r| r.concerns(ask.target) && r.reads("arguments"));
        let Some(arguments) = ask.arguments else {
            for rule in concerned() {
                if rule.action != Action::Deny {
                    partial.governed = true;
                }
                // An allow that may match at the call, unless its guards on the name say it cannot.
                partial.allowed |= rule.action == Action::Allow && !rule.ruled_out(ask.target, ask.name, None);
            }
            return;
        };
        partial.governed |= concerned().any(|r| r.action != Action::Deny);
        let mut rules = concerned().filter(|r| !r.ruled_out(ask.target, ask.name, Some(arguments))).peekable();
        if rules.peek().is_some() {
            let scope = scope(&self.root, ctx, caller, ask, Some(arguments));
            evaluate(rules, &scope, partial);
        }
    }
}

/// The variables of a request, in a scope of their own above CEL's functions.
fn scope<'a>(
    root: &'a cel::Context<'static>,
    ctx: &warden_sdk::Context,
    caller: cel::Value,
    ask: &Ask,
    arguments: Option<&Value>,
) -> cel::Context<'a> {
    let mut scope = root.new_inner_scope();
    scope.add_variable_from_value("caller", caller);
    scope.add_variable_from_value("upstream", ctx.upstream.as_str());
    scope.add_variable_from_value("method", ctx.method.as_str());
    let (variable, key) = match ask.target {
        Target::Tool => ("tool", "name"),
        Target::Prompt => ("prompt", "name"),
        Target::Resource => ("resource", "uri"),
    };
    scope.add_variable_from_value(variable, map_of([(key, cel::Value::String(Arc::new(ask.name.to_owned())))]));
    if let Some(arguments) = arguments {
        scope.add_variable_from_value("arguments", to_cel(arguments));
    }
    scope
}

impl ToolPolicy {
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
