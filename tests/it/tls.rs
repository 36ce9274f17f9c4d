//! HTTPS on the listener (`[serve] tls-cert` / `tls-key`, or `--tls-cert` /
//! `--tls-key`): the official Python SDK client over TLS in both modes, and
//! nothing served in the clear, to a stalled handshake, or from a bad key.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::http::Gateway;
use crate::common::{paths, python_sdk, PATIENCE};

/// A self-signed certificate for 127.0.0.1 and localhost, and its key, made
/// by openssl in `dir`: `(cert, key)`.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (Debian's openssl package) makes the test certificate");
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

fn gateway_config(dir: &Path, cert: &Path, key: &Path) -> PathBuf {
    let text = format!(
        "[serve]\ntls-cert = {:?}\ntls-key = {:?}\n[upstreams.one]\ncommand = [{:?}]\n",
        cert.display().to_string(),
        key.display().to_string(),
        paths().fixture.display().to_string()
    );
    let file = dir.join("warden.toml");
    std::fs::write(&file, text).expect("write config");
    file
}

#[test]
fn the_python_sdk_client_talks_to_warden_over_https_in_both_modes() {
    let Some(python) = python_sdk() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = certificate(dir.path(), "server");
    let flags = ["--tls-cert", &cert.display().to_string(), "--tls-key", &key.display().to_string()].map(String::from);
    let gw = Gateway::start(None, &flags.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(gw.url.starts_with("https://127.0.0.1:"), "{}", gw.url);
    for mode in ["legacy", "auto"] {
        let out = Command::new(&python)
            .arg(paths().repo.join("tests/python/client.py"))
            .args([&gw.url, mode, "basic"])
            // httpx trusts exactly this certificate.
            .env("SSL_CERT_FILE", &cert)
            .output()
            .expect("python");
        assert!(out.status.success(), "{mode}: {}\n{}", String::from_utf8_lossy(&out.stderr), gw.stderr());
        let seen: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(seen["concurrent"].as_array().map(Vec::len), Some(24), "{mode}: {seen}");
    }
    // The gateway form, from `[serve]` of warden.toml: a verified HTTPS initialize.
    let file = gateway_config(dir.path(), &cert, &key);
    let gw = Gateway::start_with(None, &["--config", &file.display().to_string()], &[]);
    let script = r#"
import json, ssl, sys, urllib.request
body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
        "capabilities": {}, "clientInfo": {"name": "tls-test", "version": "0"}}}
request = urllib.request.Request(sys.argv[1], data=json.dumps(body).encode(), method="POST",
    headers={"content-type": "application/json", "accept": "application/json, text/event-stream"})
context = ssl.create_default_context(cafile=sys.argv[2])
with urllib.request.urlopen(request, context=context, timeout=20) as response:
    text = response.read().decode()
print(json.loads(text[text.index("{"):].splitlines()[0])["result"]["serverInfo"]["name"])
"#;
    let out = Command::new(&python).args(["-c", script, &gw.url]).arg(&cert).output().expect("python");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "warden", "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn nothing_is_served_in_the_clear_or_to_a_stalled_handshake() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = certificate(dir.path(), "server");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let gw = Gateway::start(None, &["--tls-cert", &cert, "--tls-key", &key, "--header-timeout-ms", "300"]);
    let address = gw.url.trim_start_matches("https://").trim_end_matches("/mcp").to_owned();
    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let plain = ureq::post(&format!("http://{address}/mcp"))
        .timeout(PATIENCE)
        .set("content-type", "application/json")
        .send_string(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert!(plain.is_err(), "answered in the clear: {plain:?}");
    // A client that opens a connection and never says hello is closed.
    let mut stalled = std::net::TcpStream::connect(&address).expect("connect");
    stalled.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut buf = [0u8; 64];
    let read = stalled.read(&mut buf);
    let closed = match &read {
        Ok(n) => *n == 0,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    };
    assert!(closed, "a stalled handshake was kept open: {read:?}");
}

#[test]
fn a_key_that_does_not_fit_or_is_not_a_key_is_refused_before_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, _) = certificate(dir.path(), "server");
    let (_, other_key) = certificate(dir.path(), "other");
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "-----BEGIN PRIVATE KEY-----\nc2stbGl2ZS1ub3QtYS1rZXk=\n-----END PRIVATE KEY-----\n")
        .expect("write");
    for (key, says) in [(&other_key, "other.key cannot be used"), (&garbage, "garbage.key cannot be used")] {
        let file = gateway_config(dir.path(), &cert, key);
        let out = Command::new(paths().warden).args(["config", "check"]).arg(&file).output().expect("warden");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains(says), "{text}");
        assert!(!text.contains("c2stbGl2ZS"), "the key file was quoted: {text}");
        let out = Command::new(paths().warden)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&file)
            .output()
            .expect("warden");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // Half of the pair on the command line is refused by the parser.
    let out = Command::new(paths().warden)
        .args(["serve", "--tls-cert"])
        .arg(&cert)
        .args(["--", "true"])
        .output()
        .expect("warden");
    assert!(!out.status.success());
}
