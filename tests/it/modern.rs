//! The 2026-07-28 era at `warden serve`: sessionless requests, their mirrored
//! headers, and a legacy upstream bridged for them (the fixture speaks 2025-06-18).

use serde_json::{json, Value};

use crate::common::http::{Answer, Gateway};
use crate::common::{examples, text_of};

const VERSION: &str = "2026-07-28";

/// A 2026-07-28 request body with the `_meta` the era requires.
fn request(id: Value, method: &str, params: Value) -> String {
    request_from(id, method, params, json!({}))
}

/// The same from a client with these capabilities.
fn request_from(id: Value, method: &str, mut params: Value, capabilities: Value) -> String {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": VERSION,
        "io.modelcontextprotocol/clientCapabilities": capabilities,
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"}
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

/// POSTs a modern request with the headers mirrored from `method` and `name`.
fn post(gw: &Gateway, body: &str, method: &str, name: Option<&str>) -> Answer {
    let mut headers = vec![("mcp-protocol-version", VERSION), ("mcp-method", method)];
    if let Some(name) = name {
        headers.push(("mcp-name", name));
    }
    gw.post(None, body, &headers)
}

fn call(gw: &Gateway, id: u64, tool: &str, arguments: Value) -> Value {
    let body = request(json!(id), "tools/call", json!({"name": tool, "arguments": arguments}));
    post(gw, &body, "tools/call", Some(tool)).answer()
}

#[test]
fn a_modern_client_reaches_a_legacy_server_through_the_plugins() {
    let plugins = examples();
    let gw = Gateway::start(Some(plugins.path()), &[]);
    let discover = post(&gw, &request(json!(1), "server/discover", json!({})), "server/discover", None);
    assert_eq!(discover.status, 200, "{discover:?}");
    assert_eq!(discover.session, None, "the modern era has no sessions");
    let result = &discover.answer()["result"];
    assert_eq!(result["supportedVersions"], json!([VERSION]));
    assert_eq!(result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "warden-fixture");
    assert_eq!((result["resultType"].as_str(), result["cacheScope"].as_str()), (Some("complete"), Some("private")));

    let list = post(&gw, &request(json!(2), "tools/list", json!({})), "tools/list", None).answer();
    let names: Vec<&str> =
        list["result"]["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"echo") && !names.contains(&"delete_everything"), "{names:?}");
    assert_eq!(list["result"]["ttlMs"], 0, "list results carry caching hints: {list}");

    let echo = call(&gw, 3, "echo", json!({"text": "modern"}));
    assert_eq!((text_of(&echo), &echo["id"], &echo["result"]["resultType"]), ("modern", &json!(3), &json!("complete")));
    let denied = call(&gw, 4, "delete_everything", json!({}));
    assert_eq!(denied["error"]["code"], -32001, "{denied}");
    let redacted = call(&gw, 5, "get_config", json!({}));
    assert!(text_of(&redacted).contains("[REDACTED]") && !text_of(&redacted).contains("sk-proj-"), "{redacted}");
}

#[test]
fn clients_with_the_same_ids_get_their_own_answers() {
    let gw = Gateway::start(None, &[]);
    std::thread::scope(|s| {
        let calls: Vec<_> = (0..8)
            .map(|n| {
                let gw = &gw;
                s.spawn(move || call(gw, 1, "echo", json!({"text": format!("client {n}")})))
            })
            .collect();
        for (n, answer) in calls.into_iter().enumerate() {
            let answer = answer.join().expect("call");
            assert_eq!((text_of(&answer), &answer["id"]), (format!("client {n}").as_str(), &json!(1)));
        }
    });
}

/// A client that can be asked to sample calls `ask_client`, answers the
/// `input_required` with `text` and returns the final answer.
fn ask_and_answer(gw: &Gateway, text: &str) -> Value {
    let sampler = json!({"sampling": {}});
    let body = request_from(json!(1), "tools/call", json!({"name": "ask_client", "arguments": {}}), sampler.clone());
    let first = post(gw, &body, "tools/call", Some("ask_client")).answer();
    let result = &first["result"];
    assert_eq!(result["resultType"], "input_required", "{first}");
    let (key, asked) = result["inputRequests"].as_object().and_then(|m| m.iter().next()).expect("one input request");
    assert_eq!(asked["method"], "sampling/createMessage");
    let state = result["requestState"].as_str().expect("requestState");
    let retry = json!({"name": "ask_client", "arguments": {}, "requestState": state,
        "inputResponses": {key.clone(): {"role": "assistant", "content": {"type": "text", "text": text}, "model": "m"}}});
    let body = request_from(json!(2), "tools/call", retry.clone(), sampler.clone());
    let done = post(gw, &body, "tools/call", Some("ask_client")).answer();
    // A requestState works once.
    let again = post(gw, &request_from(json!(3), "tools/call", retry, sampler), "tools/call", Some("ask_client"));
    assert_eq!((again.status, again.answer()["error"]["code"].as_i64()), (400, Some(-32602)));
    done
}

#[test]
fn a_sampling_request_becomes_input_required_and_the_retry_finishes_the_call() {
    let gw = Gateway::start(None, &[]);
    let done = ask_and_answer(&gw, "from the retry");
    assert_eq!((text_of(&done), &done["id"]), ("client said: from the retry", &json!(2)));
    // A client that declared no sampling cannot be asked: the server is refused, the call goes on.
    let unasked = call(&gw, 4, "ask_client", json!({}));
    assert!(text_of(&unasked).starts_with("client refused"), "{unasked}");
}

/// A legacy server's sampling request names no call: calls of clients that
/// can be asked each run on an upstream session of their own, so input never
/// reaches, nor comes from, another client.
#[test]
fn concurrent_calls_needing_input_never_meet() {
    let gw = Gateway::start(None, &[]);
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..6)
            .map(|n| {
                let gw = &gw;
                s.spawn(move || (n, ask_and_answer(gw, &format!("client {n}"))))
            })
            .collect();
        for run in runs {
            let (n, done) = run.join().expect("a client's run");
            assert_eq!(text_of(&done), format!("client said: client {n}"), "{done}");
        }
    });
}

