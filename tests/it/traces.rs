//! OpenTelemetry traces: an OTLP/HTTP receiver here (decoding with
//! `opentelemetry-proto`) sees the span tree of a denied call and of a call
//! through the plugins, under the client's `traceparent`, and the same trace
//! reaches an HTTP upstream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::json;

use crate::common::http::Gateway;
use crate::common::{examples, paths, Warden, PATIENCE};
use crate::gateway_remote::fixture_http;

/// An OTLP/HTTP receiver (protobuf), keeping every span it is sent.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || serve(stream, &kept));
            }
        });
        Receiver { url, spans }
    }

    /// Waits until some span satisfies `found`, then returns them all.
    fn until(&self, what: &str, found: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if found(&spans) {
                return spans;
            }
            let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
            assert!(Instant::now() < deadline, "no {what} among spans {names:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One connection: requests with `Content-Length` bodies, each answered 200.
fn serve(stream: std::net::TcpStream, kept: &Mutex<Vec<Span>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(request) = ExportTraceServiceRequest::decode(body.as_slice()) {
            let mut spans = kept.lock().unwrap();
            for resource in request.resource_spans {
                for scope in resource.scope_spans {
                    spans.extend(scope.spans);
                }
            }
        }
        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    let value = span.attributes.iter().find(|a| a.key == key)?.value.as_ref()?.value.as_ref()?;
    Some(match value {
        Any::StringValue(s) => s.clone(),
        Any::IntValue(i) => i.to_string(),
        Any::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    })
}

fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.parent_span_id == parent.span_id && s.trace_id == parent.trace_id).collect()
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[test]
fn a_denied_call_and_a_call_through_the_plugins_are_span_trees_under_the_clients_trace() {
    let receiver = Receiver::start();
    let plugins = examples();
    let fixture = paths().fixture.display().to_string();
    let mut w = Warden::start_with(Some(plugins.path()), &["--otlp-endpoint", &receiver.url], &[&fixture]);
    w.initialize();
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let denied = w.request(
        "tools/call",
        json!({"name": "delete_everything", "arguments": {}, "_meta": {"traceparent": traceparent}}),
    );
    assert!(denied.get("error").is_some(), "{denied}");
    let echoed = w.request(
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "hi"}, "_meta": {"traceparent": traceparent}}),
    );
    assert_eq!(echoed["result"]["content"][0]["text"], "hi");

    let named = |spans: &[Span], name: &str| spans.iter().any(|s| s.name == name);
    let spans = receiver.until("both calls' spans and the upstream's", |s| {
        named(s, "tools/call delete_everything") && named(s, "tools/call echo") && named(s, "tools/call mcp-fixture")
    });
    let trace = hex::decode(TRACE).unwrap();
    let parent = hex::decode(PARENT).unwrap();

    let denial = spans.iter().find(|s| s.name == "tools/call delete_everything").unwrap();
    assert_eq!(denial.trace_id, trace, "the client's trace");
    assert_eq!(denial.parent_span_id, parent, "the client's span is its parent");
    assert_eq!(attribute(denial, "mcp.method.name").as_deref(), Some("tools/call"));
    assert_eq!(attribute(denial, "gen_ai.tool.name").as_deref(), Some("delete_everything"));
    assert_eq!(attribute(denial, "error.type").as_deref(), Some("-32001"));
    assert!(attribute(denial, "warden.verdicts").unwrap_or_default().contains("10-tool-policy=reject"));
    let under: Vec<&str> = children(&spans, denial).iter().map(|s| s.name.as_str()).collect();
    assert!(under.contains(&"10-tool-policy request"), "{under:?}");
    assert!(!under.iter().any(|n| n.contains("mcp-fixture")), "a denied call never reaches the upstream: {under:?}");
    let policy = children(&spans, denial).into_iter().find(|s| s.name == "10-tool-policy request").unwrap();
    assert_eq!(attribute(policy, "warden.verdict").as_deref(), Some("reject"));
    assert!(attribute(policy, "warden.plugin.component").unwrap_or_default().starts_with("sha256:"));

    let call = spans.iter().find(|s| s.name == "tools/call echo").unwrap();
    assert_eq!(call.trace_id, trace);
    assert_eq!(call.parent_span_id, parent);
    let under: Vec<&str> = children(&spans, call).iter().map(|s| s.name.as_str()).collect();
    for hook in
        ["00-audit-log request", "10-tool-policy request", "20-secret-redact response", "tools/call mcp-fixture"]
    {
        assert!(under.contains(&hook), "{hook} under the call: {under:?}");
    }
    assert_eq!(attribute(call, "error.type"), None, "it succeeded");
}

#[test]
fn the_trace_reaches_an_http_upstream_in_its_header() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("headers.log");
    let (_web, web_url) = fixture_http(&seen);
    let g = Gateway::start_with(
        Some(examples().path()),
        &["--otlp-endpoint", &receiver.url, "--upstream-url", &web_url],
        &[],
    );
    let session = g.open();
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "traced"}}});
    let answer = g.post(
        Some(&session),
        &call.to_string(),
        &[("mcp-protocol-version", "2025-06-18"), ("traceparent", &traceparent)],
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    let spans = receiver.until("the upstream call's span", |s| {
        s.iter().any(|s| s.name.starts_with("tools/call ") && s.name != "tools/call echo")
    });
    let upstream = spans.iter().find(|s| s.name.starts_with("tools/call ") && s.name != "tools/call echo").unwrap();
    assert_eq!(upstream.trace_id, hex::decode(TRACE).unwrap(), "the header's trace");
    // The upstream got the upstream call's context: the same trace, that span as parent.
    let expected = format!("traceparent: 00-{TRACE}-{}-01", hex::encode(&upstream.span_id));
    let headers = std::fs::read_to_string(&seen).unwrap_or_default();
    assert!(headers.to_ascii_lowercase().contains(&expected), "{expected} in:\n{headers}");
}
