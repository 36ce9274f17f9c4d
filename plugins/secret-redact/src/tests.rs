//! The redaction as a whole: every place a server can put a secret, every way
//! to write it, and the cost on large messages.

use std::time::Instant;

use serde_json::{json, Value};

use super::*;

fn redactor(patterns: &[&str]) -> SecretRedact {
    let raw = RawConfig {
        marker: "[X]".into(),
        arguments: false,
        patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
    };
    SecretRedact::new(raw).unwrap_or_else(|e| panic!("{e}"))
}

/// The redacted message, parsed; panics when nothing was redacted.
fn redacted(r: &SecretRedact, message: &str) -> (Value, usize) {
    match r.check(None, message) {
        Ok(Scan::Redacted { text, count }) => {
            let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
            (value, count)
        }
        other => panic!("not redacted: {other:?}\n{message}"),
    }
}

fn response(result: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 7, "result": result}).to_string()
}

const KEY: &str = "sk-proj-abcdefghijklmnopqrstuvwxyz012345";

#[test]
fn finds_the_usual_credentials() {
    let r = redactor(&["corp-[0-9]{6}"]);
    for secret in [
        KEY,
        "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "Bearer eyJhbGciOiJIUzI1NiJ9.abc.def",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "corp-123456",
    ] {
        let message = response(json!({"content": [{"type": "text", "text": format!("key: {secret} end")}]}));
        let (value, count) = redacted(&r, &message);
        assert_eq!(count, 1, "{secret}");
        assert_eq!(value["result"]["content"][0]["text"], "key: [X] end", "{secret}");
    }
}

#[test]
fn leaves_ordinary_text_alone() {
    let r = redactor(&["corp-[0-9]{6}"]);
    for text in ["the skies are clear; ask-me-anything", "a\nb \"c\" \\ caf\u{e9} \u{1F600}", "Bearer", "sk-short"] {
        assert_eq!(r.check(Some("7"), &response(json!({"text": text}))), Ok(Scan::Clean), "{text}");
    }
}

