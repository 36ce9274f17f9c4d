//! The audit trail as a promise: under `sync = always` nothing answered is
//! lost to a `SIGKILL`; a trail that cannot be written is said loudly and,
//! when required, refuses calls; no secret ever enters a record.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::common::http::Gateway;
use crate::common::{examples, paths, Warden, PATIENCE};

/// The trail's records (torn lines left out).
fn records(audit: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(audit).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The ids of the `tools/call` requests the trail says were answered with a result.
fn answered_ids(audit: &Path) -> Vec<String> {
    records(audit)
        .iter()
        .filter(|r| r["source"] == "host" && r["event"]["type"] == "request" && r["event"]["method"] == "tools/call")
        .filter(|r| r["event"]["outcome"]["result"] == "success")
        .filter_map(|r| r["event"]["id"].as_str().map(str::to_owned))
        .collect()
}

fn keygen(dir: &Path) -> (String, String) {
    let out = Command::new(paths().warden).args(["audit", "keygen"]).arg(dir).output().expect("warden");
    assert!(out.status.success());
    (dir.join("audit.key").display().to_string(), dir.join("audit.pub").display().to_string())
}

#[test]
fn a_sigkill_under_sync_always_loses_nothing_that_was_answered() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path());
    let fixture = paths().fixture.display().to_string();
    let flags = ["--audit-sync", "always", "--audit-key", &key, "--audit-checkpoint-every", "7"];
    let mut w = Warden::start_with(None, &flags, &[&fixture]);
    w.initialize();
    for n in 1..=20 {
        let answer = w.call_tool("echo", json!({"text": format!("call {n}")}));
        assert_eq!(answer["result"]["content"][0]["text"], format!("call {n}"));
    }
    // Killed the moment the last answer arrived: no flush, no last checkpoint.
    let status = Command::new("kill").args(["-KILL", &w.pid().to_string()]).status().expect("kill");
    assert!(status.success());
    w.wait();
    let ids = answered_ids(&w.audit);
    // The handshake took id 1; the calls 2..=21.
    for id in 2..=21 {
        assert!(ids.contains(&id.to_string()), "call {id} was answered but is not in the trail: {ids:?}");
    }
    let out = Command::new(paths().warden)
        .args(["audit", "verify"])
        .arg(&w.audit)
        .args(["--public-key", &public])
        .output()
        .expect("verify");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "records after the last checkpoint are not a whole, signed trail: {said}");
    assert!(said.contains("after the last checkpoint are not signed yet"), "{said}");
    assert!(!said.contains("torn") && !said.contains("not a record"), "sync = always leaves no torn record: {said}");
}

/// `warden wrap` with `flags`, under a shell that caps the size of files it
/// writes (`ulimit -f`, in 512-byte blocks) and ignores the signal a write
/// past the cap raises: the audit file fills up as on a full disk.
fn capped(blocks: u32, flags: &[&str]) -> Warden {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let fixture = paths().fixture.display().to_string();
    let line = Warden::command_line(None, &audit, flags, &[&fixture]);
    let quoted: Vec<String> = line.iter().map(|a| format!("'{}'", a.replace('\'', "'\\''"))).collect();
    let script = format!("ulimit -f {blocks}; trap '' XFSZ; exec {}", quoted.join(" "));
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]);
    Warden::spawn(cmd, audit, dir)
}

#[test]
fn a_required_trail_that_cannot_be_written_refuses_calls() {
    let mut w = capped(24, &["--audit-sync", "always", "--audit-required"]);
    w.initialize();
    let mut served = Vec::new();
    let mut refused = None;
    for n in 0..400 {
        let answer = w.call_tool("echo", json!({"text": "x".repeat(200)}));
        match answer["error"]["code"].as_i64() {
            None => served.push(answer["id"].to_string()),
            Some(-31056) => {
                refused = Some(n);
                break;
            }
            Some(other) => panic!("unexpected error {other}: {answer}"),
        }
    }
    assert!(refused.is_some(), "the trail filled up and calls were refused");
    assert!(w.log_contains("audit: the trail cannot be written"), "said loudly: {}", w.stderr());
    w.call_tool("echo", json!({"text": "and again"}));
    let log = w.stderr();
    assert_eq!(log.matches("audit: the trail cannot be written").count(), 1, "said once, not per call:\n{log}");
    assert!(!log.contains("the trail is written again"), "it is not:\n{log}");
    // And so they stay while it cannot be written.
    let again = w.call_tool("echo", json!({"text": "still?"}));
    assert_eq!(again["error"]["code"], -31056, "{again}");
    assert!(again["error"]["message"].as_str().unwrap_or_default().contains("audit"), "{again}");
    // Every call that was answered with a result is on disk.
    let ids = answered_ids(&w.audit);
    for id in &served {
        assert!(ids.contains(id), "call {id} was served but is not in the trail");
    }
}

#[test]
fn a_trail_that_is_not_required_says_records_are_lost_and_serves_on() {
    let mut w = capped(24, &[]);
    w.initialize();
    for _ in 0..300 {
        let answer = w.call_tool("echo", json!({"text": "y".repeat(200)}));
        assert!(answer.get("result").is_some(), "{answer}");
    }
    assert!(w.log_contains("records are being LOST"), "{}", w.stderr());
}

