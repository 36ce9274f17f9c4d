//! A running `warden serve` and a small HTTP client for it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::{paths, PATIENCE};

/// `warden serve` in front of the fixture server.
pub struct Gateway {
    child: Child,
    pub url: String,
    stderr: Arc<Mutex<String>>,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub session: Option<String>,
    pub content_type: String,
    /// The `WWW-Authenticate` challenge, if any.
    pub challenge: Option<String>,
    pub body: String,
}

impl Answer {
    /// The JSON-RPC messages in the body: one JSON document, or SSE `data:` lines.
    pub fn messages(&self) -> Vec<Value> {
        if self.content_type.starts_with("text/event-stream") {
            self.body
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .map(|d| serde_json::from_str(d).expect("SSE data is JSON"))
                .collect()
        } else if self.body.is_empty() {
            Vec::new()
        } else {
            vec![serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))]
        }
    }

    /// The last message: the answer to the request.
    pub fn answer(&self) -> Value {
        self.messages().pop().unwrap_or_else(|| panic!("no message in {self:?}"))
    }
}

impl Gateway {
    /// `warden serve` in front of the fixture server.
    pub fn start(plugins: Option<&Path>, flags: &[&str]) -> Gateway {
        let fixture = paths().fixture.display().to_string();
        Gateway::start_with(plugins, flags, &[&fixture])
    }

    /// `warden serve` with any flags (`--listen` defaults to a free loopback port)
    /// and upstream command (none with `--upstream-url`).
    pub fn start_with(plugins: Option<&Path>, flags: &[&str], upstream: &[&str]) -> Gateway {
        let p = paths();
        let mut cmd = Command::new(&p.warden);
        cmd.arg("serve");
        if !flags.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.arg("--cache-dir").arg(&p.cache);
        if let Some(dir) = plugins {
            cmd.arg("--plugins").arg(dir);
        }
        cmd.args(flags);
        if !upstream.is_empty() {
            cmd.arg("--").args(upstream);
        }
        cmd.env("WARDEN_LOG", "info").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn warden serve");
        let stderr_pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("listening on ") {
                    let _ = tx.send(line[at + "listening on ".len()..].trim().to_owned());
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let url = rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("warden serve did not start: {}", stderr.lock().unwrap()));
        Gateway { child, url, stderr }
    }

    /// Runs tests/python/client.py (the official Python SDK client) against this
    /// gateway in `mode` and returns what it saw.
    pub fn python_client(&self, python: &Path, mode: &str) -> Value {
        self.python_client_with(python, mode, &[])
    }

