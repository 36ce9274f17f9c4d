//! `warden serve`: Streamable HTTP sessions in front of a stdio server.

use serde_json::{json, Value};

use crate::common::http::Gateway;
use crate::common::{examples, python_sdk, text_of};

#[test]
fn a_session_carries_calls_denials_and_redactions() {
    let plugins = examples();
    let gw = Gateway::start(Some(plugins.path()), &[]);
    let session = gw.open();
    let list = gw.post(Some(&session), r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, &[]);
    let names: Vec<String> = list.answer()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.contains(&"echo".to_owned()) && !names.contains(&"delete_everything".to_owned()), "{names:?}");
    assert_eq!(text_of(&gw.call(&session, 2, "echo", json!({"text": "over http"})).answer()), "over http");
    let denied = gw.call(&session, 3, "delete_everything", json!({})).answer();
    assert_eq!(denied["error"]["code"], -32001);
    let redacted = gw.call(&session, 4, "get_config", json!({})).answer();
    assert!(text_of(&redacted).contains("[REDACTED]") && !text_of(&redacted).contains("sk-proj-"));
}

#[test]
fn server_messages_during_a_request_arrive_on_its_stream() {
    let gw = Gateway::start(None, &[]);
    let session = gw.open();
    let answer = gw.call(&session, 1, "notify", json!({}));
    assert!(answer.content_type.starts_with("text/event-stream"), "{answer:?}");
    let messages = answer.messages();
    assert_eq!(messages[0]["method"], "notifications/message");
    assert_eq!(text_of(&messages[1]), "notified");
}

#[test]
fn sessions_are_isolated_and_end_cleanly() {
    let gw = Gateway::start(None, &[]);
    let a = gw.open();
    let b = gw.open();
    assert_ne!(a, b);
    let note = gw.post(Some(&a), r#"{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}"#, &[]);
    assert_eq!(note.status, 202);
    let seen_by = |s: &str, id| text_of(&gw.call(s, id, "client_notifications", json!({})).answer()).to_owned();
    assert_eq!(seen_by(&a, 1), "notifications/initialized,notifications/roots/list_changed");
    assert_eq!(seen_by(&b, 1), "notifications/initialized", "each session has its own server");
    assert_eq!(gw.delete(&a).status, 200);
    assert_eq!(gw.call(&a, 2, "echo", json!({"text": "x"})).status, 404);
    assert_eq!(text_of(&gw.call(&b, 2, "echo", json!({"text": "still"})).answer()), "still");
}

#[test]
fn an_upstream_dying_mid_call_ends_only_its_session() {
    let gw = Gateway::start(None, &[]);
    let doomed = gw.open();
    let other = gw.open();
    let answer = gw.call(&doomed, 1, "crash", json!({}));
    assert_eq!(answer.answer()["error"]["code"], -31052, "{answer:?}");
    assert!(gw.log_contains("session ended"), "{}", gw.stderr());
    assert_eq!(text_of(&gw.call(&other, 1, "echo", json!({"text": "alive"})).answer()), "alive");
}

#[test]
fn bad_requests_are_refused_clearly() {
    let gw = Gateway::start(None, &["--max-body-bytes", "4096"]);
    let session = gw.open();
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let foreign = gw.post(Some(&session), list, &[("origin", "http://evil.example")]);
    assert_eq!(foreign.status, 403);
    assert_eq!(gw.post(Some(&session), list, &[("origin", "http://localhost:5173")]).status, 200);
    // DNS rebinding: a loopback listener answers only to loopback host names.
    assert_eq!(gw.post(Some(&session), list, &[("host", "rebound.evil.example:8080")]).status, 403);
    assert_eq!(gw.post(Some(&session), list, &[("host", "localhost:8080")]).status, 200);
    let huge = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x".repeat(10_000)}}});
    let too_big = gw.post(Some(&session), &huge.to_string(), &[]);
    assert_eq!(too_big.status, 413);
    assert_eq!(too_big.answer()["error"]["code"], -31053);
    assert_eq!(gw.post(Some("no-such-session"), list, &[]).status, 404);
    assert_eq!(gw.post(None, list, &[]).status, 400, "a session is needed after initialize");
    assert_eq!(gw.post(Some(&session), list, &[("mcp-protocol-version", "1999-01-01")]).status, 400);
    let garbage = gw.post(Some(&session), "{nope", &[]);
    assert_eq!(garbage.status, 400);
    assert_eq!(garbage.answer()["error"]["code"], -32700);
    // The session still serves.
    assert_eq!(text_of(&gw.call(&session, 3, "echo", json!({"text": "ok"})).answer()), "ok");

    // An id still in flight is not taken twice (the first caller would never get its answer).
    std::thread::scope(|s| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let (twice, slow) = loop {
            assert!(std::time::Instant::now() < deadline, "no duplicate id was refused");
            let slow = s.spawn(|| gw.call(&session, 7, "slow", json!({})));
            // Until the slow call is open, the same id may pass (or, sent at the same
            // moment, be the one in flight that refuses the slow call: then again).
            let twice = loop {
                if slow.is_finished() {
                    break None;
                }
                let answer = gw.call(&session, 7, "echo", json!({"text": "again"}));
                if answer.status == 400 {
                    break Some(answer);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            };
            if let Some(twice) = twice {
                break (twice, slow);
            }
        };
        assert_eq!((twice.status, twice.answer()["id"].as_i64()), (400, Some(7)), "{twice:?}");
        assert_eq!(twice.answer()["error"]["code"], -32600);
        let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}});
        assert_eq!(gw.post(Some(&session), &cancel.to_string(), &[]).status, 202);
        slow.join().expect("the slow call's POST ends once cancelled");
    });
    assert_eq!(text_of(&gw.call(&session, 7, "echo", json!({"text": "reused"})).answer()), "reused");
}