#[test]
fn headers_that_disagree_with_the_body_are_refused() {
    let gw = Gateway::start(None, &[]);
    let body = request(json!(1), "tools/call", json!({"name": "echo", "arguments": {"text": "x"}}));
    let code = |a: Answer| (a.status, a.answer()["error"]["code"].as_i64().unwrap_or_default());
    assert_eq!(code(post(&gw, &body, "tools/list", Some("echo"))), (400, -32020), "method mismatch");
    assert_eq!(code(post(&gw, &body, "tools/call", Some("add"))), (400, -32020), "name mismatch");
    assert_eq!(code(post(&gw, &body, "tools/call", None)), (400, -32020), "missing Mcp-Name");
    assert_eq!(code(gw.post(None, &body, &[("mcp-protocol-version", VERSION)])), (400, -32020), "missing Mcp-Method");
    // Names that are not plain ASCII travel base64-encoded; Warden decodes before comparing.
    let named = request(json!(2), "tools/call", json!({"name": "échö", "arguments": {}}));
    let encoded = post(&gw, &named, "tools/call", Some("=?base64?w6ljaMO2?="));
    assert_eq!(encoded.answer()["error"]["message"], "unknown tool: échö", "{encoded:?}");
    let bare = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {}}).to_string();
    assert_eq!(code(post(&gw, &bare, "tools/list", None)), (400, -32602), "missing _meta");
    let other = request(json!(4), "tools/list", json!({})).replace(VERSION, "2026-07-28x");
    assert_eq!(code(post(&gw, &other, "tools/list", None)), (400, -32020), "_meta disagrees with the header");
    let unknown = gw.post(None, &request(json!(5), "tools/list", json!({})), &[("mcp-protocol-version", "2031-01-01")]);
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.answer()["error"]["code"], -32022);
    assert!(unknown.answer()["error"]["data"]["supported"].as_array().unwrap().contains(&json!(VERSION)));
    let no_such = post(&gw, &request(json!(6), "no/such", json!({})), "no/such", None);
    assert_eq!((no_such.status, no_such.answer()["error"]["code"].as_i64()), (404, Some(-32601)));
    let header_less = gw.post(None, &request(json!(7), "tools/list", json!({})), &[]);
    assert_eq!(code(header_less), (400, -32020), "a modern body without MCP-Protocol-Version");
}

#[test]
fn listen_is_acknowledged_first() {
    let gw = Gateway::start(None, &[]);
    let body = request(json!("sub-1"), "subscriptions/listen", json!({"notifications": {"toolsListChanged": true}}));
    let first = gw.first_event(&body, &[("mcp-protocol-version", VERSION), ("mcp-method", "subscriptions/listen")]);
    assert_eq!(first["method"], "notifications/subscriptions/acknowledged", "{first}");
    assert_eq!(first["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "sub-1");
    // The fixture declares no listChanged: nothing is honoured.
    assert_eq!(first["params"]["notifications"], json!({}));
}

/// A handshake-era stdio client in front of a server that speaks only
/// 2026-07-28 (the fixture's `--modern` mode): Warden bridges.
#[test]
fn a_handshake_client_reaches_a_modern_only_server_through_the_bridge() {
    let fixture = crate::common::paths().fixture.display().to_string();
    let plugins = examples();
    let mut w = crate::common::Warden::start_with(Some(plugins.path()), &["--probe-era"], &[&fixture, "--modern"]);
    let init = w.initialize();
    assert_eq!(init["result"]["serverInfo"]["name"], "warden-fixture-modern", "{init}");
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "the client's own version");
    assert_eq!(w.request("ping", json!({}))["result"], json!({}), "ping is answered by Warden");
    assert_eq!(text_of(&w.call_tool("echo", json!({"text": "bridged"}))), "bridged");
    let denied = w.call_tool("delete_everything", json!({}));
    assert_eq!(denied["error"]["code"], -32001, "{denied}");
    // The server's input_required becomes a sampling request the client answers.
    let id = w.fresh_id();
    w.send(
        &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "ask_client", "arguments": {}}}),
    );
    let ask = w.wait_for(|m| m["method"] == "sampling/createMessage");
    w.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"role": "assistant", "content": {"type": "text", "text": "bridged hi"}, "model": "m"}}));
    let answer = w.answer_to(&id);
    assert_eq!(text_of(&answer), "client said: bridged hi", "{answer}");
    w.finish();
}

