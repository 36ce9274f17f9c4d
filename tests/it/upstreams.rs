//! Many upstreams behind one `warden wrap --config warden.toml`: prefixed,
//! merged lists; each call reaching its upstream with the name that upstream
//! knows (so the chain judges it by that name); server→client requests,
//! progress and cancellation carried to and from the right upstream; and an
//! upstream that never starts or dies leaving the others serving.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::common::{error_of, examples, paths, text_of, PluginDir, Warden};

/// A `warden.toml` in a fresh folder: `upstreams` are `(name, command)`.
pub(crate) fn config(dir: &Path, plugins: Option<&Path>, upstreams: &[(&str, Vec<String>)]) -> std::path::PathBuf {
    let with: Vec<(&str, Vec<String>, &str)> = upstreams.iter().map(|(n, c)| (*n, c.clone(), "")).collect();
    config_with(dir, plugins, &with)
}

/// The same, with more lines for each upstream's table.
pub(crate) fn config_with(
    dir: &Path,
    plugins: Option<&Path>,
    upstreams: &[(&str, Vec<String>, &str)],
) -> std::path::PathBuf {
    let mut text = String::new();
    if let Some(p) = plugins {
        text.push_str(&format!("plugins = {:?}\n", p.display().to_string()));
    }
    for (name, command, extra) in upstreams {
        text.push_str(&format!("[upstreams.{name}]\ncommand = {}\n{extra}\n", serde_json::to_string(command).unwrap()));
    }
    let file = dir.join("warden.toml");
    std::fs::write(&file, text).expect("write config");
    file
}

pub(crate) fn fixture() -> Vec<String> {
    vec![paths().fixture.display().to_string()]
}

fn gateway(plugins: Option<&PluginDir>, upstreams: &[(&str, Vec<String>)]) -> (Warden, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = config(dir.path(), plugins.map(PluginDir::path), upstreams);
    let w = Warden::start_with(None, &["--config", &file.display().to_string()], &[]);
    (w, dir)
}

/// Code and message of an error answer, owned.
pub(crate) fn failure(answer: Value) -> (i64, String) {
    let (code, message) = error_of(&answer);
    (code, message.to_owned())
}

