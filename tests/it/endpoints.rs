//! Virtual endpoints (`[endpoints."/mcp/readonly"]`): a subset of the
//! gateway at its own path, in both eras. What it does not list is refused
//! on call, not only hidden in lists; a session belongs to the endpoint that
//! opened it; a reload that removes an endpoint takes it off the listener.

use serde_json::{json, Value};

use super::upstreams::fixture;
use crate::common::http::{Answer, Gateway};
use crate::common::text_of;

const ENDPOINT: &str = r#"
[endpoints."/mcp/readonly"]
tools = ["one__echo", "two__get_*"]
resources = ["mem://config"]
"#;

fn config(dir: &std::path::Path, endpoints: &str) -> std::path::PathBuf {
    let fx = serde_json::to_string(&fixture()).expect("JSON");
    let mut evil = fixture();
    evil.push("--evil".to_owned());
    let evil = serde_json::to_string(&evil).expect("JSON");
    // `ops` is in no glob of the endpoint: it is not part of it at all.
    let text = format!(
        "[upstreams.one]\ncommand = {fx}\n[upstreams.two]\ncommand = {fx}\n[upstreams.ops]\ncommand = {evil}\n{endpoints}"
    );
    let file = dir.join("warden.toml");
    std::fs::write(&file, text).expect("write config");
    file
}

fn names(answer: &Answer, key: &str) -> Vec<String> {
    let list = answer.answer();
    list["result"][key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key}: {list}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn request(gw: &Gateway, session: &str, id: u64, method: &str, params: Value) -> Answer {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    gw.post(Some(session), &body.to_string(), &[("mcp-protocol-version", "2025-06-18")])
}

fn error_code(answer: &Answer) -> i64 {
    let message = answer.answer();
    message["error"]["code"].as_i64().unwrap_or_else(|| panic!("not an error: {message}"))
}

#[test]
fn an_endpoint_lists_and_serves_only_its_subset_and_a_session_stays_at_its_endpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = config(dir.path(), ENDPOINT);
    let mut gw = Gateway::start_with(None, &["--config", &file.display().to_string()], &[]);
    let main = gw.url.clone();
    let readonly = format!("{main}/readonly");

    let full = gw.open();
    let everything = names(&request(&gw, &full, 1, "tools/list", json!({})), "tools");
    assert!(everything.contains(&"two__write_file".to_owned()), "{everything:?}");

    gw.url = readonly.clone();
    // Its `initialize` names only what it serves: no `ops` instructions, no prompts.
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let shown = gw.post(None, &init.to_string(), &[]).answer();
    let text = shown.to_string();
    assert!(!text.contains("ops") && !text.contains("evil"), "{shown}");
    assert!(shown["result"]["capabilities"]["prompts"].is_null(), "{shown}");
    assert!(shown["result"]["capabilities"]["tools"].is_object(), "{shown}");
    let session = gw.open();
    let tools = names(&request(&gw, &session, 2, "tools/list", json!({})), "tools");
    assert_eq!(tools, ["one__echo", "two__get_config"], "only the endpoint's tools");
    assert_eq!(text_of(&gw.call(&session, 3, "one__echo", json!({"text": "ro"})).answer()), "ro");
    // Not listed here, so not served: refused as unknown, whatever the upstream has.
    for hidden in ["two__echo", "one__write_file", "two__delete_everything", "one__get_config"] {
        let answer = gw.call(&session, 4, hidden, json!({"text": "x", "path": "/tmp/x", "content": "x"}));
        assert_eq!(error_code(&answer), -32602, "{hidden}: {:?}", answer.answer());
    }
    // No prompt is listed, so none is served; the one resource is.
    let prompt = request(&gw, &session, 6, "prompts/get", json!({"name": "one__p"}));
    assert_eq!(error_code(&prompt), -32602);
    let resources = request(&gw, &session, 7, "resources/list", json!({})).answer();
    let uris: Vec<&str> =
        resources["result"]["resources"].as_array().into_iter().flatten().filter_map(|r| r["uri"].as_str()).collect();
    assert!(!uris.is_empty() && uris.iter().all(|u| *u == "mem://config"), "{resources}");
    let read = request(&gw, &session, 8, "resources/read", json!({"uri": "mem://config"})).answer();
    assert!(read["result"]["contents"].is_array(), "{read}");
    let other = request(&gw, &session, 9, "resources/read", json!({"uri": "mem://secret"}));
    assert_eq!(error_code(&other), -32602);
    let completion = request(
        &gw,
        &session,
        10,
        "completion/complete",
        json!({"ref": {"type": "ref/prompt", "name": "one__p"}, "argument": {"name": "a", "value": ""}}),
    );
    assert_eq!(error_code(&completion), -32602);

    // A session is its endpoint's: the full one's id is unknown here, and this one's there.
    let crossed = gw.call(&full, 11, "two__write_file", json!({"path": "/tmp/x", "content": "x"}));
    assert_eq!(crossed.status, 404, "{crossed:?}");
    gw.url = main.clone();
    let crossed = gw.call(&session, 12, "two__echo", json!({"text": "x"}));
    assert_eq!(crossed.status, 404, "{crossed:?}");
    // Paths that are not endpoints are not found, near misses included.
    for path in ["/mcp/readonly/", "/mcp/readonly/x", "/mcp/READONLY", "/mcp/readonly%2F"] {
        gw.url = main.replace("/mcp", path);
        let answer = gw.post(None, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, &[]);
        assert_eq!(answer.status, 404, "{path}: {answer:?}");
    }

    // A 2026-07-28 client at the endpoint sees the same subset.
    gw.url = readonly.clone();
    let modern = |method: &str, params: Value, name: Option<&str>| {
        let mut params = params;
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"}
        });
        let body = json!({"jsonrpc": "2.0", "id": 20, "method": method, "params": params}).to_string();
        let mut headers = vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", method)];
        if let Some(name) = name {
            headers.push(("mcp-name", name));
        }
        gw.post(None, &body, &headers)
    };
    assert_eq!(names(&modern("tools/list", json!({}), None), "tools"), ["one__echo", "two__get_config"]);
    let hidden = modern("tools/call", json!({"name": "two__echo", "arguments": {"text": "x"}}), Some("two__echo"));
    assert_eq!(error_code(&hidden), -32602);

    // The config loses the endpoint: its path is not found any more.
    config(dir.path(), "");
    assert!(gw.log_contains("gateway config reloaded"), "{}", gw.stderr());
    let answer = gw.post(None, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, &[]);
    assert_eq!(answer.status, 404, "the removed endpoint is still served: {answer:?}");
    let answer = gw.call(&session, 30, "one__echo", json!({"text": "x"}));
    assert_eq!(answer.status, 404, "its session outlived it: {answer:?}");
}
