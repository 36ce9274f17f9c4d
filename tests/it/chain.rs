//! The example plugins and the verdicts, end to end.

use serde_json::json;

use crate::common::{error_of, examples, text_of, PluginDir, Warden};

#[test]
fn tools_list_hides_denied_tools() {
    let plugins = examples();
    let mut w = Warden::start(&plugins);
    let init = w.initialize();
    assert_eq!(init["result"]["serverInfo"]["name"], "warden-fixture");
    let list = w.request("tools/list", json!({}));
    let names: Vec<&str> =
        list["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"echo") && names.contains(&"write_file"), "{names:?}");
    assert!(!names.contains(&"delete_everything"), "denied tool is hidden: {names:?}");
}

#[test]
fn allowed_denied_and_redacted_calls() {
    let plugins = examples();
    let mut w = Warden::start(&plugins);
    w.initialize();

    let allowed = w.call_tool("write_file", json!({"path": "/tmp/notes.txt", "content": "hi"}));
    assert_eq!(text_of(&allowed), "wrote 2 bytes to /tmp/notes.txt");

    let by_name = w.call_tool("delete_everything", json!({}));
    let (code, message) = error_of(&by_name);
    assert_eq!(code, -32001);
    assert!(message.contains("delete_*"), "names the rule: {message}");

    let by_argument = w.call_tool("write_file", json!({"path": "/etc/passwd", "content": "x"}));
    let (code, message) = error_of(&by_argument);
    assert_eq!(code, -32001);
    assert!(message.contains("no-system-writes"), "names the rule: {message}");
    assert_eq!(by_argument["error"]["data"]["rule"], "no-system-writes");

    let redacted = w.call_tool("get_config", json!({}));
    let text = text_of(&redacted);
    assert!(!text.contains("sk-proj-") && !text.contains("AKIA"), "{text}");
    assert_eq!(text.matches("[REDACTED]").count(), 2, "{text}");

    let resource = w.request("resources/read", json!({"uri": "mem://config"}));
    let text = resource["result"]["contents"][0]["text"].as_str().unwrap();
    assert!(text.contains("[REDACTED]") && !text.contains("sk-proj-"), "{text}");
    let prompt = w.request("prompts/get", json!({"name": "p"}));
    let text = prompt["result"]["messages"][0]["content"]["text"].as_str().unwrap();
    assert!(text.contains("[REDACTED]") && !text.contains("AKIA"), "{text}");

    let audit = w.finish();
    let decisions: Vec<_> = audit.iter().filter(|e| e["event"]["type"] == "decision").collect();
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    assert!(decisions.iter().all(|d| d["event"]["plugin"] == "10-tool-policy" && d["event"]["verdict"] == "reject"));
    // The audit plugin in front saw the rejections come back.
    assert!(audit.iter().any(|e| e["plugin"] == "00-audit-log"
        && e["event"]["outcome"] == "error"
        && e["event"]["error"]["code"] == -32001));
    assert!(audit
        .iter()
        .any(|e| e["plugin"] == "20-secret-redact" && e["event"]["type"] == "redaction" && e["event"]["count"] == 2));
    let trail = serde_json::to_string(&audit).unwrap();
    assert!(!trail.contains("sk-proj-") && !trail.contains("AKIA"), "no secret in the audit trail");
}

#[test]
fn modify_feeds_the_next_plugin_and_respond_stops_the_chain() {
    let plugins = PluginDir::new().add("10-shout", "misbehave", "[config]\naction = \"shout\"\ntool = \"echo\"\n").add(
        "20-answer",
        "misbehave",
        "[config]\naction = \"respond\"\ntool = \"add\"\n",
    );
    let mut w = Warden::start(&plugins);
    w.initialize();
    assert_eq!(text_of(&w.call_tool("echo", json!({"text": "quiet"}))), "QUIET");
    assert_eq!(text_of(&w.call_tool("add", json!({"a": 1, "b": 2}))), "answered by plugin");
    let audit = w.finish();
    assert!(audit.iter().any(|e| e["event"]["verdict"] == "respond" && e["event"]["plugin"] == "20-answer"));
}

#[test]
fn approval_verdicts_get_a_clear_error() {
    let plugins =
        PluginDir::new().add("10-approve", "misbehave", "[config]\naction = \"approve\"\ntool = \"write_file\"\n");
    let mut w = Warden::start(&plugins);
    w.initialize();
    let answer = w.call_tool("write_file", json!({"path": "/tmp/x", "content": ""}));
    let (code, message) = error_of(&answer);
    assert_eq!(code, -31051);
    assert!(message.contains("requires human approval") && message.contains("not available"), "{message}");
    assert!(message.contains("10-approve"), "{message}");
    assert_eq!(text_of(&w.call_tool("echo", json!({"text": "ok"}))), "ok");
}

#[test]
fn plugins_keep_state_in_the_host() {
    let plugins = PluginDir::new().add("10-limit", "misbehave", "[config]\naction = \"limit\"\ntool = \"echo\"\n");
    let mut w = Warden::start(&plugins);
    w.initialize();
    for _ in 0..2 {
        assert_eq!(text_of(&w.call_tool("echo", json!({"text": "ok"}))), "ok");
    }
    let answer = w.call_tool("echo", json!({"text": "one too many"}));
    let (code, message) = error_of(&answer);
    assert_eq!(code, -32001);
    assert!(message.contains("call 3 of 2"), "{message}");
}

#[test]
fn each_hook_sees_only_the_methods_registered_for_it() {
    let plugins = PluginDir::new().add(
        "10-record",
        "misbehave",
        "[config]\naction = \"record\"\nrequests = [\"tools/call\"]\nresponses = [\"tools/list\"]\n",
    );
    let mut w = Warden::start(&plugins);
    w.initialize();
    w.request("tools/list", json!({}));
    w.call_tool("echo", json!({"text": "hi"}));
    let audit = w.finish();
    let seen: Vec<(String, String)> = audit
        .iter()
        .filter(|e| e["plugin"] == "10-record")
        .map(|e| (e["event"]["hook"].as_str().unwrap().to_owned(), e["event"]["method"].as_str().unwrap().to_owned()))
        .collect();
    let expected = [("response", "tools/list"), ("request", "tools/call")];
    assert_eq!(seen, expected.map(|(h, m)| (h.to_owned(), m.to_owned())));
}

/// WIT 0.3.0: a hook registered for one way sees only that way, one that
/// reads only the context is handed no text, and an answer's outcome is in the
/// context (what audit-log now lives on).
#[test]
fn hooks_see_only_their_ways_and_context_only_hooks_get_no_text() {
    let plugins = PluginDir::new()
        .add(
            "10-down",
            "misbehave",
            "[config]\naction = \"record\"\nmethods = [\"*\"]\nfrom = \"server\"\ncontext_only = true\n",
        )
        .add("20-up", "misbehave", "[config]\naction = \"record\"\nmethods = [\"*\"]\nfrom = \"client\"\n");
    let mut w = Warden::start(&plugins);
    w.initialize();
    w.call_tool("echo", json!({"text": "hi"}));
    w.call_tool("no_such_tool", json!({}));
    let audit = w.finish();
    let of = |plugin: &str| -> Vec<serde_json::Value> {
        audit.iter().filter(|e| e["plugin"] == plugin).map(|e| e["event"].clone()).collect()
    };
    let down = of("10-down");
    assert!(!down.is_empty());
    for event in &down {
        assert_eq!(event["hook"], "response", "only answers travel from the server here: {event}");
        assert_eq!(event["direction"], "server-to-client", "{event}");
        assert_eq!(event["bytes"], 0, "a context-only hook is handed no text: {event}");
    }
    let outcomes: Vec<&serde_json::Value> = down.iter().map(|e| &e["outcome"]).collect();
    assert_eq!(outcomes.first().copied(), Some(&json!("success")), "initialize's answer: {down:?}");
    assert!(outcomes.contains(&&json!({"code": -32602, "message": "unknown tool: no_such_tool"})), "{down:?}");
    let up = of("20-up");
    assert!(up.iter().any(|e| e["method"] == "tools/call"), "{up:?}");
    for event in &up {
        assert_eq!(event["direction"], "client-to-server", "{event}");
        assert_ne!(event["hook"], "response", "answers from the server are not the client's way: {event}");
        assert!(event["bytes"].as_u64().unwrap_or(0) > 0, "a whole-body hook reads the text: {event}");
    }
}

/// A 2025-03-26 client's batch: each member passes the chain on its own (a
/// denied call stays denied, a result is still redacted), the answers come
/// back as one array, and an invalid member is answered without spoiling the rest.
#[test]
fn a_batch_passes_the_chain_member_by_member_and_is_answered_whole() {
    let plugins = examples();
    let mut w = Warden::start(&plugins);
    let init = w.request(
        "initialize",
        json!({"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "batcher", "version": "0"}}),
    );
    assert_eq!(init["result"]["protocolVersion"], "2025-03-26");
    w.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));

    let call = |id: u64, tool: &str, arguments: serde_json::Value| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}});
    w.send(&json!([
        call(101, "echo", json!({"text": "first"})),
        call(102, "delete_everything", json!({})),
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "t", "progress": 1}},
        {"jsonrpc": "2.0", "id": 103, "bogus": true},
        call(104, "get_config", json!({})),
    ]));
    let answers = w.recv();
    let answers = answers.as_array().unwrap_or_else(|| panic!("one array for the batch: {answers}"));
    assert_eq!(answers.len(), 4, "{answers:?}");
    let by_id = |id: u64| answers.iter().find(|a| a["id"] == id).unwrap_or_else(|| panic!("no answer to {id}"));
    assert_eq!(text_of(by_id(101)), "first");
    assert_eq!(error_of(by_id(102)).0, -32001, "denied inside a batch too");
    assert_eq!(error_of(by_id(103)).0, -32600);
    let redacted = text_of(by_id(104));
    assert!(redacted.contains("[REDACTED]") && !redacted.contains("sk-proj-"), "{redacted}");

    // Single messages still work after it, and an empty batch is refused.
    assert_eq!(text_of(&w.call_tool("echo", json!({"text": "single"}))), "single");
    w.send_raw("[]");
    assert_eq!(error_of(&w.recv()).0, -32600);

    let audit = w.finish();
    assert!(
        audit.iter().any(|e| e["event"]["type"] == "decision" && e["event"]["id"] == "102"),
        "the denial inside the batch is audited: {audit:?}"
    );
}

