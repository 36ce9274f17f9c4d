//! Per-identity policy: tool-policy's CEL rules decide per caller, the same
//! rules in `warden wrap --caller` and at `warden serve` with token claims.
//! Two callers in different groups see different lists and get different
//! verdicts on the same call.

use serde_json::{json, Value};

use crate::common::http::Gateway;
use crate::common::{error_of, paths, PluginDir, Warden};

const POLICY: &str = r#"order = 10
failure = "closed"

[config]
allow = ["echo", "delete_everything", "get_config"]

[[config.rules]]
name = "only-infra-deletes"
when = 'tool.name.startsWith("delete_") && !("infra" in caller.claims.groups)'
action = "deny"

[[config.rules]]
name = "config-by-email"
when = 'tool.name == "get_config" && !caller.claims.email.endsWith("@example.com")'
action = "deny"
"#;

fn policy() -> PluginDir {
    PluginDir::new().add("10-policy", "tool_policy", POLICY)
}

fn names(list: &Value) -> Vec<String> {
    let tools = list["result"]["tools"].as_array().cloned().unwrap_or_default();
    tools.iter().filter_map(|t| t["name"].as_str().map(str::to_owned)).collect()
}

const ADA: &str = r#"{"groups": ["infra", "dev"], "email": "ada@example.com"}"#;
const BOB: &str = r#"{"groups": ["dev"], "email": "bob@elsewhere.org"}"#;

#[test]
fn two_callers_see_different_lists_and_get_different_verdicts_in_wrap() {
    let plugins = policy();
    let fixture = paths().fixture.display().to_string();
    let mut seen = Vec::new();
    for (name, claims) in [("ada", ADA), ("bob", BOB)] {
        let flags = ["--caller", name, "--caller-claims", claims];
        let mut w = Warden::start_with(Some(plugins.path()), &flags, &[&fixture]);
        w.initialize();
        let list = w.request("tools/list", json!({}));
        let call = w.call_tool("delete_everything", json!({}));
        let config = w.call_tool("get_config", json!({}));
        seen.push((names(&list), call, config));
        w.finish();
    }
    let (ada, bob) = (&seen[0], &seen[1]);
    assert_eq!(ada.0, ["echo", "get_config", "delete_everything"], "ada's list");
    assert_eq!(bob.0, ["echo"], "bob's list");
    assert!(ada.1.get("result").is_some(), "{}", ada.1);
    let (code, message) = error_of(&bob.1);
    assert!(code == -32001 && message.contains("only-infra-deletes"), "{}", bob.1);
    assert!(ada.2.get("result").is_some(), "{}", ada.2);
    assert!(error_of(&bob.2).1.contains("config-by-email"), "{}", bob.2);
}

#[test]
fn two_callers_see_different_lists_and_get_different_verdicts_over_http() {
    let plugins = policy();
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!(
            "ada tok-ada-0123456789abcdef {ADA}\nbob tok-bob-0123456789abcdef {BOB}\neve tok-eve-0123456789abcdef\n"
        ),
    )
    .expect("write");
    let gw = Gateway::start(Some(plugins.path()), &["--client-tokens", tokens.to_str().unwrap_or_default()]);
    let mut lists = Vec::new();
    for who in ["ada", "bob", "eve"] {
        let bearer = format!("Bearer tok-{who}-0123456789abcdef");
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
        let answer = gw.post(None, &init.to_string(), &[("authorization", &bearer)]);
        let session = answer.session.clone().unwrap_or_else(|| panic!("{answer:?}"));
        let headers = [("authorization", bearer.as_str()), ("mcp-protocol-version", "2025-06-18")];
        gw.post(Some(&session), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, &headers);
        let list = gw.post(Some(&session), r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, &headers).answer();
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "delete_everything", "arguments": {}}});
        let call = gw.post(Some(&session), &call.to_string(), &headers).answer();
        lists.push((names(&list), call));
    }
    assert_eq!(lists[0].0, ["echo", "get_config", "delete_everything"]);
    assert!(lists[0].1.get("result").is_some(), "{}", lists[0].1);
    for (list, call) in &lists[1..] {
        // bob is not in infra; eve has no claims at all, so the rule fails closed.
        assert_eq!(list, &["echo"]);
        assert!(error_of(call).1.contains("only-infra-deletes"), "{call}");
    }

    // The 2026-07-28 era: the same verdicts, and the caller's list is private.
    let modern = |who: &str, id: u64, method: &str, params: Value| {
        let mut params = params;
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"}
        });
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        let bearer = format!("Bearer tok-{who}-0123456789abcdef");
        let mut headers =
            vec![("authorization", bearer.as_str()), ("mcp-protocol-version", "2026-07-28"), ("mcp-method", method)];
        if method == "tools/call" {
            headers.push(("mcp-name", "delete_everything"));
        }
        gw.post(None, &body, &headers).answer()
    };
    let list = modern("bob", 3, "tools/list", json!({}));
    assert_eq!(names(&list), ["echo"], "{list}");
    assert_eq!(list["result"]["cacheScope"], "private", "{list}");
    assert_eq!(names(&modern("ada", 4, "tools/list", json!({}))), ["echo", "get_config", "delete_everything"]);
    let call = modern("bob", 5, "tools/call", json!({"name": "delete_everything", "arguments": {}}));
    assert!(error_of(&call).1.contains("only-infra-deletes"), "{call}");
    let call = modern("ada", 6, "tools/call", json!({"name": "delete_everything", "arguments": {}}));
    assert!(call["result"].is_object(), "{call}");
}

