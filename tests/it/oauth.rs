//! The OAuth resource server (`--oauth-issuer`, `[auth]`) against a real
//! OpenID provider: oidc-provider (npm), issuing JWT access tokens for
//! Warden's resource by client credentials (tests/oidc/provider.mjs).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use serde_json::{json, Value};

use crate::common::http::{Answer, Gateway};
use crate::common::{free_port, installed, paths, text_of, PATIENCE};

const AUDIENCE: &str = "http://warden.test/mcp";

/// The provider, on `port`, signing with a fresh key under `kid`.
struct Provider {
    child: Child,
    issuer: String,
}

impl Provider {
    fn start(port: u16, kid: &str) -> Provider {
        let dir = paths().repo.join("tests/oidc");
        let mut child = Command::new("node")
            .current_dir(&dir)
            .args(["provider.mjs", &port.to_string(), AUDIENCE, kid])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start oidc-provider");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let issuer = loop {
            let line = lines.next().expect("the provider says where it listens").expect("readable");
            if let Some(issuer) = line.strip_prefix("oidc-provider listening on ") {
                break issuer.to_owned();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Provider { child, issuer }
    }

    /// An access token by client credentials, for `resource` with `scope`.
    fn token(&self, resource: &str, scope: &str) -> String {
        let answer = ureq::post(&format!("{}/token", self.issuer))
            .set("authorization", "Basic d2FyZGVuLXRlc3Q6d2FyZGVuLXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk=")
            .send_form(&[("grant_type", "client_credentials"), ("scope", scope), ("resource", resource)])
            .expect("a token")
            .into_string()
            .expect("readable");
        let answer: Value = serde_json::from_str(&answer).expect("JSON");
        answer["access_token"].as_str().expect("access_token").to_owned()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn forge(mode: &str, claims: &Value, arg: &str) -> String {
    let out = Command::new("node")
        .current_dir(paths().repo.join("tests/oidc"))
        .args(["forge.mjs", mode, &claims.to_string(), arg])
        .output()
        .expect("node");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn initialize(gw: &Gateway, token: Option<&str>) -> Answer {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("authorization", b.as_str())).collect();
    gw.post(None, &init.to_string(), &headers)
}

#[test]
fn tokens_from_a_real_provider_admit_and_every_bad_one_is_refused_as_it_should() {
    if !installed(&paths().repo.join("tests/oidc/node_modules/oidc-provider"), "WARDEN_REQUIRE_NPM") {
        return;
    }
    let port = free_port();
    let mut provider = Provider::start(port, "key-1");
    let issuer = provider.issuer.clone();
    let flags = ["--oauth-issuer", &issuer, "--oauth-audience", AUDIENCE, "--oauth-scope", "mcp"];
    let gw = Gateway::start(None, &flags);

    // The metadata a client discovers the provider by (RFC 9728), for the endpoint and at the root.
    let base = gw.url.trim_end_matches("/mcp").to_owned();
    for path in ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"] {
        let text = ureq::get(&format!("{base}{path}")).call().expect("metadata").into_string().expect("readable");
        let document: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(document["resource"], AUDIENCE, "{document}");
        assert_eq!(document["authorization_servers"], json!([issuer]), "{document}");
        assert_eq!(document["scopes_supported"], json!(["mcp"]), "{document}");
    }

    // No token: 401 naming where to look.
    let none = initialize(&gw, None);
    assert_eq!(none.status, 401, "{none:?}");
    let challenge = none.challenge.clone().unwrap_or_default();
    assert!(
        challenge.contains("resource_metadata=\"") && challenge.contains("/.well-known/oauth-protected-resource/mcp"),
        "{challenge}"
    );
    assert!(!challenge.contains("invalid_token"), "{challenge}");

    // A good token: in, and the caller is the token's subject.
    let good = provider.token(AUDIENCE, "mcp");
    let answer = initialize(&gw, Some(&good));
    assert_eq!(answer.status, 200, "{answer:?}\n{}", gw.stderr());
    let session = answer.session.clone().expect("session");
    let bearer = format!("Bearer {good}");
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "with a token"}}});
    let headers = [("authorization", bearer.as_str()), ("mcp-protocol-version", "2025-06-18")];
    assert_eq!(text_of(&gw.post(Some(&session), &call.to_string(), &headers).answer()), "with a token");

    // Each bad token: 401 invalid_token (or 403 for a missing scope), never in.
    let claims = json!({"iss": issuer, "aud": AUDIENCE, "sub": "mallory", "scope": "mcp", "exp": 4102444800u64});
    let mut flipped = good.clone().into_bytes();
    if let Some(last) = flipped.last_mut() {
        *last = if *last == b'A' { b'B' } else { b'A' };
    }
    let jwks_url = format!("{issuer}/jwks");
    let bad = [
        ("a flipped signature bit", String::from_utf8(flipped).unwrap_or_default(), 401),
        ("alg none", forge("none", &claims, ""), 401),
        ("HS256 with the provider's public key", forge("hs256", &claims, &jwks_url), 401),
        ("an unknown kid", forge("stranger", &claims, ""), 401),
        ("another audience", provider.token("http://elsewhere.test/mcp", "mcp"), 401),
        ("a missing scope", provider.token(AUDIENCE, "tools"), 403),
        ("not a JWT", "sk-not-a-jwt-0123456789".to_owned(), 401),
    ];
    for (what, token, status) in bad {
        let answer = initialize(&gw, Some(&token));
        assert_eq!(answer.status, status, "{what}: {answer:?}");
        let challenge = answer.challenge.clone().unwrap_or_default();
        let error = if status == 403 { "error=\"insufficient_scope\"" } else { "error=\"invalid_token\"" };
        assert!(challenge.contains(error) && challenge.contains("resource_metadata="), "{what}: {challenge}");
        if status == 403 {
            assert!(challenge.contains("scope=\"mcp\""), "{challenge}");
        }
    }
    assert!(!gw.stderr().contains(&good), "a token reached the log");

    // The official Python SDK client with the provider's token, in both modes.
    if let Some(python) = crate::common::python_sdk() {
        for mode in ["legacy", "auto"] {
            let out = Command::new(&python)
                .arg(paths().repo.join("tests/python/client.py"))
                .args([&gw.url, mode, "basic"])
                .env("WARDEN_BEARER", &good)
                .output()
                .expect("python");
            assert!(out.status.success(), "{mode}: {}\n{}", String::from_utf8_lossy(&out.stderr), gw.stderr());
            let seen: Value = serde_json::from_slice(&out.stdout).expect("JSON");
            assert_eq!(seen["concurrent"].as_array().map(Vec::len), Some(24), "{mode}: {seen}");
        }
        // Without the token the same client is refused.
        let out = Command::new(&python)
            .arg(paths().repo.join("tests/python/client.py"))
            .args([&gw.url, "legacy", "basic"])
            .output()
            .expect("python");
        assert!(!out.status.success(), "the client got in without a token");
    }

    // The provider rotates its key (restarted with another): new tokens work, no restart of Warden.
    drop(provider);
    provider = Provider::start(port, "key-2");
    let rotated = provider.token(AUDIENCE, "mcp");
    let deadline = Instant::now() + PATIENCE;
    let mut status = 0;
    while Instant::now() < deadline {
        status = initialize(&gw, Some(&rotated)).status;
        if status == 200 {
            break;
        }
        // Refetches for unknown keys are rate-limited (a few seconds apart).
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(status, 200, "the rotated key was not taken\n{}", gw.stderr());
}