/// `resources/subscribe` has no method in 2026-07-28: the bridge carries the
/// subscribed set on a `subscriptions/listen` of its own, replaced on each change.
#[test]
fn a_handshake_clients_subscriptions_ride_on_a_listen_of_wardens() {
    let fixture = crate::common::paths().fixture.display().to_string();
    let plugins = crate::common::PluginDir::new();
    let mut w = crate::common::Warden::start_with(Some(plugins.path()), &["--probe-era"], &[&fixture, "--modern"]);
    w.initialize();
    let touch =
        |w: &mut crate::common::Warden, uri: &str| text_of(&w.call_tool("touch", json!({"uri": uri}))).to_owned();
    assert_eq!(w.request("resources/subscribe", json!({"uri": "mem://a"}))["result"], json!({}));
    assert_eq!(w.request("resources/subscribe", json!({"uri": "mem://b"}))["result"], json!({}));
    // One listen follows the URIs: the one it replaced was cancelled upstream.
    assert_eq!(touch(&mut w, "mem://a"), "touched 1");
    let updated = w.wait_for(|m| m["method"] == "notifications/resources/updated");
    assert_eq!(updated["params"]["uri"], "mem://a", "{updated}");
    assert_eq!(w.request("resources/unsubscribe", json!({"uri": "mem://a"}))["result"], json!({}));
    assert_eq!(touch(&mut w, "mem://a"), "touched 0");
    assert_eq!(touch(&mut w, "mem://b"), "touched 1");
    let updated = w.wait_for(|m| m["method"] == "notifications/resources/updated");
    assert_eq!(updated["params"]["uri"], "mem://b", "{updated}");
    let bad = w.request("resources/subscribe", json!({}));
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    // The listens' acknowledgements stay with Warden.
    w.send(&json!({"jsonrpc": "2.0", "id": "last", "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "end"}}}));
    let end = w.wait_for(|m| m["id"] == "last" || m["method"] == "notifications/subscriptions/acknowledged");
    assert_eq!(text_of(&end), "end", "{end}");
    w.finish();
}

#[test]
fn python_sdk_clients_of_both_eras_reach_a_modern_only_server() {
    let Some(python) = crate::common::python_sdk() else { return };
    let fixture = crate::common::paths().fixture.display().to_string();
    let plugins = examples();
    let gw = Gateway::start_with(Some(plugins.path()), &["--probe-era"], &[&fixture, "--modern"]);
    for mode in ["legacy", "auto"] {
        let seen = gw.python_client_with(&python, mode, &["basic"]);
        assert_eq!(seen["echo"], "hello", "{mode}");
        assert!(seen["denied"].as_str().unwrap_or_default().contains("delete_*"), "{mode}: {seen}");
        let redacted = seen["redacted"].as_str().unwrap_or_default();
        assert!(redacted.contains("[REDACTED]") && !redacted.contains("sk-proj-"), "{mode}: {redacted}");
        assert_eq!(seen["progress"], json!([1.0, 2.0, 3.0]), "{mode}");
        assert_eq!(seen["big"], 1 << 20, "{mode}");
        assert_eq!(seen["concurrent"].as_array().map(Vec::len), Some(24), "{mode}");
    }
}

/// HTTP 404 is for an unknown method, read from the error's code: a tool
/// named `-32601` (or a message that mentions it) is no such thing.
#[test]
fn not_found_is_read_from_the_error_code_not_searched_for() {
    let gw = Gateway::start(None, &[]);
    let body = request(json!(1), "tools/call", json!({"name": "-32601", "arguments": {}}));
    let answer = post(&gw, &body, "tools/call", Some("-32601"));
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.answer()["error"]["code"], -32602, "{answer:?}");
    let unknown = request(json!(2), "no/such/method", json!({}));
    assert_eq!(post(&gw, &unknown, "no/such/method", None).status, 404);
}