pub(crate) fn names(list: &Value, key: &str) -> Vec<String> {
    list["result"][key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key}: {list}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn two_upstreams_appear_as_one_server_and_each_call_is_judged_by_its_own_name() {
    let plugins = examples();
    let (mut w, _dir) = gateway(Some(&plugins), &[("one", fixture()), ("two", fixture())]);
    let init = w.initialize();
    assert_eq!(init["result"]["serverInfo"]["name"], "warden", "{init}");
    assert_eq!(init["result"]["capabilities"]["tools"]["listChanged"], true, "{init}");
    let tools = names(&w.request("tools/list", json!({})), "tools");
    for name in ["one__echo", "two__echo", "one__get_config", "two__write_file"] {
        assert!(tools.contains(&name.to_owned()), "{name} missing from {tools:?}");
    }
    // tool-policy hides `delete_*`: it saw the names the upstreams gave, unprefixed.
    assert!(!tools.iter().any(|t| t.contains("delete")), "{tools:?}");
    assert_eq!(text_of(&w.call_tool("one__echo", json!({"text": "to one"}))), "to one");
    assert_eq!(text_of(&w.call_tool("two__add", json!({"a": 2, "b": 3}))), "5");
    let denied = w.call_tool("two__delete_everything", json!({}));
    assert_eq!(error_of(&denied).0, -32001, "{denied}");
    let redacted = w.call_tool("one__get_config", json!({}));
    assert!(text_of(&redacted).contains("[REDACTED]") && !text_of(&redacted).contains("sk-proj-"), "{redacted}");
    let denied = w.call_tool("one__write_file", json!({"path": "/etc/passwd", "content": "x"}));
    assert_eq!(error_of(&denied).0, -32001, "{denied}");
    // A name no upstream has, and one without a prefix.
    for name in ["three__echo", "echo"] {
        let (code, message) = failure(w.call_tool(name, json!({})));
        assert_eq!(code, -32602, "{message}");
    }
    // Resources: listed, then read through the gateway from the upstream that listed them.
    let listed = w.request("resources/list", json!({}));
    assert!(listed["result"]["resources"].as_array().is_some_and(|r| !r.is_empty()), "{listed}");
    let read = w.request("resources/read", json!({"uri": "mem://config"}));
    assert!(read["result"]["contents"][0]["text"].as_str().is_some_and(|t| !t.contains("sk-proj-")), "{read}");
    assert_eq!(w.request("ping", json!({}))["result"], json!({}));
    // The audit trail tells the upstreams apart.
    let events = w.finish();
    let upstreams: Vec<&str> = events.iter().filter_map(|e| e["upstream"].as_str()).collect();
    assert!(upstreams.contains(&"one") && upstreams.contains(&"two"), "{events:?}");
}

#[test]
fn server_requests_progress_and_cancellation_reach_the_right_upstream() {
    let (mut w, _dir) = gateway(None, &[("one", fixture()), ("two", fixture())]);
    w.initialize();
    // A sampling request from `two` while `one` is called.
    w.send(&json!({"jsonrpc": "2.0", "id": "ask", "method": "tools/call", "params": {"name": "two__ask_client", "arguments": {}}}));
    let ask = w.wait_for(|m| m["method"] == "sampling/createMessage");
    assert_eq!(text_of(&w.call_tool("one__echo", json!({"text": "meanwhile"}))), "meanwhile");
    w.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"role": "assistant", "content": {"type": "text", "text": "sampled"}, "model": "m"}}));
    let answer = w.answer_to(&json!("ask"));
    assert!(text_of(&answer).contains("sampled"), "{answer}");
    // Progress under the client's own token.
    w.send(&json!({"jsonrpc": "2.0", "id": "p", "method": "tools/call", "params": {"name": "one__progress", "arguments": {}, "_meta": {"progressToken": "tok"}}}));
    for _ in 0..3 {
        let note = w.wait_for(|m| m["method"] == "notifications/progress");
        assert_eq!(note["params"]["progressToken"], "tok", "{note}");
    }
    assert_eq!(text_of(&w.answer_to(&json!("p"))), "progressed");
    // A cancellation reaches the upstream the call went to (it lists what the client sent).
    w.send(&json!({"jsonrpc": "2.0", "id": "slow", "method": "tools/call", "params": {"name": "two__slow", "arguments": {}}}));
    w.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "slow"}}));
    let seen = text_of(&w.call_tool("two__client_notifications", json!({}))).to_owned();
    assert!(seen.contains("notifications/cancelled"), "{seen}");
    let other = text_of(&w.call_tool("one__client_notifications", json!({}))).to_owned();
    assert!(!other.contains("notifications/cancelled"), "{other}");
}

#[test]
fn twenty_four_pipelined_calls_across_upstreams_are_each_answered_right() {
    let (mut w, _dir) = gateway(None, &[("a", fixture()), ("b", fixture()), ("c", fixture())]);
    w.initialize();
    let mut expected = HashMap::new();
    for i in 0..24 {
        let upstream = ["a", "b", "c"][i % 3];
        let id = json!(format!("call-{i}"));
        w.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": format!("{upstream}__echo"), "arguments": {"text": format!("{upstream}-{i}")}}}));
        expected.insert(i, format!("{upstream}-{i}"));
    }
    for (i, text) in expected {
        let answer = w.answer_to(&json!(format!("call-{i}")));
        assert_eq!(text_of(&answer), text);
    }
}

#[test]
fn an_upstream_that_never_starts_or_dies_leaves_the_others_serving_and_comes_back() {
    let missing = vec!["/nonexistent/mcp-server".to_owned()];
    let dir = tempfile::tempdir().expect("temp dir");
    let file = config_with(
        dir.path(),
        None,
        &[
            ("good", fixture(), ""),
            ("gone", missing, "restart-delay = \"50ms\""),
            ("dies", fixture(), "restart-delay = \"2s\""),
        ],
    );
    let mut w = Warden::start_with(None, &["--config", &file.display().to_string()], &[]);
    let init = w.initialize();
    assert!(init["result"]["capabilities"]["tools"].is_object(), "{init}");
    let tools = names(&w.request("tools/list", json!({})), "tools");
    assert!(tools.contains(&"good__echo".to_owned()) && tools.contains(&"dies__echo".to_owned()), "{tools:?}");
    assert!(!tools.iter().any(|t| t.starts_with("gone__")), "{tools:?}");
    let (code, message) = failure(w.call_tool("gone__echo", json!({})));
    assert_eq!(code, -31052, "{message}");
    assert!(message.contains("gone"), "{message}");
    // It is tried again, with backoff, and keeps failing without disturbing anyone.
    assert!(w.settled_log_count("upstream could not be started", 3) >= 3, "{}", w.stderr());
    // `dies` exits in the middle of a call: that call is answered, naming it.
    let crashed = w.call_tool("dies__crash", json!({}));
    let (code, message) = error_of(&crashed);
    assert_eq!(code, -31052, "{crashed}");
    assert!(message.contains("dies"), "{message}");
    let changed = w.wait_for(|m| m["method"] == "notifications/tools/list_changed");
    assert!(changed.get("id").is_none());
    let tools = names(&w.request("tools/list", json!({})), "tools");
    assert!(tools.contains(&"good__echo".to_owned()) && !tools.iter().any(|t| t.starts_with("dies__")), "{tools:?}");
    let (code, message) = failure(w.call_tool("dies__echo", json!({"text": "x"})));
    assert!(code == -31052 && message.contains("dies"), "{message}");
    assert_eq!(text_of(&w.call_tool("good__echo", json!({"text": "still here"}))), "still here");
    // After its restart delay it is back, and the client hears so.
    w.wait_for(|m| m["method"] == "notifications/tools/list_changed");
    let tools = names(&w.request("tools/list", json!({})), "tools");
    assert!(tools.contains(&"dies__echo".to_owned()), "{tools:?}");
    assert_eq!(text_of(&w.call_tool("dies__echo", json!({"text": "back"}))), "back");
}