    /// The same, with more arguments (`basic`: tools every test server has).
    pub fn python_client_with(&self, python: &Path, mode: &str, args: &[&str]) -> Value {
        let script = paths().repo.join("tests/python/client.py");
        let out = Command::new(python).arg(&script).arg(&self.url).arg(mode).args(args).output().expect("run python");
        assert!(out.status.success(), "{mode}: {}\n{}", String::from_utf8_lossy(&out.stderr), self.stderr());
        serde_json::from_slice(&out.stdout).expect("client output is JSON")
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// POSTs a body with the usual MCP headers plus `extra`.
    pub fn post(&self, session: Option<&str>, body: &str, extra: &[(&str, &str)]) -> Answer {
        self.post_at(&self.url, session, body, extra)
    }

    /// POSTs to another of this Warden's endpoints.
    pub fn post_at(&self, url: &str, session: Option<&str>, body: &str, extra: &[(&str, &str)]) -> Answer {
        let mut request = ureq::post(url)
            .timeout(PATIENCE)
            .set("content-type", "application/json")
            .set("accept", "application/json, text/event-stream");
        if let Some(id) = session {
            request = request.set("mcp-session-id", id);
        }
        for (name, value) in extra {
            request = request.set(name, value);
        }
        answer(request.send_string(body))
    }

    /// POSTs a request answered with a stream that stays open; returns its first event's message.
    pub fn first_event(&self, body: &str, extra: &[(&str, &str)]) -> Value {
        let mut request = ureq::post(&self.url)
            .timeout(PATIENCE)
            .set("content-type", "application/json")
            .set("accept", "application/json, text/event-stream");
        for (name, value) in extra {
            request = request.set(name, value);
        }
        let response = request.send_string(body).unwrap_or_else(|e| panic!("POST failed: {e}"));
        let mut lines = BufReader::new(response.into_reader()).lines();
        loop {
            let line = lines.next().expect("an event").expect("readable");
            if let Some(data) = line.strip_prefix("data: ").filter(|d| !d.is_empty()) {
                return serde_json::from_str(data).expect("event data is JSON");
            }
        }
    }

    pub fn delete(&self, session: &str) -> Answer {
        answer(ureq::delete(&self.url).timeout(PATIENCE).set("mcp-session-id", session).call())
    }

    /// `initialize` + `notifications/initialized`; returns the session id.
    pub fn open(&self) -> String {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
        let answer = self.post(None, &init.to_string(), &[]);
        assert_eq!(answer.status, 200, "{answer:?}");
        let session = answer.session.clone().expect("Mcp-Session-Id on the initialize answer");
        let note = self.post(Some(&session), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, &[]);
        assert_eq!(note.status, 202);
        session
    }

    pub fn call(&self, session: &str, id: u64, tool: &str, arguments: Value) -> Answer {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}});
        self.post(Some(session), &body.to_string(), &[("mcp-protocol-version", "2025-06-18")])
    }

    /// Waits until the log contains `needle`.
    pub fn log_contains(&self, needle: &str) -> bool {
        super::log_contains(&self.stderr, needle)
    }

    /// The listener's `host:port`.
    pub fn address(&self) -> String {
        let rest = self.url.trim_start_matches("http://");
        rest.split('/').next().unwrap_or(rest).to_owned()
    }

    /// Sends it a signal (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name}");
    }

    /// Waits for it to exit.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "warden serve did not exit; stderr:\n{}", self.stderr());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// How many cancellations the fixture behind this gateway has reported hearing.
    pub fn cancellations_heard(&self) -> usize {
        self.stderr().matches("mcp-fixture heard notifications/cancelled").count()
    }

    /// Whether it reports more than `before` (its log is read by another
    /// thread, so a line may lag what the clients saw: it is waited for).
    pub fn heard_a_cancellation_since(&self, before: usize) -> bool {
        let deadline = std::time::Instant::now() + PATIENCE;
        while self.cancellations_heard() <= before && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.cancellations_heard() > before
    }
}

fn answer(result: Result<ureq::Response, ureq::Error>) -> Answer {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("HTTP request failed: {e}"),
    };
    Answer {
        status: response.status(),
        session: response.header("mcp-session-id").map(str::to_owned),
        content_type: response.content_type().to_owned(),
        challenge: response.header("www-authenticate").map(str::to_owned),
        body: response.into_string().expect("body"),
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What tests/python/client.py saw of the fixture through the example plugins,
/// the same in every path: an echo, a denial, a redaction, sampling answered
/// by the client, 1 MiB, 24 concurrent calls, the era the client ran (auto: Warden answers
/// `server/discover` as a 2026-07-28 server), elicitation, roots and progress
/// answered or shown, and a cancellation the upstream heard of.
/// `upstream_heard`: the fixture's log shows a cancellation during the run
/// (a modern client's call that leased an upstream session of its own ends
/// with it, so no later call can ask that process what it heard).
pub fn assert_conversations(seen: &Value, mode: &str, upstream_heard: bool) {
    assert_eq!(seen["echo"], "hello", "{mode}");
    assert!(seen["denied"].as_str().unwrap_or_default().contains("delete_*"), "{mode}: {seen}");
    let redacted = seen["redacted"].as_str().unwrap_or_default();
    assert!(redacted.contains("[REDACTED]") && !redacted.contains("sk-proj-"), "{mode}: {redacted}");
    assert_eq!(seen["sampling"], "client said: hi from python", "{mode}");
    assert_eq!(seen["big"], 1 << 20, "{mode}");
    let sums: Vec<String> = (1..=24).map(|n| n.to_string()).collect();
    assert_eq!(seen["concurrent"], json!(sums), "{mode}");
    let era = if mode == "auto" { "2026-07-28" } else { "2025-06-18" };
    assert_eq!(seen["era"], era);
    assert_eq!(seen["elicitation"], r#"client said: accept {"name":"Ada"}"#, "{mode}");
    assert_eq!(seen["roots"], "client said: file:///work", "{mode}");
    assert_eq!(seen["progress"], json!([1.0, 2.0, 3.0]), "{mode}");
    assert_eq!(seen["progress_answer"], "progressed", "{mode}");
    let heard = seen["server_heard"].as_array().expect("server_heard");
    assert!(
        heard.contains(&json!("notifications/cancelled")) || upstream_heard,
        "{mode}: the upstream must see the cancellation: {heard:?}"
    );
}