#[test]
fn no_secret_enters_the_trail() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let tokens = dir.path().join("tokens");
    let client_token = "client-token-7f3a9c2e5b1d4f60";
    std::fs::write(&tokens, format!("ada {client_token}\n")).unwrap();
    let argument_secret = "sk-live-argument-secret-0123456789";
    let header_secret = "header-secret-value-5555";
    let audit_arg = audit.display().to_string();
    let tokens_arg = tokens.display().to_string();
    let g = Gateway::start(
        Some(examples().path()),
        &["--audit", &audit_arg, "--client-tokens", &tokens_arg, "--audit-sync", "always"],
    );
    let bearer = format!("Bearer {client_token}");
    let headers =
        [("authorization", bearer.as_str()), ("x-api-key", header_secret), ("mcp-protocol-version", "2025-06-18")];
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let opened = g.post(None, &init.to_string(), &headers);
    assert_eq!(opened.status, 200, "{opened:?}");
    let session = opened.session.clone().expect("session");
    let calls = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": argument_secret}}}),
        // The fixture answers with an API key and an AWS key in its result.
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get_config", "arguments": {}}}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "write_file", "arguments": {"path": "/etc/passwd", "content": argument_secret}}}),
    ];
    for call in &calls {
        assert_eq!(g.post(Some(&session), &call.to_string(), &headers).status, 200);
    }
    let deadline = std::time::Instant::now() + PATIENCE;
    while answered_ids(&audit).len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let trail = std::fs::read_to_string(&audit).unwrap();
    assert!(trail.contains("\"arguments_sha256\""), "{trail}");
    for secret in
        [client_token, argument_secret, header_secret, "sk-proj-abcdefghijklmnopqrstuvwxyz0123", "AKIAIOSFODNN7EXAMPLE"]
    {
        assert!(!trail.contains(secret), "{secret} is in the trail:\n{trail}");
    }
    assert!(!g.stderr().contains(client_token) && !g.stderr().contains(argument_secret), "nor in the log");
}

#[test]
fn a_denied_calls_arguments_are_not_kept_nor_numbers_merged() {
    let plugins = examples();
    let fixture = paths().fixture.display().to_string();
    let flags = ["--audit-include-arguments", "--audit-sync", "always"];
    let mut w = Warden::start_with(Some(plugins.path()), &flags, &[&fixture]);
    w.initialize();
    // tool-policy stops it before secret-redact could see it: its arguments stay out.
    let denied = w.call_tool("delete_everything", json!({"why": "sk-proj-DENIEDSECRETabcdefghijklmnop"}));
    assert!(denied.get("error").is_some());
    w.send_raw(r#"{"jsonrpc":"2.0","id":"n1","method":"tools/call","params":{"name":"echo","arguments":{"text":"a","n":9007199254740993}}}"#);
    w.answer_to(&json!("n1"));
    w.send_raw(r#"{"jsonrpc":"2.0","id":"n2","method":"tools/call","params":{"name":"echo","arguments":{"text":"a","n":9007199254740992}}}"#);
    w.answer_to(&json!("n2"));
    // Only a tool call's arguments are kept: no plugin is bound to redact another method's.
    w.request("prompts/get", json!({"name": "greet", "arguments": {"t": "ghp_PROMPTSECRETabcdefghijklmnopqrstu"}}));
    let trail = std::fs::read_to_string(&w.audit).unwrap();
    assert!(!trail.contains("DENIEDSECRET") && !trail.contains("PROMPTSECRET"), "{trail}");
    let calls: Vec<Value> = records(&w.audit)
        .into_iter()
        .filter(|r| r["source"] == "host" && r["event"]["type"] == "request" && r["event"]["method"] == "tools/call")
        .map(|r| r["event"].clone())
        .collect();
    assert!(calls[0]["arguments_sha256"].is_string() && calls[0].get("arguments").is_none(), "{:?}", calls[0]);
    // Two numbers one double cannot tell apart: digests of the text as sent, kept as sent.
    assert_eq!(calls[1]["arguments_form"], "as-sent");
    assert_ne!(calls[1]["arguments_sha256"], calls[2]["arguments_sha256"]);
    assert!(trail.contains("9007199254740993"), "{trail}");
}

#[test]
fn include_arguments_records_them_as_the_chain_passed_them() {
    let fixture = paths().fixture.display().to_string();
    let mut w = Warden::start_with(None, &["--audit-include-arguments", "--audit-sync", "always"], &[&fixture]);
    w.initialize();
    w.call_tool("add", json!({"b": 2, "a": 1}));
    let record =
        records(&w.audit).into_iter().find(|r| r["event"]["method"] == "tools/call").expect("a request record");
    assert_eq!(record["event"]["arguments"], json!({"a": 1, "b": 2}));
    // The digest is of the canonical form, whatever order they were written in.
    let digest = record["event"]["arguments_sha256"].as_str().unwrap().to_owned();
    w.call_tool("add", json!({"a": 1, "b": 2}));
    let digests: Vec<_> =
        records(&w.audit).iter().filter_map(|r| r["event"]["arguments_sha256"].as_str().map(str::to_owned)).collect();
    assert_eq!(digests, vec![digest.clone(), digest]);
}
