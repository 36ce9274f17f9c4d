//! secret-redact: replaces credentials in what servers send back.
//!
//! Looks inside `tools/call`, `resources/read` and `prompts/get` results (and,
//! when `arguments = true`, inside outgoing `tools/call` arguments) for API
//! keys, cloud credentials, tokens and private keys, and replaces each with a
//! marker. Extra patterns come from the config. An audit event records how
//! many were replaced, never what.

use regex::{Regex, RegexSet};
use serde::Deserialize;
use serde_json::{json, Value};
use warden_sdk::{audit, export_plugin, mcp, Config, Context, Direction, Plugin, Verdict};

/// Built-in detectors: (name, pattern). Word boundaries are ASCII (`(?-u:\b)`): a
/// Unicode `\b` keeps the regex engine off its fast DFA, and secrets are ASCII anyway.
const BUILT_IN: &[(&str, &str)] = &[
    ("pem-private-key", r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----"),
    ("anthropic-key", r"(?-u:\b)sk-ant-[A-Za-z0-9_\-]{20,}"),
    ("openai-key", r"(?-u:\b)sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
    ("aws-access-key-id", r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?-u:\b)"),
    ("aws-secret-access-key", r"(?i)aws_secret_access_key\s*[=:]\s*[A-Za-z0-9/+=]{40}"),
    ("github-token", r"(?-u:\b)(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}(?-u:\b)"),
    ("github-pat", r"(?-u:\b)github_pat_[A-Za-z0-9_]{22,}(?-u:\b)"),
    ("slack-token", r"(?-u:\b)xox[abposr]-[A-Za-z0-9-]{10,}"),
    ("bearer-token", r"(?i)(?-u:\b)bearer\s+[A-Za-z0-9\-._~+/]{16,}=*"),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_marker")]
    marker: String,
    #[serde(default)]
    arguments: bool,
    #[serde(default)]
    patterns: Vec<String>,
}

fn default_marker() -> String {
    "[REDACTED]".into()
}

/// The detectors, compiled once at init.
pub struct SecretRedact {
    marker: String,
    arguments: bool,
    any: RegexSet,
    each: Vec<Regex>,
}

impl SecretRedact {
    fn new(raw: RawConfig) -> Result<SecretRedact, String> {
        let mut sources: Vec<String> = BUILT_IN.iter().map(|(_, p)| (*p).to_owned()).collect();
        for (i, p) in raw.patterns.iter().enumerate() {
            Regex::new(p).map_err(|e| format!("patterns[{i}]: {e}"))?;
            sources.push(p.clone());
        }
        let any = RegexSet::new(&sources).map_err(|e| e.to_string())?;
        let each = sources.iter().map(|s| Regex::new(s)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        Ok(SecretRedact { marker: raw.marker, arguments: raw.arguments, any, each })
    }

    /// Replaces every secret in `text`; returns how many were replaced.
    fn redact(&self, text: &mut String) -> usize {
        let hits = self.any.matches(text);
        if !hits.matched_any() {
            return 0;
        }
        let mut count = 0;
        for i in hits.iter() {
            let found = self.each[i].find_iter(text).count();
            if found > 0 {
                count += found;
                *text = self.each[i].replace_all(text, self.marker.as_str()).into_owned();
            }
        }
        count
    }

    /// Whether the raw message could hold a secret. JSON escapes (`\uXXXX`)
    /// could hide one from the raw text, so those messages are always parsed.
    fn might_hold_secret(&self, message: &str) -> bool {
        message.contains("\\u") || message.contains("\\n") || self.any.is_match(message)
    }

    fn redact_value(&self, value: &mut Value) -> usize {
        let mut count = 0;
        mcp::rewrite_strings(value, &mut |s| {
            let n = self.redact(s);
            count += n;
            n > 0
        });
        count
    }

    fn record(ctx: &Context, count: usize, place: &str) {
        audit::emit(&json!({
            "type": "redaction",
            "method": ctx.method,
            "tool": ctx.tool,
            "id": ctx.id,
            "in": place,
            "count": count,
        }));
    }
}

impl Plugin for SecretRedact {
    fn init(config: Config) -> Result<Self, String> {
        SecretRedact::new(config.parse()?)
    }

    // Results are scanned on the way back; arguments only when asked to.
    fn request_methods(&self) -> Vec<String> {
        if self.arguments {
            vec!["tools/call".into()]
        } else {
            Vec::new()
        }
    }

    fn response_methods(&self) -> Vec<String> {
        vec!["tools/call".into(), "resources/read".into(), "prompts/get".into()]
    }

    fn on_request(&mut self, ctx: &Context, message: &str) -> Verdict {
        if !self.arguments || ctx.direction != Direction::ClientToServer || ctx.method != "tools/call" {
            return Verdict::Forward;
        }
        if !self.might_hold_secret(message) {
            return Verdict::Forward;
        }
        let Some(mut call) = mcp::tool_call(message) else { return Verdict::Forward };
        let count = self.redact_value(&mut call.arguments);
        if count == 0 {
            return Verdict::Forward;
        }
        Self::record(ctx, count, "arguments");
        mcp::set_arguments(message, call.arguments)
    }

    fn on_response(&mut self, ctx: &Context, message: &str) -> Verdict {
        if ctx.direction != Direction::ServerToClient || !self.might_hold_secret(message) {
            return Verdict::Forward;
        }
        let mut count = 0;
        let verdict = mcp::rewrite_result(message, |result| {
            count = self.redact_value(result);
            count > 0
        });
        if count > 0 {
            Self::record(ctx, count, "result");
        }
        verdict
    }
}

export_plugin!(SecretRedact);

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> SecretRedact {
        SecretRedact::new(RawConfig { marker: "[X]".into(), arguments: false, patterns: vec!["corp-[0-9]{6}".into()] })
            .unwrap()
    }

    #[test]
    fn finds_the_usual_credentials() {
        let r = redactor();
        for secret in [
            "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
            "AKIAIOSFODNN7EXAMPLE",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "Bearer eyJhbGciOiJIUzI1NiJ9.abc.def",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
            "corp-123456",
        ] {
            let mut text = format!("key: {secret} end");
            assert_eq!(r.redact(&mut text), 1, "{secret}");
            assert_eq!(text, "key: [X] end");
        }
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        let mut text = "the skies are clear; ask-me-anything".to_owned();
        assert_eq!(redactor().redact(&mut text), 0);
    }
}
