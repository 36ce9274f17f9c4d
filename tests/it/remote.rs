//! A remote upstream over Streamable HTTP: `warden wrap --url` (stdio client →
//! HTTP server) and `warden serve --upstream-url` (HTTP → HTTP). The remote
//! server is `warden serve` in front of the fixture with no plugins, so the
//! same fixture tools answer whichever way they are reached; the official
//! reference server in its HTTP mode is a second, foreign, peer.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::http::Gateway;
use crate::common::{error_of, examples, free_port, installed, paths, python_sdk, text_of, Warden};

#[test]
fn wrap_bridges_a_stdio_client_to_an_http_server_through_the_plugins() {
    let remote = Gateway::start(None, &[]);
    let plugins = examples();
    let flags = ["--url", remote.url.as_str(), "--header", "X-Upstream-Key: hunter2-not-for-logs"];
    let mut w = Warden::start_with(Some(plugins.path()), &flags, &[]);
    let init = w.initialize();
    assert_eq!(init["result"]["serverInfo"]["name"], "warden-fixture", "{init}");

    let list = w.request("tools/list", json!({}));
    let names: Vec<&str> =
        list["result"]["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"echo") && !names.contains(&"delete_everything"), "{names:?}");
    assert_eq!(text_of(&w.call_tool("echo", json!({"text": "over http"}))), "over http");
    let denied = w.call_tool("delete_everything", json!({}));
    assert_eq!(error_of(&denied).0, -32001, "{denied}");
    let secret = text_of(&w.call_tool("get_config", json!({}))).to_owned();
    assert!(secret.contains("[REDACTED]") && !secret.contains("sk-proj-"), "{secret}");

    // A server→client request in the middle of a call, over the POST's event stream.
    let id = w.fresh_id();
    w.send(
        &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "ask_client", "arguments": {}}}),
    );
    let ask = w.wait_for(|m| m["method"] == "sampling/createMessage");
    w.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "test"}}));
    assert_eq!(text_of(&w.answer_to(&id)), "client said: hi");

    // A notification the server sends during a call arrives before its answer.
    let id = w.fresh_id();
    w.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "notify", "arguments": {}}}));
    let note = w.wait_for(|m| m["method"] == "notifications/message");
    assert_eq!(note["params"]["data"], "hello from the fixture");
    w.answer_to(&id);

    assert_eq!(text_of(&w.call_tool("big", json!({"bytes": 1 << 20}))).len(), 1 << 20);
    // Pipelined calls stay concurrent (more than the 64 posted at once) and each gets its own answer.
    let ids: Vec<Value> = (0..100).map(|_| w.fresh_id()).collect();
    for (n, id) in ids.iter().enumerate() {
        w.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "add", "arguments": {"a": n, "b": 1}}}));
    }
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(text_of(&w.answer_to(id)), (n + 1).to_string());
    }
    assert!(!w.stderr().contains("hunter2"), "the upstream credential reached a log");
    w.finish();
}

#[test]
fn upstream_headers_are_sent_never_logged_and_http_errors_answered() {
    // A one-shot HTTP server that records the request head and answers 503.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Write};
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = String::new();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let reply = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbusy";
        stream.write_all(reply.as_bytes()).unwrap();
        head
    });
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "from-a-file\n").unwrap();
    let file_flag = format!("X-From-File={}", key.display());
    let url = format!("http://127.0.0.1:{port}/mcp");
    let flags = ["--url", &url, "--header", "Authorization: Bearer tok-123456", "--header-from-file", &file_flag];
    let mut w = Warden::start_with(None, &flags, &[]);
    let answer = w.request(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}),
    );
    let (code, message) = error_of(&answer);
    assert_eq!(code, -31052, "{answer}");
    assert!(message.contains("503") && message.contains("busy"), "{message}");
    let head = server.join().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("post /mcp "), "{head}");
    assert!(head.contains("authorization: bearer tok-123456") && head.contains("x-from-file: from-a-file"), "{head}");
    assert!(head.contains("accept: application/json, text/event-stream"), "{head}");
    let log = w.stderr();
    assert!(!log.contains("tok-123456") && !log.contains("from-a-file"), "{log}");
    w.finish();
}

