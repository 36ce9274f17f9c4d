//! What Warden counts, in Prometheus' form, named after the OpenTelemetry
//! semantic conventions for MCP where they name it (`mcp.method.name` is the
//! label `mcp_method_name`: Prometheus rejects dots).
//!
//! Counting is off until an admin listener is started ([`enable`]): a proxy
//! nobody scrapes pays nothing. Every label value comes from a bounded set:
//! methods from the protocol's own list, tools only as an upstream listed them
//! ([`learn_tools`]), upstreams and plugins from the config and the folder;
//! anything else is `other`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label value of anything outside a label's known set.
pub const OTHER: &str = "other";

/// Most tool names kept as label values, over all upstreams, and for one.
const MAX_TOOLS: usize = 4096;
const MAX_TOOLS_PER_UPSTREAM: usize = 1024;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Starts counting (an admin listener serves the numbers).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether anything is counted.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A request's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The upstream (`gateway` in front of a gateway's many).
    pub upstream: Arc<str>,
    /// `mcp.method.name`.
    pub mcp_method_name: &'static str,
    /// `gen_ai.tool.name` (empty when not a tool call).
    pub gen_ai_tool_name: Arc<str>,
    /// `success`, `tool-error`, `error`, `denied`, `cancelled`, `streamed`.
    pub outcome: &'static str,
    /// `error.type`: the JSON-RPC error code, or empty.
    pub error_type: Code,
}

/// `error.type`: a JSON-RPC error code JSON-RPC, MCP or Warden defines, any
/// other as `other`, or empty (no allocation per request, a bounded set).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Code {
    /// No error.
    None,
    /// A code from the known set.
    Known(i64),
    /// A code from elsewhere (an upstream's own).
    Other,
}

impl Code {
    /// `code` as a label value.
    pub fn of(code: Option<i64>) -> Code {
        // JSON-RPC's, MCP's (resource not found, URL elicitation required, …), the SDK's denial, Warden's.
        const KNOWN: &[i64] = &[-32700, -32600, -32601, -32602, -32603, -32000, -32001, -32002, -32042];
        match code {
            None => Code::None,
            Some(c) if KNOWN.contains(&c) || (-31056..=-31050).contains(&c) => Code::Known(c),
            Some(_) => Code::Other,
        }
    }
}

impl prometheus_client::encoding::EncodeLabelValue for Code {
    fn encode(&self, encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        match self {
            Code::Known(code) => write!(encoder, "{code}"),
            Code::Other => encoder.write_str(OTHER),
            Code::None => Ok(()),
        }
    }
}

/// The end-to-end latency's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// `mcp.method.name`.
    pub mcp_method_name: &'static str,
    /// `network.transport` (`pipe` for stdio, `tcp` for HTTP).
    pub network_transport: &'static str,
    /// `mcp.protocol.version` (one the protocol has, or `other`).
    pub mcp_protocol_version: &'static str,
    /// `error.type`.
    pub error_type: Code,
}

/// An upstream call's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabels {
    /// The upstream.
    pub upstream: Arc<str>,
    /// `mcp.method.name`.
    pub mcp_method_name: &'static str,
    /// `error.type`.
    pub error_type: Code,
}

/// A plugin hook's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    /// The plugin's name.
    pub plugin: Arc<str>,
    /// `request` or `response`.
    pub hook: &'static str,
}

/// A plugin verdict's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    /// The plugin's name.
    pub plugin: Arc<str>,
    /// `request` or `response`.
    pub hook: &'static str,
    /// `forward`, `modify`, `reject`, `respond`, `require-approval`.
    pub verdict: &'static str,
}

/// A plugin failure's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The plugin's name.
    pub plugin: Arc<str>,
    /// `trap`, `deadline`, `memory`, `instantiate`, `bad-verdict`.
    pub kind: &'static str,
}

/// A session's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionLabels {
    /// `stdio`, `streamable-http`, `http-sse`.
    pub transport: &'static str,
    /// `handshake` (2024-11-05 … 2025-11-25) or `2026-07-28`.
    pub era: &'static str,
}

/// An upstream's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// The upstream.
    pub upstream: Arc<str>,
}

/// A reload's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `plugins` or `config`.
    pub what: &'static str,
    /// `ok` or `refused`.
    pub result: &'static str,
}