#[test]
fn list_pages_carry_every_upstreams_own_cursor() {
    // The Python SDK server pages nothing; the fixture answers in one page:
    // a cursor the gateway did not give out is refused, not passed on.
    let (mut w, _dir) = gateway(None, &[("a", fixture())]);
    w.initialize();
    let answer = w.request("tools/list", json!({"cursor": "not-a-gateway-cursor"}));
    assert_eq!(error_of(&answer).0, -32602, "{answer}");
    let answer = w.request("tools/list", json!({}));
    assert!(answer["result"].get("nextCursor").is_none(), "{answer}");
}

/// What the official Python SDK client saw of a gateway of three real
/// servers: server-everything, a server on the Python SDK, the fixture.
fn assert_seen_through_the_gateway(seen: &Value, how: &str) {
    let tools: Vec<&str> = seen["tools"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for name in ["everything__echo", "py__echo", "fx__echo", "fx__ask_client"] {
        assert!(tools.contains(&name), "{how}: {name} missing from {tools:?}");
    }
    assert!(tools.iter().all(|t| t.contains("__")), "{how}: unprefixed tool in {tools:?}");
    assert!(seen["everything_echo"].as_str().unwrap_or_default().contains("to everything"), "{how}: {seen}");
    assert_eq!(seen["py_echo"], "to py", "{how}");
    assert_eq!(seen["fx_echo"], "to fx", "{how}");
    assert_eq!(seen["sampling"], "client said: hi from python", "{how}");
    assert_eq!(seen["py_add"], "5", "{how}");
    assert!(seen["prompts"].as_array().unwrap().contains(&json!("py__p")), "{how}: {seen}");
    assert!(seen["prompt"].is_string(), "{how}");
    assert!(seen["resources"].as_array().unwrap().contains(&json!("mem://config")), "{how}: {seen}");
    assert!(seen["resource"].is_string(), "{how}");
    let expected: Vec<String> =
        ["py", "fx"].iter().cycle().take(24).enumerate().map(|(i, u)| format!("{u}-{i}")).collect();
    assert_eq!(seen["concurrent"], json!(expected), "{how}");
}

#[test]
fn real_servers_behind_one_gateway_with_the_python_sdk_client_over_stdio_and_http() {
    let Some(python) = crate::common::python_sdk() else { return };
    let everything = paths().repo.join("target/npm/node_modules/.bin/mcp-server-everything");
    if !crate::common::installed(&everything, "WARDEN_REQUIRE_NPM") {
        return;
    }
    let p = paths();
    let dir = tempfile::tempdir().expect("temp dir");
    let server = p.repo.join("tests/python/server.py");
    let file = config(
        dir.path(),
        None,
        &[
            ("everything", vec![everything.display().to_string(), "stdio".into()]),
            ("py", vec![python.display().to_string(), server.display().to_string(), "stdio".into()]),
            ("fx", fixture()),
        ],
    );
    let script = p.repo.join("tests/python/gateway_client.py");
    let file = file.display().to_string();
    let cache = p.cache.display().to_string();
    for mode in ["legacy", "auto"] {
        let out = std::process::Command::new(&python)
            .arg(&script)
            .args(["--stdio", mode, "--"])
            .arg(&p.warden)
            .args(["wrap", "--cache-dir", &cache, "--config", &file])
            .output()
            .expect("run python");
        assert!(out.status.success(), "stdio {mode}: {}", String::from_utf8_lossy(&out.stderr));
        let seen: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_seen_through_the_gateway(&seen, &format!("stdio {mode}"));
    }
    let gw = crate::common::http::Gateway::start_with(None, &["--config", &file], &[]);
    for mode in ["legacy", "auto"] {
        let script = p.repo.join("tests/python/gateway_client.py");
        let out = std::process::Command::new(&python).arg(&script).arg(&gw.url).arg(mode).output().expect("run python");
        assert!(out.status.success(), "http {mode}: {}\n{}", String::from_utf8_lossy(&out.stderr), gw.stderr());
        let seen: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_seen_through_the_gateway(&seen, &format!("http {mode}"));
    }
}

#[test]
fn a_call_past_its_upstreams_timeout_is_answered_and_cancelled_and_concurrency_is_capped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = config_with(dir.path(), None, &[("s", fixture(), "timeout = \"300ms\"\nmax-concurrency = 1")]);
    let mut w = Warden::start_with(None, &["--config", &file.display().to_string()], &[]);
    w.initialize();
    // `slow` never answers; with one call at a time, `echo` waits behind it.
    w.send(&json!({"jsonrpc": "2.0", "id": "slow", "method": "tools/call", "params": {"name": "s__slow", "arguments": {}}}));
    w.send(&json!({"jsonrpc": "2.0", "id": "echo", "method": "tools/call", "params": {"name": "s__echo", "arguments": {"text": "after"}}}));
    let first = w.wait_for(|m| m.get("id").is_some() && m.get("method").is_none());
    assert_eq!(first["id"], "slow", "echo overtook the capped slow call: {first}");
    let (code, message) = error_of(&first);
    assert!(code == -31052 && message.contains("\"s\"") && message.contains("timeout of 300ms"), "{first}");
    assert_eq!(text_of(&w.answer_to(&json!("echo"))), "after");
    let seen = text_of(&w.call_tool("s__client_notifications", json!({}))).to_owned();
    assert!(seen.contains("notifications/cancelled"), "the upstream was not told: {seen}");
}

