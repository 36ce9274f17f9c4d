//! The official conformance suite (`@modelcontextprotocol/conformance`, server
//! mode) against Warden. Its upstream, tests/conformance/server.mjs, implements
//! every tool, resource and prompt the scenarios call. The suite runs against
//! that upstream directly first; every check it passes there must pass through
//! `warden serve` in front of the same server as a stdio child, as a remote
//! Streamable HTTP server and as the one upstream of a gateway config, and
//! nothing may fail through Warden.
//!
//! Installed by scripts/test.sh into tests/conformance/node_modules. Node 20
//! runs the suite through a small `fs.globSync` shim (tests/conformance/node20-shim.mjs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::http::Gateway;
use crate::common::{free_port, installed, paths};

/// How long the timestamp ending each result folder's name is.
const TIMESTAMP: &str = "2026-12-01T00-05-35-797Z";

/// (scenario, check id) → the statuses it got, in order.
type Results = BTreeMap<(String, String), Vec<String>>;

#[test]
fn every_check_that_passes_directly_passes_through_warden() {
    let dir = paths().repo.join("tests/conformance");
    if !installed(&dir.join("node_modules/@modelcontextprotocol/conformance"), "WARDEN_REQUIRE_NPM") {
        return;
    }
    let out = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let _upstream = HttpUpstream::start(&dir, port, out.path());
    let upstream_url = format!("http://127.0.0.1:{port}/mcp");
    let direct = run_suite(&dir, &upstream_url, &out.path().join("direct"));
    assert!(direct.len() > 30, "the suite ran too few checks directly: {direct:?}");

    let server = dir.join("server.mjs").display().to_string();
    let stdio = Gateway::start_with(None, &[], &["node", &server]);
    let through_stdio = run_suite(&dir, &stdio.url, &out.path().join("stdio"));
    let http = Gateway::start_with(None, &["--upstream-url", &upstream_url], &[]);
    let through_http = run_suite(&dir, &http.url, &out.path().join("http"));
    // A gateway config of one upstream, its names unprefixed (the suite calls them by name).
    let config = out.path().join("warden.toml");
    let text = format!("[upstreams.conformance]\ncommand = [\"node\", {server:?}]\nprefix = false\n");
    std::fs::write(&config, text).expect("write config");
    let gateway = Gateway::start_with(None, &["--config", &config.display().to_string()], &[]);
    let through_gateway = run_suite(&dir, &gateway.url, &out.path().join("gateway"));

    let paths = [
        ("http→stdio", &through_stdio, &stdio),
        ("http→http", &through_http, &http),
        ("gateway", &through_gateway, &gateway),
    ];
    for (path, through, gateway) in paths {
        // A check that succeeds directly must not warn or fail through Warden. It may
        // become INFO, the suite's "not applicable" (e.g. a JSON answer where the
        // upstream streamed SSE: both are the transport's to choose).
        let mut lost = Vec::new();
        for (check, statuses) in &direct {
            let count = |s: &[String], status: &str| s.iter().filter(|s| *s == status).count();
            let via = through.get(check).map(Vec::as_slice).unwrap_or_default();
            if count(via, "SUCCESS") + count(via, "INFO") < count(statuses, "SUCCESS") {
                lost.push(format!("{check:?}: directly {statuses:?}, through warden {via:?}"));
            }
        }
        let failed: Vec<_> = through.iter().filter(|(_, s)| s.iter().any(|s| s == "FAILURE")).collect();
        assert!(
            lost.is_empty() && failed.is_empty(),
            "{path}: lost {lost:#?}\nfailed {failed:#?}\n{}",
            gateway.stderr()
        );
    }
}

/// Runs every server scenario against `url`; returns the checks' statuses.
fn run_suite(dir: &Path, url: &str, out: &Path) -> Results {
    let status = Command::new("node")
        .current_dir(dir)
        .args(["--import", "./node20-shim.mjs", "node_modules/@modelcontextprotocol/conformance/dist/index.js"])
        .args(["server", "--suite", "all", "--url", url, "--output-dir"])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(log_file(out, "suite.log"))
        .stderr(log_file(out, "suite.log"))
        .status()
        .expect("run the conformance suite");
    // The exit status says whether anything failed; the checks say what.
    let _ = status;
    let mut results = Results::new();
    for entry in std::fs::read_dir(out).expect("suite output") {
        let scenario_dir: PathBuf = entry.expect("entry").path();
        if !scenario_dir.is_dir() {
            continue;
        }
        let name = scenario_dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
        // `server-<scenario>-<timestamp>`, the timestamp as `2026-12-01T00-05-35-797Z`.
        let scenario = name.strip_prefix("server-").unwrap_or(&name);
        let scenario =
            scenario.get(..scenario.len().saturating_sub(TIMESTAMP.len() + 1)).unwrap_or(scenario).to_owned();
        let checks: Value =
            serde_json::from_slice(&std::fs::read(scenario_dir.join("checks.json")).expect("checks.json"))
                .expect("JSON");
        for check in checks.as_array().into_iter().flatten() {
            let id = check["id"].as_str().unwrap_or_default().to_owned();
            let status = check["status"].as_str().unwrap_or_default().to_owned();
            results.entry((scenario.clone(), id)).or_default().push(status);
        }
    }
    results
}

/// A log file in `dir` to append a child's output to. Not /dev/null: on this
/// machine that is a regular file, and what is written there is read back by
/// the next program that reads /dev/null.
fn log_file(dir: &Path, name: &str) -> Stdio {
    std::fs::create_dir_all(dir).expect("log folder");
    let file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).expect("log file");
    Stdio::from(file)
}

/// tests/conformance/server.mjs in its HTTP mode.
struct HttpUpstream(Child);

impl HttpUpstream {
    fn start(dir: &Path, port: u16, logs: &Path) -> HttpUpstream {
        let child = Command::new("node")
            .current_dir(dir)
            .args(["server.mjs", "--http", &port.to_string()])
            .stdout(log_file(logs, "upstream.log"))
            .stderr(log_file(logs, "upstream.log"))
            .spawn()
            .expect("start the conformance upstream");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the conformance upstream did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpUpstream(child)
    }
}

impl Drop for HttpUpstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A call the official Python SDK client gives up on reaches a stdio server
/// on the official TypeScript SDK as a cancellation, in both eras (the
/// 2026-07-28 lane once never cancelled it upstream).
#[test]
fn a_call_the_client_gives_up_on_is_cancelled_at_a_typescript_sdk_server() {
    let dir = paths().repo.join("tests/conformance");
    let Some(python) = crate::common::python_sdk() else { return };
    if !installed(&dir.join("node_modules/@modelcontextprotocol/sdk"), "WARDEN_REQUIRE_NPM") {
        return;
    }
    let server = dir.join("server.mjs").display().to_string();
    let gw = Gateway::start_with(None, &[], &["node", &server]);
    let script = paths().repo.join("tests/python/cancel.py");
    for (heard_before, mode) in ["legacy", "auto"].into_iter().enumerate() {
        let out = Command::new(&python)
            .arg(&script)
            .args([&gw.url, mode, "warden_slow", "test_simple_text"])
            .output()
            .expect("python");
        assert!(out.status.success(), "{mode}: {}\n{}", String::from_utf8_lossy(&out.stderr), gw.stderr());
        let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(seen["gave_up"], true, "{seen}");
        let deadline = std::time::Instant::now() + crate::common::PATIENCE;
        let heard = || gw.stderr().matches("conformance-server heard cancellation").count();
        while heard() <= heard_before && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(heard() > heard_before, "{mode}: the server never heard the cancellation\n{}", gw.stderr());
    }
}
