//! One message, one meaning: what the plugins judge is what the upstream runs.
//! Each case is an input that read one way to Warden and another to the
//! server before the strict reader (duplicate keys, broken text, ids that are
//! equal by value but written apart, a key given twice past cut-through).

use serde_json::{json, Value};

use crate::common::{error_of, examples, paths, text_of, PluginDir, Warden};

/// Sends a raw line and returns the next answer (raw text and parsed).
fn exchange(w: &mut Warden, line: &str) -> (String, Value) {
    w.send_raw(line);
    let raw = w.recv_line();
    let value = serde_json::from_str(&raw).unwrap_or_else(|e| panic!("non-JSON answer ({e}): {raw}"));
    (raw, value)
}

/// The proxy still serves after a refusal.
fn still_serves(w: &mut Warden) {
    let answer = w.call_tool("echo", json!({"text": "still here"}));
    assert_eq!(text_of(&answer), "still here");
}

#[test]
fn duplicate_keys_are_refused_anywhere_in_a_message() {
    let plugins = examples();
    let mut w = Warden::start(&plugins);
    w.initialize();
    let cases = [
        // tool-policy would judge "echo"; a last-key-wins server would run the other.
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"delete_everything","arguments":{"text":"x"}}}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x","text":"y"}}}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/tmp/a","pa\u0074h":"/etc/passwd"}}}"#,
        r#"{"jsonrpc":"2.0","id":4,"method":"ping","method":"tools/call","params":{"name":"delete_everything"}}"#,
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"a":[{"b":{"c":1,"c":2}}]}}}"#,
        // Go's encoding/json (mcp-go) matches keys case-insensitively and keeps the last.
        r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","Name":"delete_everything","arguments":{}}}"#,
        r#"{"jsonrpc":"2.0","id":7,"method":"ping","Method":"tools/call","params":{"name":"delete_everything"}}"#,
        // ... with Unicode simple folding: U+017F is `s`, U+212A is `k`.
        r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo","arguments":{}},"paramſ":{"name":"delete_everything"}}"#,
    ];
    for (i, case) in cases.iter().enumerate() {
        let (raw, answer) = exchange(&mut w, case);
        assert_eq!(error_of(&answer).0, -32600, "{case}: {raw}");
        assert_eq!(answer["id"], json!(i + 1), "{raw}");
        assert!(error_of(&answer).1.contains("duplicate key"), "{raw}");
    }
    // The refusal never quotes the key: it may be a credential.
    let (raw, answer) = exchange(
        &mut w,
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"AKIAIOSFODNN7EXAMPLE":1,"AKIAIOSFODNN7EXAMPLE":2}}}"#,
    );
    assert_eq!(error_of(&answer).0, -32600, "{raw}");
    assert!(!raw.contains("AKIAIOSFODNN7EXAMPLE"), "{raw}");
    still_serves(&mut w);
    w.close_stdin();
    let events = w.finish();
    assert!(!events.iter().any(|e| e.to_string().contains("everything deleted")));
}

#[test]
fn broken_text_is_a_parse_error_and_never_reaches_the_server() {
    let plugins = examples();
    let mut w = Warden::start(&plugins);
    w.initialize();
    // Raw bytes: invalid UTF-8 inside a string.
    let mut line =
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_everything","arguments":{"text":""#
            .to_vec();
    line.extend_from_slice(b"\xff\xfe");
    line.extend_from_slice(br#""}}}"#);
    let mut stdin = w.stdin_writer();
    std::io::Write::write_all(&mut stdin, &line)
        .and_then(|()| std::io::Write::write_all(&mut stdin, b"\n"))
        .expect("write");
    let answer = w.recv();
    assert_eq!(error_of(&answer).0, -32700, "{answer}");
    for case in [
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"\ud800"}}}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"\udc00\ud800"}}}"#,
        "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"a\u{1}b\"}}}",
    ] {
        let (raw, answer) = exchange(&mut w, case);
        assert_eq!(error_of(&answer).0, -32700, "{case}: {raw}");
    }
    // Nested deeper than any plugin could parse: refused, not passed unjudged.
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"x","d":{}1{}}}}}}}"#,
        "[".repeat(130),
        "]".repeat(130)
    );
    let (raw, answer) = exchange(&mut w, &deep);
    assert_eq!(error_of(&answer).0, -32600, "{raw}");
    still_serves(&mut w);
}

/// The fixture answers `1e2` as `100.0` and `"\u0078"` as `"x"` (it re-serialises
/// the id it parsed): the answer is matched by value, passes the response
/// chain (the secret is redacted) and goes back under the id as the client wrote it.
#[test]
fn answers_are_matched_by_id_value_and_go_back_as_written() {
    let plugins = examples();
    let mut w = Warden::start(&plugins);
    w.initialize();
    for id in ["1e2", r#""\u0078""#, "7.0", "-0"] {
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"get_config","arguments":{{}}}}}}"#
        );
        let (raw, answer) = exchange(&mut w, &line);
        assert!(raw.contains(&format!(r#""id":{id}"#)), "the client's own id, as written: {raw}");
        assert!(text_of(&answer).contains("[REDACTED]"), "through the response chain: {raw}");
    }
    for id in ["123456789012345678901234567890", "1.5", "9007199254740993"] {
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"get_config","arguments":{{}}}}}}"#
        );
        let (raw, answer) = exchange(&mut w, &line);
        assert_eq!(error_of(&answer).0, -32600, "{raw}");
    }
    still_serves(&mut w);
}

