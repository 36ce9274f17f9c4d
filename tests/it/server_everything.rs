//! Against the official reference server, `@modelcontextprotocol/server-everything`
//! from npm, installed by scripts/test.sh into target/npm.

use serde_json::json;

use crate::common::{error_of, examples, installed, paths, Warden};

#[test]
fn the_reference_server_works_through_the_example_plugins() {
    let bin = paths().repo.join("target/npm/node_modules/.bin/mcp-server-everything");
    if !installed(&bin, "WARDEN_REQUIRE_NPM") {
        return;
    }
    let plugins = examples();
    let mut w =
        Warden::start_with(Some(plugins.path()), &["--name", "everything"], &[&bin.display().to_string(), "stdio"]);
    let init = w.initialize();
    assert!(init["result"]["serverInfo"]["name"].is_string(), "{init}");
    let list = w.request("tools/list", json!({}));
    let tools = list["result"]["tools"].as_array().expect("tools");
    assert!(tools.iter().any(|t| t["name"] == "echo"), "{list}");
    let answer = w.call_tool("echo", json!({"message": "through warden"}));
    let text = answer["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("through warden"), "{answer}");
    let denied = w.call_tool("delete_all", json!({}));
    assert_eq!(error_of(&denied).0, -32001);
    let audit = w.finish();
    assert!(audit.iter().any(|e| e["event"]["tool"] == "echo"));
}

/// The official Python SDK client, in both modes, gets every progress
/// notification of server-everything's long-running operation through
/// `warden serve` (the 2026-07-28 lane lost them once).
#[test]
fn progress_reaches_the_python_client_in_both_eras() {
    let bin = paths().repo.join("target/npm/node_modules/.bin/mcp-server-everything");
    let Some(python) = crate::common::python_sdk() else { return };
    if !installed(&bin, "WARDEN_REQUIRE_NPM") {
        return;
    }
    let gw = crate::common::http::Gateway::start_with(None, &[], &[&bin.display().to_string(), "stdio"]);
    let script = paths().repo.join("tests/python/long_running.py");
    for mode in ["legacy", "auto"] {
        let out = std::process::Command::new(&python).arg(&script).arg(&gw.url).arg(mode).output().expect("python");
        assert!(out.status.success(), "{mode}: {}\n{}", String::from_utf8_lossy(&out.stderr), gw.stderr());
        let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(seen["progress"], json!([1.0, 2.0, 3.0, 4.0]), "{mode}: {seen}");
        let era = if mode == "auto" { "2026-07-28" } else { "2025-11-25" };
        assert_eq!(seen["era"], era, "{seen}");
    }
}
