//! Released WIT versions keep loading: a plugin built against the frozen
//! `warden:interceptor@0.1.0` (tests/plugins/wit-0-1, wit-bindgen directly)
//! runs beside plugins built against the current version.

use serde_json::json;

use crate::common::{error_of, paths, text_of, PluginDir, Warden};

#[test]
fn a_plugin_built_for_0_1_0_runs_beside_current_ones() {
    let plugins = PluginDir::new()
        .add("05-old-policy", "wit_0_1", "[config]\ndeny = [\"write_file\"]\n")
        .add_example("10-tool-policy", "tool-policy");
    let mut w = Warden::start(&plugins);
    w.initialize();
    let (code, message) = {
        let answer = w.call_tool("write_file", json!({"path": "/tmp/x", "content": "y"}));
        let (code, message) = error_of(&answer);
        (code, message.to_owned())
    };
    assert_eq!(code, -32001);
    assert!(message.contains("warden:interceptor@0.1.0 (denial #1)"), "{message}");
    // Its state import works: the count goes on.
    let again = w.call_tool("write_file", json!({"path": "/tmp/x", "content": "y"}));
    assert!(error_of(&again).1.contains("denial #2"), "{again}");
    // The current-version plugin behind it still decides the rest.
    assert_eq!(error_of(&w.call_tool("delete_everything", json!({}))).0, -32001);
    assert_eq!(text_of(&w.call_tool("echo", json!({"text": "both versions"}))), "both versions");
    assert!(w.log_contains("denied write_file (1 so far)"), "its log import works: {}", w.stderr());
    w.finish();
}

#[test]
fn plugin_check_names_the_version_a_plugin_was_built_for() {
    let out = std::process::Command::new(&paths().warden)
        .args(["plugin", "check"])
        .arg(paths().wasm.join("wit_0_1.wasm"))
        .arg("--cache-dir")
        .arg(&paths().cache)
        .output()
        .expect("run warden plugin check");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("wit:       warden:interceptor@0.1.0"), "{report}");
}
