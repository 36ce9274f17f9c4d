//! Plugins dropped in, replaced and removed while Warden serves: the chain
//! changes at a message boundary and nothing is lost.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::http::Gateway;
use crate::common::{paths, PluginDir, Warden, PATIENCE};

const SWAPPED: &str = "new chain in force";

/// Puts the example tool-policy (denying `delete_*`) in `dir` the way a
/// careful deploy does: written under a hidden name, then renamed in.
fn drop_in_policy(dir: &Path, deny: &str) {
    let wasm = paths().wasm.join("tool_policy.wasm");
    let staged = dir.join(".10-tool-policy.wasm.part");
    std::fs::copy(wasm, &staged).expect("stage plugin");
    write_policy_config(dir, deny);
    std::fs::rename(&staged, dir.join("10-tool-policy.wasm")).expect("rename plugin in");
}

fn write_policy_config(dir: &Path, deny: &str) {
    let staged = dir.join(".10-tool-policy.toml.part");
    std::fs::write(&staged, format!("order = 10\n[config]\nallow = [\"*\"]\ndeny = [\"{deny}\"]\n")).expect("config");
    std::fs::rename(&staged, dir.join("10-tool-policy.toml")).expect("rename config in");
}

fn remove_policy(dir: &Path) {
    std::fs::remove_file(dir.join("10-tool-policy.wasm")).expect("remove plugin");
    let _ = std::fs::remove_file(dir.join("10-tool-policy.toml"));
}