#[test]
fn editing_the_config_adds_and_removes_upstreams_under_load_and_a_broken_file_keeps_the_one_in_force() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = config(dir.path(), None, &[("one", fixture())]);
    let mut w = Warden::start_with(None, &["--config", &file.display().to_string()], &[]);
    w.initialize();
    assert!(names(&w.request("tools/list", json!({})), "tools").contains(&"one__echo".to_owned()));
    // Calls in flight while `two` joins.
    let send_burst = |w: &mut Warden, tag: &str, tool: &str| {
        for i in 0..20 {
            w.send(&json!({"jsonrpc": "2.0", "id": format!("{tag}-{i}"), "method": "tools/call", "params": {"name": tool, "arguments": {"text": format!("{tag}-{i}")}}}));
        }
    };
    send_burst(&mut w, "a", "one__echo");
    config(dir.path(), None, &[("one", fixture()), ("two", fixture())]);
    w.wait_for(|m| m["method"] == "notifications/tools/list_changed");
    let tools = names(&w.request("tools/list", json!({})), "tools");
    assert!(tools.contains(&"one__echo".to_owned()) && tools.contains(&"two__echo".to_owned()), "{tools:?}");
    assert_eq!(text_of(&w.call_tool("two__echo", json!({"text": "joined"}))), "joined");
    // `one` leaves while calls to `two` are in flight.
    send_burst(&mut w, "b", "two__echo");
    config(dir.path(), None, &[("two", fixture())]);
    w.wait_for(|m| m["method"] == "notifications/tools/list_changed");
    let tools = names(&w.request("tools/list", json!({})), "tools");
    assert!(!tools.iter().any(|t| t.starts_with("one__")) && tools.contains(&"two__echo".to_owned()), "{tools:?}");
    assert_eq!(error_of(&w.call_tool("one__echo", json!({"text": "x"}))).0, -32602);
    // Every call of both bursts was answered, each once, with its own text.
    for tag in ["a", "b"] {
        for i in 0..20 {
            let answer = w.answer_to(&json!(format!("{tag}-{i}")));
            assert_eq!(text_of(&answer), format!("{tag}-{i}"), "{answer}");
        }
    }
    // A broken file: refused, logged, the config in force stays.
    std::fs::write(&file, "[upstreams.two\ncommand = 1\n").expect("write");
    w.settled_log_count("gateway config reload refused", 1);
    assert_eq!(text_of(&w.call_tool("two__echo", json!({"text": "still"}))), "still");
    let events = w.finish();
    let reloads: Vec<&Value> = events.iter().filter(|e| e["event"]["event"] == "gateway-reload").collect();
    assert!(reloads.iter().any(|e| e["event"]["result"] == "ok"), "{events:?}");
    assert!(reloads.iter().any(|e| e["event"]["result"] == "refused"), "{events:?}");
}

