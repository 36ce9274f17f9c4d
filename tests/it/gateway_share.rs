//! `share = true`: every session of the gateway on one child of the server,
//! each answered under its own ids and progress tokens, while each keeps its
//! own chain.

use serde_json::json;

use super::upstreams::fixture;
use crate::common::http::Gateway;
use crate::common::text_of;

#[test]
fn sessions_share_one_child_and_each_gets_its_own_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fx = serde_json::to_string(&fixture()).expect("JSON");
    let file = dir.path().join("warden.toml");
    std::fs::write(&file, format!("[upstreams.s]\ncommand = {fx}\nshare = true\n")).expect("write config");
    let gw = Gateway::start_with(None, &["--config", &file.display().to_string()], &[]);
    assert!(gw.log_contains("upstream probed"), "{}", gw.stderr());
    let (a, b) = (gw.open(), gw.open());
    // The same id in both sessions: each gets its own answer.
    let from_a = gw.call(&a, 1, "s__echo", json!({"text": "to a"})).answer();
    let from_b = gw.call(&b, 1, "s__echo", json!({"text": "to b"})).answer();
    assert_eq!((text_of(&from_a), text_of(&from_b)), ("to a", "to b"));
    // Progress comes back under the token the session gave.
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "s__progress", "arguments": {}, "_meta": {"progressToken": "tok-b"}}});
    let answer = gw.post(Some(&b), &body.to_string(), &[("mcp-protocol-version", "2025-06-18")]);
    let tokens: Vec<String> = answer
        .messages()
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| m["params"]["progressToken"].to_string())
        .collect();
    assert!(!tokens.is_empty() && tokens.iter().all(|t| t == "\"tok-b\""), "{tokens:?}");
    // A request of the server's to a client has no one client: refused, the call still answered.
    let asked = gw.call(&a, 3, "s__ask_client", json!({})).answer();
    assert!(asked.get("result").is_some() || asked.get("error").is_some(), "{asked}");
    // One child for the probe, one shared by both sessions.
    assert_eq!(gw.stderr().matches("upstream started upstream=s").count(), 2, "{}", gw.stderr());
}

#[test]
fn a_shared_childs_tasks_stay_with_the_session_that_made_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut tasks = fixture();
    tasks.push("--tasks".to_owned());
    let fx = serde_json::to_string(&tasks).expect("JSON");
    let file = dir.path().join("warden.toml");
    std::fs::write(&file, format!("[upstreams.s]\ncommand = {fx}\nshare = true\n")).expect("write config");
    let gw = Gateway::start_with(None, &["--config", &file.display().to_string()], &[]);
    let (a, b) = (gw.open(), gw.open());
    let version = [("mcp-protocol-version", "2025-11-25")];
    let request = |session: &str, id: u64, method: &str, params: serde_json::Value| {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        gw.post(Some(session), &body.to_string(), &version).answer()
    };
    let made = request(
        &a,
        1,
        "tools/call",
        json!({"name": "s__echo", "arguments": {"text": "A-SECRET"}, "task": {"ttl": 60000}}),
    );
    let task = made["result"]["task"]["taskId"].as_str().unwrap_or_default().to_owned();
    assert_eq!(task, "s:task-1", "{made}");
    // B lists none of A's tasks and cannot read, get or cancel it.
    let listed = request(&b, 2, "tasks/list", json!({}));
    assert_eq!(listed["result"]["tasks"], json!([]), "{listed}");
    for method in ["tasks/result", "tasks/get", "tasks/cancel"] {
        let answer = request(&b, 3, method, json!({"taskId": task}));
        assert_eq!(answer["error"]["code"], -32602, "{method}: {answer}");
    }
    // A still can.
    let result = request(&a, 4, "tasks/result", json!({"taskId": task}));
    assert_eq!(text_of(&result), "A-SECRET", "{result}");
}
