//! Plugins in other Wasm languages, built from source by scripts/build-plugins.sh
//! and driven through `warden wrap` against the fixture: the JavaScript PII
//! redactor (componentize-js), the Python rate limiter (componentize-py) and the
//! C allowlist (clang, wasi-libc, wit-bindgen c, the preview1 adapter).

use serde_json::json;

use crate::common::{error_of, installed, paths, text_of, PluginDir, Warden};

#[test]
fn the_javascript_pii_redactor_masks_emails_phones_and_luhn_valid_cards() {
    if !installed(&paths().wasm.join("pii_redact_js.wasm"), "WARDEN_REQUIRE_NPM") {
        return;
    }
    let sample = std::fs::read_to_string(paths().repo.join("plugins/pii-redact-js/sample.toml")).expect("sample");
    let plugins = PluginDir::new().add("25-pii-redact", "pii_redact_js", &sample);
    let mut w = Warden::start(&plugins);
    w.initialize();
    let text = "mail ada@example.com, call +44 20 7946 0958, card 4111 1111 1111 1111, \
                not a card 4111 1111 1111 1112, order 12345";
    let answer = w.call_tool("echo", json!({"text": text}));
    assert_eq!(
        text_of(&answer),
        "mail [EMAIL], call [PHONE], card [CARD], not a card 4111 1111 1111 1112, order 12345",
        "{answer}"
    );
    // Untouched when there is nothing to mask (forwarded byte for byte).
    assert_eq!(text_of(&w.call_tool("echo", json!({"text": "nothing here"}))), "nothing here");
    let audit = w.finish();
    let masked = audit.iter().find(|e| e["event"]["type"] == "redaction").expect("a redaction audit event");
    assert_eq!((masked["event"]["email"].as_i64(), masked["event"]["card"].as_i64()), (Some(1), Some(1)));
    assert_eq!(masked["plugin"], "25-pii-redact");
}

#[test]
fn the_python_rate_limiter_counts_per_tool_in_shared_state() {
    if !installed(&paths().wasm.join("rate_limit_py.wasm"), "WARDEN_REQUIRE_PY") {
        return;
    }
    let manifest = "order = 5\n[limits]\nmemory-mib = 128\ndeadline-ms = 500\n[config]\nlimit = 3\nwindow_ms = 60000\ntools = [\"echo\"]\n";
    let plugins = PluginDir::new().add("05-rate-limit", "rate_limit_py", manifest);
    let mut w = Warden::start(&plugins);
    w.initialize();
    for n in 0..3 {
        assert_eq!(text_of(&w.call_tool("echo", json!({"text": format!("{n}")}))), format!("{n}"));
    }
    let limited = w.call_tool("echo", json!({"text": "one too many"}));
    let (code, message) = error_of(&limited);
    assert_eq!(code, -32001);
    assert!(message.contains("rate limit reached for echo"), "{limited}");
    assert_eq!(limited["error"]["data"]["limit"], 3, "{limited}");
    // Other tools are not limited.
    assert_eq!(text_of(&w.call_tool("add", json!({"a": 1, "b": 2}))), "3");
    assert!(w.log_contains("reached 3 calls of echo"), "{}", w.stderr());
    w.finish();
}

#[test]
fn a_python_config_error_refuses_the_plugin_with_its_reason() {
    if !installed(&paths().wasm.join("rate_limit_py.wasm"), "WARDEN_REQUIRE_PY") {
        return;
    }
    let report = refused("rate_limit_py.wasm", "[config]\nlimit = 0\n");
    assert!(report.contains("limit must be a positive integer"), "{report}");
}