/// Batches were removed in 2025-06-18: a session at a later version gets a clear error.
#[test]
fn a_batch_after_2025_03_26_is_refused() {
    let plugins = PluginDir::new();
    let mut w = Warden::start(&plugins);
    w.initialize(); // 2025-06-18
    w.send(&json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]));
    let refusal = w.recv();
    let (code, message) = error_of(&refusal);
    assert_eq!(code, -32600);
    assert!(message.contains("2025-06-18") && message.contains("2025-03-26"), "{message}");
    assert_eq!(w.request("ping", json!({}))["result"], json!({}));
}

/// A plugin that refuses an answer: the plugins it has yet to pass (those in
/// front of it) see the refusal the client gets, not the answer it replaced.
#[test]
fn an_answer_a_plugin_refuses_goes_on_through_the_plugins_in_front_of_it() {
    let plugins = PluginDir::new()
        .add("10-record", "misbehave", "[config]\naction = \"record\"\nmethods = [\"tools/call\"]\n")
        .add("20-withhold", "misbehave", "[config]\naction = \"deny-answers\"\ntool = \"echo\"\n");
    let mut w = Warden::start(&plugins);
    w.initialize();
    let answer = w.call_tool("echo", json!({"text": "hi"}));
    let (code, message) = error_of(&answer);
    assert_eq!((code, message), (-32001, "misbehave: answer withheld"), "{answer}");
    let audit = w.finish();
    let seen: Vec<&serde_json::Value> = audit
        .iter()
        .filter(|e| e["plugin"] == "10-record" && e["event"]["hook"] == "response")
        .map(|e| &e["event"]["outcome"])
        .collect();
    assert_eq!(seen, [&json!({"code": -32001, "message": "misbehave: answer withheld"})], "{audit:?}");
    assert!(
        audit.iter().any(|e| e["event"]["verdict"] == "reject" && e["event"]["plugin"] == "20-withhold"),
        "{audit:?}"
    );
}

/// A cancellation the chain stops never reaches the server, so the call it
/// names is still in flight: its id stays taken, and the server never hears it.
#[test]
fn a_cancellation_the_chain_stops_leaves_the_call_in_flight() {
    let plugins = PluginDir::new().add(
        "10-keep",
        "misbehave",
        "[config]\naction = \"deny\"\nmethods = [\"notifications/cancelled\"]\n",
    );
    let mut w = Warden::start(&plugins);
    w.initialize();
    w.send(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "slow", "arguments": {}}}));
    w.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 5}}));
    w.send(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}}));
    let again = w.answer_to(&json!(5));
    assert_eq!(error_of(&again).0, -32600, "id 5 is still in flight: {again}");
    let heard = w.call_tool("client_notifications", json!({}));
    assert!(!text_of(&heard).contains("cancelled"), "the server heard it: {heard}");
}
