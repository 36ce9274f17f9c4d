//! The stdio relay: pipelining, notifications both ways, server→client requests,
//! malformed and oversized input, byte-for-byte forwarding.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::{error_of, examples, paths, text_of, PluginDir, Warden};

#[test]
fn two_hundred_pipelined_requests_are_each_answered_once() {
    let plugins = examples();
    let mut w = Warden::start(&plugins);
    w.initialize();
    // Write all 200 before reading any answer.
    let mut batch = String::new();
    for i in 0..200 {
        let request = json!({"jsonrpc": "2.0", "id": format!("p-{i}"), "method": "tools/call", "params": {"name": "add", "arguments": {"a": i, "b": 1}}});
        batch.push_str(&request.to_string());
        batch.push('\n');
    }
    w.send_raw(batch.trim_end());
    let mut seen = std::collections::HashMap::new();
    for _ in 0..200 {
        let answer = w.recv();
        let id = answer["id"].as_str().expect("string id").to_owned();
        let i: u64 = id.trim_start_matches("p-").parse().expect("our id");
        assert_eq!(text_of(&answer), (i + 1).to_string(), "answer matches its request");
        *seen.entry(id).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 200);
    assert!(seen.values().all(|&n| n == 1));
    w.close_stdin();
    assert!(w.stdout_closed(), "nothing more after the 200 answers");
}

/// A client that writes far more than the pipes hold before reading anything:
/// Warden must keep reading the server's answers while its requests queue up.
#[test]
fn a_flood_of_requests_neither_deadlocks_nor_loses_any() {
    let plugins = examples();
    let mut w = Warden::start(&plugins);
    w.initialize();
    let count = 20_000;
    let mut flood = String::new();
    for i in 0..count {
        let request = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x".repeat(100)}}});
        flood.push_str(&request.to_string());
        flood.push('\n');
    }
    let writer = w.send_in_background(flood);
    let mut seen = vec![0u8; count];
    for _ in 0..count {
        let answer = w.recv();
        seen[answer["id"].as_u64().expect("numeric id") as usize] += 1;
    }
    writer.join().expect("writer");
    assert!(seen.iter().all(|&n| n == 1), "every request answered exactly once");
}

#[test]
fn notifications_pass_both_ways() {
    let plugins = examples();
    let mut w = Warden::start(&plugins);
    w.initialize();
    w.send(&json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}));
    // Server → client: a log notification before the answer.
    let answer = w.call_tool("notify", json!({}));
    assert_eq!(text_of(&answer), "notified");
    let note = w.wait_for(|m| m["method"] == "notifications/message");
    assert_eq!(note["params"]["data"], "hello from the fixture");
    // Client → server: the fixture saw both of ours.
    let answer = w.call_tool("client_notifications", json!({}));
    assert_eq!(text_of(&answer), "notifications/initialized,notifications/roots/list_changed");
    let audit = w.finish();
    assert!(audit
        .iter()
        .any(|e| e["event"]["method"] == "notifications/message" && e["event"]["direction"] == "server-to-client"));
    assert!(audit
        .iter()
        .any(|e| e["event"]["method"] == "notifications/roots/list_changed"
            && e["event"]["direction"] == "client-to-server"));
}

#[test]
fn server_to_client_requests_pass_the_hooks_and_their_answers_return() {
    let plugins = examples();
    let mut w = Warden::start(&plugins);
    w.initialize();
    let id = w.fresh_id();
    w.send(
        &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "ask_client", "arguments": {}}}),
    );
    let ask = w.wait_for(|m| m["method"] == "sampling/createMessage");
    w.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "test"}}));
    let answer = w.answer_to(&id);
    assert_eq!(text_of(&answer), "client said: hi");
    let audit = w.finish();
    let sampling: Vec<&Value> = audit.iter().filter(|e| e["event"]["method"] == "sampling/createMessage").collect();
    assert!(
        sampling.iter().any(|e| e["event"]["type"] == "request" && e["event"]["direction"] == "server-to-client"),
        "{sampling:?}"
    );
    assert!(
        sampling.iter().any(|e| e["event"]["type"] == "response" && e["event"]["direction"] == "client-to-server"),
        "{sampling:?}"
    );
}

