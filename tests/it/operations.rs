//! The admin listener: `/metrics` (read by a real Prometheus), `/healthz`,
//! `/readyz`, and who may reach them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The SDK's code for a policy's denial.
const DENIED: i32 = -32001;

use crate::common::http::Gateway;
use crate::common::{examples, paths, Warden, PATIENCE};

/// The admin listener's `host:port`, from the log line that announces it.
fn admin_address(log: impl Fn() -> String) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = log();
        if let Some(at) = text.find("admin listener on http://") {
            let rest = &text[at + "admin listener on http://".len()..];
            return rest.split_whitespace().next().unwrap_or_default().to_owned();
        }
        assert!(Instant::now() < deadline, "no admin listener announced:\n{text}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// GET `path` on the admin listener: status and body.
fn get(address: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = ureq::get(&format!("http://{address}{path}")).timeout(PATIENCE);
    for (name, value) in headers {
        request = request.set(name, value);
    }
    match request.call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(status, r)) => (status, r.into_string().unwrap_or_default()),
        Err(e) => panic!("GET {path}: {e}"),
    }
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn wrap_counts_calls_verdicts_and_hooks_on_its_admin_listener() {
    let plugins = examples();
    let fixture = paths().fixture.display().to_string();
    let mut w = Warden::start_with(Some(plugins.path()), &["--admin-listen", "127.0.0.1:0"], &[&fixture]);
    let address = admin_address(|| w.stderr());
    w.initialize();
    w.request("tools/list", json!({}));
    assert_eq!(w.call_tool("echo", json!({"text": "hi"}))["result"]["content"][0]["text"], "hi");
    w.call_tool("echo", json!({"text": "again"}));
    let denied = w.call_tool("delete_everything", json!({}));
    assert!(denied.get("error").is_some(), "{denied}");
    // A tool no upstream listed is counted as `other`, whatever its name.
    w.call_tool("made_up_\u{1F600}\"}", json!({}));

    let (status, text) = get(&address, "/metrics", &[]);
    assert_eq!(status, 200);
    let ok = r#"warden_requests_total{upstream="mcp-fixture",mcp_method_name="tools/call",gen_ai_tool_name="echo",outcome="success",error_type=""}"#;
    assert_eq!(sample(&text, ok), Some(2.0), "{text}");
    let denied = r#"warden_requests_total{upstream="mcp-fixture",mcp_method_name="tools/call",gen_ai_tool_name="delete_everything",outcome="denied",error_type="DENIED"}"#;
    assert_eq!(sample(&text, &denied.replace("DENIED", &DENIED.to_string())), Some(1.0), "{text}");
    assert!(text.contains(r#"gen_ai_tool_name="other""#), "{text}");
    assert!(!text.contains("made_up"), "unlisted names never become labels");
    let verdict = r#"warden_plugin_verdicts_total{plugin="10-tool-policy",hook="request",verdict="reject"}"#;
    assert_eq!(sample(&text, verdict), Some(1.0), "{text}");
    assert!(text.contains(r#"warden_plugin_hook_duration_seconds_count{plugin="20-secret-redact",hook="response"}"#));
    assert!(text.contains(
        r#"mcp_server_operation_duration_seconds_bucket{mcp_method_name="tools/call",network_transport="pipe""#
    ));
    assert!(text.contains(
        r#"mcp_client_operation_duration_seconds_count{upstream="mcp-fixture",mcp_method_name="tools/call""#
    ));
    assert_eq!(sample(&text, r#"warden_sessions{transport="stdio",era="handshake"}"#), Some(1.0), "{text}");
    assert!(sample(&text, "warden_audit_records_total").is_some_and(|n| n > 0.0), "{text}");

    assert_eq!(get(&address, "/healthz", &[]).0, 200);
    let (status, body) = get(&address, "/readyz", &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["plugins"], "loaded");
    // A page that rebinds a name onto the loopback address is not answered.
    assert_eq!(get(&address, "/metrics", &[("host", "attacker.example")]).0, 403);
    assert_eq!(get(&address, "/nothing", &[]).0, 404);
    // What the MCP listener refuses, this one does too: an absolute-form target, no Host.
    for request in
        ["GET http://evil.example/metrics HTTP/1.1\r\nHost: localhost\r\n\r\n", "GET /metrics HTTP/1.1\r\n\r\n"]
    {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = BufReader::new(stream).read_line(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{request:?}: {answer}");
    }
    let post = ureq::post(&format!("http://{address}/metrics")).timeout(PATIENCE).send_string("");
    assert!(matches!(post, Err(ureq::Error::Status(405, _))));
}

#[test]
fn an_admin_listener_off_loopback_needs_its_token() {
    let fixture = paths().fixture.display().to_string();
    // Without a token it does not start.
    let out = Command::new(paths().warden)
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0", "--", &fixture])
        .stdin(Stdio::null())
        .output()
        .expect("run warden");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("admin-token-file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin.token");
    std::fs::write(&token, "an-admin-token-of-some-length\n").unwrap();
    let token_arg = token.display().to_string();
    let g = Gateway::start(None, &["--admin-listen", "0.0.0.0:0", "--admin-token-file", &token_arg]);
    let port = admin_address(|| g.stderr()).rsplit(':').next().unwrap().to_owned();
    let address = format!("127.0.0.1:{port}");
    assert_eq!(get(&address, "/healthz", &[]).0, 401);
    assert_eq!(get(&address, "/metrics", &[("authorization", "Bearer an-admin-token-of-some-lengtH")]).0, 401);
    assert_eq!(get(&address, "/metrics", &[("authorization", "Bearer an-admin-token-of-some-length")]).0, 200);
    assert!(!g.stderr().contains("an-admin-token"), "the token is never logged");
}

#[test]
fn readyz_waits_for_an_upstream_that_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("up");
    let fixture = paths().fixture.display().to_string();
    // An upstream that fails until the mark exists.
    let script = format!("test -f '{}' && exec '{fixture}'", mark.display());
    let config = dir.path().join("warden.toml");
    let toml =
        format!("[admin]\nlisten = \"127.0.0.1:0\"\n\n[upstreams.flaky]\ncommand = [\"sh\", \"-c\", {script:?}]\n");
    std::fs::write(&config, toml).unwrap();
    let g = Gateway::start_with(None, &["--config", &config.display().to_string()], &[]);
    let address = admin_address(|| g.stderr());
    let ready = |want: u16| {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (status, body) = get(&address, "/readyz", &[]);
            if status == want {
                return serde_json::from_str::<Value>(&body).unwrap();
            }
            assert!(Instant::now() < deadline, "/readyz stayed {status}: {body}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let down = ready(503);
    assert_eq!(down["ready"], false);
    assert_eq!(down["upstreams"]["flaky"]["up"], false, "{down}");
    std::fs::write(&mark, "").unwrap();
    // The probe is tried again; once it answers, Warden is ready.
    let up = ready(200);
    assert_eq!(up["upstreams"]["flaky"]["up"], true, "{up}");
    assert!(get(&address, "/metrics", &[]).1.contains(r#"warden_upstream_up{upstream="flaky"} 1"#));
}

/// Debian's Prometheus, scraping one admin listener every second.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(binary: &Path, target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        let yaml = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: warden\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(&config, yaml).unwrap();
        // A free port for its web API (Prometheus takes no port 0).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start prometheus");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Server is ready to receive web requests") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(PATIENCE * 3).expect("prometheus became ready");
        Prometheus { child, url: format!("http://127.0.0.1:{port}"), _dir: dir }
    }

    /// Asks `query` until it has a value (scrapes come every second), then returns it.
    fn value(&self, query: &str, want: f64) -> f64 {
        let deadline = Instant::now() + PATIENCE * 2;
        loop {
            let answer: Value = ureq::get(&format!("{}/api/v1/query", self.url))
                .query("query", query)
                .timeout(PATIENCE)
                .call()
                .ok()
                .and_then(|r| r.into_string().ok())
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null);
            let value = answer["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok());
            if value == Some(want) || Instant::now() >= deadline {
                return value.unwrap_or(f64::NAN);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> Option<std::path::PathBuf> {
    let found = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(std::env::var_os("WARDEN_REQUIRE_PROMETHEUS").is_none(), "prometheus is not installed");
        eprintln!("prometheus not installed: skipped");
    }
    found
}

#[test]
fn a_real_prometheus_scrapes_the_counters() {
    let Some(binary) = prometheus_binary() else { return };
    let g = Gateway::start(Some(examples().path()), &["--admin-listen", "127.0.0.1:0"]);
    let admin = admin_address(|| g.stderr());
    let session = g.open();
    let list = json!({"jsonrpc": "2.0", "id": 0, "method": "tools/list"});
    assert_eq!(g.post(Some(&session), &list.to_string(), &[("mcp-protocol-version", "2025-06-18")]).status, 200);
    for id in 1..=3 {
        assert_eq!(g.call(&session, id, "echo", json!({"text": "x"})).status, 200);
    }
    g.call(&session, 9, "delete_everything", json!({}));
    let prometheus = Prometheus::start(&binary, &admin);
    let calls = r#"sum(warden_requests_total{mcp_method_name="tools/call",gen_ai_tool_name="echo",outcome="success"})"#;
    assert_eq!(prometheus.value(calls, 3.0), 3.0);
    let denials = r#"sum(warden_plugin_verdicts_total{plugin="10-tool-policy",verdict="reject"})"#;
    assert_eq!(prometheus.value(denials, 1.0), 1.0);
    let sessions = r#"sum(warden_sessions{transport="streamable-http"})"#;
    assert_eq!(prometheus.value(sessions, 1.0), 1.0);
}

#[test]
fn readyz_is_false_while_the_plugins_load() {
    // A plugin compiled afresh (no cache) takes seconds to load.
    let plugins = crate::common::PluginDir::new().add_example("20-secret-redact", "secret-redact");
    let fixture = paths().fixture.display().to_string();
    let mut child = Command::new(paths().warden)
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--no-cache", "--plugins"])
        .arg(plugins.path())
        .args(["--", &fixture])
        .env("WARDEN_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("warden serve");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let address = admin_address(|| log.lock().unwrap().clone());
    // The listener is up before the chain (which compiles for seconds).
    let (status, body) = get(&address, "/readyz", &[]);
    assert_eq!(status, 503, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["plugins"], "loading");
    assert_eq!(get(&address, "/healthz", &[]).0, 200, "alive while it loads");
    let deadline = Instant::now() + PATIENCE * 3;
    while get(&address, "/readyz", &[]).0 != 200 {
        assert!(Instant::now() < deadline, "never ready:\n{}", log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_gateway_counts_each_upstreams_calls_under_its_own_name() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = paths().fixture.display().to_string();
    let shared = examples();
    let config = dir.path().join("warden.toml");
    let toml = format!(
        "plugins = {:?}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[upstreams.alpha]\ncommand = [{fixture:?}]\n\n[upstreams.beta]\ncommand = [{fixture:?}]\n",
        shared.path().display().to_string()
    );
    std::fs::write(&config, toml).unwrap();
    let g = Gateway::start_with(None, &["--config", &config.display().to_string()], &[]);
    let address = admin_address(|| g.stderr());
    let session = g.open();
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    assert_eq!(g.post(Some(&session), &list.to_string(), &[("mcp-protocol-version", "2025-06-18")]).status, 200);
    g.call(&session, 2, "alpha__echo", json!({"text": "a"}));
    g.call(&session, 3, "beta__echo", json!({"text": "b"}));
    g.call(&session, 4, "beta__echo", json!({"text": "b"}));
    // Denied by the shared chain, which runs in each upstream's lane: counted under it.
    g.call(&session, 5, "alpha__delete_everything", json!({}));
    let text = get(&address, "/metrics", &[]).1;
    let calls = |upstream: &str| {
        sample(
            &text,
            &format!(
                r#"warden_requests_total{{upstream="{upstream}",mcp_method_name="tools/call",gen_ai_tool_name="echo",outcome="success",error_type=""}}"#
            ),
        )
    };
    assert_eq!(calls("alpha"), Some(1.0), "{text}");
    assert_eq!(calls("beta"), Some(2.0), "{text}");
    let denied = format!(
        r#"warden_requests_total{{upstream="alpha",mcp_method_name="tools/call",gen_ai_tool_name="delete_everything",outcome="denied",error_type="{DENIED}"}}"#
    );
    assert_eq!(sample(&text, &denied), Some(1.0), "{text}");
    assert!(
        text.contains(r#"mcp_client_operation_duration_seconds_count{upstream="beta",mcp_method_name="tools/call""#)
    );
    assert_eq!(sample(&text, r#"warden_upstream_up{upstream="alpha"}"#), Some(1.0), "{text}");
}