/// Waits until the log says the chain was swapped `count` times in all.
fn wait_swaps(log_count: impl Fn() -> usize, count: usize, log: impl Fn() -> String) {
    let deadline = Instant::now() + PATIENCE;
    while log_count() < count {
        assert!(Instant::now() < deadline, "no reload #{count}:\n{}", log());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `delete_everything` verdicts in id order: true where denied.
fn verdicts(answers: &HashMap<u64, Value>, sent: u64) -> Vec<bool> {
    (1..=sent).map(|id| answers[&id].get("error").is_some()).collect()
}

fn switches(verdicts: &[bool]) -> usize {
    verdicts.windows(2).filter(|w| w[0] != w[1]).count()
}

#[test]
fn swaps_under_pipelined_load_lose_nothing_and_switch_at_a_message_boundary() {
    let plugins = PluginDir::new();
    let dir = plugins.path().to_owned();
    let fixture = paths().fixture.display().to_string();
    let mut w = Warden::start_with(Some(&dir), &[], &[&fixture]);
    w.initialize();

    // One thread keeps pipelining calls while the folder changes under Warden.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut stdin = w.stdin_writer();
    let writer = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let mut id = 1000u64;
            while !stop.load(Ordering::Relaxed) {
                let mut batch = String::new();
                for _ in 0..20 {
                    id += 1;
                    let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "delete_everything", "arguments": {}}});
                    batch.push_str(&call.to_string());
                    batch.push('\n');
                }
                stdin.write_all(batch.as_bytes()).expect("write");
                sent.store(id - 1000, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    // Reading runs meanwhile so that nobody blocks on a full pipe.
    let mut answers: HashMap<u64, Value> = HashMap::new();
    let read_some = |w: &mut Warden, answers: &mut HashMap<u64, Value>, until: Duration| {
        let deadline = Instant::now() + until;
        while Instant::now() < deadline {
            let message = w.recv();
            let id = message["id"].as_u64().expect("answers only") - 1000;
            assert!(answers.insert(id, message).is_none(), "id {id} answered twice");
        }
    };
    read_some(&mut w, &mut answers, Duration::from_millis(200));
    let steps: [&dyn Fn(); 5] = [
        &|| drop_in_policy(&dir, "delete_*"),
        &|| remove_policy(&dir),
        &|| drop_in_policy(&dir, "delete_*"),
        &|| write_policy_config(&dir, "nothing_*"), // a config-only change: allowed again
        &|| write_policy_config(&dir, "delete_*"),
    ];
    for (n, step) in steps.iter().enumerate() {
        step();
        let deadline = Instant::now() + PATIENCE;
        while w.log_count(SWAPPED) < n + 1 {
            assert!(Instant::now() < deadline, "no reload #{}:\n{}", n + 1, w.stderr());
            read_some(&mut w, &mut answers, Duration::from_millis(20));
        }
        read_some(&mut w, &mut answers, Duration::from_millis(150));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let total = sent.load(Ordering::Relaxed);
    while (answers.len() as u64) < total {
        let message = w.recv();
        let id = message["id"].as_u64().expect("answers only") - 1000;
        assert!(answers.insert(id, message).is_none(), "id {id} answered twice");
    }
    assert_eq!(answers.len() as u64, total, "every request answered exactly once");
    let verdicts = verdicts(&answers, total);
    assert!(!verdicts[0] && verdicts[total as usize - 1], "allowed at first, denied at the end");
    assert_eq!(switches(&verdicts), steps.len(), "one switch per swap, each at a message boundary");
    assert!(total > 500, "the load kept going through the swaps ({total} calls)");
    // Every reload is audited with the plugin's digests.
    let audit = w.finish();
    let reloads: Vec<&Value> = audit.iter().filter(|e| e["event"]["event"] == "reload").collect();
    assert_eq!(reloads.len(), steps.len(), "{audit:?}");
    assert!(reloads[0]["event"]["plugins"][0]["old_digest"].is_null());
    assert!(reloads[1]["event"]["plugins"][0]["new_digest"].is_null(), "removal");
}

#[test]
fn a_bad_or_half_written_file_is_refused_and_the_chain_in_force_stays() {
    let plugins = PluginDir::new().add_example("10-tool-policy", "tool-policy");
    let dir = plugins.path().to_owned();
    let fixture = paths().fixture.display().to_string();
    let mut w = Warden::start_with(Some(&dir), &[], &[&fixture]);
    w.initialize();
    let denied = |w: &mut Warden| w.call_tool("delete_everything", json!({})).get("error").is_some();
    assert!(denied(&mut w));

    std::fs::write(dir.join("30-broken.wasm"), b"not a component").expect("write");
    assert!(w.log_contains("reload refused"), "{}", w.stderr());
    assert!(w.log_contains("30-broken.wasm"), "the log names the file: {}", w.stderr());
    assert!(denied(&mut w), "the chain in force stays");
    std::fs::remove_file(dir.join("30-broken.wasm")).expect("remove");
    // A config that does not parse: refused too, naming the file.
    let refusals = w.log_count("reload refused");
    std::fs::write(dir.join("10-tool-policy.toml"), "order = \"first\"\n").expect("write");
    wait_swaps(|| w.log_count("reload refused"), refusals + 1, || w.stderr());
    assert!(w.log_contains("10-tool-policy.toml"), "{}", w.stderr());
    assert!(denied(&mut w), "the chain in force stays");
    let sample = std::fs::read_to_string(paths().repo.join("plugins/tool-policy/sample.toml")).expect("sample");
    std::fs::write(dir.join("10-tool-policy.toml"), sample).expect("restore");

    // A component written in two halves, slowly: the first half is refused, the whole loads.
    let bytes = std::fs::read(paths().wasm.join("secret_redact.wasm")).expect("plugin");
    let target = dir.join("20-secret-redact.wasm");
    let refusals = w.log_count("reload refused");
    let mut file = std::fs::File::create(&target).expect("create");
    file.write_all(&bytes[..bytes.len() / 2]).expect("first half");
    file.flush().expect("flush");
    // The watcher considers the half file and refuses it (said in the log).
    wait_swaps(|| w.log_count("reload refused"), refusals + 1, || w.stderr());
    assert!(w.log_contains("20-secret-redact.wasm"), "{}", w.stderr());
    file.write_all(&bytes[bytes.len() / 2..]).expect("second half");
    drop(file);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = w.call_tool("get_config", json!({}));
        let text = answer["result"]["content"][0]["text"].as_str().unwrap_or_default().to_owned();
        if text.contains("[REDACTED]") {
            break;
        }
        assert!(Instant::now() < deadline, "the completed file never loaded: {}", w.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(denied(&mut w), "tool-policy is still there");
    w.finish();
}

#[test]
fn a_call_in_flight_finishes_on_the_chain_it_started_on() {
    // secret-redact watches answers: a call that went through it is redacted on
    // the way back even if the plugin is removed before the answer comes.
    let plugins = PluginDir::new().add_example("20-secret-redact", "secret-redact");
    let dir = plugins.path().to_owned();
    let fixture = paths().fixture.display().to_string();
    let mut w = Warden::start_with(Some(&dir), &[], &[&fixture]);
    w.initialize();
    let id = w.fresh_id();
    w.send(
        &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "ask_client", "arguments": {}}}),
    );
    let ask = w.wait_for(|m| m["method"] == "sampling/createMessage");
    std::fs::remove_file(dir.join("20-secret-redact.wasm")).expect("remove");
    wait_swaps(|| w.log_count(SWAPPED), 1, || w.stderr());
    let secret = "sk-proj-abcdefghijklmnopqrstuvwxyz0123";
    w.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"role": "assistant", "content": {"type": "text", "text": secret}, "model": "m"}}));
    let answer = w.answer_to(&id);
    let text = answer["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("[REDACTED]") && !text.contains(secret), "old chain for the old call: {answer}");
    // The next call uses the new chain, without the plugin.
    let config = w.call_tool("get_config", json!({}));
    assert!(config["result"]["content"][0]["text"].as_str().unwrap_or_default().contains("sk-proj-"), "{config}");
    w.finish();
}