/// Every metric.
pub struct Metrics {
    registry: Registry,
    /// `warden_requests_total`.
    pub requests: Family<RequestLabels, Counter>,
    /// `mcp_server_operation_duration_seconds`: end to end, as the client sees it.
    pub server_duration: Family<ServerLabels, Histogram>,
    /// `mcp_client_operation_duration_seconds`: Warden's calls to each upstream.
    pub client_duration: Family<ClientLabels, Histogram>,
    /// `warden_plugin_hook_duration_seconds`.
    pub hook_duration: Family<HookLabels, Histogram>,
    /// `warden_plugin_verdicts_total`.
    pub verdicts: Family<VerdictLabels, Counter>,
    /// `warden_plugin_failures_total`.
    pub plugin_failures: Family<FailureLabels, Counter>,
    /// `warden_sessions` (open now).
    pub sessions: Family<SessionLabels, Gauge>,
    /// `warden_sessions_started_total`.
    pub sessions_started: Family<SessionLabels, Counter>,
    /// `warden_upstream_up`.
    pub upstream_up: Family<UpstreamLabels, Gauge>,
    /// `warden_upstream_restarts_total`.
    pub upstream_restarts: Family<UpstreamLabels, Counter>,
    /// `warden_reloads_total`.
    pub reloads: Family<ReloadLabels, Counter>,
    /// `warden_audit_records_total`.
    pub audit_records: Counter,
    /// `warden_audit_write_failures_total`.
    pub audit_failures: Counter,
    /// Tool names each upstream listed, as label values.
    tools: Mutex<HashMap<Arc<str>, HashSet<Arc<str>>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
}

/// Latency buckets, in seconds: 50 µs to 60 s (a policy hook is tens of
/// microseconds; a tool call may take a minute).
fn latency() -> Histogram {
    Histogram::new([
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        30.0, 60.0,
    ])
}

fn hook_latency() -> Histogram {
    Histogram::new([0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0])
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::default();
        registry.register(
            "warden_requests",
            "Requests answered, by upstream, method, tool and outcome",
            requests.clone(),
        );
        let server_duration = Family::new_with_constructor(latency as fn() -> Histogram);
        registry.register(
            "mcp_server_operation_duration_seconds",
            "MCP request duration as the client sees it, from its arrival to its answer",
            server_duration.clone(),
        );
        let client_duration = Family::new_with_constructor(latency as fn() -> Histogram);
        registry.register(
            "mcp_client_operation_duration_seconds",
            "MCP request duration at each upstream, from Warden's sending it to the answer",
            client_duration.clone(),
        );
        let hook_duration = Family::new_with_constructor(hook_latency as fn() -> Histogram);
        registry.register("warden_plugin_hook_duration_seconds", "Time in one plugin hook call", hook_duration.clone());
        let verdicts = Family::default();
        registry.register("warden_plugin_verdicts", "Plugin verdicts, by plugin, hook and verdict", verdicts.clone());
        let plugin_failures = Family::default();
        registry.register(
            "warden_plugin_failures",
            "Plugin hook calls that produced no verdict, by kind",
            plugin_failures.clone(),
        );
        let sessions = Family::default();
        registry.register("warden_sessions", "Sessions open, by transport and era", sessions.clone());
        let sessions_started = Family::default();
        registry.register("warden_sessions_started", "Sessions opened, by transport and era", sessions_started.clone());
        let upstream_up = Family::default();
        registry.register(
            "warden_upstream_up",
            "1 while the upstream answered its last probe or session, 0 after it failed",
            upstream_up.clone(),
        );
        let upstream_restarts = Family::default();
        registry.register(
            "warden_upstream_restarts",
            "Upstreams started again after failing",
            upstream_restarts.clone(),
        );
        let reloads = Family::default();
        registry.register("warden_reloads", "Reloads of the plugins folder and the config, by result", reloads.clone());
        let audit_records = Counter::default();
        registry.register("warden_audit_records", "Audit records written to the trail", audit_records.clone());
        let audit_failures = Counter::default();
        registry.register("warden_audit_write_failures", "Audit writes that failed", audit_failures.clone());
        Metrics {
            registry,
            requests,
            server_duration,
            client_duration,
            hook_duration,
            verdicts,
            plugin_failures,
            sessions,
            sessions_started,
            upstream_up,
            upstream_restarts,
            reloads,
            audit_records,
            audit_failures,
            tools: Mutex::default(),
        }
    }

    /// The exposition, in Prometheus' text format (0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics could not be rendered");
        }
        out
    }

    /// `name` as a label value for `upstream`'s tool: itself if the upstream listed it.
    pub fn tool_label(&self, upstream: &Arc<str>, name: &str) -> Arc<str> {
        let tools = self.tools.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match tools.get(upstream).and_then(|names| names.get(name)) {
            Some(known) => known.clone(),
            None => LABEL_OTHER.clone(),
        }
    }
}

/// The metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// `other` and the empty value, made once.
static LABEL_OTHER: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(OTHER));
static LABEL_NONE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));

/// The empty label value (a request that names no tool).
pub fn no_label() -> Arc<str> {
    LABEL_NONE.clone()
}

