//! The gateway against hostile upstreams and clients: an upstream that stops
//! reading, one that never answers `initialize`, one that lies about its
//! version, poses as another upstream, claims another's resources or reports
//! progress on calls it does not have; forged cursors; a client that leaves
//! with calls in flight.

use serde_json::{json, Value};

use super::upstreams::{config, config_with, failure, fixture, names};
use crate::common::{error_of, text_of, Warden};

fn evil() -> Vec<String> {
    let mut command = fixture();
    command.push("--evil".into());
    command
}

fn start(upstreams: &[(&str, Vec<String>, &str)]) -> (Warden, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = config_with(dir.path(), None, upstreams);
    (Warden::start_with(None, &["--config", &file.display().to_string()], &[]), dir)
}

#[test]
fn an_upstream_that_stops_reading_does_not_stop_the_session() {
    // It answers `initialize`, then reads nothing more.
    let stuck = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        r#"read -r line; id=$(printf '%s' "$line" | sed 's/.*"id":\([0-9]*\).*/\1/'); printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"stuck","version":"1"}}}\n' "$id"; exec sleep 600"#.to_owned(),
    ];
    let (mut w, _dir) = start(&[("stuck", stuck, "timeout = \"2s\""), ("ok", fixture(), "")]);
    w.initialize();
    // More than its pipe and every queue hold: 2000 calls of 1 KiB.
    let text = "x".repeat(1024);
    let mut writer = w.stdin_writer();
    let calls: String = (0..2000)
        .map(|i| json!({"jsonrpc": "2.0", "id": format!("s{i}"), "method": "tools/call", "params": {"name": "stuck__x", "arguments": {"text": text}}}).to_string() + "\n")
        .collect();
    let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut writer, calls.as_bytes()));
    feeder.join().expect("feeder").expect("write calls");
    // The other upstream is still served, and every call to the stuck one is answered.
    assert_eq!(text_of(&w.call_tool("ok__echo", json!({"text": "alive"}))), "alive");
    for i in 0..2000 {
        let answer = w.answer_to(&json!(format!("s{i}")));
        assert_eq!(error_of(&answer).0, -31052, "{answer}");
    }
}

#[test]
fn an_upstream_that_never_answers_initialize_is_left_out() {
    let silent = vec!["sh".to_owned(), "-c".to_owned(), "while read -r line; do :; done".to_owned()];
    let (mut w, _dir) = start(&[("silent", silent, "timeout = \"300ms\""), ("ok", fixture(), "")]);
    let init = w.initialize();
    assert!(init["result"]["capabilities"]["tools"].is_object(), "{init}");
    let tools = names(&w.request("tools/list", json!({})), "tools");
    assert!(tools.contains(&"ok__echo".to_owned()) && !tools.iter().any(|t| t.starts_with("silent__")), "{tools:?}");
    assert_eq!(w.request("ping", json!({}))["result"], json!({}));
}

#[test]
fn a_hostile_upstream_cannot_set_the_version_pose_as_another_or_take_its_resources_or_progress() {
    let (mut w, _dir) = start(&[("one", fixture(), ""), ("two", evil(), "")]);
    let init = w.initialize();
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    let instructions = init["result"]["instructions"].as_str().unwrap_or_default();
    assert!(instructions.starts_with("## two\n"), "{instructions}");
    assert!(!instructions.lines().any(|l| l == "## one"), "two posed as one: {instructions}");
    // Both list mem://config; it stays with the first, whatever the second links later.
    w.request("resources/list", json!({}));
    let read = |w: &mut Warden| {
        w.request("resources/read", json!({"uri": "mem://config"}))["result"]["contents"][0]["text"].clone()
    };
    assert_ne!(read(&mut w), "EVIL CONTENT");
    w.call_tool("two__link", json!({"uri": "mem://config"}));
    assert_ne!(read(&mut w), "EVIL CONTENT");
    // A URI only the evil one gave is its own.
    w.call_tool("two__link", json!({"uri": "evil://mine"}));
    assert_eq!(read_uri(&mut w, "evil://mine"), "EVIL CONTENT");
    // Progress on one's call, reported by two: dropped.
    w.send(&json!({"jsonrpc": "2.0", "id": "slow", "method": "tools/call", "params": {"name": "one__slow", "arguments": {}, "_meta": {"progressToken": "tokA"}}}));
    text_of(&w.call_tool("two__progress_other", json!({"tokens": ["tokA"]})));
    w.send(&json!({"jsonrpc": "2.0", "id": "after", "method": "ping"}));
    let next = w.wait_for(|m| m["method"] == "notifications/progress" || m["id"] == "after");
    assert_eq!(next["id"], "after", "spoofed progress reached the client: {next}");
}

fn read_uri(w: &mut Warden, uri: &str) -> Value {
    w.request("resources/read", json!({"uri": uri}))["result"]["contents"][0]["text"].clone()
}

#[test]
fn cursors_the_gateway_did_not_give_are_refused_and_a_level_no_upstream_took_is_an_error() {
    let (mut w, _dir) = start(&[("one", fixture(), "")]);
    w.initialize();
    // `e30` is `{}`; `eyJ6enoiOiJ4In0` is `{"zzz":"x"}`.
    for cursor in [json!("e30"), json!("eyJ6enoiOiJ4In0"), json!(5), json!("not base64!")] {
        let answer = w.request("tools/list", json!({"cursor": cursor}));
        assert_eq!(error_of(&answer).0, -32602, "{cursor}: {answer}");
    }
    // The fixture does not implement logging/setLevel: refused, not `{}`.
    let answer = w.request("logging/setLevel", json!({"level": "debug"}));
    assert!(answer.get("error").is_some(), "{answer}");
}

