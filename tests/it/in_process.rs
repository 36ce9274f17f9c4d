//! The relay driven in-process: `wrap::run_with` over in-memory pipes (tokio's
//! `duplex`), with a real chain built from the test plugins and the fixture
//! server as the upstream. No `warden` process in between: what these assert
//! is the library's own behaviour.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;
use warden::audit::AuditSink;
use warden::plugin::{Plugins, Runtime, RuntimeOptions};
use warden::session::SessionEnd;
use warden::upstream::Target;
use warden::wrap::{self, WrapOptions};

use crate::common::{paths, text_of, PluginDir, PATIENCE};

/// The client's end of an in-process `warden wrap`.
struct Client {
    input: WriteHalf<DuplexStream>,
    output: Lines<BufReader<ReadHalf<DuplexStream>>>,
    run: JoinHandle<Result<SessionEnd, warden::start::StartError>>,
}

impl Client {
    async fn start(plugins: &PluginDir) -> Client {
        let p = paths();
        let (client, warden) = tokio::io::duplex(1 << 20);
        let (warden_in, warden_out) = tokio::io::split(warden);
        let runtime = Runtime::new(RuntimeOptions { cache_dir: Some(p.cache.clone()), audit: AuditSink::disabled() })
            .expect("runtime");
        let dir = Some(plugins.path().to_owned());
        let loaded = Plugins::load(runtime, dir.clone()).await.expect("plugins load");
        let options = WrapOptions {
            plugins: dir,
            upstream: Target::Command { command: vec![p.fixture.display().to_string()], probe_era: false },
            upstream_name: None,
            max_message_bytes: 4 << 20,
            cache_dir: Some(p.cache),
            audit: AuditSink::disabled(),
            watch: false,
            exit_grace: Duration::from_secs(5),
            caller: None,
        };
        let run = tokio::spawn(wrap::run_with(loaded, options, warden_in, warden_out, std::future::pending()));
        let (output, input) = tokio::io::split(client);
        let mut c = Client { input, output: BufReader::new(output).lines(), run };
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "in-process", "version": "0"}}});
        c.send(&init.to_string()).await;
        assert!(c.recv().await["result"]["protocolVersion"].is_string());
        c.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;
        c
    }

    async fn send(&mut self, line: &str) {
        self.input.write_all(line.as_bytes()).await.expect("write");
        self.input.write_all(b"\n").await.expect("write");
    }

    async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(PATIENCE, self.output.next_line()).await.expect("an answer in time");
        let line = line.expect("read").expect("Warden closed its output");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Closes the client's input; the run ends cleanly.
    async fn finish(mut self) {
        self.input.shutdown().await.expect("close");
        drop(self.input);
        let end = tokio::time::timeout(PATIENCE, self.run).await.expect("ends in time").expect("joins");
        assert_eq!(end.expect("runs"), SessionEnd::Clean);
    }
}

fn call(id: impl Into<Value>, tool: &str, arguments: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id.into(), "method": "tools/call", "params": {"name": tool, "arguments": arguments}})
        .to_string()
}

