//! tool-policy: which tools a client may see and call, and with which arguments.
//!
//! - `allow` / `deny`: tool-name globs. A tool is usable when it matches an
//!   `allow` glob and no `deny` glob. Unusable tools disappear from
//!   `tools/list` results, and calls to them are rejected.
//! - `rules`: argument rules. A rule names tools (glob), a JSON pointer into
//!   the arguments and a `glob` or `regex`; a call whose value at the pointer
//!   matches is rejected with an error that names the rule.

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use regex::Regex;
use serde::Deserialize;
use serde_json::{json, Value};
use warden_sdk::{export_plugin, mcp, Config, Context, Direction, Plugin, Verdict};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "everything")]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default = "any_tool")]
    tool: String,
    pointer: String,
    glob: Option<String>,
    regex: Option<String>,
}

fn everything() -> Vec<String> {
    vec!["*".into()]
}

fn any_tool() -> String {
    "*".into()
}

enum Pattern {
    Glob(GlobMatcher),
    Regex(Regex),
}

struct Rule {
    name: String,
    tool: GlobMatcher,
    pointer: String,
    pattern: Pattern,
}

/// The policy, compiled once at init.
pub struct ToolPolicy {
    allow: GlobSet,
    deny: GlobSet,
    deny_globs: Vec<String>,
    rules: Vec<Rule>,
}

fn glob_set(globs: &[String], key: &str) -> Result<GlobSet, String> {
    let mut set = GlobSetBuilder::new();
    for g in globs {
        set.add(Glob::new(g).map_err(|e| format!("{key}: {g:?}: {e}"))?);
    }
    set.build().map_err(|e| format!("{key}: {e}"))
}

impl ToolPolicy {
    fn new(raw: RawConfig) -> Result<ToolPolicy, String> {
        let mut rules = Vec::new();
        for r in raw.rules {
            let what = format!("rule {:?}", r.name);
            if !r.pointer.is_empty() && !r.pointer.starts_with('/') {
                return Err(format!("{what}: pointer must start with '/'"));
            }
            let pattern = match (r.glob, r.regex) {
                (Some(g), None) => Pattern::Glob(
                    GlobBuilder::new(&g)
                        .literal_separator(true)
                        .build()
                        .map_err(|e| format!("{what}: glob {g:?}: {e}"))?
                        .compile_matcher(),
                ),
                (None, Some(r)) => Pattern::Regex(Regex::new(&r).map_err(|e| format!("{what}: regex: {e}"))?),
                _ => return Err(format!("{what}: give exactly one of `glob` or `regex`")),
            };
            let tool = Glob::new(&r.tool).map_err(|e| format!("{what}: tool {:?}: {e}", r.tool))?.compile_matcher();
            rules.push(Rule { name: r.name, tool, pointer: r.pointer, pattern });
        }
        Ok(ToolPolicy {
            allow: glob_set(&raw.allow, "allow")?,
            deny: glob_set(&raw.deny, "deny")?,
            deny_globs: raw.deny,
            rules,
        })
    }

    /// Why `tool` may not be used at all, if it may not.
    fn refusal(&self, tool: &str) -> Option<String> {
        if let Some(&i) = self.deny.matches(tool).first() {
            return Some(format!("tool \"{tool}\" is denied by policy (deny \"{}\")", self.deny_globs[i]));
        }
        if !self.allow.is_match(tool) {
            return Some(format!("tool \"{tool}\" is not in the allow list"));
        }
        None
    }

    /// The first argument rule a call breaks.
    fn broken_rule(&self, tool: &str, arguments: &Value) -> Option<(&Rule, String)> {
        self.rules.iter().filter(|r| r.tool.is_match(tool)).find_map(|rule| {
            let value = match arguments.pointer(&rule.pointer)? {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let hit = match &rule.pattern {
                Pattern::Glob(g) => g.is_match(&value),
                Pattern::Regex(r) => r.is_match(&value),
            };
            hit.then_some((rule, value))
        })
    }
}

impl Plugin for ToolPolicy {
    fn init(config: Config) -> Result<Self, String> {
        ToolPolicy::new(config.parse()?)
    }

    // Calls are checked on the way in; tool lists are filtered on the way back.
    fn request_methods(&self) -> Vec<String> {
        vec!["tools/call".into()]
    }

    fn response_methods(&self) -> Vec<String> {
        vec!["tools/list".into()]
    }

    fn on_request(&mut self, ctx: &Context, message: &str) -> Verdict {
        if ctx.direction != Direction::ClientToServer || ctx.method != "tools/call" {
            return Verdict::Forward;
        }
        // Warden already read the tool name; the arguments are parsed only when a rule needs them.
        let Some(name) = ctx.tool.as_deref() else {
            return mcp::deny("tools/call without a tool name");
        };
        if let Some(why) = self.refusal(name) {
            return mcp::deny_with(why, &json!({ "tool": name }));
        }
        if !self.rules.iter().any(|r| r.tool.is_match(name)) {
            return Verdict::Forward;
        }
        let Some(call) = mcp::tool_call(message) else {
            return mcp::deny("tools/call without a tool name");
        };
        if let Some((rule, _)) = self.broken_rule(&call.name, &call.arguments) {
            let why = format!(
                "call to \"{}\" denied by rule \"{}\" (argument {} matches a forbidden pattern)",
                call.name, rule.name, rule.pointer
            );
            return mcp::deny_with(why, &json!({ "tool": call.name, "rule": rule.name }));
        }
        Verdict::Forward
    }

    fn on_response(&mut self, ctx: &Context, message: &str) -> Verdict {
        if ctx.direction != Direction::ServerToClient || ctx.method != "tools/list" {
            return Verdict::Forward;
        }
        mcp::filter_tools(message, |name| self.refusal(name).is_none())
    }
}

export_plugin!(ToolPolicy);

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(config: Value) -> ToolPolicy {
        ToolPolicy::new(serde_json::from_value(config).unwrap()).unwrap()
    }

    #[test]
    fn deny_wins_over_allow() {
        let p = policy(json!({"allow": ["*"], "deny": ["delete_*"]}));
        assert!(p.refusal("delete_repo").unwrap().contains("delete_*"));
        assert!(p.refusal("read_file").is_none());
        let p = policy(json!({"allow": ["read_*"]}));
        assert!(p.refusal("write_file").is_some());
    }

    #[test]
    fn argument_rules_use_pointers_and_path_globs() {
        let p =
            policy(json!({"rules": [{"name": "no-etc", "tool": "write_file", "pointer": "/path", "glob": "/etc/**"}]}));
        assert!(p.broken_rule("write_file", &json!({"path": "/etc/passwd"})).is_some());
        assert!(p.broken_rule("write_file", &json!({"path": "/tmp/etc/x"})).is_none());
        assert!(p.broken_rule("read_file", &json!({"path": "/etc/passwd"})).is_none());
    }

    #[test]
    fn bad_config_is_refused() {
        let raw: RawConfig = serde_json::from_value(json!({"rules": [{"name": "x", "pointer": "/a"}]})).unwrap();
        assert!(ToolPolicy::new(raw).is_err());
        assert!(serde_json::from_value::<RawConfig>(json!({"alow": []})).is_err());
    }
}
