//! Who is calling, in every plugin's context: `caller.subject` and
//! `caller.claims` from `warden wrap --caller/--caller-claims` and from the
//! claims a `--client-tokens` line gives, in the audit records too.

use std::process::Command;

use serde_json::{json, Value};

use super::upstreams::{config, fixture};
use crate::common::http::Gateway;
use crate::common::{paths, text_of, PluginDir, Warden, PATIENCE};

fn recorder() -> PluginDir {
    PluginDir::new().add("10-record", "misbehave", "[config]\naction = \"record\"\nmethods = [\"tools/call\"]\n")
}

/// The callers the recorder saw on tool calls, and the callers the records name.
fn callers(audit: &[Value]) -> (Vec<Value>, Vec<Value>) {
    let mine: Vec<&Value> = audit.iter().filter(|e| e["plugin"] == "10-record").collect();
    (mine.iter().map(|e| e["event"]["caller"].clone()).collect(), mine.iter().map(|e| e["caller"].clone()).collect())
}

#[test]
fn wrap_gives_plugins_the_caller_and_its_claims_with_one_upstream_and_a_gateway() {
    let plugins = recorder();
    let flags = ["--caller", "ada", "--caller-claims", r#"{"groups": ["infra"], "email": "ada@example.com"}"#];
    let mut w = Warden::start_with(Some(plugins.path()), &flags, &[&paths().fixture.display().to_string()]);
    w.initialize();
    assert_eq!(text_of(&w.call_tool("echo", json!({"text": "x"}))), "x");
    let (seen, named) = callers(&w.finish());
    assert!(!seen.is_empty());
    for caller in &seen {
        assert_eq!(caller["subject"], "ada", "{caller}");
        assert_eq!(caller["claims"]["groups"], json!(["infra"]), "{caller}");
    }
    assert!(named.iter().all(|c| c == "ada"), "{named:?}");

    // The same through a gateway config: each upstream's lane sees the caller.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = config(dir.path(), Some(plugins.path()), &[("one", fixture())]);
    let mut flags = vec!["--config", file.to_str().unwrap_or_default()];
    flags.extend(["--caller", "ada", "--caller-claims", r#"{"groups": ["infra"]}"#]);
    let mut w = Warden::start_with(None, &flags, &[]);
    w.initialize();
    assert_eq!(text_of(&w.call_tool("one__echo", json!({"text": "y"}))), "y");
    let (seen, _) = callers(&w.finish());
    assert!(
        !seen.is_empty() && seen.iter().all(|c| c["subject"] == "ada" && c["claims"]["groups"] == json!(["infra"])),
        "{seen:?}"
    );
}

#[test]
fn claims_that_are_not_one_object_are_refused_before_anything_runs() {
    for claims in [r#"{"groups": [], "groups": ["infra"]}"#, "[1]", "{", "\"x\""] {
        let out = Command::new(paths().warden)
            .args(["wrap", "--caller-claims", claims, "--", "true"])
            .output()
            .expect("warden");
        assert!(!out.status.success(), "{claims}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--caller-claims"),
            "{claims}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "ada tok-ada-0123456789abcdef {\"a\": 1, \"a\": 2}\n").expect("write");
    let out = Command::new(paths().warden)
        .args(["serve", "--listen", "127.0.0.1:0", "--client-tokens"])
        .arg(&tokens)
        .args(["--", "true"])
        .output()
        .expect("warden");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains(":1:") && !said.contains("tok-ada"), "{said}");
}

#[test]
fn a_token_line_gives_its_caller_claims_over_http() {
    let plugins = recorder();
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens");
    let audit = dir.path().join("audit.jsonl");
    std::fs::write(&tokens, "ada tok-ada-0123456789abcdef {\"groups\": [\"infra\"]}\nbob tok-bob-0123456789abcdef\n")
        .expect("write");
    let flags = ["--client-tokens", tokens.to_str().unwrap_or_default(), "--audit", audit.to_str().unwrap_or_default()];
    let gw = Gateway::start(Some(plugins.path()), &flags);
    for (token, text) in [("tok-ada-0123456789abcdef", "from ada"), ("tok-bob-0123456789abcdef", "from bob")] {
        let bearer = format!("Bearer {token}");
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
        let answer = gw.post(None, &init.to_string(), &[("authorization", &bearer)]);
        let session = answer.session.clone().unwrap_or_else(|| panic!("{answer:?}"));
        let headers = [("authorization", bearer.as_str()), ("mcp-protocol-version", "2025-06-18")];
        gw.post(Some(&session), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, &headers);
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": text}}});
        assert_eq!(text_of(&gw.post(Some(&session), &call.to_string(), &headers).answer()), text);
    }
    // Records are written in batches: read until both callers' are there.
    let deadline = std::time::Instant::now() + PATIENCE;
    let read = || -> Vec<Value> {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    };
    let mut records = read();
    while callers(&records).0.len() < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        records = read();
    }
    let (seen, named) = callers(&records);
    assert!(seen.iter().any(|c| c["subject"] == "ada" && c["claims"]["groups"] == json!(["infra"])), "{seen:?}");
    assert!(seen.iter().any(|c| c["subject"] == "bob" && c["claims"] == json!({})), "{seen:?}");
    assert!(named.contains(&json!("ada")) && named.contains(&json!("bob")), "{named:?}");
    assert!(!std::fs::read_to_string(&audit).unwrap_or_default().contains("tok-"), "a token reached the audit trail");
}