/// A plugin interested in nothing the tests send: long messages stream past it.
fn idle() -> PluginDir {
    PluginDir::new().add("10-idle", "misbehave", "[config]\naction = \"nothing\"\nmethods = [\"never/this\"]\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_calls_are_each_answered_once_through_a_real_chain() {
    let plugins = crate::common::examples();
    let mut c = Client::start(&plugins).await;
    for i in 0..100 {
        c.send(&call(format!("p-{i}"), "add", json!({"a": i, "b": 1}))).await;
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..100 {
        let answer = c.recv().await;
        let id = answer["id"].as_str().expect("string id").to_owned();
        let i: u64 = id.trim_start_matches("p-").parse().expect("our id");
        assert_eq!(text_of(&answer), (i + 1).to_string());
        assert!(seen.insert(id), "answered once");
    }
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_message_no_plugin_wants_streams_through_whole() {
    let plugins = idle();
    let mut c = Client::start(&plugins).await;
    let text = "z".repeat(300 * 1024);
    c.send(&call(1, "echo", json!({ "text": text }))).await;
    assert_eq!(text_of(&c.recv().await), text);
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_answered_as_one_array() {
    let plugins = idle();
    let mut c = Client::start(&plugins).await;
    let batch = format!(
        "[{},{},{}]",
        call(1, "echo", json!({"text": "a"})),
        call(2, "add", json!({"a": 1, "b": 2})),
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}"#
    );
    c.send(&batch).await;
    let answers = c.recv().await;
    let answers = answers.as_array().expect("one array");
    assert_eq!(answers.len(), 2, "{answers:?}");
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapped_plugin_fails_its_message_only() {
    let plugins = PluginDir::new().add("10-trap", "misbehave", "[config]\naction = \"trap\"\ntool = \"boom\"\n");
    let mut c = Client::start(&plugins).await;
    c.send(&call(1, "boom", json!({}))).await;
    let failed = c.recv().await;
    assert_eq!(failed["error"]["code"], -31050, "{failed}");
    assert_eq!(failed["error"]["data"]["warden"], "plugin-failed", "{failed}");
    c.send(&call(2, "echo", json!({"text": "still here"}))).await;
    assert_eq!(text_of(&c.recv().await), "still here");
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_for_an_id_nobody_asked_goes_nowhere() {
    let plugins = idle();
    let mut c = Client::start(&plugins).await;
    // The client answers a request the server never made: dropped, not passed on.
    c.send(r#"{"jsonrpc":"2.0","id":999,"result":{}}"#).await;
    c.send(&call(2, "echo", json!({"text": "next"}))).await;
    let next = c.recv().await;
    assert_eq!(next["id"], 2, "the next line is the call's answer, nothing about id 999: {next}");
    assert_eq!(text_of(&next), "next");
    c.finish().await;
}

/// `serve::run_on` takes a listener bound by its caller (port 0 here), serves
/// on it, and returns once `shutdown` resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_a_listener_passed_in_and_stops_on_shutdown() {
    let p = paths();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let options = warden::serve::ServeOptions {
        listen: address,
        path: "/mcp".to_owned(),
        plugins: None,
        upstream: Target::Command { command: vec![p.fixture.display().to_string()], probe_era: false },
        upstream_name: None,
        max_message_bytes: 1 << 20,
        max_body_bytes: 1 << 20,
        allowed_origins: Vec::new(),
        allowed_hosts: Vec::new(),
        session_idle: Duration::from_secs(60),
        max_sessions: 4,
        max_sessions_per_caller: 4,
        max_backings_per_caller: 4,
        cache_dir: Some(p.cache),
        audit: AuditSink::disabled(),
        watch: false,
        clients: None,
        limits: warden::serve::listener::ConnectionLimits::default(),
        tls: None,
        oauth: None,
        main_path: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(warden::serve::run_on(listener, options, async {
        let _ = stopped.await;
    }));
    let url = format!("http://{address}/mcp");
    let answer = tokio::task::spawn_blocking(move || {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "in-process", "version": "0"}}});
        let response = ureq::post(&url)
            .set("Content-Type", "application/json")
            .set("Accept", "application/json, text/event-stream")
            .send_string(&init.to_string())
            .expect("initialize");
        (response.header("mcp-session-id").map(str::to_owned), response.into_string().expect("body"))
    })
    .await
    .expect("client");
    assert!(answer.0.is_some(), "a session was opened");
    assert!(answer.1.contains("\"protocolVersion\""), "{}", answer.1);
    let _ = stop.send(());
    let ended = tokio::time::timeout(PATIENCE, run).await.expect("stops in time").expect("joins");
    assert!(ended.is_ok(), "{ended:?}");
}
