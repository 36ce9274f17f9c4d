//! OpenTelemetry traces over OTLP/HTTP (`--otlp-endpoint`, off by default):
//! a span per request, with a child span for each plugin hook and one for
//! the call to the upstream, named and attributed after the semantic
//! conventions for MCP. Spans are `tracing` spans of target [`TARGET`],
//! exported by `tracing-opentelemetry`; none is made while tracing is off.
//!
//! W3C trace context: a request's parent is its `params._meta.traceparent`
//! (the HTTP front door puts a client's `traceparent` header there), and the
//! upstream call's context goes on in `_meta.traceparent` (and, to an HTTP
//! upstream, in the `traceparent` header).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of Warden's trace spans (only these are exported).
pub const TARGET: &str = "warden::trace";

static ON: AtomicBool = AtomicBool::new(false);

/// Whether spans are made.
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The exporter; [`Exporter::shutdown`] sends what is still buffered.
#[derive(Debug)]
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Flushes the spans still buffered and stops.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("traces: the last spans could not be sent: {e}");
        }
    }
}

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
#[error("--otlp-endpoint {0}: {1}")]
pub struct TracesError(String, String);

/// The exporter to the collector at `endpoint` (`http://host:4318`, or the
/// full `…/v1/traces` URL) and the tracer for the `tracing` layer. Spans are
/// sent in batches by a thread of the SDK's, over an HTTP client that runs
/// on `runtime`.
pub fn start(
    endpoint: &str,
    runtime: tokio::runtime::Handle,
) -> Result<(Exporter, opentelemetry_sdk::trace::SdkTracer), TracesError> {
    let url: hyper::Uri = endpoint.parse().map_err(|e| TracesError(endpoint.into(), format!("not a URL: {e}")))?;
    if url.scheme_str() != Some("http") && url.scheme_str() != Some("https") {
        return Err(TracesError(endpoint.into(), "give an http:// URL of an OTLP/HTTP receiver".into()));
    }
    if url.scheme_str() == Some("https") {
        return Err(TracesError(endpoint.into(), "only http:// is supported for now (run a local collector)".into()));
    }
    let full = match url.path() {
        "" | "/" => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
        _ => endpoint.to_owned(),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Client::new(runtime))
        .with_endpoint(full)
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| TracesError(endpoint.into(), e.to_string()))?;
    let batches = BatchConfigBuilder::default().with_scheduled_delay(Duration::from_millis(500)).build();
    let processor = BatchSpanProcessor::builder(exporter).with_batch_config(batches).build();
    let resource = opentelemetry_sdk::Resource::builder().with_service_name("warden").build();
    let provider = SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource).build();
    let tracer = provider.tracer("warden");
    ON.store(true, Ordering::Relaxed);
    Ok((Exporter { provider }, tracer))
}

/// The HTTP client the exporter sends with: hyper, on Warden's runtime (the
/// SDK's export thread waits for it).
#[derive(Debug, Clone)]
struct Client {
    runtime: tokio::runtime::Handle,
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Client {
    fn new(runtime: tokio::runtime::Handle) -> Client {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
        Client { runtime, client }
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Client {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let send = async move {
            let (parts, body) = request.into_parts();
            let response = client.request(http::Request::from_parts(parts, Full::new(body))).await?;
            let (parts, body) = response.into_parts();
            // A collector's answer is short; a huge one is not read.
            let body = http_body_util::Limited::new(body, 1 << 20).collect().await?.to_bytes();
            Ok::<_, opentelemetry_http::HttpError>(http::Response::from_parts(parts, body))
        };
        // Made on the runtime: its timer is there, not on the SDK's thread.
        let sent = async move { tokio::time::timeout(Duration::from_secs(10), send).await };
        match self.runtime.spawn(sent).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err("the collector did not answer within 10 s".into()),
            Err(e) => Err(Box::new(e)),
        }
    }
}

/// A W3C `traceparent` as a parent context (none when it is not one).
pub fn parent(traceparent: &str) -> Option<opentelemetry::Context> {
    struct One<'a>(&'a str);
    impl Extractor for One<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            (key == "traceparent").then_some(self.0)
        }
        fn keys(&self) -> Vec<&str> {
            vec!["traceparent"]
        }
    }
    use opentelemetry::trace::TraceContextExt as _;
    let cx = TraceContextPropagator::new().extract(&One(traceparent));
    cx.span().span_context().is_valid().then_some(cx)
}

/// The `traceparent` that makes `span` the parent of what follows.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    struct Take(Option<String>);
    impl Injector for Take {
        fn set(&mut self, key: &str, value: String) {
            if key == "traceparent" {
                self.0 = Some(value);
            }
        }
    }
    let mut take = Take(None);
    TraceContextPropagator::new().inject_context(&span.context(), &mut take);
    take.0
}

/// Makes `span` a child of `traceparent`'s span, when it is a valid one.
pub fn adopt(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(cx) = traceparent.and_then(parent) {
        let _ = span.set_parent(cx);
    }
}

/// Whether `value` has the form of a W3C `traceparent` (version 00).
pub fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    matches!(parts.as_slice(), [v, t, s, f] if hex(v, 2) && hex(t, 32) && hex(s, 16) && hex(f, 2))
        && parts.get(1).is_some_and(|t| t.bytes().any(|b| b != b'0'))
        && parts.get(2).is_some_and(|s| s.bytes().any(|b| b != b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_checked() {
        assert!(is_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert!(!is_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
        assert!(!is_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"));
        assert!(!is_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
        assert!(!is_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nx: y"));
        assert!(parent("garbage").is_none());
        assert!(parent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some());
    }
}
