//! The sandbox: traps, endless loops and memory hogs are contained by each
//! plugin's failure mode, and the proxy keeps serving.

use serde_json::json;

use crate::common::{error_of, text_of, PluginDir, Warden};

fn misbehaving(action: &str, failure: &str) -> PluginDir {
    let manifest = format!(
        "failure = \"{failure}\"\n[limits]\ndeadline-ms = 100\nmemory-mib = 16\n[config]\naction = \"{action}\"\ntool = \"echo\"\n"
    );
    PluginDir::new().add("10-misbehave", "misbehave", &manifest)
}

/// The failing call is answered per the failure mode; the next calls still work
/// (on a fresh instance), and so does a call the plugin does not touch.
fn contained(action: &str, expect_in_message: &str) {
    let plugins = misbehaving(action, "closed");
    let mut w = Warden::start(&plugins);
    w.initialize();
    for _ in 0..2 {
        let answer = w.call_tool("echo", json!({"text": "x"}));
        let (code, message) = error_of(&answer);
        assert_eq!(code, -31050, "{answer}");
        assert!(message.contains("10-misbehave") && message.contains(expect_in_message), "{message}");
        assert_eq!(text_of(&w.call_tool("add", json!({"a": 2, "b": 2}))), "4");
    }
    let audit = w.finish();
    assert!(audit.iter().any(|e| e["event"]["type"] == "decision" && e["event"]["plugin"] == "10-misbehave"));
}

#[test]
fn a_trapping_plugin_fails_closed() {
    contained("trap", "trapped");
}

#[test]
fn an_endless_loop_hits_the_deadline() {
    contained("loop", "100 ms deadline");
}

#[test]
fn a_memory_hog_hits_the_cap() {
    contained("hog", "16 MiB memory cap");
}

#[test]
fn fail_open_lets_the_message_pass() {
    for action in ["trap", "loop", "hog", "bad-modify"] {
        let plugins = misbehaving(action, "open");
        let mut w = Warden::start(&plugins);
        w.initialize();
        assert_eq!(text_of(&w.call_tool("echo", json!({"text": "through"}))), "through", "{action}");
        assert!(w.log_contains("failure = open"), "{action}: {}", w.stderr());
    }
}

#[test]
fn an_unusable_modify_is_a_plugin_failure() {
    let plugins = misbehaving("bad-modify", "closed");
    let mut w = Warden::start(&plugins);
    w.initialize();
    let answer = w.call_tool("echo", json!({"text": "x"}));
    let (code, message) = error_of(&answer);
    assert_eq!(code, -31050);
    assert!(message.contains("unusable verdict"), "{message}");
}

#[test]
fn plugin_output_goes_to_the_log_not_the_protocol() {
    let plugins = misbehaving("print", "closed");
    let mut w = Warden::start(&plugins);
    w.initialize();
    // Every stdout line is parsed as JSON by the harness: a stray print would fail here.
    assert_eq!(text_of(&w.call_tool("echo", json!({"text": "quiet"}))), "quiet");
    w.close_stdin();
    w.wait();
    for line in
        ["misbehave: printing to stdout", "misbehave: printing to stderr", "misbehave: logging through the host"]
    {
        assert!(w.log_contains(line), "{line} missing from the log:\n{}", w.stderr());
    }
}

#[test]
fn plugins_get_no_ambient_capabilities() {
    let plugins = misbehaving("probe", "closed");
    let mut w = Warden::start(&plugins);
    w.initialize();
    let answer = w.call_tool("echo", json!({"text": "x"}));
    let seen: serde_json::Value = serde_json::from_str(text_of(&answer)).expect("probe report");
    assert_eq!(seen["env"], 0, "{seen}");
    assert_eq!(seen["read_root"], false, "{seen}");
    assert_eq!(seen["read_etc"], false, "{seen}");
    assert_eq!(seen["write_tmp"], false, "{seen}");
    assert_eq!(seen["tcp"], false, "{seen}");
    assert_eq!(seen["clock"], true, "clocks are the basics a plugin keeps: {seen}");
}

#[test]
fn granted_environment_variables_are_visible() {
    let manifest = "[grant]\nenv = [\"PATH\"]\n[config]\naction = \"probe\"\ntool = \"echo\"\n";
    let plugins = PluginDir::new().add("10-probe", "misbehave", manifest);
    let mut w = Warden::start(&plugins);
    w.initialize();
    let answer = w.call_tool("echo", json!({"text": "x"}));
    let seen: serde_json::Value = serde_json::from_str(text_of(&answer)).expect("probe report");
    assert_eq!(seen["env"], 1, "{seen}");
}