#[test]
fn a_rule_that_does_not_compile_stops_the_plugin_with_its_name() {
    let manifest = POLICY.replace(r#"!caller.claims.email.endsWith("@example.com")"#, "user.admin ==");
    let plugins = PluginDir::new().add("10-policy", "tool_policy", &manifest);
    let out = std::process::Command::new(paths().warden)
        .args(["plugin", "check"])
        .arg(plugins.path().join("10-policy.wasm"))
        .output()
        .expect("warden");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success() && said.contains("config-by-email") && said.contains("does not compile"), "{said}");
}

#[test]
fn a_caller_whose_claims_change_is_judged_by_the_new_ones_in_both_eras() {
    use crate::common::installed;
    if !installed(&paths().repo.join("tests/oidc/node_modules/oidc-provider"), "WARDEN_REQUIRE_NPM") {
        return;
    }
    let plugins = policy();
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().display().to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let audience = "http://warden.test/mcp";
    let token = |groups: Value, jti: &str| {
        let claims = json!({"iss": "https://idp.test", "aud": audience, "sub": "bob", "exp": now + 300, "jti": jti, "groups": groups, "email": "bob@example.com"});
        super::oauth::forge("keyed", &claims, &keys)
    };
    let infra = token(json!(["infra"]), "a");
    let refreshed = token(json!(["infra"]), "b");
    let demoted = token(json!(["dev"]), "c");
    let jwks = dir.path().join("jwks.json").display().to_string();
    let flags = ["--oauth-issuer", "https://idp.test", "--oauth-audience", audience, "--oauth-jwks-file", &jwks];
    let gw = Gateway::start(Some(plugins.path()), &flags);
    let headers = |t: &str| {
        vec![
            ("authorization".to_owned(), format!("Bearer {t}")),
            ("mcp-protocol-version".to_owned(), "2025-06-18".to_owned()),
        ]
    };
    let post = |session: Option<&str>, t: &str, body: &str| {
        let h = headers(t);
        let h: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        gw.post(session, body, &h)
    };
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}).to_string();
    let delete = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "delete_everything", "arguments": {}}}).to_string();
    let answer = post(None, &infra, &init);
    let session = answer.session.clone().unwrap_or_else(|| panic!("{answer:?}\n{}", gw.stderr()));
    post(Some(&session), &infra, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert!(post(Some(&session), &infra, &delete).answer()["result"].is_object());
    // A fresh token with the same claims keeps the session.
    assert!(post(Some(&session), &refreshed, &delete).answer()["result"].is_object());
    // Other groups: the session is not this caller's; a new one is judged by the new claims.
    assert_eq!(post(Some(&session), &demoted, &delete).status, 404);
    let answer = post(None, &demoted, &init);
    let session = answer.session.clone().unwrap_or_else(|| panic!("{answer:?}"));
    post(Some(&session), &demoted, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert!(error_of(&post(Some(&session), &demoted, &delete).answer()).1.contains("only-infra-deletes"));

    // The 2026-07-28 era: each request by its own token's claims.
    let modern = |t: &str, id: u64| {
        let mut params = json!({"name": "delete_everything", "arguments": {}});
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"}
        });
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}).to_string();
        let bearer = format!("Bearer {t}");
        let h = [
            ("authorization", bearer.as_str()),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "delete_everything"),
        ];
        gw.post(None, &body, &h).answer()
    };
    assert!(modern(&infra, 10)["result"].is_object(), "{}", gw.stderr());
    assert!(error_of(&modern(&demoted, 11)).1.contains("only-infra-deletes"));
    assert!(modern(&refreshed, 12)["result"].is_object());
}
