//! The harness: the real `warden` binary, real plugins built from this
//! repository, and a real MCP server, driven over stdio like a client would.

#![allow(dead_code)]

pub mod http;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Longest any single answer may take before a test fails (a guard, not a measurement).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Where the build put things.
pub struct Paths {
    pub warden: PathBuf,
    pub fixture: PathBuf,
    pub wasm: PathBuf,
    pub cache: PathBuf,
    pub repo: PathBuf,
}

pub fn paths() -> Paths {
    // target/<profile>/deps/it-<hash>
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_owned();
    let target = profile_dir.parent().expect("target dir").to_owned();
    let warden = profile_dir.join("warden");
    assert!(warden.exists(), "{} is missing: run `cargo build -p warden` (scripts/test.sh does)", warden.display());
    let wasm = target.join("wasm32-wasip2").join("plugin");
    assert!(
        wasm.join("tool_policy.wasm").exists(),
        "plugins are not built in {}: run scripts/build-plugins.sh (scripts/test.sh does)",
        wasm.display()
    );
    Paths {
        warden,
        fixture: PathBuf::from(env!("CARGO_BIN_EXE_mcp-fixture")),
        wasm,
        cache: target.join("warden-test-cache"),
        repo: PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_owned(),
    }
}

/// A plugins folder made for one test.
pub struct PluginDir {
    pub dir: tempfile::TempDir,
}

impl PluginDir {
    pub fn new() -> PluginDir {
        PluginDir { dir: tempfile::tempdir().expect("temp dir") }
    }

    /// Adds `<file>.wasm` built from the crate whose artifact is `artifact`, with this manifest.
    pub fn add(self, file: &str, artifact: &str, manifest: &str) -> PluginDir {
        let p = paths();
        std::fs::copy(p.wasm.join(format!("{artifact}.wasm")), self.dir.path().join(format!("{file}.wasm")))
            .expect("copy plugin");
        if !manifest.is_empty() {
            std::fs::write(self.dir.path().join(format!("{file}.toml")), manifest).expect("write manifest");
        }
        self
    }

    /// Adds an example plugin with the sample config shipped beside its source.
    pub fn add_example(self, file: &str, name: &str) -> PluginDir {
        let sample = paths().repo.join("plugins").join(name).join("sample.toml");
        let manifest = std::fs::read_to_string(&sample).expect("sample.toml");
        self.add(file, &name.replace('-', "_"), &manifest)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The three example plugins in their documented order.
pub fn examples() -> PluginDir {
    PluginDir::new()
        .add_example("00-audit-log", "audit-log")
        .add_example("10-tool-policy", "tool-policy")
        .add_example("20-secret-redact", "secret-redact")
}

/// A running `warden wrap` and the client end of its stdio.
pub struct Warden {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    backlog: VecDeque<Value>,
    next_id: u64,
    pub audit: PathBuf,
    _audit_dir: tempfile::TempDir,
}

impl Warden {
    /// Warden with these plugins in front of the fixture server.
    pub fn start(plugins: &PluginDir) -> Warden {
        let fixture = paths().fixture.display().to_string();
        Warden::start_with(Some(plugins.path()), &[], &[&fixture])
    }

    /// Warden with any plugins folder, extra flags and upstream command.
    pub fn start_with(plugins: Option<&Path>, flags: &[&str], upstream: &[&str]) -> Warden {
        let p = paths();
        let audit_dir = tempfile::tempdir().expect("temp dir");
        let audit = audit_dir.path().join("audit.jsonl");
        let mut cmd = Command::new(&p.warden);
        cmd.arg("wrap").arg("--audit").arg(&audit).arg("--cache-dir").arg(&p.cache);
        if let Some(dir) = plugins {
            cmd.arg("--plugins").arg(dir);
        }
        cmd.args(flags);
        if !upstream.is_empty() {
            cmd.arg("--").args(upstream);
        }
        Warden::spawn(cmd, audit, audit_dir)
    }

    /// The `wrap` command line `start_with` would run (audit into `audit`),
    /// for a test that runs it some other way (under a shell's limits, say).
    pub fn command_line(plugins: Option<&Path>, audit: &Path, flags: &[&str], upstream: &[&str]) -> Vec<String> {
        let p = paths();
        let mut line =
            vec![p.warden.display().to_string(), "wrap".into(), "--audit".into(), audit.display().to_string()];
        line.extend(["--cache-dir".into(), p.cache.display().to_string()]);
        if let Some(dir) = plugins {
            line.extend(["--plugins".into(), dir.display().to_string()]);
        }
        line.extend(flags.iter().map(|f| f.to_string()));
        if !upstream.is_empty() {
            line.push("--".into());
            line.extend(upstream.iter().map(|u| u.to_string()));
        }
        line
    }

    /// Runs `cmd` as the Warden under test (its audit file `audit`, in `audit_dir`).
    pub fn spawn(mut cmd: Command, audit: PathBuf, audit_dir: tempfile::TempDir) -> Warden {
        cmd.env("WARDEN_LOG", std::env::var("WARDEN_TEST_LOG").unwrap_or_else(|_| "info".to_owned()));
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn warden");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let stderr_pipe = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Warden { child, stdin, lines, stderr, backlog: VecDeque::new(), next_id: 0, audit, _audit_dir: audit_dir }
    }

    pub fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.write_all(b"\n"))
            .and_then(|()| stdin.flush())
            .expect("write to warden");
    }

