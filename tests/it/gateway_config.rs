//! `warden.toml`: every example in the repository loads, and every mistake
//! the gateway issue names is refused by `warden config check` with the
//! file, the line, the key and a fix, without quoting a secret.

use std::path::Path;
use std::process::Command;

use crate::common::paths;

/// Runs `warden config check` on `text` written as `warden.toml` in a
/// fresh folder (with a `plugins` folder beside it): exit success and output.
fn check(text: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("plugins")).expect("plugins folder");
    std::fs::write(dir.path().join("token.txt"), "file-secret-value\n").expect("secret file");
    let file = dir.path().join("warden.toml");
    std::fs::write(&file, text).expect("write config");
    let out = Command::new(paths().warden)
        .args(["config", "check"])
        .arg(&file)
        .env_remove("FS_TOKEN")
        .envs(env.iter().copied())
        .output()
        .expect("run warden config check");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// A refusal that names the file, `line`, `key`, and gives a fix.
fn refused(text: &str, line: Option<usize>, key: &str) -> String {
    let (ok, out) = check(text, &[]);
    assert!(!ok, "accepted: {text}\n{out}");
    assert!(out.contains("warden.toml"), "no file named: {out}");
    if let Some(line) = line {
        assert!(out.contains(&format!("warden.toml:{line}:")), "not line {line}: {out}");
    }
    assert!(out.contains(key), "key {key} not named: {out}");
    assert!(out.contains("(fix: "), "no fix: {out}");
    out
}

#[test]
fn every_example_config_in_the_repository_loads() {
    let repo = paths().repo;
    let mut found = 0;
    for dir in [repo.join("host/examples"), repo.join("tests/configs")] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "toml") {
                let env = |_: &str| Some("a-test-value".to_owned());
                let loaded = warden::config::gateway::parse(&std::fs::read_to_string(&path).unwrap(), &path, &env);
                assert!(loaded.is_ok(), "{}: {:?}", path.display(), loaded.err());
                found += 1;
            }
        }
    }
    assert!(found >= 1, "no example config found");
    let example = repo.join("host/examples/warden.toml");
    let env = |var: &str| Some(format!("value-of-{var}"));
    let config = warden::config::gateway::parse(&std::fs::read_to_string(&example).unwrap(), &example, &env).unwrap();
    let names: Vec<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["everything", "fs", "remote"]);
    // Relative paths are relative to the file; secrets are read, never printed.
    assert_eq!(config.plugins.as_deref(), Some(repo.join("host/examples/plugins").as_path()));
    assert!(!format!("{config:?}").contains("value-of-"), "a secret in Debug output");
}

#[test]
fn a_good_config_is_accepted_and_its_secrets_are_not_shown() {
    let text = r#"
plugins = "plugins"
[upstreams.fs]
command = ["server", "--flag"]
env = { TOKEN = { from-env = "FS_TOKEN" }, OTHER = { from-file = "token.txt", prefix = "Bearer " } }
[upstreams.remote]
url = "https://mcp.example.com/mcp"
headers = { Authorization = { from-env = "FS_TOKEN", prefix = "Bearer " } }
forward-headers = ["X-Request-Id"]
"#;
    let (ok, out) = check(text, &[("FS_TOKEN", "env-secret-value")]);
    assert!(ok, "{out}");
    assert!(out.contains("upstream fs") && out.contains("upstream remote"), "{out}");
    assert!(!out.contains("secret-value"), "a secret was shown: {out}");
}