#[test]
fn a_request_whose_id_is_in_flight_is_refused() {
    let plugins = examples();
    let mut w = Warden::start(&plugins);
    w.initialize();
    w.send(&json!({"jsonrpc": "2.0", "id": 42, "method": "tools/call", "params": {"name": "slow", "arguments": {}}}));
    // The same id by value, written otherwise.
    let (raw, answer) = exchange(
        &mut w,
        r#"{"jsonrpc":"2.0","id":4.2e1,"method":"tools/call","params":{"name":"get_config","arguments":{}}}"#,
    );
    assert_eq!(error_of(&answer).0, -32600, "{raw}");
    assert!(raw.contains(r#""id":4.2e1"#), "{raw}");
    assert!(error_of(&answer).1.contains("already in flight"), "{raw}");
    still_serves(&mut w);
}

/// A long line no plugin watches streams past the chain, routed by its first
/// `method`; a second `method` later in the line must not reach the server.
#[test]
fn a_streaming_line_is_cut_off_at_a_key_given_twice() {
    // Only tool-policy: nothing watches `ping`, so the line would stream.
    let plugins = PluginDir::new().add_example("10-tool-policy", "tool-policy");
    let fixture = paths().fixture.display().to_string();
    let mut w = Warden::start_with(Some(plugins.path()), &[], &[&fixture]);
    w.initialize();
    let pad = "p".repeat(300 * 1024);
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"ping","params":{{"pad":"{pad}"}},"method":"tools/call","params":{{"name":"delete_everything"}}}}"#
    );
    w.send_raw(&line);
    // The server saw a line cut short (and may say so with a parse error);
    // the client is told why under its id, and nothing was run.
    let answer = w.answer_to(&json!(9));
    assert_eq!(error_of(&answer).0, -32600, "{answer}");
    assert!(error_of(&answer).1.contains("duplicate top-level key"), "{answer}");
    // The same without the second key streams through and is answered.
    let line = format!(r#"{{"jsonrpc":"2.0","id":10,"method":"ping","params":{{"pad":"{pad}"}}}}"#);
    w.send_raw(&line);
    assert_eq!(w.answer_to(&json!(10))["result"], json!({}));
    still_serves(&mut w);
}

#[test]
fn a_too_large_message_is_answered_under_its_top_level_id_only() {
    let fixture = paths().fixture.display().to_string();
    let mut w = Warden::start_with(None, &["--max-message-bytes", "4096"], &[&fixture]);
    w.initialize();
    let pad = "q".repeat(8192);
    let line = format!(r#"{{"jsonrpc":"2.0","params":{{"id":666,"pad":"{pad}"}},"id":7,"method":"tools/call"}}"#);
    let (raw, answer) = exchange(&mut w, &line);
    assert_ne!(answer["id"], 666, "never an id from inside params: {raw}");
    assert_eq!(error_of(&answer).0, -31053, "{raw}");
    assert_eq!(answer["error"]["data"]["warden"], "too-large", "{raw}");
    let line = format!(r#"{{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{{"id":666,"pad":"{pad}"}}}}"#);
    let (raw, answer) = exchange(&mut w, &line);
    assert_eq!(answer["id"], 8, "{raw}");
}

/// Over HTTP the same: an answer under `100.0` to a request `1e2` reaches its
/// POST (it hung before), through the response chain, under `1e2`; a
/// duplicate key is `400` with `-32600`.
#[test]
fn over_http_ids_match_by_value_and_duplicates_are_refused() {
    let plugins = examples();
    let gw = crate::common::http::Gateway::start(Some(plugins.path()), &[]);
    let session = gw.open();
    let version = [("mcp-protocol-version", "2025-06-18")];
    let call = r#"{"jsonrpc":"2.0","id":1e2,"method":"tools/call","params":{"name":"get_config","arguments":{}}}"#;
    let answer = gw.post(Some(&session), call, &version);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body.contains(r#""id":1e2"#), "{}", answer.body);
    assert!(text_of(&answer.answer()).contains("[REDACTED]"), "{}", answer.body);
    let twice = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","name":"delete_everything","arguments":{}}}"#;
    let refused = gw.post(Some(&session), twice, &version);
    assert_eq!(refused.status, 400, "{refused:?}");
    assert_eq!(error_of(&refused.answer()).0, -32600);
}

/// JSON allows line breaks between tokens; a stdio server ends a message at
/// each. An HTTP body that hides a second call behind one must reach the
/// child as the one message the plugins judged, and a pretty-printed request
/// must be answered (it hung: the child read only fragments).
#[test]
fn line_breaks_in_an_http_body_smuggle_nothing_to_a_stdio_server() {
    let plugins = examples();
    let gw = crate::common::http::Gateway::start(Some(plugins.path()), &[]);
    let session = gw.open();
    let version = [("mcp-protocol-version", "2025-06-18")];
    for (id, hidden) in [
        (1, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_everything","arguments":{}}}"#),
        (
            2,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/etc/passwd","content":"pwn"}}}"#,
        ),
    ] {
        for newline in ["\n", "\r", "\r\n"] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"judged"}}}},"x":{newline}{hidden}{newline}}}"#
            );
            let answer = gw.post(Some(&session), &body, &version);
            assert_eq!(answer.status, 200, "{answer:?}");
            assert_eq!(text_of(&answer.answer()), "judged", "{newline:?}: {}", answer.body);
        }
    }
    let pretty = serde_json::to_string_pretty(&serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "pretty"}}})).expect("json");
    let answer = gw.post(Some(&session), &pretty, &version);
    assert_eq!(text_of(&answer.answer()), "pretty", "{}", answer.body);
}