#[test]
fn serve_fronts_a_remote_server_for_the_python_sdk() {
    let Some(python) = python_sdk() else { return };
    let remote = Gateway::start(None, &[]);
    let plugins = examples();
    let front = Gateway::start_with(Some(plugins.path()), &["--upstream-url", remote.url.as_str()], &[]);
    for mode in ["legacy", "auto"] {
        let heard = remote.cancellations_heard();
        let seen = front.python_client(&python, mode);
        crate::common::http::assert_conversations(&seen, mode, remote.heard_a_cancellation_since(heard));
    }
}

/// The Python SDK client as a stdio client of `warden wrap --url`, in both of
/// its modes, in front of `warden serve` and the fixture: the fixture's
/// conversations (sampling, elicitation, roots, logging, cancellation) cross
/// stdio→HTTP→stdio with the example plugins on the way.
#[test]
fn wrap_url_serves_the_python_sdk_client_over_stdio() {
    let Some(python) = python_sdk() else { return };
    let remote = Gateway::start(None, &[]);
    let plugins = examples();
    let p = paths();
    let log = tempfile::NamedTempFile::new().expect("temp file");
    for mode in ["legacy", "auto"] {
        let heard = remote.cancellations_heard();
        let out = std::process::Command::new(&python)
            .arg(p.repo.join("tests/python/client.py"))
            .args(["--stdio", mode, "--"])
            .arg(&p.warden)
            .args(["wrap", "--url", remote.url.as_str(), "--cache-dir"])
            .arg(&p.cache)
            .arg("--plugins")
            .arg(plugins.path())
            .env("WARDEN_LOG", "info")
            .stderr(log.reopen().expect("log file"))
            .output()
            .expect("run python");
        let log = std::fs::read_to_string(log.path()).unwrap_or_default();
        assert!(out.status.success(), "{mode}: {log}");
        let seen: Value = serde_json::from_slice(&out.stdout).expect("client output is JSON");
        crate::common::http::assert_conversations(&seen, mode, remote.heard_a_cancellation_since(heard));
    }
}

#[test]
fn a_restarted_remote_gets_a_new_session_without_the_client_noticing() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let fixture = paths().fixture.display().to_string();
    let remote = Gateway::start_with(None, &["--listen", &listen], &[&fixture]);
    let mut w = Warden::start_with(None, &["--url", remote.url.as_str()], &[]);
    w.initialize();
    assert_eq!(text_of(&w.call_tool("echo", json!({"text": "before"}))), "before");
    // The server restarts and forgets every session: the next call meets a 404.
    drop(remote);
    let _remote = Gateway::start_with(None, &["--listen", &listen], &[&fixture]);
    assert_eq!(text_of(&w.call_tool("echo", json!({"text": "after"}))), "after");
    assert!(w.log_contains("a new one was made"), "{}", w.stderr());
    w.finish();
}

#[test]
fn an_unreachable_remote_is_answered_clearly_and_warden_keeps_serving() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut w = Warden::start_with(None, &["--url", &url], &[]);
    for _ in 0..2 {
        let answer = w.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}),
        );
        let (code, message) = error_of(&answer);
        assert_eq!(code, -31052, "{answer}");
        assert!(message.contains("unreachable"), "{message}");
    }
    w.finish();
}

/// The official reference server in its Streamable HTTP mode, as a foreign peer.
#[test]
fn the_reference_server_over_http_through_wrap() {
    let bin = paths().repo.join("target/npm/node_modules/.bin/mcp-server-everything");
    if !installed(&bin, "WARDEN_REQUIRE_NPM") {
        return;
    }
    let port = free_port();
    let mut server = std::process::Command::new(&bin)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start server-everything");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "server-everything did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    let plugins = examples();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut w = Warden::start_with(Some(plugins.path()), &["--url", &url], &[]);
    let init = w.initialize();
    assert!(init["result"]["serverInfo"]["name"].is_string(), "{init}");
    let answer = w.call_tool("echo", json!({"message": "through warden over http"}));
    assert!(text_of(&answer).contains("through warden over http"), "{answer}");
    let (code, _) = error_of(&w.call_tool("delete_all", json!({})));
    assert_eq!(code, -32001);
    w.finish();
    let _ = server.kill();
    let _ = server.wait();
}