#[test]
fn an_http_session_under_concurrent_calls_follows_swaps_too() {
    let plugins = PluginDir::new();
    let dir = plugins.path().to_owned();
    let gw = Gateway::start(Some(&dir), &[]);
    let session = gw.open();
    let stop = AtomicBool::new(false);
    let done = std::sync::atomic::AtomicUsize::new(0);
    // Lets the load run until `more` further calls have been answered.
    let after_calls = |more: usize| {
        let target = done.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + PATIENCE;
        while done.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "the load stalled: {}", gw.stderr());
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let swaps = |count: usize| {
        let deadline = Instant::now() + PATIENCE;
        while gw.stderr().matches(SWAPPED).count() < count {
            assert!(Instant::now() < deadline, "no reload #{count}: {}", gw.stderr());
            std::thread::sleep(Duration::from_millis(5));
        }
        Instant::now()
    };
    let (added_at, added_seen, removed_at, removed_seen, calls) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4u64)
            .map(|worker| {
                let (gw, session, stop, done) = (&gw, &session, &stop, &done);
                s.spawn(move || {
                    let mut calls = Vec::new();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let started = Instant::now();
                        let answer = gw.call(session, worker * 1_000_000 + n, "delete_everything", json!({}));
                        assert_eq!(answer.status, 200, "{answer:?}");
                        let answer = answer.answer();
                        let denied = match answer.get("error") {
                            Some(error) => {
                                assert_eq!(error["code"], -32001, "{answer}");
                                true
                            }
                            None => false,
                        };
                        calls.push((started, Instant::now(), denied));
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    calls
                })
            })
            .collect();
        after_calls(40);
        let added_at = Instant::now();
        drop_in_policy(&dir, "delete_*");
        let added_seen = swaps(1);
        after_calls(40);
        let removed_at = Instant::now();
        remove_policy(&dir);
        let removed_seen = swaps(2);
        after_calls(40);
        stop.store(true, Ordering::Relaxed);
        let calls: Vec<_> = workers.into_iter().flat_map(|w| w.join().expect("worker")).collect();
        (added_at, added_seen, removed_at, removed_seen, calls)
    });
    assert!(calls.len() > 100, "the load kept going ({} calls)", calls.len());
    for (started, ended, denied) in &calls {
        if *ended < added_at || *started > removed_seen {
            assert!(!denied, "a call with no policy in force was denied");
        } else if *started > added_seen && *ended < removed_at {
            assert!(denied, "a call made while the policy was in force was allowed");
        }
    }
    let denials = calls.iter().filter(|c| c.2).count();
    assert!(denials > 10 && denials < calls.len(), "{denials} of {}", calls.len());
}

#[test]
fn sighup_reloads_when_the_folder_is_not_watched() {
    let plugins = PluginDir::new();
    let dir = plugins.path().to_owned();
    let fixture = paths().fixture.display().to_string();
    let mut w = Warden::start_with(Some(&dir), &["--no-watch"], &[&fixture]);
    w.initialize();
    let denied = |w: &mut Warden| w.call_tool("delete_everything", json!({})).get("error").is_some();
    // Nothing watches the folder (said at start), so the change alone cannot reload it.
    assert!(w.log_contains("not watching the plugins folder"), "{}", w.stderr());
    drop_in_policy(&dir, "delete_*");
    assert!(!denied(&mut w), "--no-watch: the folder change alone does nothing");
    let status = std::process::Command::new("kill").args(["-HUP", &w.pid().to_string()]).status().expect("kill");
    assert!(status.success());
    wait_swaps(|| w.log_count("SIGHUP: new chain in force"), 1, || w.stderr());
    assert!(denied(&mut w));
    w.finish();
}

#[test]
fn plugin_check_reports_a_component_or_why_it_is_refused() {
    let wasm = paths().wasm.join("tool_policy.wasm");
    let sample = paths().repo.join("plugins/tool-policy/sample.toml");
    let check = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(&paths().warden)
            .args(["plugin", "check"])
            .args(args)
            .arg("--cache-dir")
            .arg(&paths().cache)
            .output()
            .expect("run warden plugin check");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, report) = check(&[wasm.as_os_str(), "--config".as_ref(), sample.as_os_str()]);
    assert!(ok, "{report}");
    assert!(report.contains("wit:       warden:interceptor@0.3.0"), "{report}");
    assert!(report.contains("exports:   init, on-request, on-response"), "{report}");
    assert!(report.contains(r#"requests:  ["tools/call"] client-to-server, whole body"#), "{report}");
    let bad = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(bad.path(), "[config]\nallow = 5\n").expect("write");
    let (ok, report) = check(&[wasm.as_os_str(), "--config".as_ref(), bad.path().as_os_str()]);
    assert!(!ok && report.contains("init failed: invalid config"), "{report}");
    let junk = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(junk.path(), "not a component").expect("write");
    let (ok, report) = check(&[junk.path().as_os_str()]);
    assert!(!ok && report.contains("refused") && report.lines().count() == 1, "{report}");
}