#[test]
fn a_client_that_leaves_with_a_call_in_flight_lets_warden_exit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = config(dir.path(), None, &[("one", fixture())]);
    let mut w = Warden::start_with(None, &["--config", &file.display().to_string()], &[]);
    w.initialize();
    w.send(&json!({"jsonrpc": "2.0", "id": "slow", "method": "tools/call", "params": {"name": "one__slow", "arguments": {}}}));
    let (code, _) = failure(w.call_tool("nope__x", json!({})));
    assert_eq!(code, -32602);
    w.close_stdin();
    let status = w.wait();
    assert!(status.code().is_some(), "warden did not exit by itself: {status:?}");
}

#[test]
fn a_tool_that_changes_its_definition_after_it_was_pinned_is_refused_until_accepted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut pulled = fixture();
    pulled.push("--rug-pull".into());
    let file = config_with(dir.path(), None, &[("one", fixture(), "pin = \"refuse\"")]);
    let mut w = Warden::start_with(None, &["--config", &file.display().to_string()], &[]);
    w.initialize();
    assert!(names(&w.request("tools/list", json!({})), "tools").contains(&"one__echo".to_owned()));
    assert!(dir.path().join("warden.pins.json").exists(), "no pins written");
    // The upstream now says something else about `echo`.
    config_with(dir.path(), None, &[("one", pulled.clone(), "pin = \"refuse\"")]);
    w.wait_for(|m| m["method"] == "notifications/tools/list_changed");
    w.wait_for(|m| m["method"] == "notifications/tools/list_changed");
    assert!(names(&w.request("tools/list", json!({})), "tools").contains(&"one__echo".to_owned()));
    let (code, message) = failure(w.call_tool("one__echo", json!({"text": "x"})));
    assert!(code == -31055 && message.contains("pins accept one__echo"), "{message}");
    assert_eq!(text_of(&w.call_tool("one__add", json!({"a": 1, "b": 2}))), "3", "other tools are not affected");
    // Accepted: the next listing pins the new definition.
    let out = std::process::Command::new(crate::common::paths().warden)
        .args(["pins", "accept", "one__echo", "--config"])
        .arg(&file)
        .output()
        .expect("run warden pins accept");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    names(&w.request("tools/list", json!({})), "tools");
    assert_eq!(text_of(&w.call_tool("one__echo", json!({"text": "accepted"}))), "accepted");
    // Under `hide`, a changed tool leaves the list and is refused too.
    config_with(dir.path(), None, &[("one", fixture(), "pin = \"hide\"")]);
    w.wait_for(|m| m["method"] == "notifications/tools/list_changed");
    w.wait_for(|m| m["method"] == "notifications/tools/list_changed");
    let tools = names(&w.request("tools/list", json!({})), "tools");
    assert!(!tools.contains(&"one__echo".to_owned()) && tools.contains(&"one__add".to_owned()), "{tools:?}");
    assert_eq!(failure(w.call_tool("one__echo", json!({"text": "x"}))).0, -31055);
    let events = w.finish();
    assert!(events.iter().any(|e| e["event"]["event"] == "tool-changed" && e["upstream"] == "one"), "{events:?}");
}

#[test]
fn a_changed_tool_is_refused_in_a_session_that_never_listed_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut pulled = fixture();
    pulled.push("--rug-pull".into());
    let session = |command: Vec<String>| {
        let file = config_with(dir.path(), None, &[("one", command, "pin = \"refuse\"")]);
        let mut w = Warden::start_with(None, &["--config", &file.display().to_string()], &[]);
        w.initialize();
        w
    };
    // Pinned by one session, seen changed by another, refused in a third that never lists.
    names(&session(fixture()).request("tools/list", json!({})), "tools");
    names(&session(pulled.clone()).request("tools/list", json!({})), "tools");
    let (code, message) = failure(session(pulled).call_tool("one__echo", json!({"text": "x"})));
    assert_eq!(code, -31055, "{message}");
}

#[test]
fn a_child_runs_with_its_limits_and_cannot_gain_privileges() {
    // The child reports what the kernel holds it to, then becomes the server.
    let report = format!(
        "grep -E '^(Max data size|Max cpu time|Max open files)' /proc/self/limits >&2; \
         grep NoNewPrivs /proc/self/status >&2; exec {}",
        fixture().join(" ")
    );
    let jailed = vec!["sh".to_owned(), "-c".to_owned(), report];
    let limits = "limits = { memory-mib = 256, cpu-secs = 120, open-files = 64 }";
    let (mut w, _dir) = start(&[("jail", jailed, limits)]);
    w.initialize();
    assert_eq!(text_of(&w.call_tool("jail__echo", json!({"text": "inside"}))), "inside");
    let log = w.stderr();
    // Soft and hard alike: the server cannot raise them again.
    for (name, value) in [("Max data size", "268435456"), ("Max cpu time", "120"), ("Max open files", "64")] {
        let line = log.lines().find(|l| l.starts_with(name)).unwrap_or_default();
        let numbers: Vec<&str> = line.split_whitespace().filter(|w| w.bytes().all(|b| b.is_ascii_digit())).collect();
        assert_eq!(numbers, [value, value], "{name}: {line}");
    }
    assert!(log.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["NoNewPrivs:", "1"]), "{log}");
}
