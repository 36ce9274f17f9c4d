//! Remote upstreams behind the gateway: the fixture, an official Python SDK
//! server and an official TypeScript SDK server, each over Streamable HTTP.
//! Each gets its own credential from the config; the client's credentials
//! and headers never reach any of them, except what `forward-headers` names.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use serde_json::json;

use crate::common::http::Gateway;
use crate::common::{free_port, installed, paths, python_sdk, text_of, PATIENCE};

/// A child server, killed when dropped.
pub(crate) struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The fixture over HTTP, logging the headers it gets to `log`; its URL.
pub(crate) fn fixture_http(log: &Path) -> (Server, String) {
    let mut child = Command::new(paths().fixture)
        .args(["--http", "127.0.0.1:0", "--log-headers"])
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the fixture over HTTP");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines.next().expect("the fixture says where it listens").expect("readable");
        if let Some(url) = line.strip_prefix("mcp-fixture listening on ") {
            break url.to_owned();
        }
    };
    // The rest is read too: a fixture writing to a closed pipe would fail.
    std::thread::spawn(move || lines.for_each(drop));
    (Server(child), url)
}

/// A server that takes a port, once it accepts connections; its URL.
fn on_port(mut command: Command, port: u16) -> (Server, String) {
    let child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start");
    let server = Server(child);
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server on port {port} did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (server, format!("http://127.0.0.1:{port}/mcp"))
}

#[test]
fn remote_servers_get_their_own_credentials_and_never_the_clients() {
    let dir = tempfile::tempdir().expect("temp dir");
    let seen = dir.path().join("headers.log");
    let (_web, web_url) = fixture_http(&seen);
    let token = dir.path().join("web.token");
    std::fs::write(&token, "sek-web-from-file-123\n").expect("write token");
    let mut config = format!(
        "[upstreams.web]\nurl = {web_url:?}\nforward-headers = [\"X-Request-Id\"]\n\
         headers = {{ Authorization = {{ from-file = {:?}, prefix = \"Bearer \" }}, X-Team = \"blue\" }}\n",
        token.display().to_string()
    );
    // The official SDK servers, over HTTP, where installed.
    let mut servers = Vec::new();
    let mut expected = vec![("web__echo", json!({"text": "to web"}), "to web")];
    if let Some(python) = python_sdk() {
        let port = free_port();
        let mut command = Command::new(python);
        command.arg(paths().repo.join("tests/python/server.py")).args(["http", &port.to_string()]);
        let (server, url) = on_port(command, port);
        servers.push(server);
        config.push_str(&format!("[upstreams.py]\nurl = {url:?}\n"));
        expected.push(("py__echo", json!({"text": "to py"}), "to py"));
    }
    let conformance = paths().repo.join("tests/conformance");
    if installed(&conformance.join("node_modules/@modelcontextprotocol/sdk"), "WARDEN_REQUIRE_NPM") {
        let port = free_port();
        let mut command = Command::new("node");
        command.current_dir(&conformance).args(["server.mjs", "--http", &port.to_string()]);
        let (server, url) = on_port(command, port);
        servers.push(server);
        config.push_str(&format!("[upstreams.ts]\nurl = {url:?}\n"));
        expected.push(("ts__test_simple_text", json!({}), "This is a simple text response for testing."));
    }
    let file = dir.path().join("warden.toml");
    std::fs::write(&file, config).expect("write config");
    let gw = Gateway::start_with(None, &["--config", &file.display().to_string()], &[]);

    // The client sends credentials and headers of its own.
    let client = [
        ("authorization", "Bearer client-secret-xyz"),
        ("cookie", "session=client-cookie-abc"),
        ("x-request-id", "req-42"),
        ("x-other", "not-listed-777"),
    ];
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let answer = gw.post(None, &init.to_string(), &client);
    let session = answer.session.clone().unwrap_or_else(|| panic!("no session: {answer:?}\n{}", gw.stderr()));
    let mut with_session = client.to_vec();
    with_session.push(("mcp-protocol-version", "2025-06-18"));
    gw.post(Some(&session), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, &with_session);
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
    let tools = gw.post(Some(&session), &list.to_string(), &with_session).answer();
    let names: Vec<&str> =
        tools["result"]["tools"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
    for (id, (tool, arguments, said)) in expected.iter().enumerate() {
        assert!(names.contains(tool), "{tool} missing from {names:?}\n{}", gw.stderr());
        let call = json!({"jsonrpc": "2.0", "id": id + 2, "method": "tools/call", "params": {"name": tool, "arguments": arguments}});
        let answer = gw.post(Some(&session), &call.to_string(), &with_session).answer();
        assert_eq!(text_of(&answer), *said, "{tool}: {answer}\n{}", gw.stderr());
    }
    // A 2026-07-28 request: its own header is forwarded on its own upstream session.
    let mut modern = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "web__echo", "arguments": {"text": "modern"}}});
    modern["params"]["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"}
    });
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "web__echo"),
        ("x-request-id", "req-modern"),
        ("authorization", "Bearer client-secret-xyz"),
    ];
    let answer = gw.post(None, &modern.to_string(), &headers).answer();
    assert_eq!(text_of(&answer), "modern", "{answer}");

    let log = std::fs::read_to_string(&seen).expect("the upstream's header log").to_ascii_lowercase();
    assert!(log.contains("authorization: bearer sek-web-from-file-123"), "{log}");
    assert!(log.contains("x-team: blue"), "{log}");
    assert!(log.contains("x-request-id: req-42") && log.contains("x-request-id: req-modern"), "{log}");
    for never in ["client-secret-xyz", "client-cookie-abc", "not-listed-777", "cookie:"] {
        assert!(!log.contains(never), "{never} reached the upstream: {log}");
    }
    let warden_log = gw.stderr();
    assert!(!warden_log.contains("sek-web-from-file-123") && !warden_log.contains("client-secret"), "{warden_log}");
    drop(servers);
}