/// The official Python SDK (`mcp` from PyPI, installed by scripts/test.sh into target/py)
/// in its legacy and auto (modern-first) modes.
#[test]
fn the_python_sdk_client_works_through_the_gateway() {
    let Some(python) = python_sdk() else { return };
    let plugins = examples();
    let gw = Gateway::start(Some(plugins.path()), &[]);
    for mode in ["legacy", "auto"] {
        let heard = gw.cancellations_heard();
        let seen = gw.python_client(&python, mode);
        assert!(!seen["tools"].as_array().unwrap().contains(&json!("delete_everything")), "{mode}");
        for key in ["redacted", "resource", "prompt"] {
            let text = seen[key].as_str().unwrap_or_default();
            assert!(text.contains("[REDACTED]") && !text.contains("sk-proj-"), "{mode} {key}: {text}");
        }
        assert_eq!(seen["log"], json!(["hello from the fixture"]), "{mode}");
        crate::common::http::assert_conversations(&seen, mode, gw.heard_a_cancellation_since(heard));
    }
}

#[test]
fn a_client_that_lost_its_stream_resumes_it_with_last_event_id() {
    let gw = Gateway::start(None, &[]);
    let session = gw.open();
    // The call asks the client for a sampling; the client reads that event and drops the connection.
    let call = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"ask_client","arguments":{}}}"#;
    let mut stream = raw_post(&gw, &session, call);
    let (event_id, sampling) = next_event(&mut stream);
    assert_eq!(sampling["method"], "sampling/createMessage", "{sampling}");
    let event_id = event_id.expect("events carry ids");
    drop(stream);
    // The client answers the sampling; the tool's answer now goes to the broken stream.
    let reply = json!({"jsonrpc": "2.0", "id": sampling["id"], "result": {"role": "assistant", "content": {"type": "text", "text": "resumed"}, "model": "m"}});
    assert_eq!(gw.post(Some(&session), &reply.to_string(), &[]).status, 202);
    // GET with the last event seen: the rest of that stream.
    let mut resumed = raw_request(&gw, "GET", &session, &[("last-event-id", &event_id)], "");
    let (next_id, answer) = next_event(&mut resumed);
    assert_eq!(answer["id"], 5, "{answer}");
    assert_eq!(text_of(&answer), "client said: resumed");
    assert_ne!(next_id, Some(event_id));
}