/// A protocol version as a label value: one the protocol has, or `other`.
pub fn version_label(version: Option<&str>) -> &'static str {
    let Some(version) = version else { return "" };
    let known = crate::era::LEGACY_VERSIONS.iter().chain(crate::era::MODERN_VERSIONS);
    known.into_iter().find(|v| **v == version).copied().unwrap_or(OTHER)
}

/// Remembers the tool names `upstream` listed (a `tools/list` result), so
/// they may be label values; at most [`MAX_TOOLS`] in all.
pub fn learn_tools(upstream: &Arc<str>, result: &serde_json::Value) {
    let Some(listed) = result.get("tools").and_then(|t| t.as_array()) else { return };
    let mut tools = METRICS.tools.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut total: usize = tools.values().map(HashSet::len).sum();
    let names = tools.entry(upstream.clone()).or_default();
    for name in listed.iter().filter_map(|t| t.get("name")?.as_str()) {
        if total >= MAX_TOOLS || names.len() >= MAX_TOOLS_PER_UPSTREAM {
            break;
        }
        // Only what a tool name may be (SEP-986: A-Z a-z 0-9 _ . - /, at most
        // 128): no control, zero-width or bidi characters reach a label.
        let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/'));
        if !name.is_empty() && name.len() <= 128 && plain && !names.contains(name) {
            names.insert(Arc::from(name));
            total += 1;
        }
    }
}

/// `method` as a label value: one of the protocol's methods, or `other`.
pub fn method_label(method: &str) -> &'static str {
    const METHODS: &[&str] = &[
        "initialize",
        "ping",
        "tools/list",
        "tools/call",
        "prompts/list",
        "prompts/get",
        "resources/list",
        "resources/read",
        "resources/templates/list",
        "resources/subscribe",
        "resources/unsubscribe",
        "completion/complete",
        "logging/setLevel",
        "sampling/createMessage",
        "elicitation/create",
        "roots/list",
        "tasks/get",
        "tasks/result",
        "tasks/list",
        "tasks/cancel",
        "server/discover",
        "subscriptions/listen",
    ];
    METHODS.iter().find(|m| **m == method).copied().unwrap_or(OTHER)
}

/// Seconds, for a histogram.
pub fn seconds(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64()
}

/// Counts a session open while it lives.
#[derive(Debug)]
pub struct SessionGauge(Option<SessionLabels>);

impl SessionGauge {
    /// A session of this transport and era opened.
    pub fn open(transport: &'static str, era: &'static str) -> SessionGauge {
        if !enabled() {
            return SessionGauge(None);
        }
        let labels = SessionLabels { transport, era };
        METRICS.sessions.get_or_create(&labels).inc();
        METRICS.sessions_started.get_or_create(&labels).inc();
        SessionGauge(Some(labels))
    }
}

impl Drop for SessionGauge {
    fn drop(&mut self) {
        if let Some(labels) = &self.0 {
            METRICS.sessions.get_or_create(labels).dec();
        }
    }
}

/// Counts a reload of `what` (`plugins` or `config`).
pub fn reloaded(what: &'static str, ok: bool) {
    if enabled() {
        let result = if ok { "ok" } else { "refused" };
        METRICS.reloads.get_or_create(&ReloadLabels { what, result }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_other() {
        assert_eq!(method_label("tools/call"), "tools/call");
        assert_eq!(method_label("x/evil\"label"), OTHER);
        let upstream: Arc<str> = Arc::from("fs-test");
        learn_tools(&upstream, &serde_json::json!({"tools": [{"name": "read"}, {"name": 7}]}));
        assert_eq!(&*METRICS.tool_label(&upstream, "read"), "read");
        assert_eq!(&*METRICS.tool_label(&upstream, "write"), OTHER);
        assert_eq!(&*METRICS.tool_label(&Arc::from("elsewhere"), "read"), OTHER);
    }

    #[test]
    fn error_codes_are_a_bounded_set() {
        assert_eq!(Code::of(Some(-32601)), Code::Known(-32601));
        assert_eq!(Code::of(Some(-31056)), Code::Known(-31056));
        assert_eq!(Code::of(Some(-1_000_007)), Code::Other);
        assert_eq!(Code::of(Some(42)), Code::Other);
        assert_eq!(Code::of(None), Code::None);
        let upstream: Arc<str> = Arc::from("ctl-test");
        learn_tools(&upstream, &serde_json::json!({"tools": [{"name": "a\rb"}, {"name": "a\u{0}"}]}));
        assert_eq!(&*METRICS.tool_label(&upstream, "a\rb"), OTHER);
    }

    #[test]
    fn renders_prometheus_text() {
        let labels = ReloadLabels { what: "plugins", result: "ok" };
        METRICS.reloads.get_or_create(&labels).inc();
        let text = METRICS.render();
        assert!(text.contains("warden_reloads_total{what=\"plugins\",result=\"ok\"}"), "{text}");
    }
}