/// Initializes a session as the caller with this static token; its id.
fn session_as(gw: &Gateway, token: &str) -> String {
    let bearer = format!("Bearer {token}");
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let answer = gw.post(None, &init.to_string(), &[("authorization", &bearer)]);
    let session = answer.session.clone().unwrap_or_else(|| panic!("no session: {answer:?}\n{}", gw.stderr()));
    let headers = [("authorization", bearer.as_str()), ("mcp-protocol-version", "2025-06-18")];
    gw.post(Some(&session), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, &headers);
    session
}

#[test]
fn each_caller_gets_the_upstream_credential_its_claims_choose() {
    let dir = tempfile::tempdir().expect("temp dir");
    let seen = dir.path().join("headers.log");
    let (_web, web_url) = fixture_http(&seen);
    let env_log = dir.path().join("env.log");
    let fixture = paths().fixture.display().to_string();
    let script = format!("printf '%s\\n' \"$UP_TOKEN\" >> '{}'; exec '{fixture}'", env_log.display());
    let config = format!(
        "[upstreams.web]\nurl = {web_url:?}\n\
         [upstreams.web.headers.Authorization]\nclaim = \"groups\"\n\
         values = {{ infra = \"Bearer up-infra-111\", dev = {{ from-file = \"dev.token\", prefix = \"Bearer \" }} }}\n\
         [upstreams.kid]\ncommand = [\"sh\", \"-c\", {script:?}]\n\
         [upstreams.kid.env.UP_TOKEN]\nclaim = \"sub\"\nvalues = {{ ada = \"env-ada-333\" }}\ndefault = \"env-default-444\"\n"
    );
    let file = dir.path().join("warden.toml");
    std::fs::write(&file, config).expect("write config");
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "ada tok-ada-0123456789abcdef {\"groups\": [\"infra\"]}\n\
         bob tok-bob-0123456789abcdef {\"groups\": [\"dev\"]}\n\
         eve tok-eve-0123456789abcdef\n",
    )
    .expect("write tokens");
    let flags = ["--config", file.to_str().unwrap_or_default(), "--client-tokens", tokens.to_str().unwrap_or_default()];
    std::fs::write(dir.path().join("dev.token"), "up-dev-222\n").expect("write token");
    let gw = Gateway::start_with(None, &flags, &[]);
    let mut answers = Vec::new();
    for who in ["ada", "bob", "eve"] {
        let token = format!("tok-{who}-0123456789abcdef");
        let session = session_as(&gw, &token);
        let bearer = format!("Bearer {token}");
        let headers = [("authorization", bearer.as_str()), ("mcp-protocol-version", "2025-06-18")];
        let call = |id: u64, tool: &str| {
            let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {"text": who}}});
            gw.post(Some(&session), &body.to_string(), &headers).answer()
        };
        answers.push((call(1, "web__echo"), call(2, "kid__echo")));
    }
    for (answer, _) in &answers[..2] {
        assert!(answer["result"].is_object(), "{answer}\n{}", gw.stderr());
    }
    for (_, answer) in &answers {
        assert!(answer["result"].is_object(), "{answer}\n{}", gw.stderr());
    }
    // eve's groups choose no credential and there is no default: refused, and said why.
    let refused = &answers[2].0;
    assert!(refused["error"].is_object() || refused["result"]["isError"] == true, "{refused}");
    assert!(refused.to_string().contains("no credential for this caller"), "{refused}");

    let log = std::fs::read_to_string(&seen).expect("the upstream's header log").to_ascii_lowercase();
    assert!(log.contains("authorization: bearer up-infra-111"), "{log}");
    assert!(log.contains("authorization: bearer up-dev-222"), "{log}");
    assert!(!log.contains("tok-"), "a caller's own token reached the upstream: {log}");
    let env = std::fs::read_to_string(&env_log).expect("the children's env log");
    let mut lines: Vec<&str> = env.lines().filter(|l| !l.is_empty()).collect();
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines, ["env-ada-333", "env-default-444"], "{env}");
    let said = gw.stderr();
    for secret in ["up-infra-111", "up-dev-222", "env-ada-333", "tok-ada"] {
        assert!(!said.contains(secret), "{secret} in Warden's log");
    }
}