fn raw_post(gw: &Gateway, session: &str, body: &str) -> std::io::BufReader<std::net::TcpStream> {
    raw_request(gw, "POST", session, &[("content-type", "application/json")], body)
}

/// An HTTP/1.1 request whose SSE answer is read event by event.
fn raw_request(
    gw: &Gateway,
    method: &str,
    session: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::BufReader<std::net::TcpStream> {
    use std::io::{BufRead, Write};
    let address = gw.url.trim_start_matches("http://").split('/').next().expect("address").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).expect("connect");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let mut request = format!(
        "{method} /mcp HTTP/1.1\r\nhost: {address}\r\naccept: text/event-stream, application/json\r\nmcp-session-id: {session}\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send");
    let mut reader = std::io::BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    assert!(line.contains(" 200 "), "{line}");
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header");
        if line == "\r\n" {
            return reader;
        }
    }
}

/// The next SSE event with data (chunk-size lines and priming events skipped): its id and message.
fn next_event(reader: &mut std::io::BufReader<std::net::TcpStream>) -> (Option<String>, Value) {
    use std::io::BufRead;
    let mut id = None;
    let mut line = String::new();
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).expect("event line") > 0, "stream ended");
        let line = line.trim_end();
        if let Some(value) = line.strip_prefix("id: ") {
            id = Some(value.to_owned());
        } else if let Some(data) = line.strip_prefix("data: ") {
            if !data.is_empty() {
                return (id, serde_json::from_str(data).expect("event data is JSON"));
            }
        }
    }
}

#[test]
fn old_clients_speak_http_and_sse_2024_11_05_with_the_python_sdk() {
    let Some(python) = python_sdk() else { return };
    let plugins = examples();
    let gw = Gateway::start(Some(plugins.path()), &[]);
    let script = crate::common::paths().repo.join("tests/python/sse_client.py");
    let url = gw.url.replace("/mcp", "/sse");
    let out = std::process::Command::new(&python).arg(&script).arg(&url).output().expect("run python");
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), gw.stderr());
    let seen: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(seen["echo"], "over sse");
    assert!(seen["denied"].as_str().unwrap_or_default().contains("delete_*"), "{seen}");
    assert_eq!(seen["sampling"], "client said: hi over sse");
    let redacted = seen["redacted"].as_str().unwrap_or_default();
    assert!(redacted.contains("[REDACTED]") && !redacted.contains("sk-proj-"), "{redacted}");
    assert_eq!(seen["concurrent"], json!(["1", "2", "3", "4", "5", "6", "7", "8"]));
    assert!(gw.log_contains("HTTP+SSE stream closed; session ended"), "{}", gw.stderr());
}

