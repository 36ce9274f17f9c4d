//! The tamper-evident audit trail: records chained by `seq` and `prev`,
//! checkpoints signed with Ed25519, rotation and restarts continuing the
//! chain, and `warden audit verify` naming every kind of tampering and where.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::common::{paths, PluginDir};

fn recorder() -> PluginDir {
    PluginDir::new().add("10-record", "misbehave", "[config]\naction = \"record\"\nmethods = [\"tools/call\"]\n")
}

/// A key pair in `dir`: (audit.key, audit.pub).
fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    let out = Command::new(paths().warden).args(["audit", "keygen"]).arg(dir).output().expect("warden");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("fingerprint SHA256:"));
    (dir.join("audit.key"), dir.join("audit.pub"))
}

/// `warden wrap` appending to `audit`, making `calls` calls, then ending as
/// stdin closes (`kill`: killed instead, once the calls are answered).
fn run(plugins: &PluginDir, audit: &Path, key: &Path, extra: &[&str], calls: usize, kill: bool) {
    let p = paths();
    let mut child = Command::new(&p.warden)
        .arg("wrap")
        .arg("--plugins")
        .arg(plugins.path())
        .arg("--cache-dir")
        .arg(&p.cache)
        .arg("--audit")
        .arg(audit)
        .arg("--audit-key")
        .arg(key)
        .args(extra)
        .arg("--")
        .arg(&p.fixture)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("warden");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    writeln!(stdin, "{init}\n{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}}").expect("write");
    stdout.next();
    for id in 1..=calls {
        let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": format!("call {id}")}}});
        writeln!(stdin, "{call}").expect("write");
        let answer = stdout.next().and_then(Result::ok).unwrap_or_default();
        assert!(answer.contains("call "), "{answer}");
    }
    if kill {
        // Killed once the calls' records are on disk (they are written within 10 ms).
        let deadline = std::time::Instant::now() + crate::common::PATIENCE;
        let on_disk = || std::fs::read_to_string(audit).unwrap_or_default().matches("\"source\":\"plugin\"").count();
        while on_disk() < calls && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
    }
    drop(stdin);
    let status = child.wait().expect("wait");
    assert!(kill || status.success(), "{status}");
}

/// `warden audit verify` over `files`: (whole, what it said).
fn verify(files: &[PathBuf], public: &Path) -> (bool, String) {
    let out =
        Command::new(paths().warden).args(["audit", "verify"]).args(files).arg("--public-key").arg(public).output();
    let out = out.expect("warden");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The trail's files, oldest first.
fn series(audit: &Path) -> Vec<PathBuf> {
    let dir = audit.parent().expect("dir");
    let name = audit.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{name}."))))
        .collect();
    rotated.sort();
    rotated.push(audit.to_owned());
    rotated
}

#[test]
fn a_clean_trail_verifies_across_rotations_and_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (key, public) = keygen(&dir.path().join("keys"));
    let audit = dir.path().join("audit.jsonl");
    let plugins = recorder();
    let flags = ["--audit-max-bytes", "3000", "--audit-checkpoint-every", "4"];
    run(&plugins, &audit, &key, &flags, 12, false);
    run(&plugins, &audit, &key, &flags, 12, false);
    let files = series(&audit);
    assert!(files.len() >= 3, "rotated by size: {files:?}");
    let (whole, said) = verify(&files, &public);
    assert!(whole, "{said}");
    assert!(said.contains("the trail is whole and signed"), "{said}");
    // Every file names the key in its first record, and the chain runs across them.
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let first: serde_json::Value =
            serde_json::from_str(text.lines().next().unwrap_or_default()).unwrap_or_default();
        assert_eq!(first["event"]["type"], "audit-file", "{}", file.display());
        assert!(first["event"]["key"].as_str().unwrap_or_default().starts_with("SHA256:"));
    }
    // Another key does not verify it.
    let (_, other) = keygen(&dir.path().join("other"));
    let (whole, said) = verify(&files, &other);
    assert!(!whole && said.contains("names key") && said.contains("signature does not verify"), "{said}");
}

#[test]
fn every_kind_of_tampering_is_found_and_placed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (key, public) = keygen(&dir.path().join("keys"));
    let audit = dir.path().join("audit.jsonl");
    run(&recorder(), &audit, &key, &["--audit-checkpoint-every", "3"], 8, false);
    let text = std::fs::read_to_string(&audit).expect("trail");
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert!(lines.len() > 10, "{text}");
    assert!(verify(std::slice::from_ref(&audit), &public).0);
    // A record of the recorder plugin, not a checkpoint.
    let victim = lines.iter().position(|l| l.contains("\"source\":\"plugin\"")).expect("a plugin record");
    let checkpoint = lines.iter().rposition(|l| l.contains("\"checkpoint\"")).expect("a checkpoint");
    let write = |name: &str, lines: &[String], end: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n") + end).expect("write");
        path
    };
    let edited = {
        let mut l = lines.clone();
        l[victim] = l[victim].replacen("\"bytes\":", "\"bytes\":1", 1);
        assert_ne!(l[victim], lines[victim], "the edit changed something");
        write("edited", &l, "\n")
    };
    let deleted = {
        let mut l = lines.clone();
        l.remove(victim);
        write("deleted", &l, "\n")
    };
    let inserted = {
        let mut l = lines.clone();
        l.insert(victim + 1, lines[victim].clone());
        write("inserted", &l, "\n")
    };
    let swapped = {
        let mut l = lines.clone();
        l.swap(victim, victim + 1);
        write("swapped", &l, "\n")
    };
    let torn = {
        let mut l = lines.clone();
        let last = l.len() - 1;
        let cut = l[last].len() / 2;
        l[last].truncate(cut);
        write("torn", &l, "")
    };
    let bad_signature = {
        let mut l = lines.clone();
        let at = l[checkpoint].find("\"signature\":\"").expect("signature") + 14;
        let flipped = if l[checkpoint].as_bytes()[at] == b'A' { "B" } else { "A" };
        l[checkpoint].replace_range(at..at + 1, flipped);
        write("bad-signature", &l, "\n")
    };
    for (file, says) in [
        (&edited, format!("edited:{}", victim + 1)),
        (&edited, format!("record {} does not chain", victim + 2)),
        (&deleted, "are missing".to_owned()),
        (&inserted, "a record inserted, or records reordered".to_owned()),
        (&swapped, "a record inserted, or records reordered".to_owned()),
        (&torn, "the last line is torn".to_owned()),
        (&bad_signature, "signature does not verify".to_owned()),
    ] {
        let (whole, said) = verify(std::slice::from_ref(file), &public);
        assert!(!whole, "{}: passed\n{said}", file.display());
        assert!(said.contains(&says), "{}: wanted {says:?}\n{said}", file.display());
    }
}

