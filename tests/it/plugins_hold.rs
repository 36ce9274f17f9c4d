//! The example plugins hold against a hostile server and tricky arguments:
//! secret-redact finds secrets however they are written and wherever a server
//! puts them, tool-policy sees through path tricks and refuses to run without
//! a config. Real `warden wrap`, real plugins, the fixture or a scripted server.

use std::path::Path;

use serde_json::{json, Value};

use crate::common::{error_of, examples, paths, text_of, PluginDir, Warden};

const KEY: &str = "sk-proj-abcdefghijklmnopqrstuvwxyz012345";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// A server that answers each request whose string id names a file in `dir`
/// with that file's lines (notifications and requests of its own first, if
/// any, then the answer), written as they are: JSON escapes and all.
fn scripted(plugins: &PluginDir, dir: &Path) -> Warden {
    const SERVER: &str = r#"while IFS= read -r line; do
  id=$(printf '%s\n' "$line" | sed -n 's/^{"id":"\([a-z0-9-]*\)".*/\1/p')
  if [ -n "$id" ] && [ -f "$1/$id" ]; then cat "$1/$id"; fi
done"#;
    let mut w = Warden::start_with(Some(plugins.path()), &[], &["sh", "-c", SERVER, "sh", &dir.display().to_string()]);
    script(dir, "init", &[r#"{"jsonrpc":"2.0","id":"init","result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"scripted","version":"1"}}}"#.to_owned()]);
    let answer = ask(
        &mut w,
        "init",
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {"sampling": {}}, "clientInfo": {"name": "t", "version": "0"}}),
    );
    assert_eq!(answer["result"]["serverInfo"]["name"], "scripted", "{answer}");
    w
}

/// What the scripted server sends for request `id`.
fn script(dir: &Path, id: &str, lines: &[String]) {
    std::fs::write(dir.join(id), lines.iter().map(|l| format!("{l}\n")).collect::<String>()).expect("write script");
}

/// Sends a request with a string id (`{"id":…` first, as the server reads it) and waits for its answer.
fn ask(w: &mut Warden, id: &str, method: &str, params: Value) -> Value {
    w.send(&json!({"id": id, "jsonrpc": "2.0", "method": method, "params": params}));
    w.answer_to(&json!(id))
}

fn holds_no_secret(message: &Value) {
    let text = message.to_string();
    for secret in ["sk-proj-", "AKIA", AWS_SECRET, "eyJhbGciOiJIUzI1NiJ9"] {
        assert!(!text.contains(secret), "{secret} got through: {text}");
    }
}

#[test]
fn secrets_in_escaped_json_are_redacted() {
    // Through the fixture: what the client sends to echo comes back as the
    // server's JSON writes it, tabs and newlines as `\t` and `\n`.
    let plugins = examples();
    let mut w = Warden::start(&plugins);
    w.initialize();
    for text in [
        format!("aws_secret_access_key\t=\t{AWS_SECRET}"),
        "Authorization: Bearer\teyJhbGciOiJIUzI1NiJ9.abc.def".to_owned(),
        format!("line one\n{KEY}\nline three"),
    ] {
        let answer = w.call_tool("echo", json!({ "text": text }));
        holds_no_secret(&answer);
        assert!(text_of(&answer).contains("[REDACTED]"), "{answer}");
    }
    // A scripted server chooses its own escapes: `\u` ones for letters of the key names.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut w = scripted(&plugins, dir.path());
    let text = format!(
        r#"{{"jsonrpc":"2.0","id":"esc","result":{{"content":[{{"type":"text","text":"aws_secret_\u0061ccess_key=\"{AWS_SECRET}\" s\u006b-proj-abcdefghijklmnopqrstuvwxyz012345 \u0041KIAIOSFODNN7EXAMPLE"}}]}}}}"#
    );
    script(dir.path(), "esc", &[text]);
    let answer = ask(&mut w, "esc", "tools/call", json!({"name": "read", "arguments": {}}));
    holds_no_secret(&answer);
    assert_eq!(text_of(&answer).matches("[REDACTED]").count(), 3, "{answer}");
}