#[test]
fn without_the_providers_keys_tokens_get_503_never_an_open_door() {
    if !installed(&paths().repo.join("tests/oidc/node_modules/oidc-provider"), "WARDEN_REQUIRE_NPM") {
        return;
    }
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gw = Gateway::start(None, &["--oauth-issuer", &dead, "--oauth-audience", AUDIENCE]);
    let claims = json!({"iss": dead, "aud": AUDIENCE, "sub": "x", "exp": 4102444800u64});
    let token = forge("stranger", &claims, "");
    let answer = initialize(&gw, Some(&token));
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(initialize(&gw, None).status, 401);
}

#[test]
fn every_endpoint_is_a_resource_of_its_own() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fx = serde_json::to_string(&super::upstreams::fixture()).expect("JSON");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let text = format!(
        "[auth]\nissuer = {dead:?}\naudience = {AUDIENCE:?}\nrequired-scopes = [\"mcp\"]\n\
         [upstreams.one]\ncommand = {fx}\n[endpoints.\"/mcp/ro\"]\ntools = [\"one__echo\"]\n"
    );
    let file = dir.path().join("warden.toml");
    std::fs::write(&file, text).expect("write config");
    let gw = Gateway::start_with(None, &["--config", &file.display().to_string()], &[]);
    let base = gw.url.trim_end_matches("/mcp").to_owned();
    let resource = |path: &str| {
        let text = ureq::get(&format!("{base}/.well-known/oauth-protected-resource{path}")).call().expect("metadata");
        let document: Value = serde_json::from_str(&text.into_string().expect("readable")).expect("JSON");
        document["resource"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(resource("/mcp"), AUDIENCE);
    // Under the configured audience's origin: the endpoint as clients know it, not as they reached it.
    assert_eq!(resource("/mcp/ro"), "http://warden.test/mcp/ro");
    // An endpoint the config does not have has no metadata.
    let missing = ureq::get(&format!("{base}/.well-known/oauth-protected-resource/mcp/nope")).call();
    assert!(missing.is_err(), "{missing:?}");
}

#[test]
fn a_jwks_file_checks_time_issuer_and_subject() {
    if !installed(&paths().repo.join("tests/oidc/node_modules/oidc-provider"), "WARDEN_REQUIRE_NPM") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().display().to_string();
    let issuer = "https://idp.test";
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let claims = |exp: u64, nbf: u64, iss: &str, sub: Option<&str>| {
        let mut c = json!({"iss": iss, "aud": AUDIENCE, "exp": exp, "nbf": nbf, "scope": "mcp"});
        if let Some(sub) = sub {
            c["sub"] = json!(sub);
        }
        forge("keyed", &c, &keys)
    };
    let good = claims(now + 300, now - 10, issuer, Some("file-user"));
    let jwks = dir.path().join("jwks.json").display().to_string();
    let gw =
        Gateway::start(None, &["--oauth-issuer", issuer, "--oauth-audience", AUDIENCE, "--oauth-jwks-file", &jwks]);
    assert_eq!(initialize(&gw, Some(&good)).status, 200, "{}", gw.stderr());
    // Within the 30 s leeway a just-expired token still passes; past it, not.
    assert_eq!(initialize(&gw, Some(&claims(now - 10, now - 100, issuer, Some("u")))).status, 200);
    for (what, token, says) in [
        ("expired", claims(now - 120, now - 300, issuer, Some("u")), "expired"),
        ("not yet valid", claims(now + 600, now + 300, issuer, Some("u")), "not valid yet"),
        ("another issuer", claims(now + 300, now - 10, "https://evil.test", Some("u")), "another issuer"),
        ("no subject", claims(now + 300, now - 10, issuer, None), "no subject"),
    ] {
        let answer = initialize(&gw, Some(&token));
        assert_eq!(answer.status, 401, "{what}: {answer:?}");
        assert!(answer.challenge.clone().unwrap_or_default().contains(says), "{what}: {answer:?}");
    }
}

#[test]
fn a_virtual_endpoint_requires_its_own_scopes_and_tokens_are_cached_per_resource() {
    if !installed(&paths().repo.join("tests/oidc/node_modules/oidc-provider"), "WARDEN_REQUIRE_NPM") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().display().to_string();
    let issuer = "https://idp.test";
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let token = |aud: &str, scope: &str| {
        forge("keyed", &json!({"iss": issuer, "aud": aud, "sub": "ops", "exp": now + 300, "scope": scope}), &keys)
    };
    let first = token(AUDIENCE, "mcp"); // makes the key the config names
    let fx = serde_json::to_string(&super::upstreams::fixture()).expect("JSON");
    let text = format!(
        "[auth]\nissuer = {issuer:?}\naudience = {AUDIENCE:?}\njwks-file = \"jwks.json\"\nrequired-scopes = [\"mcp\"]\n\
         [upstreams.one]\ncommand = {fx}\n[endpoints.\"/mcp/admin\"]\ntools = [\"one__*\"]\nrequired-scopes = [\"admin\"]\n"
    );
    let file = dir.path().join("warden.toml");
    std::fs::write(&file, text).expect("write config");
    let gw = Gateway::start_with(None, &["--config", &file.display().to_string()], &[]);
    let base = gw.url.trim_end_matches("/mcp").to_owned();
    let admin = format!("{base}/mcp/admin");
    // The admin endpoint's resource: under the audience's origin.
    let admin_resource = "http://warden.test/mcp/admin";
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}).to_string();
    let at = |url: &str, token: &str| gw.post_at(url, None, &init, &[("authorization", &format!("Bearer {token}"))]);

    // The main endpoint wants `mcp`, twice (the second from the cache).
    assert_eq!(at(&gw.url, &first).status, 200, "{}", gw.stderr());
    assert_eq!(at(&gw.url, &first).status, 200);
    // The admin endpoint is its own resource with its own scope: the main
    // endpoint's token is for another resource, even though it was just admitted.
    let answer = at(&admin, &first);
    assert_eq!(answer.status, 401, "{answer:?}");
    let answer = at(&admin, &token(admin_resource, "mcp"));
    assert_eq!(answer.status, 403, "{answer:?}");
    let challenge = answer.challenge.unwrap_or_default();
    assert!(challenge.contains("insufficient_scope") && challenge.contains("scope=\"admin\""), "{challenge}");
    assert!(challenge.contains("oauth-protected-resource/mcp/admin"), "{challenge}");
    let admin_token = token(admin_resource, "admin");
    assert_eq!(at(&admin, &admin_token).status, 200);
    // `admin` alone does not open the main endpoint, cached or not.
    assert_eq!(at(&gw.url, &token(AUDIENCE, "admin")).status, 403);
    let scopes = |path: &str| {
        let text = ureq::get(&format!("{base}/.well-known/oauth-protected-resource{path}")).call().expect("metadata");
        let document: Value = serde_json::from_str(&text.into_string().expect("readable")).expect("JSON");
        document["scopes_supported"].clone()
    };
    assert_eq!(scopes("/mcp"), json!(["mcp"]));
    assert_eq!(scopes("/mcp/admin"), json!(["admin"]));
}