#[test]
fn a_file_missing_from_a_rotated_series_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (key, public) = keygen(&dir.path().join("keys"));
    let audit = dir.path().join("audit.jsonl");
    run(&recorder(), &audit, &key, &["--audit-max-bytes", "2500", "--audit-checkpoint-every", "4"], 16, false);
    let mut files = series(&audit);
    assert!(files.len() >= 3, "{files:?}");
    assert!(verify(&files, &public).0);
    let gone = files.remove(1);
    let (whole, said) = verify(&files, &public);
    assert!(!whole, "{said}");
    assert!(said.contains("between files") && said.contains("does not continue"), "{} gone:\n{said}", gone.display());
    // Without the first file, the trail does not start at its beginning.
    let (whole, said) = verify(&series(&audit)[1..], &public);
    assert!(!whole && said.contains("the trail starts at seq"), "{said}");
}

#[test]
fn a_killed_warden_leaves_a_trail_that_says_what_is_not_signed_and_the_next_run_signs_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (key, public) = keygen(&dir.path().join("keys"));
    let audit = dir.path().join("audit.jsonl");
    let plugins = recorder();
    run(&plugins, &audit, &key, &["--audit-checkpoint-every", "1000"], 6, true);
    let (whole, said) = verify(std::slice::from_ref(&audit), &public);
    assert!(!whole && said.contains("not signed yet"), "{said}");
    // The next run continues the chain and signs what the killed one left.
    run(&plugins, &audit, &key, &[], 2, false);
    let (whole, said) = verify(std::slice::from_ref(&audit), &public);
    assert!(whole, "{said}");
    assert!(std::fs::read_to_string(&audit).unwrap_or_default().contains("audit-restart"));
}

#[test]
fn every_request_gets_a_host_record_with_verdicts_digests_and_outcome_and_no_secret() {
    use crate::common::{text_of, Warden};
    let plugins =
        PluginDir::new().add("10-policy", "tool_policy", "[config]\nallow = [\"*\"]\ndeny = [\"delete_*\"]\n");
    let mut w = Warden::start_with(Some(plugins.path()), &[], &[&paths().fixture.display().to_string()]);
    w.initialize();
    let secret = "sk-live-0123456789abcdefSECRET";
    assert_eq!(text_of(&w.call_tool("echo", json!({"text": secret, "n": 1}))), secret);
    // The same arguments written otherwise: other key order, an escape.
    w.send_raw(&format!(r#"{{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{{"name":"echo","arguments":{{"n":1,"text":"{}\u0053ECRET"}}}}}}"#, &secret[..secret.len() - 6]));
    let again = w.answer_to(&json!("x"));
    assert_eq!(text_of(&again), secret);
    let denied = w.call_tool("delete_everything", json!({}));
    assert!(denied["error"].is_object(), "{denied}");
    let config = w.call_tool("get_config", json!({}));
    let records = w.finish();
    let requests: Vec<&serde_json::Value> = records.iter().filter(|r| r["event"]["type"] == "request").collect();
    let calls: Vec<&&serde_json::Value> = requests.iter().filter(|r| r["event"]["method"] == "tools/call").collect();
    assert_eq!(calls.len(), 4, "{requests:?}");
    let (first, second) = (&calls[0]["event"], &calls[1]["event"]);
    assert_eq!(first["arguments_sha256"], second["arguments_sha256"], "the same arguments, the same digest");
    assert_eq!(first["arguments_sha256"].as_str().map(str::len), Some(64));
    assert_eq!(first["outcome"], json!({"result": "success"}));
    assert_eq!(first["transport"], "stdio");
    assert_eq!(first["tool"], "echo");
    assert!(first["latency_us"].as_u64().is_some());
    let verdict = &first["verdicts"][0];
    assert_eq!(verdict["plugin"], "10-policy");
    assert_eq!(verdict["verdict"], "forward");
    assert!(verdict["component"].as_str().unwrap_or_default().starts_with("sha256:"), "{verdict}");
    let refused = &calls[2]["event"];
    assert_eq!(refused["outcome"], json!({"error": -32001}), "{refused}");
    assert_eq!(refused["verdicts"][0]["verdict"], "reject");
    // initialize and tools/list are requests too.
    assert!(requests.iter().any(|r| r["event"]["method"] == "initialize"));
    // Nothing the client or the server said in arguments or results is in the trail.
    let text = serde_json::to_string(&records).unwrap_or_default();
    assert!(!text.contains("SECRET") && !text.contains("sk-live"), "a secret reached the trail");
    let config_text = text_of(&config).to_owned();
    assert!(!config_text.is_empty() && !text.contains(&config_text), "a result reached the trail");
}
