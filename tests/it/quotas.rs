//! One caller cannot lock out others: per-caller quotas for sessions and for
//! the 2026-07-28 lane's upstream sessions, idle ones reclaimed (least
//! recently used first) when a table is full.

use serde_json::{json, Value};

use crate::common::http::Gateway;
use crate::common::text_of;

const ALICE: [(&str, &str); 1] = [("authorization", "Bearer alice-secret-0123456789")];
const BOB: [(&str, &str); 1] = [("authorization", "Bearer bob-secret-0123456789")];

fn with_tokens(flags: &[&str]) -> (Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "alice alice-secret-0123456789\nbob bob-secret-0123456789\n").expect("tokens");
    let mut all = vec!["--client-tokens", tokens.to_str().expect("path")];
    all.extend_from_slice(flags);
    (Gateway::start(None, &all), dir)
}

fn initialize(gw: &Gateway, auth: &[(&str, &str)]) -> (u16, Option<String>) {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let answer = gw.post(None, &init.to_string(), auth);
    (answer.status, answer.session)
}

fn echo(gw: &Gateway, session: &str, auth: &[(&str, &str)]) -> u16 {
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}});
    let mut headers = vec![("mcp-protocol-version", "2025-06-18")];
    headers.extend_from_slice(auth);
    gw.post(Some(session), &call.to_string(), &headers).status
}

#[test]
fn a_caller_at_its_session_quota_gives_up_its_least_recently_used_idle_one() {
    let (gw, _dir) = with_tokens(&["--max-sessions", "3", "--max-sessions-per-caller", "2"]);
    let (_, first) = initialize(&gw, &ALICE);
    let (_, second) = initialize(&gw, &ALICE);
    let (first, second) = (first.expect("session"), second.expect("session"));
    assert_eq!(echo(&gw, &second, &ALICE), 200, "second is the more recently used");
    // A third for alice: her least recently used idle session makes room.
    let (status, third) = initialize(&gw, &ALICE);
    assert_eq!(status, 200);
    assert_eq!(echo(&gw, &first, &ALICE), 404, "the least recently used one was closed");
    assert_eq!(echo(&gw, &second, &ALICE), 200);
    // Bob still gets in: alice holds at most 2 of the 3.
    let (status, bob) = initialize(&gw, &BOB);
    assert_eq!(status, 200);
    assert_eq!(echo(&gw, &bob.expect("session"), &BOB), 200);
    let _ = third;
}

#[test]
fn busy_sessions_are_never_taken() {
    let (gw, _dir) = with_tokens(&["--max-sessions-per-caller", "1"]);
    let (_, session) = initialize(&gw, &ALICE);
    let session = session.expect("session");
    // A GET stream open: the session is in use.
    let url = gw.url.clone();
    let listening = session.clone();
    let (tx, opened) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let response = ureq::get(&url)
            .set("accept", "text/event-stream")
            .set("mcp-session-id", &listening)
            .set("mcp-protocol-version", "2025-06-18")
            .set("authorization", "Bearer alice-secret-0123456789")
            .call();
        let _ = tx.send(response.is_ok());
        // Hold the stream open until the test ends.
        std::thread::sleep(std::time::Duration::from_secs(30));
        drop(response);
    });
    assert!(opened.recv().expect("GET answered"), "the GET stream opened");
    let (status, _) = initialize(&gw, &ALICE);
    assert_eq!(status, 503, "her only session is busy: refused, not taken");
    assert_eq!(echo(&gw, &session, &ALICE), 200);
}