/// tests/python/server.py (the official Python SDK's server) on a free port.
struct PythonServer {
    child: std::process::Child,
    url: String,
    _logs: tempfile::NamedTempFile,
}

impl PythonServer {
    /// `mode`: `http` (Streamable HTTP, both eras, at /mcp) or `sse` (HTTP+SSE, 2024-11-05, at /sse).
    fn start(python: &std::path::Path, mode: &str) -> PythonServer {
        let port = free_port();
        let script = paths().repo.join("tests/python/server.py");
        // Its log goes to a file (not /dev/null: a regular file on this machine).
        let logs = tempfile::NamedTempFile::new().expect("log file");
        let log = |l: &tempfile::NamedTempFile| l.reopen().map(std::process::Stdio::from).expect("log file");
        let child = std::process::Command::new(python)
            .arg(&script)
            .args([mode, &port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(log(&logs))
            .stderr(log(&logs))
            .spawn()
            .expect("start the Python SDK server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the Python SDK server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let path = if mode == "sse" { "sse" } else { "mcp" };
        PythonServer { child, url: format!("http://127.0.0.1:{port}/{path}"), _logs: logs }
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Both eras of client in front of both a modern (dual-era) server and an
/// HTTP+SSE (2024-11-05) one, with the example plugins between.
#[test]
fn serve_bridges_both_client_eras_to_python_sdk_servers_of_both_kinds() {
    let Some(python) = python_sdk() else { return };
    let plugins = examples();
    for (mode, found) in [("http", "era=Modern"), ("sse", "speaks HTTP+SSE (2024-11-05)")] {
        let upstream = PythonServer::start(&python, mode);
        let front = Gateway::start_with(Some(plugins.path()), &["--upstream-url", upstream.url.as_str()], &[]);
        for client in ["legacy", "auto"] {
            let what = format!("{client} client, {mode} upstream");
            let seen = front.python_client_with(&python, client, &["basic"]);
            assert_eq!(seen["era"], if client == "auto" { "2026-07-28" } else { "2025-11-25" }, "{what}");
            assert_eq!(seen["echo"], "hello", "{what}");
            assert!(seen["denied"].as_str().unwrap_or_default().contains("delete_*"), "{what}: {seen}");
            for key in ["redacted", "resource", "prompt"] {
                let text = seen[key].as_str().unwrap_or_default();
                assert!(text.contains("[REDACTED]") && !text.contains("sk-proj-"), "{what} {key}: {text}");
            }
            assert_eq!(seen["progress"], json!([1.0, 2.0, 3.0]), "{what}");
            assert_eq!(seen["big"], 1 << 20, "{what}");
            let sums: Vec<String> = (1..=24).map(|n| n.to_string()).collect();
            assert_eq!(seen["concurrent"], json!(sums), "{what}");
        }
        assert!(front.log_contains(found), "{mode}: {}", front.stderr());
    }
}

#[test]
fn wrap_reaches_an_http_sse_server() {
    let Some(python) = python_sdk() else { return };
    let upstream = PythonServer::start(&python, "sse");
    let plugins = examples();
    let mut w = Warden::start_with(Some(plugins.path()), &["--url", upstream.url.as_str()], &[]);
    let init = w.initialize();
    assert_eq!(init["result"]["serverInfo"]["name"], "python-upstream", "{init}");
    assert_eq!(text_of(&w.call_tool("echo", json!({"text": "old transport"}))), "old transport");
    assert_eq!(error_of(&w.call_tool("delete_everything", json!({}))).0, -32001);
    w.finish();
}
