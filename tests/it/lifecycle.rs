//! Start-up and shutdown: bad plugins refused clearly, the client leaving,
//! the upstream dying mid-call.

use serde_json::json;

use crate::common::{error_of, paths, text_of, PluginDir, Warden};

#[test]
fn an_upstream_crash_answers_pending_requests_and_exits_nonzero() {
    let plugins = PluginDir::new();
    let mut w = Warden::start(&plugins);
    w.initialize();
    // A second request pipelined behind the crash: both must be answered.
    let crash = json!({"jsonrpc": "2.0", "id": "c1", "method": "tools/call", "params": {"name": "crash", "arguments": {"after_ms": 300}}});
    let behind = json!({"jsonrpc": "2.0", "id": "c2", "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}});
    w.send_raw(&format!("{crash}\n{behind}"));
    for id in ["c1", "c2"] {
        let answer = w.answer_to(&json!(id));
        let (code, message) = error_of(&answer);
        assert_eq!(code, -31052);
        assert!(message.contains("exited") && message.contains("tools/call"), "{message}");
    }
    let status = w.wait();
    assert_eq!(status.code(), Some(2), "stderr:\n{}", w.stderr());
    assert!(w.log_contains("upstream server exited"), "{}", w.stderr());
}

#[test]
fn the_client_leaving_shuts_down_cleanly() {
    let plugins = PluginDir::new();
    let mut w = Warden::start(&plugins);
    w.initialize();
    assert_eq!(text_of(&w.call_tool("echo", json!({"text": "bye"}))), "bye");
    w.close_stdin();
    assert!(w.wait().success(), "stderr:\n{}", w.stderr());
}

#[test]
fn a_bad_plugin_file_is_refused_with_its_name() {
    let plugins = PluginDir::new();
    std::fs::write(plugins.path().join("10-broken.wasm"), b"\0asm not really").unwrap();
    let mut w = Warden::start(&plugins);
    let status = w.wait();
    assert!(!status.success());
    assert!(w.log_contains("10-broken.wasm"), "{}", w.stderr());
}

#[test]
fn a_bad_manifest_is_refused_with_its_key() {
    let plugins = PluginDir::new().add("10-policy", "tool_policy", "fialure = \"open\"\n");
    let mut w = Warden::start(&plugins);
    assert!(!w.wait().success());
    assert!(w.log_contains("10-policy.toml") && w.log_contains("fialure"), "{}", w.stderr());
}

#[test]
fn a_config_the_plugin_rejects_is_refused() {
    let plugins = PluginDir::new().add("10-policy", "tool_policy", "[config]\nallow = [\"[\"]\n");
    let mut w = Warden::start(&plugins);
    assert!(!w.wait().success());
    assert!(w.log_contains("init failed") && w.log_contains("allow"), "{}", w.stderr());
}

#[test]
fn a_missing_upstream_is_a_clear_error() {
    let mut w = Warden::start_with(None, &[], &["/nonexistent/mcp-server"]);
    assert!(!w.wait().success());
    assert!(w.log_contains("spawn failed"), "{}", w.stderr());
    let _ = paths();
}

/// A server that ignores the end of its input and keeps its output open is
/// killed after the grace period, whether the client left or a signal came
/// (twice, or SIGINT too), and Warden exits.
#[test]
fn a_server_that_outlives_its_input_is_killed_after_the_grace() {
    // Reads its input to the end, then holds stdout open and ignores signals.
    let stubborn = ["sh", "-c", "trap '' TERM INT; while read -r line; do :; done; sleep 60"];
    let mut w = Warden::start_with(None, &["--exit-grace-ms", "300"], &stubborn);
    w.close_stdin();
    assert!(w.wait().success(), "stderr:\n{}", w.stderr());
    assert!(w.log_contains("still open"), "{}", w.stderr());

    let mut w = Warden::start_with(None, &["--exit-grace-ms", "300"], &stubborn);
    assert!(w.log_contains("upstream started"), "{}", w.stderr());
    for signal in ["-TERM", "-TERM", "-INT"] {
        let sent = std::process::Command::new("kill").args([signal, &w.pid().to_string()]).status().expect("kill");
        assert!(sent.success());
    }
    w.wait();
    assert!(w.log_contains("still open"), "{}", w.stderr());
}

/// The demo counts the tools the server really offers.
#[test]
fn the_demo_counts_the_tools_the_server_offers() {
    let p = paths();
    let fixture = p.fixture.display().to_string();
    let mut direct = Warden::start_with(None, &[], &[&fixture]);
    direct.initialize();
    let offered = direct.request("tools/list", json!({}))["result"]["tools"].as_array().map_or(0, Vec::len);
    let plugins = crate::common::examples();
    let audit = tempfile::tempdir().expect("temp dir");
    let demo = p.warden.with_file_name("demo-client");
    let out = std::process::Command::new(demo)
        .arg(&p.warden)
        .arg(plugins.path())
        .arg(audit.path().join("audit.jsonl"))
        .arg(&fixture)
        .output()
        .expect("demo-client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("the server offers {offered} tools")), "{text}");
}