#[test]
fn a_secret_is_found_at_every_offset_of_the_vector_scan() {
    // The wasm prefilter tests 32 positions at a time, then 16, then the tail
    // one by one: a key at each offset across those seams, in a long text, is
    // still found.
    let plugins = examples();
    let mut w = Warden::start(&plugins);
    w.initialize();
    for pad in 0..100 {
        let text = format!("{} {KEY}{}", "x".repeat(pad), " ".repeat(140 - pad));
        let answer = w.call_tool("echo", json!({ "text": text }));
        holds_no_secret(&answer);
    }
    for tail in 0..40 {
        let text = format!("{} {KEY}", "y".repeat(200 + tail));
        holds_no_secret(&w.call_tool("echo", json!({ "text": text })));
    }
}

#[test]
fn secrets_in_errors_notifications_and_server_requests_are_redacted() {
    let plugins = examples();
    // The fixture's own error names the unknown tool it was asked for.
    let mut w = Warden::start(&plugins);
    w.initialize();
    let answer = w.call_tool(KEY, json!({}));
    let (_, message) = error_of(&answer);
    assert!(message.contains("[REDACTED]"), "{answer}");
    holds_no_secret(&answer);

    let dir = tempfile::tempdir().expect("temp dir");
    let mut w = scripted(&plugins, dir.path());
    script(dir.path(), "err", &[json!({"jsonrpc": "2.0", "id": "err", "error": {"code": -32000, "message": format!("bad key {KEY}"), "data": {"env": {"OPENAI_API_KEY": KEY}, "list": [[["AKIAIOSFODNN7EXAMPLE"]]]}}}).to_string()]);
    let answer = ask(&mut w, "err", "tools/call", json!({"name": "t", "arguments": {}}));
    assert_eq!(answer["error"]["code"], -32000, "{answer}");
    assert_eq!(answer["error"]["data"]["env"]["OPENAI_API_KEY"], "[REDACTED]", "{answer}");
    holds_no_secret(&answer);

    // Said during a call: a log line, progress, a sampling request; then the answer,
    // with the secret as an object key.
    script(
        dir.path(),
        "talk",
        &[
            json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": {"token": format!("Bearer eyJhbGciOiJIUzI1NiJ9.{KEY}")}}}).to_string(),
            json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "p", "progress": 1, "message": format!("using {KEY}")}}).to_string(),
            json!({"jsonrpc": "2.0", "id": "srv-1", "method": "sampling/createMessage", "params": {"messages": [{"role": "user", "content": {"type": "text", "text": format!("key is {KEY}")}}], "maxTokens": 5}}).to_string(),
            json!({"jsonrpc": "2.0", "id": "talk", "result": {"structuredContent": { KEY: "value" }, "content": []}}).to_string(),
        ],
    );
    let answer =
        ask(&mut w, "talk", "tools/call", json!({"name": "t", "arguments": {}, "_meta": {"progressToken": "p"}}));
    holds_no_secret(&answer);
    assert!(answer["result"]["structuredContent"].get("[REDACTED]#1").is_some(), "{answer}");
    for method in ["notifications/message", "notifications/progress", "sampling/createMessage"] {
        let said = w.wait_for(|m| m["method"] == method);
        holds_no_secret(&said);
        assert!(said.to_string().contains("[REDACTED]"), "{said}");
    }
    let audit = w.finish();
    let places: Vec<&str> =
        audit.iter().filter(|e| e["event"]["type"] == "redaction").filter_map(|e| e["event"]["in"].as_str()).collect();
    for place in ["error", "notification", "request", "result"] {
        assert!(places.contains(&place), "no redaction audited in {place}: {places:?}");
    }
    holds_no_secret(&json!(audit));
}