/// The 2026-07-28 lane: one caller sending many distinct capability sets
/// starts an upstream session for each; past its quota its idle ones are
/// closed, and another caller is still served.
#[test]
fn one_modern_caller_cannot_fill_the_lane() {
    let (gw, _dir) = with_tokens(&["--max-backings-per-caller", "3"]);
    let modern = |i: usize, auth: &[(&str, &str)]| -> Value {
        let body = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": format!("call {i}")}, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"experimental": {format!("x{i}"): {}}},
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"}}}});
        let mut headers =
            vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "echo")];
        headers.extend_from_slice(auth);
        gw.post(None, &body.to_string(), &headers).answer()
    };
    for i in 0..8 {
        assert_eq!(text_of(&modern(i, &ALICE)), format!("call {i}"));
    }
    assert!(gw.log_contains("closed to make room"), "{}", gw.stderr());
    assert_eq!(text_of(&modern(100, &BOB)), "call 100");
}

fn modern_post(gw: &Gateway, id: u64, params: Value, capabilities: Value, auth: &[(&str, &str)]) -> (u16, Value) {
    let mut params = params;
    params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities,
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"}});
    let name = params["name"].as_str().unwrap_or_default().to_owned();
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
    let mut headers = vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", &name)];
    headers.extend_from_slice(auth);
    let answer = gw.post(None, &body.to_string(), &headers);
    (answer.status, answer.answer())
}

/// A paused call's `requestState` is its caller's: another caller cannot
/// finish it (nor use it up), and its own caller still can.
#[test]
fn a_request_state_belongs_to_its_caller() {
    let (gw, _dir) = with_tokens(&[]);
    let sampler = json!({"sampling": {}});
    let (_, first) = modern_post(&gw, 1, json!({"name": "ask_client", "arguments": {}}), sampler.clone(), &ALICE);
    let state = first["result"]["requestState"].as_str().expect("input_required").to_owned();
    let answer = json!({"input": {"role": "assistant", "content": {"type": "text", "text": "hello"}, "model": "m"}});
    let retry = json!({"name": "ask_client", "arguments": {}, "requestState": state, "inputResponses": answer});
    let (status, stolen) = modern_post(&gw, 2, retry.clone(), json!({}), &BOB);
    assert_eq!((status, stolen["error"]["code"].as_i64()), (400, Some(-32602)), "{stolen}");
    let wrong = json!({"name": "echo", "arguments": {}, "requestState": state});
    let (status, _) = modern_post(&gw, 3, wrong, sampler.clone(), &ALICE);
    assert_eq!(status, 400, "a wrong retry is refused");
    let (_, done) = modern_post(&gw, 4, retry, sampler, &ALICE);
    assert_eq!(text_of(&done), "client said: hello", "{done}");
}

/// Calls that park on upstream sessions of their own count against their
/// caller's quota, every one: a caller cannot start processes without bound,
/// and the refusal is clear.
#[test]
fn leased_upstream_sessions_count_against_the_caller() {
    let (gw, _dir) = with_tokens(&["--max-backings-per-caller", "3"]);
    let mut refused = None;
    for i in 0..6 {
        let capabilities = json!({"sampling": {}, "experimental": {format!("s{i}"): {}}});
        let (status, answer) =
            modern_post(&gw, i, json!({"name": "ask_client", "arguments": {}}), capabilities, &ALICE);
        if answer["result"]["resultType"] != "input_required" {
            refused = Some((status, answer));
            break;
        }
    }
    let (_, answer) = refused.expect("a fourth parked call is refused");
    assert!(answer["error"]["message"].as_str().unwrap_or_default().contains("max-backings-per-caller"), "{answer}");
    // Bob is not held up by alice's parked calls.
    let (_, bob) = modern_post(&gw, 9, json!({"name": "echo", "arguments": {"text": "bob"}}), json!({}), &BOB);
    assert_eq!(text_of(&bob), "bob");
}

/// 2026-07-28 has no handshake: `initialize` in that lane is an unknown method.
#[test]
fn the_stateless_lane_has_no_initialize() {
    let gw = Gateway::start(None, &[]);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2026-07-28", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}, "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"}}}});
    let answer =
        gw.post(None, &body.to_string(), &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "initialize")]);
    assert_eq!(answer.status, 404, "{answer:?}");
    assert_eq!(answer.answer()["error"]["code"], -32601);
}