/// `warden plugin check` of a built plugin with this manifest, which must refuse it: its report.
fn refused(artifact: &str, manifest: &str) -> String {
    let out = std::process::Command::new(&paths().warden)
        .args(["plugin", "check"])
        .arg(paths().wasm.join(artifact))
        .arg("--cache-dir")
        .arg(&paths().cache)
        .arg("--config")
        .arg(write_temp(manifest))
        .output()
        .expect("run warden plugin check");
    assert!(!out.status.success(), "{artifact} was accepted");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_temp(text: &str) -> std::path::PathBuf {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().expect("temp").into_temp_path();
    std::fs::write(&file, text).expect("write");
    file.keep().expect("keep")
}

#[test]
fn the_c_allowlist_hides_and_refuses_every_tool_not_listed() {
    if !installed(&paths().wasm.join("allowlist_c.wasm"), "WARDEN_REQUIRE_C") {
        return;
    }
    let sample = std::fs::read_to_string(paths().repo.join("plugins/allowlist-c/sample.toml")).expect("sample");
    let plugins = PluginDir::new().add("08-allowlist", "allowlist_c", &sample);
    let mut w = Warden::start(&plugins);
    w.initialize();
    let list = w.request("tools/list", json!({}));
    let mut names: Vec<&str> =
        list["result"]["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, ["add", "echo", "get_config"], "{list}");
    assert_eq!(text_of(&w.call_tool("echo", json!({"text": "listed"}))), "listed");
    let refused = w.call_tool("write_file", json!({"path": "/tmp/x", "content": "y"}));
    assert_eq!(error_of(&refused), (-32001, "tool \"write_file\" is not on the allowlist"));
    w.finish();
}

#[test]
fn a_c_config_without_tools_is_refused() {
    if !installed(&paths().wasm.join("allowlist_c.wasm"), "WARDEN_REQUIRE_C") {
        return;
    }
    let report = refused("allowlist_c.wasm", "[config]\nnames = [\"echo\"]\n");
    assert!(report.contains(r#"config needs "tools""#), "{report}");
}

/// `warden plugin new` gives a skeleton that builds with one command and loads,
/// in each language whose toolchain is here.
#[test]
fn plugin_new_skeletons_build_with_one_command_and_load() {
    let p = paths();
    let langs = [
        ("rust", true),
        ("js", installed(&p.wasm.join("pii_redact_js.wasm"), "WARDEN_REQUIRE_NPM")),
        ("python", installed(&p.wasm.join("rate_limit_py.wasm"), "WARDEN_REQUIRE_PY")),
        ("c", installed(&p.wasm.join("allowlist_c.wasm"), "WARDEN_REQUIRE_C")),
    ];
    let dir = tempfile::tempdir().expect("temp");
    let c_build = p.warden.with_file_name("warden-c-build");
    for (lang, available) in langs {
        if !available {
            continue;
        }
        let name = format!("my-{lang}-plugin");
        let made = std::process::Command::new(&p.warden)
            .args(["plugin", "new", "--lang", lang, "--dir"])
            .arg(dir.path())
            .arg(&name)
            .output()
            .expect("warden plugin new");
        assert!(made.status.success(), "{lang}: {}", String::from_utf8_lossy(&made.stderr));
        let root = dir.path().join(&name);
        // One command; the Rust one shares the workspace's target folder to reuse its builds.
        let built = std::process::Command::new(root.join("build.sh"))
            .env("CARGO_TARGET_DIR", p.repo.join("target/skeletons"))
            .env("WARDEN_C_BUILD", &c_build)
            .output()
            .expect("build.sh");
        assert!(built.status.success(), "{lang}: {}", String::from_utf8_lossy(&built.stderr));
        let wasm = root.join(format!("{name}.wasm"));
        let checked = std::process::Command::new(&p.warden)
            .args(["plugin", "check"])
            .arg(&wasm)
            .arg("--cache-dir")
            .arg(&p.cache)
            .output()
            .expect("plugin check");
        let report = String::from_utf8_lossy(&checked.stdout);
        assert!(checked.status.success() && report.contains(r#"requests:  ["tools/call"]"#), "{lang}: {report}");
        // And it does what the skeleton says: denies the tool its sample config names.
        let plugins = PluginDir::new();
        std::fs::copy(&wasm, plugins.path().join(format!("{name}.wasm"))).expect("copy");
        std::fs::copy(root.join(format!("{name}.toml")), plugins.path().join(format!("{name}.toml"))).expect("copy");
        let mut w = Warden::start(&plugins);
        w.initialize();
        let denied = w.call_tool("delete_everything", json!({}));
        assert!(error_of(&denied).1.contains(&format!("denied by {name}")), "{lang}: {denied}");
        assert_eq!(text_of(&w.call_tool("echo", json!({"text": "hi"}))), "hi");
        w.finish();
    }
}