#[test]
fn malformed_input_gets_a_parse_error_and_the_proxy_keeps_serving() {
    let plugins = examples();
    let mut w = Warden::start(&plugins);
    w.initialize();
    w.send_raw("{this is not json");
    let error = w.recv();
    assert_eq!(error["id"], Value::Null);
    assert_eq!(error_of(&error).0, -32700);
    w.send_raw(r#"{"jsonrpc":"2.0","id":77}"#);
    let error = w.answer_to(&json!(77));
    assert_eq!(error_of(&error).0, -32600);
    let answer = w.call_tool("echo", json!({"text": "still here"}));
    assert_eq!(text_of(&answer), "still here");
}

#[test]
fn oversized_messages_are_refused_clearly() {
    // A plugin that sees everything: every message is held whole, so none is streamed.
    let watcher = PluginDir::new().add("10-all", "misbehave", "[config]\naction = \"nothing\"\nmethods = [\"*\"]\n");
    let fixture = paths().fixture.display().to_string();
    let mut w = Warden::start_with(Some(watcher.path()), &["--max-message-bytes", "65536"], &[&fixture]);
    w.initialize();
    let huge = "y".repeat(200_000);
    w.send(&json!({"jsonrpc": "2.0", "id": "big-1", "method": "tools/call", "params": {"name": "echo", "arguments": {"text": huge}}}));
    let error = w.answer_to(&json!("big-1"));
    let (code, message) = error_of(&error);
    assert_eq!(code, -31053);
    assert!(message.contains("65536"), "{message}");
    // An answer too large for the limit is replaced by an error to its request.
    let answer = w.call_tool("big", json!({"bytes": 100_000}));
    assert_eq!(error_of(&answer).0, -31053);
    let answer = w.call_tool("big", json!({"bytes": 1000}));
    assert_eq!(text_of(&answer).len(), 1000);
}

#[test]
fn oversized_streamed_messages_are_cut_off_and_answered() {
    let mut w = Warden::start_with(None, &["--max-message-bytes", "100000"], &[&paths().fixture.display().to_string()]);
    w.initialize();
    // A request passes the limit while streaming to the server: cut off there, answered by Warden.
    let huge = "y".repeat(300_000);
    w.send(&json!({"jsonrpc": "2.0", "id": "big-1", "method": "tools/call", "params": {"name": "echo", "arguments": {"text": huge}}}));
    let error = w.answer_to(&json!("big-1"));
    let (code, message) = error_of(&error);
    assert_eq!(code, -31053);
    assert!(message.contains("100000"), "{message}");
    // An answer passes the limit while streaming to the client: the client sees the line
    // end where it was cut, then the error for its request.
    w.send(&json!({"jsonrpc": "2.0", "id": "big-2", "method": "tools/call", "params": {"name": "big", "arguments": {"bytes": 300_000}}}));
    let cut = loop {
        let line = w.recv_line();
        if line.len() > 1000 {
            break line;
        }
    };
    assert!(serde_json::from_str::<serde_json::Value>(&cut).is_err() && cut.len() <= 100_000 + 65_536);
    let (code, _) = error_of(&w.answer_to(&json!("big-2")));
    assert_eq!(code, -31053);
    // The session goes on.
    let answer = w.call_tool("big", json!({"bytes": 90_000}));
    assert_eq!(text_of(&answer).len(), 90_000);
}

#[test]
fn long_messages_stream_through_pipelined_with_short_ones() {
    let mut w = Warden::start_with(None, &[], &[&paths().fixture.display().to_string()]);
    w.initialize();
    let sizes = [1 << 20, 10, 300_000, 5, 1 << 20, 70_000];
    for (i, size) in sizes.iter().enumerate() {
        w.send(&json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "w".repeat(*size)}}}));
    }
    for (i, size) in sizes.iter().enumerate() {
        assert_eq!(text_of(&w.answer_to(&json!(i))).len(), *size, "answer {i}");
    }
}

#[test]
fn megabyte_payloads_pass_through_the_plugins() {
    let plugins = examples();
    let mut w = Warden::start(&plugins);
    w.initialize();
    let text = "z".repeat(1 << 20);
    let answer = w.call_tool("echo", json!({"text": text}));
    assert_eq!(text_of(&answer).len(), 1 << 20);
    let answer = w.call_tool("big", json!({"bytes": 1 << 20}));
    assert_eq!(text_of(&answer).len(), 1 << 20);
}

/// Runs the fixture directly and through Warden on the same input; stdout must match byte for byte.
#[test]
fn unchanged_messages_are_forwarded_byte_for_byte() {
    let p = paths();
    let long = "é\\\"x".repeat(100_000);
    let input = [
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#.to_owned(),
        r#"{ "method" : "tools/call" , "jsonrpc":"2.0", "id":"two", "params":{"name":"echo","arguments":{"text":"é\u00e9 \"q\""},"_meta":{"x-unknown":[1,2]}}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":3,"method":"vendor/unknown","params":{"z":1}}"#.to_owned(),
        // Long, head first: streamed through both ways while it arrives.
        format!(r#"{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{long}"}}}}}}"#),
        // Long, id last: gathered and handled whole.
        format!(r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"arguments":{{"text":"{long}"}},"name":"echo"}},"id":5}}"#),
    ]
    .join("\n")
        + "\n";
    let run = |cmd: &mut Command| -> Vec<u8> {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        // Written from a thread: the answers must be read while the long input goes in.
        let bytes = input.clone().into_bytes();
        let writer = std::thread::spawn(move || stdin.write_all(&bytes).expect("write"));
        let output = child.wait_with_output().expect("output").stdout;
        writer.join().expect("writer");
        output
    };
    let direct = run(&mut Command::new(&p.fixture));
    let idle =
        PluginDir::new().add("50-idle", "misbehave", "[config]\naction = \"nothing\"\nmethods = [\"never/this\"]\n");
    let proxied = run(Command::new(&p.warden)
        .args(["wrap", "--plugins"])
        .arg(idle.path())
        .arg("--cache-dir")
        .arg(&p.cache)
        .arg("--")
        .arg(&p.fixture));
    assert!(proxied == direct, "proxied output differs from the server's own");
    assert_eq!(proxied.iter().filter(|&&b| b == b'\n').count(), 5);
}