#[test]
fn every_mistake_is_named_with_its_line_key_and_fix() {
    let up = "[upstreams.a]\ncommand = [\"x\"]\n";
    // An unknown key, at the top and inside an upstream.
    refused(&format!("plugin = \"plugins\"\n{up}"), Some(1), "unknown field `plugin`");
    refused("[upstreams.a]\ncommand = [\"x\"]\ncomand = [\"y\"]\n", Some(3), "comand");
    // Both or neither of command and url.
    refused("[upstreams.a]\ncommand = [\"x\"]\nurl = \"http://h/mcp\"\n", Some(1), "upstreams.a");
    let out = refused("[upstreams.a]\ncwd = \".\"\n", Some(1), "upstreams.a");
    assert!(out.contains("neither"), "{out}");
    // Names: only A-Za-z0-9 and -, and never the separator.
    refused("[upstreams.\"a_b c\"]\ncommand = [\"x\"]\n", Some(1), "upstreams.a_b c");
    refused("separator = \"-\"\n[upstreams.a-b]\ncommand = [\"x\"]\n", Some(2), "upstreams.a-b");
    refused(&format!("separator = \"/\"\n{up}"), Some(1), "separator");
    // A name whose prefix would split early: `files-` + `--` reads as `files` + `--` + `-…`.
    refused("separator = \"--\"\n[upstreams.files-]\ncommand = [\"x\"]\n", Some(2), "upstreams.files-");
    // A missing environment variable or secret file: named, never its value.
    let out = refused(
        "[upstreams.a]\ncommand = [\"x\"]\nenv = { T = { from-env = \"FS_TOKEN\" } }\n",
        Some(1),
        "upstreams.a.env.T",
    );
    assert!(out.contains("FS_TOKEN"), "{out}");
    refused(
        "[upstreams.a]\nurl = \"https://h/mcp\"\nheaders = { X = { from-file = \"nope.txt\" } }\n",
        Some(1),
        "headers.X",
    );
    refused(
        "[upstreams.a]\ncommand = [\"x\"]\nenv = { T = { from-env = \"A\", from-file = \"B\" } }\n",
        Some(1),
        "env.T",
    );
    refused("[upstreams.a]\ncommand = [\"x\"]\nenv = { T = { from-envv = \"A\" } }\n", Some(3), "secret");
    // A plugins folder that does not exist, shared or an upstream's own.
    refused(&format!("plugins = \"missing\"\n{up}"), Some(1), "plugins");
    refused("[upstreams.a]\ncommand = [\"x\"]\nplugins = \"missing\"\n", Some(1), "upstreams.a.plugins");
    // No token passthrough: credentials cannot be forwarded.
    for header in ["Authorization", "cookie", "Proxy-Authorization"] {
        let text = format!("[upstreams.a]\nurl = \"https://h/mcp\"\nforward-headers = [\"{header}\"]\n");
        refused(&text, Some(1), "upstreams.a.forward-headers");
    }
    // Nor headers the transport sets itself.
    for header in ["Host", "Content-Length", "Mcp-Session-Id", "MCP-Protocol-Version", "mcp-param-x", "Origin"] {
        let text = format!("[upstreams.a]\nurl = \"https://h/mcp\"\nforward-headers = [\"{header}\"]\n");
        refused(&text, Some(1), "upstreams.a.forward-headers");
    }
    // Values that are not what they say.
    refused("[upstreams.a]\nurl = \"ftp://h/mcp\"\n", Some(1), "upstreams.a.url");
    refused("[upstreams.a]\ncommand = []\n", Some(1), "upstreams.a.command");
    refused("[upstreams.a]\ncommand = [\"x\"]\ntimeout = \"soon\"\n", Some(1), "upstreams.a.timeout");
    refused(&format!("[serve]\nlisten = \"everywhere\"\n{up}"), Some(2), "serve.listen");
    refused("plugins = \"plugins\"\n", None, "upstreams");
    // HTTPS on the listener: certificate and key must both be there.
    refused(&format!("[serve]\ntls-cert = \"c.pem\"\ntls-key = \"k.pem\"\n{up}"), Some(2), "serve.tls-cert");
    refused(&format!("[serve]\ntls-key = \"k.pem\"\n{up}"), Some(2), "serve");
    // A credential in the URL, a variable name that would set another.
    refused("[upstreams.a]\nurl = \"https://user:pass@h/mcp\"\n", Some(1), "upstreams.a.url");
    refused("[upstreams.a]\ncommand = [\"x\"]\nenv = { \"A=B\" = \"v\" }\n", Some(1), "upstreams.a.env.A?B");
    // Virtual endpoints: a clean path, not Warden's own, globs that compile, known keys only.
    for path in ["mcp/x", "/", "/a//b", "/a/../b", "/a/", "/sse", "/messages", "/a b", "/a?x"] {
        refused(&format!("{up}[endpoints.\"{path}\"]\ntools = [\"*\"]\n"), Some(3), "endpoints.");
    }
    refused(&format!("{up}[endpoints.\"/ro\"]\ntools = [\"fs__[\"]\n"), Some(3), "endpoints.\"/ro\".tools");
    refused(&format!("{up}[endpoints.\"/ro\"]\ntool = [\"*\"]\n"), Some(4), "unknown field `tool`");
    refused(&format!("{up}[endpoints.\"/ro\"]\nplugins = \"missing\"\n"), Some(3), "endpoints.\"/ro\".plugins");
    // A shared child is a command's.
    refused("[upstreams.a]\nurl = \"https://h/mcp\"\nshare = true\n", Some(1), "upstreams.a.share");
    // [auth]: URLs where URLs go, one source of keys.
    refused(&format!("[auth]\nissuer = \"login.example.com\"\n{up}"), Some(1), "auth.issuer");
    refused(
        &format!("[auth]\nissuer = \"https://idp\"\njwks-url = \"https://idp/k\"\njwks-file = \"k.json\"\n{up}"),
        Some(1),
        "auth",
    );
    refused(
        &format!("[auth]\nissuer = \"https://idp\"\njwks-file = \"missing.json\"\n{up}"),
        Some(1),
        "auth.jwks-file",
    );
    refused(
        &format!("[auth]\nissuer = \"https://idp\"\nrequired-scopes = [\"a b\"]\n{up}"),
        Some(1),
        "auth.required-scopes",
    );
    refused(&format!("[auth]\nissuer = \"https://idp\"\nscopes = [\"mcp\"]\n{up}"), Some(3), "unknown field `scopes`");
    // An endpoint's own scopes: only with [auth], only scope names.
    refused(&format!("{up}[endpoints.\"/ro\"]\nrequired-scopes = [\"admin\"]\n"), Some(3), "needs [auth]");
    refused(
        &format!("[auth]\nissuer = \"https://idp\"\n{up}[endpoints.\"/ro\"]\nrequired-scopes = [\"a\\\"b\"]\n"),
        Some(5),
        "endpoints.\"/ro\".required-scopes",
    );
    // Credentials chosen per caller: a claim, values, never nested, never for a shared child.
    let by = "[upstreams.a]\ncommand = [\"x\"]\n[upstreams.a.env.T]\n";
    refused(
        &format!("{by}claim = \"groups\"\nvalues = {{ a = \"1\" }}\nfallback = \"2\"\n"),
        Some(3),
        "not a secret value",
    );
    refused(&format!("{by}claim = \"\"\nvalues = {{ a = \"1\" }}\n"), Some(1), "upstreams.a.env.T");
    refused(&format!("{by}claim = \"g\"\nvalues = {{}}\n"), Some(1), "upstreams.a.env.T");
    refused(
        &format!("{by}claim = \"g\"\nvalues = {{ a = {{ claim = \"h\", values = {{ b = \"1\" }} }} }}\n"),
        Some(1),
        "upstreams.a.env.T",
    );
    refused(
        "[upstreams.a]\ncommand = [\"x\"]\nshare = true\nenv = { T = { claim = \"sub\", values = { ada = \"1\" } } }\n",
        Some(1),
        "upstreams.a.share",
    );
    // Token exchange: for remote servers, at an http(s) endpoint, into a header of its own.
    let x = "[upstreams.a.token-exchange]\ntoken-endpoint = \"https://idp/token\"\nclient-id = \"w\"\nclient-secret = \"s\"\n";
    refused(&format!("[upstreams.a]\ncommand = [\"x\"]\n{x}"), Some(1), "upstreams.a.token-exchange");
    let remote = "[upstreams.a]\nurl = \"https://h/mcp\"\n";
    refused(
        &format!("{remote}{}", x.replace("https://idp/token", "idp/token")),
        Some(1),
        "token-exchange.token-endpoint",
    );
    refused(&format!("{remote}headers = {{ Authorization = \"Bearer x\" }}\n{x}"), Some(1), "token-exchange.header");
    refused(&format!("{remote}{x}scopes = \"a\"\n"), Some(7), "unknown field `scopes`");
    refused(
        &format!(
            "{remote}{}",
            x.replace("client-secret = \"s\"", "client-secret = { claim = \"sub\", values = { a = \"1\" } }")
        ),
        Some(1),
        "token-exchange.client-secret",
    );
    // One unprefixed upstream at most.
    refused(
        "[upstreams.a]\ncommand = [\"x\"]\nprefix = false\n[upstreams.b]\ncommand = [\"x\"]\nprefix = false\n",
        Some(4),
        "upstreams.b.prefix",
    );
    // Limits: only for a child, from 1 up, only the three known.
    refused(
        "[upstreams.a]\ncommand = [\"x\"]\nlimits = { open-files = 0 }\n",
        Some(1),
        "upstreams.a.limits.open-files",
    );
    refused("[upstreams.a]\nurl = \"https://h/mcp\"\nlimits = { cpu-secs = 5 }\n", Some(1), "upstreams.a.limits");
    refused("[upstreams.a]\ncommand = [\"x\"]\nlimits = { memory = 5 }\n", Some(3), "memory");
    refused("[upstreams.a]\ncommand = [\"x\"]\nlimits = { memory-mib = -1 }\n", Some(3), "(syntax)");
    // A value in the wrong place is never quoted back (it may be a secret).
    let out = refused("[upstreams.a]\ncommand = [\"x\"]\nenv = \"API_KEY=sk-live-leakme\"\n", Some(3), "(syntax)");
    assert!(!out.contains("leakme"), "{out}");
    let out = refused("[upstreams.a]\ncommand = [\"x\"]\npin = \"sk-WRONGPLACE777\"\n", Some(3), "(syntax)");
    assert!(!out.contains("WRONGPLACE"), "{out}");
    refused("[upstreams.a\n", Some(1), "(syntax)");
}

#[test]
fn a_file_that_is_not_there_is_named() {
    let out = Command::new(paths().warden)
        .args(["config", "check"])
        .arg(Path::new("/nonexistent/warden.toml"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("/nonexistent/warden.toml"));
}