/// The payload of a JWT, read without checking it.
fn payload(token: &str) -> Value {
    use std::io::Read;
    let part = token.split('.').nth(1).unwrap_or_default();
    // base64url without padding, decoded by hand for the test's eyes only.
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut count = 0;
    let mut bytes = Vec::new();
    for c in part.chars() {
        let Some(v) = alphabet.find(c) else { break };
        bits = (bits << 6) | v as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    let mut text = String::new();
    let _ = bytes.as_slice().read_to_string(&mut text);
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[test]
fn the_callers_token_is_exchanged_for_the_upstreams_and_never_sent_there() {
    if !installed(&paths().repo.join("tests/oidc/node_modules/oidc-provider"), "WARDEN_REQUIRE_NPM") {
        return;
    }
    let provider = Provider::start(free_port(), "key-x");
    let dir = tempfile::tempdir().expect("temp dir");
    let seen = dir.path().join("headers.log");
    let (_web, web_url) = super::gateway_remote::fixture_http(&seen);
    std::fs::write(dir.path().join("client.secret"), "warden-test-secret-0123456789\n").expect("write secret");
    let text = format!(
        "[auth]\nissuer = {issuer:?}\naudience = {AUDIENCE:?}\nrequired-scopes = [\"mcp\"]\n\
         [upstreams.web]\nurl = {web_url:?}\n\
         [upstreams.web.token-exchange]\ntoken-endpoint = \"{issuer}/token\"\nclient-id = \"warden-test\"\n\
         client-secret = {{ from-file = \"client.secret\" }}\naudience = \"https://upstream.test/mcp\"\nscope = \"tools\"\n\
         [upstreams.bad]\nurl = {web_url:?}\n\
         [upstreams.bad.token-exchange]\ntoken-endpoint = \"{issuer}/token\"\nclient-id = \"warden-test\"\n\
         client-secret = \"not-the-secret\"\naudience = \"https://upstream.test/mcp\"\n",
        issuer = provider.issuer
    );
    let file = dir.path().join("warden.toml");
    std::fs::write(&file, text).expect("write config");
    let gw = Gateway::start_with(None, &["--config", &file.display().to_string()], &[]);
    let token = provider.token(AUDIENCE, "mcp");
    let bearer = format!("Bearer {token}");
    let answer = initialize(&gw, Some(&token));
    let session = answer.session.clone().unwrap_or_else(|| panic!("{answer:?}\n{}", gw.stderr()));
    let headers = [("authorization", bearer.as_str()), ("mcp-protocol-version", "2025-06-18")];
    gw.post(Some(&session), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, &headers);
    for id in 1..=3 {
        let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "web__echo", "arguments": {"text": "exchanged"}}});
        let answer = gw.post(Some(&session), &call.to_string(), &headers).answer();
        assert_eq!(text_of(&answer), "exchanged", "{answer}\n{}", gw.stderr());
    }
    // A provider that refuses the exchange: the call is refused, and says why.
    let call = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "bad__echo", "arguments": {"text": "x"}}});
    let answer = gw.post(Some(&session), &call.to_string(), &headers).answer();
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("token exchange failed") && message.contains("invalid_client"), "{answer}");
    let log = std::fs::read_to_string(&seen).expect("the upstream's header log");
    assert!(!log.contains(&token), "the caller's own token reached the upstream");
    let sent: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("authorization: Bearer ").or_else(|| l.strip_prefix("Authorization: Bearer ")))
        .collect();
    assert!(!sent.is_empty(), "no token reached the upstream: {log}");
    let claims = payload(sent[0]);
    assert_eq!(claims["aud"], "https://upstream.test/mcp", "{claims}");
    assert_eq!(claims["scope"], "tools", "{claims}");
    assert_eq!(claims["sub"], payload(&token)["sub"], "{claims}");
    assert_eq!(claims["act"]["sub"], "warden-test", "{claims}");
    // Every request of the session went with one exchanged token, asked for once.
    assert!(sent.iter().all(|t| *t == sent[0]), "{sent:?}");
    let count = ureq::get(&format!("{}/test/exchanges", provider.issuer))
        .call()
        .expect("count")
        .into_string()
        .unwrap_or_default();
    assert_eq!(serde_json::from_str::<Value>(&count).unwrap_or_default()["exchanges"], 1, "{count}");
    let said = gw.stderr();
    assert!(!said.contains(&token) && !said.contains(sent[0]) && !said.contains("warden-test-secret"), "{said}");
}