#[test]
fn an_instance_past_its_memory_high_water_mark_is_recycled_not_trapped() {
    // 13 MiB kept per call against a 16 MiB cap: past the 3/4 mark after the first.
    let manifest = "[limits]\nmemory-mib = 16\n[config]\naction = \"swell\"\ntool = \"echo\"\nresponses = []\n";
    let plugins = PluginDir::new().add("50-swell", "misbehave", manifest);
    let mut w = Warden::start(&plugins);
    w.initialize();
    for n in 0..3 {
        assert_eq!(text_of(&w.call_tool("echo", json!({"text": format!("{n}")}))), format!("{n}"));
    }
    let recycled = w.settled_log_count("instance recycled at its memory high-water mark", 3);
    assert_eq!(recycled, 3, "{}", w.stderr());
    // One instance at load (the init check), then a fresh one for each call.
    assert_eq!(w.settled_log_count("misbehave: instance started", 4), 4, "{}", w.stderr());
    w.finish();
}

#[test]
fn the_whole_file_system_is_no_grant() {
    for root in ["/", "//", "/.", "/.."] {
        let manifest = format!("[grant]\nread-dirs = [\"{root}\"]\n[config]\naction = \"probe\"\ntool = \"echo\"\n");
        let plugins = PluginDir::new().add("10-misbehave", "misbehave", &manifest);
        let mut w = Warden::start(&plugins);
        assert!(!w.wait().success(), "read-dirs = [{root:?}] was accepted");
        assert!(w.log_contains("grants the whole file system"), "{}", w.stderr());
    }
}

/// A `.toml` or `.wasm` that is a symbolic link is refused, not followed, and
/// the file it points at is never quoted (a manifest linked to /etc/passwd put
/// its first line in the log).
#[test]
fn symbolic_links_in_the_plugins_folder_are_refused() {
    let plugins = PluginDir::new().add("10-misbehave", "misbehave", "");
    std::os::unix::fs::symlink("/etc/passwd", plugins.path().join("10-misbehave.toml")).expect("symlink");
    let mut w = Warden::start(&plugins);
    assert!(!w.wait().success());
    assert!(w.log_contains("symbolic link"), "{}", w.stderr());
    assert!(!w.stderr().contains("root:"), "the linked file's content reached the log: {}", w.stderr());

    let plugins = PluginDir::new();
    let real = tempfile::tempdir().expect("temp dir");
    let target = real.path().join("real.wasm");
    std::fs::copy(crate::common::paths().wasm.join("misbehave.wasm"), &target).expect("copy");
    std::os::unix::fs::symlink(&target, plugins.path().join("10-linked.wasm")).expect("symlink");
    let mut w = Warden::start(&plugins);
    assert!(!w.wait().success());
    assert!(w.log_contains("10-linked.wasm") && w.log_contains("symbolic link"), "{}", w.stderr());
}

/// A manifest that does not parse is reported by line, without its text.
#[test]
fn a_broken_manifest_is_reported_without_its_content() {
    let plugins = PluginDir::new().add("10-misbehave", "misbehave", "order = 1\nsecret-looking = hunter2-value\n");
    let mut w = Warden::start(&plugins);
    assert!(!w.wait().success());
    assert!(w.log_contains("line 2"), "{}", w.stderr());
    assert!(!w.stderr().contains("hunter2-value"), "{}", w.stderr());
}

/// Six sessions whose plugin spins until its deadline do not hold up a
/// seventh session's calls: hooks yield every epoch tick. (The benchmark
/// measures the figure; this asserts it loosely, for a loaded CI machine.)
#[test]
fn a_looping_plugin_costs_only_its_own_message() {
    use std::time::{Duration, Instant};
    let manifest = "failure = \"closed\"\n[limits]\ndeadline-ms = 3000\n[config]\naction = \"loop\"\ntool = \"echo\"\n";
    let plugins = PluginDir::new().add("10-misbehave", "misbehave", manifest);
    let gw = std::sync::Arc::new(crate::common::http::Gateway::start(Some(plugins.path()), &[]));
    let quiet = gw.open();
    gw.call(&quiet, 99, "add", json!({"a": 0, "b": 0}));
    let spinners: Vec<_> = (0..6)
        .map(|i| {
            let gw = gw.clone();
            let session = gw.open();
            std::thread::spawn(move || gw.call(&session, 100 + i, "echo", json!({"text": "spin"})))
        })
        .collect();
    // Let the six get going (each holds a worker for up to 3 s without yielding, before the fix).
    std::thread::sleep(Duration::from_millis(300));
    let mut times = Vec::new();
    for i in 0..10 {
        let started = Instant::now();
        let answer = gw.call(&quiet, i, "add", json!({"a": 1, "b": 2}));
        times.push(started.elapsed());
        assert_eq!(text_of(&answer.answer()), "3", "{answer:?}");
    }
    times.sort();
    let p50 = times[times.len() / 2];
    eprintln!("add p50 while six sessions spin: {p50:?}");
    assert!(p50 < Duration::from_millis(200), "another session's call took {p50:?} (p50) while plugins spun");
    for spinner in spinners {
        let answer = spinner.join().expect("spinner");
        assert_eq!(error_of(&answer.answer()).0, -31050, "{answer:?}");
    }
}