/// 130 levels: more than serde_json parses (128). Whether Warden refuses such
/// a message at the door or the plugin sees it, the secret must not reach the
/// client, and a clean one is passed as it came or refused, never changed.
#[test]
fn nesting_deeper_than_a_json_parser_goes_does_not_hide_a_secret() {
    let plugins = examples();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut w = scripted(&plugins, dir.path());
    let deep = |id: &str, leaf: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":"{id}","result":{{"content":[],"deep":{}"{leaf}"{}}}}}"#,
            "[".repeat(130),
            "]".repeat(130)
        )
    };
    for (id, leaf) in [("deep", KEY), ("deep-clean", "nothing to see")] {
        script(dir.path(), id, &[deep(id, leaf)]);
        // The client's JSON parser stops at 128 levels too: read the raw line.
        w.send(&json!({"id": id, "jsonrpc": "2.0", "method": "tools/call", "params": {"name": "t", "arguments": {}}}));
        let line = w.recv_line();
        assert!(line.contains(&format!(r#""id":"{id}""#)), "{line}");
        assert!(!line.contains("sk-proj-"), "the secret got through 130 levels down");
        let refused = serde_json::from_str::<Value>(&line).is_ok_and(|m| m.get("error").is_some());
        let redacted = line == deep(id, "[REDACTED]");
        let untouched = line == deep(id, leaf);
        assert!(refused || redacted || (untouched && leaf != KEY), "{}", &line[..line.len().min(300)]);
    }
}

#[test]
fn a_thirty_mib_result_is_redacted_under_the_default_limits() {
    let plugins = PluginDir::new().add_example("20-secret-redact", "secret-redact");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut w = scripted(&plugins, dir.path());
    let bulk = "log line with nothing secret in it, 42\\n".repeat((30 << 20) / 40);
    let half = &bulk[..bulk.len() / 2];
    script(
        dir.path(),
        "big-clean",
        &[format!(
            r#"{{"jsonrpc":"2.0","id":"big-clean","result":{{"content":[{{"type":"text","text":"{bulk}"}}]}}}}"#
        )],
    );
    script(
        dir.path(),
        "big",
        &[format!(
            r#"{{"jsonrpc":"2.0","id":"big","result":{{"content":[{{"type":"text","text":"{half} {KEY} {half}"}}]}}}}"#
        )],
    );
    let answer = ask(&mut w, "big-clean", "tools/call", json!({"name": "t", "arguments": {}}));
    assert_eq!(text_of(&answer).len(), bulk.len() - bulk.matches("\\n").count(), "passed whole");
    let answer = ask(&mut w, "big", "tools/call", json!({"name": "t", "arguments": {}}));
    let text = text_of(&answer);
    assert!(!text.contains("sk-proj-") && text.contains(" [REDACTED] "), "{}", &text[..200]);
}

#[test]
fn path_tricks_do_not_get_past_a_path_rule() {
    let plugins = examples();
    let mut w = Warden::start(&plugins);
    w.initialize();
    for path in
        ["//etc/passwd", "/tmp/../etc/passwd", "/./etc//passwd", "/etc/passwd/", "\\etc\\passwd", "/etc/%70asswd"]
    {
        let answer = w.call_tool("write_file", json!({"path": path, "content": "x"}));
        let (code, message) = error_of(&answer);
        assert_eq!(code, -32001, "{path}: {answer}");
        assert!(message.contains("no-system-writes"), "{path}: {message}");
    }
    let allowed = w.call_tool("write_file", json!({"path": "/tmp/notes/../notes.txt", "content": "hi"}));
    assert_eq!(text_of(&allowed), "wrote 2 bytes to /tmp/notes/../notes.txt");
}

#[test]
fn tool_policy_does_not_run_without_a_config() {
    // No .toml at all: Warden refuses to start, naming the reason.
    let plugins = PluginDir::new().add("10-tool-policy", "tool_policy", "");
    let mut w = Warden::start(&plugins);
    assert!(!w.wait().success());
    assert!(w.log_contains("no `allow` list"), "{}", w.stderr());

    // Its config deleted while Warden runs: the reload is refused and the policy stays.
    let plugins = PluginDir::new().add_example("10-tool-policy", "tool-policy");
    let fixture = paths().fixture.display().to_string();
    let mut w = Warden::start_with(Some(plugins.path()), &[], &[&fixture]);
    w.initialize();
    assert_eq!(error_of(&w.call_tool("delete_everything", json!({}))).0, -32001);
    std::fs::remove_file(plugins.path().join("10-tool-policy.toml")).expect("remove config");
    assert!(w.log_contains("reload refused") && w.log_contains("no `allow` list"), "{}", w.stderr());
    assert_eq!(error_of(&w.call_tool("delete_everything", json!({}))).0, -32001, "the policy in force stays");
    w.finish();
}