#[test]
fn the_resource_comes_from_the_config_never_from_the_host_header() {
    if !installed(&paths().repo.join("tests/oidc/node_modules/oidc-provider"), "WARDEN_REQUIRE_NPM") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().display().to_string();
    let issuer = "https://idp.test";
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let token = |aud: &str| {
        forge("keyed", &json!({"iss": issuer, "aud": aud, "sub": "eve", "exp": now + 300, "scope": "mcp"}), &keys)
    };
    let _ = token("x"); // makes the key
    let jwks = dir.path().join("jwks.json").display().to_string();
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}).to_string();
    // Without `--oauth-audience`, the endpoint is its address's URL: a token for
    // another host is refused whatever `Host` the request names.
    let gw = Gateway::start(None, &["--oauth-issuer", issuer, "--oauth-jwks-file", &jwks]);
    let foreign = token("http://localhost:9999/mcp");
    let answer = gw.post(None, &init, &[("authorization", &format!("Bearer {foreign}")), ("host", "localhost:9999")]);
    assert_eq!(answer.status, 401, "{answer:?}");
    let own = token(&gw.url);
    assert_eq!(gw.post(None, &init, &[("authorization", &format!("Bearer {own}"))]).status, 200, "{}", gw.stderr());
    // With it, /sse serves the main endpoint's resource: a token for ".../sse" of any host is refused.
    let gw =
        Gateway::start(None, &["--oauth-issuer", issuer, "--oauth-jwks-file", &jwks, "--oauth-audience", AUDIENCE]);
    let base = gw.url.trim_end_matches("/mcp").to_owned();
    let sse = |token: &str, host: Option<&str>| {
        let mut request = ureq::get(&format!("{base}/sse")).set("authorization", &format!("Bearer {token}"));
        if let Some(host) = host {
            request = request.set("host", host);
        }
        match request.timeout(std::time::Duration::from_secs(5)).call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(status, _)) => status,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(sse(&token("http://localhost:3000/sse"), Some("localhost:3000")), 401);
    assert_eq!(sse(&token(&format!("{base}/sse")), None), 401);
    // A token with an empty subject is no caller.
    let nobody = forge("keyed", &json!({"iss": issuer, "aud": AUDIENCE, "sub": "", "exp": now + 300}), &keys);
    assert_eq!(initialize(&gw, Some(&nobody)).status, 401);
}