    /// Writes `data` from another thread, so that the test can read while it writes.
    pub fn send_in_background(&mut self, data: String) -> std::thread::JoinHandle<()> {
        use std::os::fd::AsFd;
        let stdin = self.stdin.as_ref().expect("stdin open");
        let mut file = std::fs::File::from(stdin.as_fd().try_clone_to_owned().expect("dup stdin"));
        std::thread::spawn(move || file.write_all(data.as_bytes()).expect("write to warden"))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A second handle on Warden's stdin, for a thread that keeps writing.
    pub fn stdin_writer(&self) -> std::fs::File {
        use std::os::fd::AsFd;
        let stdin = self.stdin.as_ref().expect("stdin open");
        std::fs::File::from(stdin.as_fd().try_clone_to_owned().expect("dup stdin"))
    }

    /// How many times `needle` appears in the log so far.
    pub fn log_count(&self, needle: &str) -> usize {
        self.stderr.lock().unwrap().matches(needle).count()
    }

    /// The same, once it has reached `at_least` (the log is read by another
    /// thread than the answers, so it may lag them) or a while has passed.
    pub fn settled_log_count(&self, needle: &str, at_least: usize) -> usize {
        let deadline = Instant::now() + PATIENCE;
        while self.log_count(needle) < at_least && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.log_count(needle)
    }

    pub fn send(&mut self, message: &Value) {
        self.send_raw(&message.to_string());
    }

    /// The next raw line Warden wrote to stdout.
    pub fn recv_line(&mut self) -> String {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("no message within {PATIENCE:?}; stderr:\n{}", self.stderr()),
            Err(RecvTimeoutError::Disconnected) => panic!("warden closed stdout; stderr:\n{}", self.stderr()),
        }
    }

    /// The next message, from the backlog first.
    pub fn recv(&mut self) -> Value {
        if let Some(v) = self.backlog.pop_front() {
            return v;
        }
        let line = self.recv_line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout carried a non-JSON line ({e}): {line}"))
    }

    /// Whether stdout is closed with nothing more on it (within the patience).
    pub fn stdout_closed(&mut self) -> bool {
        matches!(self.lines.recv_timeout(PATIENCE), Err(RecvTimeoutError::Disconnected))
    }

    /// Waits for the answer to `id`, keeping anything else for later.
    pub fn answer_to(&mut self, id: &Value) -> Value {
        if let Some(pos) = self.backlog.iter().position(|m| m.get("id") == Some(id) && m.get("method").is_none()) {
            return self.backlog.remove(pos).expect("present");
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            assert!(Instant::now() < deadline, "no answer to {id}; stderr:\n{}", self.stderr());
            let line = self.recv_line();
            let message: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("non-JSON on stdout ({e}): {line}"));
            if message.get("id") == Some(id) && message.get("method").is_none() {
                return message;
            }
            self.backlog.push_back(message);
        }
    }

    /// Takes the first buffered or incoming message that satisfies `pred`.
    pub fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(pos) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(pos).expect("present");
        }
        loop {
            let line = self.recv_line();
            let message: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("non-JSON on stdout ({e}): {line}"));
            if pred(&message) {
                return message;
            }
            self.backlog.push_back(message);
        }
    }

    pub fn fresh_id(&mut self) -> Value {
        self.next_id += 1;
        json!(self.next_id)
    }

    /// Sends a request and returns its answer.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.fresh_id();
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.answer_to(&id)
    }

    /// The MCP handshake.
    pub fn initialize(&mut self) -> Value {
        let answer = self.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {"sampling": {}}, "clientInfo": {"name": "warden-tests", "version": "0"}}),
        );
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        answer
    }

    pub fn call_tool(&mut self, name: &str, arguments: Value) -> Value {
        self.request("tools/call", json!({"name": name, "arguments": arguments}))
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for Warden to exit.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "warden did not exit; stderr:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until Warden's log contains `needle` (logs arrive on their own pipe).
    pub fn log_contains(&self, needle: &str) -> bool {
        log_contains(&self.stderr, needle)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Audit records written so far (complete once Warden has exited).
    pub fn audit_events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.audit).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).expect("audit lines are JSON")).collect()
    }

    /// Closes stdin, waits for a clean exit and returns the audit records.
    pub fn finish(mut self) -> Vec<Value> {
        self.close_stdin();
        let status = self.wait();
        assert!(status.success(), "warden exited with {status}; stderr:\n{}", self.stderr());
        self.audit_events()
    }
}

impl Drop for Warden {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until a captured log contains `needle`.
pub fn log_contains(log: &Mutex<String>, needle: &str) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if log.lock().unwrap().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Whether a peer installed by scripts/test.sh is present. Missing, the test is
/// skipped with a note, unless `require_var` is set (CI sets it): then it fails.
pub fn installed(path: &Path, require_var: &str) -> bool {
    if path.exists() {
        return true;
    }
    assert!(std::env::var_os(require_var).is_none(), "{} is missing and {require_var} is set", path.display());
    eprintln!("skipped: {} not installed (scripts/test.sh installs it)", path.display());
    false
}

/// A loopback port nothing listens on (a listener is bound and let go).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// The official Python SDK's interpreter (installed by scripts/test.sh), if it is there.
pub fn python_sdk() -> Option<PathBuf> {
    let python = paths().repo.join("target/py/bin/python");
    installed(&python, "WARDEN_REQUIRE_PY").then_some(python)
}

/// The text of the first content item of a tool result.
pub fn text_of(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("no text in {answer}"))
}

/// The error code and message of an error answer.
pub fn error_of(answer: &Value) -> (i64, &str) {
    let code = answer["error"]["code"].as_i64().unwrap_or_else(|| panic!("not an error: {answer}"));
    (code, answer["error"]["message"].as_str().unwrap_or_default())
}