/// JSON-RPC batches over HTTP (2025-03-26): taken apart at the door, each
/// member through the chain, the answers back as one JSON array.
#[test]
fn a_2025_03_26_batch_over_http_is_answered_as_one_array() {
    let plugins = examples();
    let gw = Gateway::start(Some(plugins.path()), &[]);
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let opened = gw.post(None, &init.to_string(), &[]);
    assert_eq!(opened.answer()["result"]["protocolVersion"], "2025-03-26");
    let session = opened.session.clone().expect("session id");
    let version = [("mcp-protocol-version", "2025-03-26")];
    assert_eq!(
        gw.post(Some(&session), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, &version).status,
        202
    );

    let call = |id: u64, tool: &str| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {"text": "batched"}}});
    let batch = json!([call(1, "echo"), call(2, "delete_everything"), {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "x", "progress": 1}}, call(3, "get_config"), "not a message"]);
    let answer = gw.post(Some(&session), &batch.to_string(), &version);
    assert_eq!(answer.status, 200, "{answer:?}");
    let answers = answer.answer();
    let answers = answers.as_array().unwrap_or_else(|| panic!("an array: {answers}"));
    assert_eq!(answers.len(), 4, "{answers:?}");
    let by_id = |id: Value| answers.iter().find(|a| a["id"] == id).unwrap_or_else(|| panic!("no answer to {id}"));
    assert_eq!(text_of(by_id(json!(1))), "batched");
    assert_eq!(by_id(json!(2))["error"]["code"], -32001);
    assert!(text_of(by_id(json!(3))).contains("[REDACTED]"));
    assert_eq!(by_id(Value::Null)["error"]["code"], -32600, "the member that is no message");

    // A member that reports progress: one SSE stream carries its notifications and every answer.
    let progress = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "progress", "arguments": {}, "_meta": {"progressToken": "p4"}}});
    let streamed = gw.post(Some(&session), &json!([progress, call(5, "echo")]).to_string(), &version);
    assert!(streamed.content_type.starts_with("text/event-stream"), "{streamed:?}");
    let messages = streamed.messages();
    assert_eq!(messages.iter().filter(|m| m["method"] == "notifications/progress").count(), 3, "{messages:?}");
    assert_eq!(text_of(messages.iter().find(|m| m["id"] == 4).expect("answer to 4")), "progressed");
    assert_eq!(text_of(messages.iter().find(|m| m["id"] == 5).expect("answer to 5")), "batched");

    // The same id twice in one batch: the second is refused, the first answered.
    let twins = gw.post(Some(&session), &json!([call(6, "echo"), call(6, "echo")]).to_string(), &version).answer();
    let twins = twins.as_array().expect("an array");
    assert_eq!(twins.iter().filter(|a| a["error"]["code"] == -32600).count(), 1, "{twins:?}");
    assert_eq!(twins.iter().filter(|a| a["result"].is_object()).count(), 1, "{twins:?}");

    // Only notifications: accepted with nothing to say. Empty: refused.
    let notes = json!([{"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "x", "progress": 2}}]);
    assert_eq!(gw.post(Some(&session), &notes.to_string(), &version).status, 202);
    assert_eq!(gw.post(Some(&session), "[]", &version).status, 400);

    // A session at 2025-06-18 has no batches; nor does a batch open a session.
    let later = gw.open();
    let refused =
        gw.post(Some(&later), &json!([call(9, "echo")]).to_string(), &[("mcp-protocol-version", "2025-06-18")]);
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("2025-03-26"), "{}", refused.body);
    assert_eq!(gw.post(None, &json!([init]).to_string(), &[]).status, 400);
}

/// `--client-tokens`: no valid bearer token, no entry (401 with a challenge);
/// the subject a token names is the caller plugins see; a session is its
/// opener's alone; tokens never reach the log or the audit trail.
#[test]
fn clients_need_a_bearer_token_and_plugins_see_who_calls() {
    let plugins = examples();
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# callers\nalice alice-secret-0123456789\nbob bob-secret-0123456789\n").unwrap();
    let audit = dir.path().join("audit.jsonl");
    let flags = ["--client-tokens", tokens.to_str().unwrap(), "--audit", audit.to_str().unwrap()];
    let gw = Gateway::start(Some(plugins.path()), &flags);
    let alice = [("authorization", "Bearer alice-secret-0123456789")];
    let bob = [("authorization", "Bearer bob-secret-0123456789")];
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}).to_string();

    for auth in
        [&[][..], &[("authorization", "Bearer not-a-known-token-at-all")], &[("authorization", "Basic YWxpY2U6eA==")]]
    {
        let refused = gw.post(None, &init, auth);
        assert_eq!(refused.status, 401, "{auth:?}: {refused:?}");
        assert_eq!(refused.challenge.as_deref(), Some("Bearer realm=\"warden\""), "{refused:?}");
    }
    let opened = gw.post(None, &init, &alice);
    assert_eq!(opened.status, 200, "{opened:?}");
    let session = opened.session.clone().expect("session id");
    let echo = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "mine"}}}).to_string();
    assert_eq!(text_of(&gw.post(Some(&session), &echo, &alice).answer()), "mine");
    // Another caller, or none, cannot use (nor end) alice's session.
    assert_eq!(gw.post(Some(&session), &echo, &bob).status, 404);
    assert_eq!(gw.post(Some(&session), &echo, &[]).status, 401);
    // The modern era: no session, the caller on each request.
    let modern = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "bob's"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}}).to_string();
    let headers = [bob[0], ("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "echo")];
    assert_eq!(text_of(&gw.post(None, &modern, &headers).answer()), "bob's");

    // Plugins saw who called: the audit-log plugin records the caller of each message.
    let echoes_by = |records: &str, who: &str| {
        records
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["event"]["caller"] == who && r["event"]["tool"] == "echo")
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let records = loop {
        // The audit trail is written behind the answers: wait for it.
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let both = echoes_by(&text, "alice") >= 1 && echoes_by(&text, "bob") >= 1;
        if both || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(echoes_by(&records, "alice") >= 1 && echoes_by(&records, "bob") >= 1, "{records}");
    let log = gw.stderr();
    for secret in ["alice-secret", "bob-secret", "not-a-known-token"] {
        assert!(!log.contains(secret) && !records.contains(secret), "{secret} leaked");
    }
    assert_eq!(gw.delete(&session).status, 401, "ending a session also needs the token");
    // The old HTTP+SSE transport is behind the same door.
    let sse = gw.url.replace("/mcp", "/sse");
    match ureq::get(&sse).timeout(std::time::Duration::from_secs(10)).call() {
        Err(ureq::Error::Status(status, _)) => assert_eq!(status, 401),
        other => panic!("GET /sse without a token: {:?}", other.map(|r| r.status())),
    }
}

/// A batch member cancelled in the same batch is owed nothing; the other
/// members still get their answers (all were lost to a 502 before).
#[test]
fn a_cancelled_batch_member_does_not_cost_the_others_their_answers() {
    let gw = Gateway::start(None, &[]);
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let session = gw.post(None, &init.to_string(), &[]).session.expect("session id");
    let version = [("mcp-protocol-version", "2025-03-26")];
    gw.post(Some(&session), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, &version);
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "keep"}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "slow", "arguments": {}}},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2}}
    ]);
    let answer = gw.post(Some(&session), &batch.to_string(), &version);
    assert_eq!(answer.status, 200, "{answer:?}");
    let answers = answer.answer();
    let answers = answers.as_array().unwrap_or_else(|| panic!("an array: {answers}"));
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(text_of(&answers[0]), "keep");
}

/// A POST whose request its client cancels ends saying so, not that the
/// session ended (it lives on).
#[test]
fn a_cancelled_call_is_not_reported_as_a_dead_session() {
    let gw = std::sync::Arc::new(Gateway::start(None, &[]));
    let session = gw.open();
    let (gw2, session2) = (gw.clone(), session.clone());
    let slow = std::thread::spawn(move || gw2.call(&session2, 7, "slow", json!({})));
    // Cancelled until its POST ends (a cancel that lands before the call is in flight cancels nothing).
    let cancel = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}"#;
    let version = [("mcp-protocol-version", "2025-06-18")];
    let deadline = std::time::Instant::now() + crate::common::PATIENCE;
    while !slow.is_finished() && std::time::Instant::now() < deadline {
        gw.post(Some(&session), cancel, &version);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let answer = slow.join().expect("slow call");
    assert_eq!(answer.status, 409, "{answer:?}");
    assert!(answer.body.contains("cancelled"), "{answer:?}");
    assert_eq!(text_of(&gw.call(&session, 8, "echo", json!({"text": "alive"})).answer()), "alive");
}