#[test]
fn after_failed_calls_in_a_row_the_circuit_breaker_refuses_at_once_then_lets_one_try() {
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = "timeout = \"100ms\"\ncircuit-breaker = { failures = 2, cool-down = \"400ms\" }";
    let file = config_with(dir.path(), None, &[("s", fixture(), extra), ("ok", fixture(), "")]);
    let mut w = Warden::start_with(None, &["--config", &file.display().to_string()], &[]);
    w.initialize();
    for _ in 0..2 {
        let (code, message) = failure(w.call_tool("s__slow", json!({})));
        assert!(code == -31052 && message.contains("timeout"), "{message}");
    }
    // Open: refused at once, naming the upstream, without reaching it.
    let (code, message) = failure(w.call_tool("s__echo", json!({"text": "x"})));
    assert!(code == -31052 && message.contains("\"s\"") && message.contains("circuit breaker"), "{message}");
    assert_eq!(text_of(&w.call_tool("ok__echo", json!({"text": "others serve"}))), "others serve");
    assert!(w.log_contains("circuit breaker open"), "{}", w.stderr());
    // After the cool-down one call tries; it succeeds, and the breaker is closed.
    std::thread::sleep(std::time::Duration::from_millis(450));
    assert_eq!(text_of(&w.call_tool("s__echo", json!({"text": "tried"}))), "tried");
    assert_eq!(text_of(&w.call_tool("s__echo", json!({"text": "closed"}))), "closed");
}

#[test]
fn an_unprefixed_upstream_keeps_its_names_and_never_shadows_a_prefixed_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fx = serde_json::to_string(&fixture()).expect("JSON");
    // With "_" between, the bare upstream's `get_config` reads as `get`'s tool `config`.
    let text = format!(
        "separator = \"_\"\n[upstreams.bare]\ncommand = {fx}\nprefix = false\n[upstreams.get]\ncommand = {fx}\n"
    );
    let file = dir.path().join("warden.toml");
    std::fs::write(&file, text).expect("write config");
    let mut w = Warden::start_with(None, &["--config", &file.display().to_string()], &[]);
    w.initialize();
    let tools = names(&w.request("tools/list", json!({})), "tools");
    for name in ["echo", "add", "get_echo", "get_get_config"] {
        assert!(tools.contains(&name.to_owned()), "{name} missing from {tools:?}");
    }
    assert!(!tools.contains(&"get_config".to_owned()), "a bare name that reads as get's was listed: {tools:?}");
    assert!(w.log_contains("their names read as another upstream's prefixed names"), "{}", w.stderr());
    assert_eq!(text_of(&w.call_tool("echo", json!({"text": "bare"}))), "bare");
    assert_eq!(text_of(&w.call_tool("get_echo", json!({"text": "prefixed"}))), "prefixed");
    // The shadowed name goes where it reads: to `get`, as its tool `config`, which it has not.
    let (code, _) = failure(w.call_tool("get_config", json!({})));
    assert_ne!(code, 0);
}

#[test]
fn a_session_starts_an_upstream_only_when_a_message_needs_it() {
    let (mut w, _dir) = gateway(None, &[("one", fixture()), ("two", fixture()), ("three", fixture())]);
    // Each upstream is probed once when the gateway starts, then closed.
    assert_eq!(w.settled_log_count("upstream probed", 3), 3, "{}", w.stderr());
    let init = w.initialize();
    assert!(init["result"]["capabilities"]["tools"].is_object(), "{init}");
    // `initialize` was answered from the probes: no upstream started for the session.
    let started = |w: &Warden, at_least| w.settled_log_count("upstream started", at_least);
    assert_eq!(started(&w, 3), 3, "{}", w.stderr());
    assert_eq!(text_of(&w.call_tool("two__echo", json!({"text": "only two"}))), "only two");
    assert_eq!(started(&w, 4), 4, "a call to two started only two\n{}", w.stderr());
    // A list asks every upstream with tools: the other two start now.
    let tools = names(&w.request("tools/list", json!({})), "tools");
    assert!(["one__echo", "two__echo", "three__echo"].iter().all(|t| tools.contains(&t.to_string())), "{tools:?}");
    assert_eq!(started(&w, 6), 6, "{}", w.stderr());
    assert_eq!(text_of(&w.call_tool("one__echo", json!({"text": "one"}))), "one");
    assert_eq!(started(&w, 6), 6);
}

