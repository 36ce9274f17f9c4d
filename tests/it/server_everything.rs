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