/// The same secrets, written with JSON escapes a server's encoder (or an attacker) may choose.
#[test]
fn escaped_secrets_are_found() {
    for patterns in [&[][..], &["corp-[0-9]{6}"][..]] {
        let r = redactor(patterns);
        for (raw_text, rest) in [
            (r#"aws_secret_access_key\t=\twJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"#, ""),
            (r#"Authorization: Bearer\teyJhbGciOiJIUzI1NiJ9.abc.def"#, "Authorization: "),
            (r#"aws_secret_\u0061ccess_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"#, ""),
            (r#"\u0073\u006b\u002d\u0070roj-abcdefghijklmnopqrstuvwxyz012345"#, ""),
            (r#"s\u006B-proj-abcdefghijklmnopqrstuvwxyz012345"#, ""),
            (r#"\u0041KIAIOSFODNN7EXAMPLE"#, ""),
            (r#"sk-proj-abcdefghijkl\u006dnopqrstuvwxyz012345"#, ""),
            (r#"sk-proj-abcdefghijklmnopqrstuvwxyz012345\/"#, "/"),
            (r#"-----BEGIN\u0020RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----"#, ""),
            (r#"\u0042earer\u00a0eyJhbGciOiJIUzI1NiJ9.abc.def"#, ""),
            (r#"\"aws_secret_access_key\": \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\""#, "\"\""),
        ] {
            let message =
                format!(r#"{{"jsonrpc":"2.0","id":7,"result":{{"content":[{{"type":"text","text":"{raw_text}"}}]}}}}"#);
            let (value, count) = redacted(&r, &message);
            let text = value["result"]["content"][0]["text"].as_str().unwrap_or_default();
            assert_eq!(count, 1, "{raw_text}: {text}");
            assert!(text.contains("[X]"), "{raw_text}: {text}");
            let prefix_and_suffix = text.replace("[X]", "");
            assert_eq!(prefix_and_suffix, rest, "{raw_text}: {text}");
        }
    }
}

/// Every place a server can put a secret: any result, errors, its requests
/// and notifications, object keys, any depth.
#[test]
fn secrets_are_found_everywhere() {
    let r = redactor(&[]);
    let messages = [
        response(json!({"tools": [{"name": "t", "description": format!("use {KEY}")}]})),
        response(json!({"structuredContent": {"config": {"env": [{"value": KEY}]}}})),
        json!({"jsonrpc": "2.0", "id": 7, "error": {"code": -32000, "message": format!("bad key {KEY}")}}).to_string(),
        json!({"jsonrpc": "2.0", "id": 7, "error": {"code": -32000, "message": "x", "data": {"env": KEY}}}).to_string(),
        json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": {"k": KEY}}})
            .to_string(),
        json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1, "message": KEY}}).to_string(),
        json!({"jsonrpc": "2.0", "id": 3, "method": "sampling/createMessage", "params": {"messages": [{"role": "user", "content": {"type": "text", "text": KEY}}]}}).to_string(),
        json!({"jsonrpc": "2.0", "id": 3, "method": "elicitation/create", "params": {"message": format!("paste {KEY}")}})
            .to_string(),
        json!({"jsonrpc": "2.0", "method": "vendor/anything", "params": [[[KEY]]]}).to_string(),
        response(json!({ KEY: 1 })),
    ];
    for message in &messages {
        let (value, count) = redacted(&r, message);
        assert_eq!(count, 1, "{message}");
        let text = value.to_string();
        assert!(!text.contains("sk-proj") && text.contains("[X]"), "{text}");
    }
}

#[test]
fn nesting_deeper_than_serde_json_goes_is_scanned() {
    let r = redactor(&[]);
    for depth in [130, 5_000] {
        let message = format!(
            r#"{{"jsonrpc":"2.0","id":7,"result":{{"content":{}"{KEY}"{}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let Ok(Scan::Redacted { text, count }) = r.check(None, &message) else { panic!("depth {depth}: not redacted") };
        assert_eq!(count, 1);
        assert_eq!(text, message.replace(KEY, "[X]"));
    }
}

#[test]
fn secret_keys_get_distinct_markers() {
    let r = redactor(&[]);
    let other = KEY.replace('a', "b");
    let message = response(json!({ KEY: 1, other.clone(): 2, "note": format!("{KEY} and {other}") }));
    let (value, count) = redacted(&r, &message);
    assert_eq!(count, 4);
    let keys: Vec<&String> = value["result"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["[X]#1", "[X]#2", "note"]);
    assert_eq!(value["result"]["note"], "[X] and [X]");
}

#[test]
fn what_cannot_be_scanned_or_kept_is_refused() {
    let r = redactor(&[]);
    let broken = format!(r#"{{"jsonrpc":"2.0","id":7,"result":{{"text":"{KEY}\q"}}}}"#);
    assert!(r.check(None, &broken).unwrap_err().contains("cannot be scanned"));
    let unterminated = format!(r#"{{"jsonrpc":"2.0","id":7,"result":{{"text":"{KEY}}}}}"#);
    assert!(r.check(None, &unterminated).is_err());
    let id = format!("\"{KEY}\"");
    let request = json!({"jsonrpc": "2.0", "id": KEY, "method": "ping"}).to_string();
    assert!(r.check(Some(&id), &request).unwrap_err().contains("id looks like a secret"));
}

#[test]
fn untouched_parts_stay_byte_for_byte() {
    let r = redactor(&[]);
    let message = format!(r#"{{ "jsonrpc" : "2.0", "id":7 ,"result":{{"a":"caf\u00e9\n","b":"{KEY}","c" : 1.50}}}}"#);
    let Ok(Scan::Redacted { text, .. }) = r.check(None, &message) else { panic!("not redacted") };
    assert_eq!(text, message.replace(KEY, "[X]"));
}

#[test]
fn custom_patterns_are_checked() {
    let bad = |p: &str| SecretRedact::new(RawConfig { marker: "x".into(), arguments: false, patterns: vec![p.into()] });
    assert!(bad("(").err().unwrap().contains("patterns[0]"));
    assert!(bad("a*").err().unwrap().contains("empty string"));
    // An anchored pattern matches whole decoded strings.
    let r = redactor(&["^corp-[0-9]{6}$"]);
    let (value, count) = redacted(&r, &response(json!({"id": "corp-123456", "other": "x corp-123456"})));
    assert_eq!((count, value["result"]["id"].as_str()), (1, Some("[X]")));
}

fn context(direction: Direction, kind: MessageKind, method: &str) -> Context {
    Context {
        direction,
        kind,
        id: Some("7".into()),
        method: method.into(),
        tool: None,
        session_id: None,
        upstream: "test".into(),
        caller: None,
        protocol_version: None,
        transport: warden_sdk::bindings::warden::interceptor::types::Transport::Stdio,
        outcome: None,
    }
}

#[test]
fn what_the_client_sends_passes_and_what_the_server_sends_is_checked() {
    let mut r = redactor(&[]);
    assert_eq!(r.methods(), vec!["*".to_owned()]);
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": KEY}}}).to_string();
    let to_server = context(Direction::ClientToServer, MessageKind::Request, "tools/call");
    assert!(matches!(r.on_request(&to_server, &call), Verdict::Forward), "arguments = false");
    let answer = json!({"jsonrpc": "2.0", "id": 7, "result": {"text": KEY}}).to_string();
    assert!(matches!(r.on_response(&to_server, &answer), Verdict::Forward), "the client's own answer");
    let broken = format!(r#"{{"jsonrpc":"2.0","id":7,"result":{{"text":"{KEY}\q"}}}}"#);
    let from_server = context(Direction::ServerToClient, MessageKind::Response, "anything/at-all");
    assert!(matches!(r.on_response(&from_server, &broken), Verdict::Reject(_)));
    let note = context(Direction::ServerToClient, MessageKind::Notification, "notifications/message");
    assert!(matches!(r.on_request(&note, &broken), Verdict::Reject(_)));
}

/// The shortcut (only strings the tripwire points at, only where it points)
/// finds exactly what reading every string whole finds.
#[test]
fn the_tripwire_shortcut_agrees_with_reading_everything() {
    let pieces = [
        KEY,
        "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
        r"s\u006b-proj-abcdefghijklmnopqrstuvwxyz012345",
        r"\u0041KIAIOSFODNN7EXAMPLE",
        "AKIA",
        "Bearer",
        r"Bearer\tabcdefghijklmnopqrstuvwxyz",
        "bearer abcdefghijklmnop",
        "aws_secret_access_key",
        r#"AWS_SECRET_ACCESS_KEY\": \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"#,
        "-----BEGIN RSA PRIVATE KEY-----",
        r"\nMIIEow\n",
        "-----END RSA PRIVATE KEY-----",
        "corp-123456",
        r"c\u006frp-123456",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "xoxb-1234567890-abcdefghij",
        "github_pat_11ABCDEFG0123456789_abcdefghijkl",
        " ",
        r"\n",
        r#"\""#,
        "é",
        r"\u00e9",
        "-",
        "_",
        "x",
    ];
    let shortcut = redactor(&["corp-[0-9]{6}"]);
    let mut reference = redactor(&["corp-[0-9]{6}"]);
    reference.detectors = reference.detectors.reading_everything();
    let mut seed = 11u64;
    let mut next = |n: usize| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as usize % n
    };
    for _ in 0..3000 {
        let strings: Vec<String> =
            (0..1 + next(3)).map(|_| (0..next(8)).map(|_| pieces[next(pieces.len())]).collect::<String>()).collect();
        let body: Vec<String> = strings.iter().enumerate().map(|(i, s)| format!(r#""k{i}":"{s}""#)).collect();
        let message = format!(r#"{{"jsonrpc":"2.0","id":7,"result":{{{}}}}}"#, body.join(","));
        assert!(serde_json::from_str::<Value>(&message).is_ok(), "{message}");
        assert_eq!(shortcut.check(None, &message), reference.check(None, &message), "{message}");
    }
}

/// A long run of candidates must not make the scan quadratic: PEM headers with
/// no end (each would search to the end of the text) between keys.
#[test]
fn hostile_large_messages_take_linear_time() {
    let r = redactor(&["corp-[0-9]{6}"]);
    let unit = format!("-----BEGIN RSA PRIVATE KEY----- {KEY} Bearer abcdefghijklmnopqrstuvwxyz ");
    let text = unit.repeat((4 << 20) / unit.len());
    let message = response(json!({"content": [{"type": "text", "text": text}]}));
    let started = Instant::now();
    let (_, count) = redacted(&r, &message);
    assert_eq!(count, 2 * ((4 << 20) / unit.len()));
    // Linear is well under a second even unoptimised; quadratic would be hours.
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    // Many tiny strings with a secret at the end.
    let mut items: Vec<Value> = (0..400_000).map(|i| json!(i.to_string())).collect();
    items.push(json!(KEY));
    let message = response(json!(items));
    let started = Instant::now();
    assert_eq!(redacted(&r, &message).1, 1);
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
}

/// `cargo test --release -p secret-redact -- --ignored --nocapture scan_speed`:
/// what the scan costs natively on the benchmark's messages.
#[test]
#[ignore]
fn scan_speed() {
    let r = redactor(&["corp-[0-9a-f]{32}"]);
    let time = |label: &str, message: &str| {
        let rounds = 20;
        let started = Instant::now();
        let mut found = 0;
        for _ in 0..rounds {
            if let Ok(Scan::Redacted { count, .. }) = r.check(Some("1"), message) {
                found = count;
            }
        }
        let each = started.elapsed() / rounds;
        let mib_s = message.len() as f64 / each.as_secs_f64() / f64::from(1 << 20);
        println!("{label}: {} bytes, {found} found, {each:?} each ({mib_s:.0} MiB/s)", message.len());
    };
    let mib = 1 << 20;
    time("1 MiB of 'b', no secret", &response(json!({"content": [{"type": "text", "text": "b".repeat(mib)}]})));
    let prose = "The quick brown fox jumps over the lazy dog; a-b_c \"quoted\"\n".repeat(mib / 60);
    time("1 MiB of prose, no secret", &response(json!({"content": [{"type": "text", "text": prose}]})));
    let with_key = format!("{} {KEY}", "b".repeat(mib));
    time("1 MiB of 'b', one secret", &response(json!({"content": [{"type": "text", "text": with_key}]})));
    let big = format!("{} {KEY}", prose.repeat(30));
    time("30 MiB of prose, one secret", &response(json!({"content": [{"type": "text", "text": big}]})));
    time("30 MiB of prose, no secret", &response(json!({"content": [{"type": "text", "text": prose.repeat(30)}]})));
}