#[test]
fn tasks_go_back_to_the_upstream_that_made_them_under_ids_that_cannot_collide() {
    let mut tasks = fixture();
    tasks.push("--tasks".to_owned());
    let (mut w, _dir) = gateway(None, &[("one", tasks.clone()), ("two", tasks)]);
    let init = w.initialize();
    assert!(init["result"]["capabilities"]["tasks"]["list"].is_object(), "{init}");
    w.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    // Both upstreams call their first task `task-1`: the client gets two ids.
    let call = |w: &mut Warden, tool: &str, text: &str| {
        let params = json!({"name": tool, "arguments": {"text": text}, "task": {"ttl": 60000}});
        w.request("tools/call", params)["result"]["task"]["taskId"].as_str().unwrap_or_default().to_owned()
    };
    let first = call(&mut w, "one__echo", "from one");
    let second = call(&mut w, "two__echo", "from two");
    assert_eq!((first.as_str(), second.as_str()), ("one:task-1", "two:task-1"));
    let status = w.wait_for(|m| m["method"] == "notifications/tasks/status");
    assert!(status["params"]["taskId"] == "one:task-1" || status["params"]["taskId"] == "two:task-1", "{status}");
    let result = w.request("tasks/result", json!({"taskId": second}));
    assert_eq!(text_of(&result), "from two", "{result}");
    assert_eq!(result["result"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"], "two:task-1");
    let state = w.request("tasks/get", json!({"taskId": first}));
    assert_eq!(
        (state["result"]["taskId"].as_str(), state["result"]["status"].as_str()),
        (Some("one:task-1"), Some("completed"))
    );
    let cancelled = w.request("tasks/cancel", json!({"taskId": first}));
    assert_eq!(cancelled["result"]["status"], "cancelled", "{cancelled}");
    let listed = w.request("tasks/list", json!({}));
    let mut ids: Vec<&str> =
        listed["result"]["tasks"].as_array().into_iter().flatten().filter_map(|t| t["taskId"].as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["one:task-1", "two:task-1"], "{listed}");
    // Ids the gateway did not give go nowhere.
    // Ids the gateway did not give never reach an upstream, well-formed ones included.
    for forged in ["task-1", "three:task-1", ":task-1", "one", "", "one:task-2", "two:task-1 "] {
        let (code, message) = failure(w.request("tasks/get", json!({"taskId": forged})));
        assert_eq!(code, -32602, "{forged}");
        assert!(message.contains("the gateway gave no such id"), "{forged}: {message}");
    }
    let (code, _) = failure(w.request("tasks/get", json!({"taskId": 7})));
    assert_eq!(code, -32602);
}

#[test]
fn a_list_is_served_from_the_session_until_an_upstream_says_it_changed() {
    let mut announcing = fixture();
    announcing.push("--list-changed".to_owned());
    let (mut w, _dir) = gateway(None, &[("one", announcing.clone()), ("two", announcing)]);
    w.initialize();
    let heard = |w: &Warden, at_least| w.settled_log_count("mcp-fixture heard tools/list", at_least);
    let first = w.request("tools/list", json!({}));
    assert_eq!(heard(&w, 2), 2);
    // Asked again: the same list, from the session, no upstream asked.
    assert_eq!(w.request("tools/list", json!({}))["result"], first["result"]);
    assert_eq!(text_of(&w.call_tool("one__echo", json!({"text": "x"}))), "x");
    assert_eq!(heard(&w, 2), 2, "{}", w.stderr());
    // One upstream says its list changed: the next list asks again.
    assert_eq!(text_of(&w.call_tool("two__change_list", json!({}))), "changed");
    w.wait_for(|m| m["method"] == "notifications/tools/list_changed");
    w.request("tools/list", json!({}));
    assert_eq!(heard(&w, 4), 4, "{}", w.stderr());
    // An upstream that promised nothing is always asked.
    let (mut plain, _dir) = gateway(None, &[("one", fixture())]);
    plain.initialize();
    plain.request("tools/list", json!({}));
    plain.request("tools/list", json!({}));
    assert_eq!(plain.settled_log_count("mcp-fixture heard tools/list", 2), 2);
}
