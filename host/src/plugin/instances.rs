//! One owner's live plugin instances, and the walk of a message through them.
//!
//! Each owner (a session) gets its own `Store` per plugin, made on first use
//! from the plugin's `InterceptorPre`. No store is shared and none sits behind
//! a lock. An instance that fails is dropped and made afresh for the next message.

use crate::telemetry::metrics::{self, FailureLabels, HookLabels, VerdictLabels, METRICS};
use crate::telemetry::traces;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

use serde_json::value::RawValue;
use wasmtime::Store;

use super::bindings::warden::interceptor::types::{self as wit, Verdict};
use super::chain::{Chain, Plugin};
use super::host::HostState;
use super::runtime::Runtime;
use super::versions::Bindings;
use crate::config::FailureMode;
use crate::jsonrpc::{self, Kind, Message};

pub use wit::{Caller, Direction, Transport};

/// What the session knows, the same for every message.
#[derive(Debug, Clone)]
pub struct SessionFacts {
    /// The session id, when the transport has one.
    pub id: Option<Arc<str>>,
    /// Upstream name.
    pub upstream: Arc<str>,
    /// Authenticated caller, if any.
    pub caller: Option<Caller>,
    /// Negotiated protocol version, once known.
    pub protocol_version: Option<String>,
    /// How the client reaches Warden.
    pub transport: Transport,
}

/// What the relay knows about one message beyond its bytes.
#[derive(Debug, Clone, Copy)]
pub struct MessageContext<'a> {
    /// Which way it travels.
    pub direction: Direction,
    /// For responses: the method of the request answered ("" if unknown).
    pub method: &'a str,
    /// For `tools/call` requests and their responses: the tool.
    pub tool: Option<&'a str>,
}

/// How a message left the chain.
#[derive(Debug)]
pub enum ChainOutcome {
    /// Pass it on: `None` unchanged (forward the original bytes), or this replacement.
    Forward(Option<Message>),
    /// A plugin rejected it.
    Reject {
        /// Who.
        plugin: Arc<str>,
        /// The error to answer with.
        error: wit::RpcError,
    },
    /// A plugin answered it itself with this result.
    Respond {
        /// Who.
        plugin: Arc<str>,
        /// The `result` value.
        result: Box<RawValue>,
    },
    /// A plugin asked for human approval.
    Approval {
        /// Who.
        plugin: Arc<str>,
        /// The prompt.
        prompt: String,
    },
    /// A plugin failed and its failure mode is `closed`.
    Failed(Fault),
}

/// A plugin that did not produce a verdict: a host-side problem, kept apart from
/// rejections (the plugin's decision) and upstream failures (transport problems).
#[derive(Debug, Clone)]
pub struct Fault {
    /// Which plugin.
    pub plugin: Arc<str>,
    /// What went wrong.
    pub kind: FaultKind,
}

/// The ways a plugin can fail.
#[derive(Debug, Clone)]
pub enum FaultKind {
    /// It ran past its deadline.
    Timeout(Duration),
    /// It tried to grow its memory past the cap.
    MemoryCap(usize),
    /// It trapped.
    Trap(String),
    /// A fresh instance could not be made or initialised.
    Instantiate(String),
    /// Its verdict was unusable (invalid JSON, a changed id or kind).
    BadVerdict(String),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin \"{}\" failed: ", self.plugin)?;
        match &self.kind {
            FaultKind::Timeout(d) => write!(f, "ran past its {} ms deadline", d.as_millis()),
            FaultKind::MemoryCap(cap) => write!(f, "exceeded its {} MiB memory cap", cap >> 20),
            FaultKind::Trap(m) => write!(f, "trapped: {m}"),
            FaultKind::Instantiate(m) => write!(f, "could not start: {m}"),
            FaultKind::BadVerdict(m) => write!(f, "returned an unusable verdict: {m}"),
        }
    }
}

impl FaultKind {
    /// A short tag for logs and audit records.
    pub fn tag(&self) -> &'static str {
        match self {
            FaultKind::Timeout(_) => "timeout",
            FaultKind::MemoryCap(_) => "memory-cap",
            FaultKind::Trap(_) => "trap",
            FaultKind::Instantiate(_) => "instantiate",
            FaultKind::BadVerdict(_) => "bad-verdict",
        }
    }
}

struct Live {
    store: Store<HostState>,
    bindings: Bindings,
}

/// One owner's instances of a chain.
pub struct Instances {
    runtime: Arc<Runtime>,
    chain: Arc<Chain>,
    slots: Vec<Option<Live>>,
    session: SessionFacts,
    /// What each plugin the last walk called said (its index and the verdict's
    /// name), for the host's audit record of the request.
    seen: Vec<(usize, &'static str)>,
}

/// A verdict's name in audit records.
/// The span of one hook call, under the request's (none while tracing is
/// off, or outside a request's span).
fn hook_span(plugin: &Plugin, hook: Hook) -> Option<tracing::Span> {
    if !traces::on() || tracing::Span::current().is_none() {
        return None;
    }
    let hook = match hook {
        Hook::Request => "request",
        Hook::Response => "response",
    };
    Some(tracing::info_span!(
        target: traces::TARGET,
        "warden.plugin",
        otel.name = %format!("{} {hook}", plugin.name),
        otel.status_code = tracing::field::Empty,
        warden.plugin = %plugin.name,
        warden.plugin.component = %format!("sha256:{}", plugin.digest),
        warden.hook = hook,
        warden.verdict = tracing::field::Empty,
    ))
}

/// Counts one hook call in the metrics: its time, and its verdict or failure.
fn count_hook(plugin: &Arc<str>, hook: Hook, started: std::time::Instant, called: &Result<Verdict, FaultKind>) {
    let hook = match hook {
        Hook::Request => "request",
        Hook::Response => "response",
    };
    let labels = HookLabels { plugin: plugin.clone(), hook };
    METRICS.hook_duration.get_or_create(&labels).observe(metrics::seconds(started.elapsed()));
    match called {
        Ok(verdict) => {
            let labels = VerdictLabels { plugin: plugin.clone(), hook, verdict: verdict_name(verdict) };
            METRICS.verdicts.get_or_create(&labels).inc();
        }
        Err(kind) => {
            let kind = match kind {
                FaultKind::Timeout(_) => "deadline",
                FaultKind::MemoryCap(_) => "memory",
                other => other.tag(),
            };
            METRICS.plugin_failures.get_or_create(&FailureLabels { plugin: plugin.clone(), kind }).inc();
        }
    }
}

fn verdict_name(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Forward => "forward",
        Verdict::Modify(_) => "modify",
        Verdict::Reject(_) => "reject",
        Verdict::Respond(_) => "respond",
        Verdict::RequireApproval(_) => "require-approval",
    }
}

#[derive(Clone, Copy)]
enum Hook {
    Request,
    Response,
}

impl Instances {
    /// Instances of `chain` for one owner; each is made on first use.
    pub fn new(runtime: Arc<Runtime>, chain: Arc<Chain>, session: SessionFacts) -> Instances {
        let slots = chain.plugins().iter().map(|_| None).collect();
        Instances { runtime, chain, slots, session, seen: Vec::new() }
    }

    /// Instances of a newer chain for the same owner (each made on first use).
    pub fn successor(&self, chain: Arc<Chain>) -> Instances {
        Instances::new(self.runtime.clone(), chain, self.session.clone())
    }

    /// The chain these instances run.
    pub fn chain(&self) -> &Arc<Chain> {
        &self.chain
    }

    /// The session facts, e.g. to record the negotiated protocol version.
    pub fn session_mut(&mut self) -> &mut SessionFacts {
        &mut self.session
    }

    /// The session facts.
    pub fn session(&self) -> &SessionFacts {
        &self.session
    }

    /// Runs a request or notification front to back through the interested plugins.
    /// Returns how it left the chain and the position of the plugin that stopped it
    /// (the chain's length when none did).
    pub async fn on_request(&mut self, cx: MessageContext<'_>, message: &Message) -> (ChainOutcome, usize) {
        self.walk(Hook::Request, cx, message, 0..self.slots.len(), false).await
    }

    /// Runs a response or error back to front through the interested
    /// plugins; also says where it stopped, for [`Instances::on_response_before`].
    pub async fn on_response(&mut self, cx: MessageContext<'_>, message: &Message) -> (ChainOutcome, usize) {
        self.walk(Hook::Response, cx, message, 0..self.slots.len(), true).await
    }

    /// Runs an answer the chain made itself (a plugin at position `stop` rejected
    /// or answered a request, or replaced an answer) back through the plugins
    /// before `stop`, which saw the request: an audit plugin in front sees
    /// every decision.
    pub async fn on_response_before(&mut self, stop: usize, cx: MessageContext<'_>, message: &Message) -> ChainOutcome {
        let wanted = self.chain.plugins()[..stop.min(self.slots.len())]
            .iter()
            .any(|p| p.responses.matches(cx.method, cx.direction));
        if !wanted {
            return ChainOutcome::Forward(None);
        }
        self.walk(Hook::Response, cx, message, 0..stop.min(self.slots.len()), true).await.0
    }

    async fn walk(
        &mut self,
        hook: Hook,
        cx: MessageContext<'_>,
        original: &Message,
        range: std::ops::Range<usize>,
        backwards: bool,
    ) -> (ChainOutcome, usize) {
        let end = self.slots.len();
        // Front to back or back to front, without boxing an iterator per message.
        let (start, len) = (range.start, range.len());
        let order = (0..len).map(move |k| if backwards { start + len - 1 - k } else { start + k });
        let mut current: Option<Message> = None;
        let mut shared_context: Option<wit::Context> = None;
        self.seen.clear();
        for index in order {
            let plugin = self.chain.plugins()[index].clone();
            let interests = match hook {
                Hook::Request => &plugin.requests,
                Hook::Response => &plugin.responses,
            };
            if !interests.matches(cx.method, cx.direction) {
                continue;
            }
            let message = current.as_ref().unwrap_or(original);
            // Built from the message as it is now: after a `modify`, the next
            // plugin's context (an error's message, say) is the modified one's.
            let context = shared_context.get_or_insert_with(|| self.context(cx, &message.head));
            let timed = metrics::enabled().then(std::time::Instant::now);
            let traced = hook_span(&plugin, hook);
            let call = self.call(index, &plugin, hook, context, message, interests.body);
            let called = match &traced {
                Some(span) => call.instrument(span.clone()).await,
                None => call.await,
            };
            if let Some(started) = timed {
                count_hook(&plugin.name, hook, started, &called);
            }
            if let Some(span) = traced {
                let said = match &called {
                    Ok(verdict) => verdict_name(verdict),
                    Err(kind) => kind.tag(),
                };
                span.record("warden.verdict", said);
                if called.is_err() {
                    span.record("otel.status_code", "ERROR");
                }
            }
            let verdict = match called {
                Ok(verdict) => {
                    self.seen.push((index, verdict_name(&verdict)));
                    verdict
                }
                Err(kind) => {
                    self.seen.push((index, kind.tag()));
                    match self.fail(&plugin, kind) {
                        Some(outcome) => return (outcome, index),
                        None => continue,
                    }
                }
            };
            match verdict {
                Verdict::Forward => {}
                // A hook that was handed no text has nothing to modify.
                Verdict::Modify(_) if !interests.body => {
                    let why = "modify from a context-only hook (it was not handed the message)".to_owned();
                    match self.fail(&plugin, FaultKind::BadVerdict(why)) {
                        Some(outcome) => return (outcome, index),
                        None => continue,
                    }
                }
                Verdict::Modify(text) => match replacement(original, text) {
                    Ok(next) => {
                        current = Some(next);
                        shared_context = None;
                    }
                    Err(why) => match self.fail(&plugin, FaultKind::BadVerdict(why)) {
                        Some(outcome) => return (outcome, index),
                        None => continue,
                    },
                },
                Verdict::Reject(error) => return (ChainOutcome::Reject { plugin: plugin.name.clone(), error }, index),
                Verdict::Respond(text) => match RawValue::from_string(text) {
                    Ok(result) => return (ChainOutcome::Respond { plugin: plugin.name.clone(), result }, index),
                    Err(e) => match self.fail(&plugin, FaultKind::BadVerdict(format!("respond: {e}"))) {
                        Some(outcome) => return (outcome, index),
                        None => continue,
                    },
                },
                Verdict::RequireApproval(prompt) => {
                    return (ChainOutcome::Approval { plugin: plugin.name.clone(), prompt }, index);
                }
            }
        }
        (ChainOutcome::Forward(current), end)
    }

    /// What each plugin the last walk called said: the plugin and the
    /// verdict's name (`forward`, `modify`, `reject`, `respond`,
    /// `require-approval`, or the fault: `timeout`, `trap` …).
    pub fn verdicts(&self) -> impl Iterator<Item = (&Plugin, &'static str)> + '_ {
        self.seen.iter().filter_map(|(index, verdict)| Some((self.chain.plugins().get(*index)?.as_ref(), *verdict)))
    }

    /// Applies the plugin's failure mode: `closed` stops the message, `open` lets it pass.
    fn fail(&self, plugin: &Plugin, kind: FaultKind) -> Option<ChainOutcome> {
        let fault = Fault { plugin: plugin.name.clone(), kind };
        match plugin.manifest.failure {
            FailureMode::Closed => {
                tracing::warn!(
                    session = self.session.id.as_deref().unwrap_or("-"),
                    "{fault}; message rejected (failure = closed)"
                );
                Some(ChainOutcome::Failed(fault))
            }
            FailureMode::Open => {
                tracing::warn!(
                    session = self.session.id.as_deref().unwrap_or("-"),
                    "{fault}; message passed (failure = open)"
                );
                None
            }
        }
    }

    async fn call(
        &mut self,
        index: usize,
        plugin: &Plugin,
        hook: Hook,
        context: &wit::Context,
        message: &Message,
        body: bool,
    ) -> Result<Verdict, FaultKind> {
        // A hook that reads only the context is handed no text (nor its copy).
        let text = match body {
            true => message.text().map_err(|e| FaultKind::BadVerdict(e.to_string()))?,
            false => "",
        };
        if self.slots[index].is_none() {
            self.slots[index] = Some(self.instantiate(plugin).await?);
        }
        let Some(live) = self.slots[index].as_mut() else {
            return Err(FaultKind::Instantiate("no instance".into()));
        };
        // A hook handed no text gets the base budget, however long the message.
        let (deadline, memory) = budget(&plugin.manifest, if body { message.raw.len() } else { 0 });
        live.store.data_mut().arm(deadline, memory);
        live.store.set_epoch_deadline(1);
        let response = matches!(hook, Hook::Response);
        let result = live.bindings.call_hook(&mut live.store, response, context, text).await;
        match result {
            Ok(verdict) => {
                // An instance whose memory grew past the high-water mark is replaced by a
                // fresh one on its next use: long-lived runtimes (JavaScript, Python) that
                // fragment or leak do not creep up to the cap and trap mid-message.
                let peak = live.store.data().memory_peak();
                if peak > plugin.manifest.memory_bytes / 4 * 3 {
                    tracing::info!(plugin = %plugin.name, peak, "instance recycled at its memory high-water mark");
                    self.slots[index] = None;
                }
                Ok(verdict)
            }
            Err(e) => {
                let kind = classify(&e, &live.store, plugin);
                // A failed instance may be in any state: never call it again.
                self.slots[index] = None;
                Err(kind)
            }
        }
    }

    async fn instantiate(&mut self, plugin: &Plugin) -> Result<Live, FaultKind> {
        let state = HostState::new(
            plugin.name.clone(),
            &plugin.manifest,
            self.session.id.clone(),
            Some(self.session.upstream.clone()),
            self.session.caller.as_ref().map(|c| Arc::from(c.subject.as_str())),
            plugin.kv.clone(),
            self.runtime.audit().clone(),
        );
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|s| s.limiter());
        // Every tick the running hook yields to the other sessions' tasks, so
        // that a plugin spinning in one session costs only its own message;
        // once it has run through its deadline's ticks it is interrupted.
        store.epoch_deadline_callback(|mut store| {
            if !store.data_mut().charge_tick() {
                Err(wasmtime::Trap::Interrupt.into())
            } else {
                // tokio's own yield (to the back of the queue), not a plain
                // self-wake, which the same worker may run again at once.
                Ok(wasmtime::UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
            }
        });
        let init = super::host::init_deadline(plugin.manifest.deadline);
        store.data_mut().arm(init, plugin.manifest.memory_bytes);
        store.set_epoch_deadline(1);
        let bindings = match plugin.pre.instantiate(&mut store).await {
            Ok(b) => b,
            Err(e) => return Err(classify(&e, &store, plugin)),
        };
        store.data_mut().arm(init, plugin.manifest.memory_bytes);
        store.set_epoch_deadline(1);
        match bindings.call_init(&mut store, &plugin.manifest.config_json).await {
            Ok(Ok(_)) => Ok(Live { store, bindings }),
            Ok(Err(message)) => Err(FaultKind::Instantiate(format!("init: {message}"))),
            Err(e) => Err(classify(&e, &store, plugin)),
        }
    }

    fn context(&self, cx: MessageContext<'_>, head: &jsonrpc::Head) -> wit::Context {
        wit::Context {
            direction: cx.direction,
            kind: match head.kind {
                Kind::Request => wit::MessageKind::Request,
                Kind::Notification => wit::MessageKind::Notification,
                Kind::Response => wit::MessageKind::Response,
                Kind::Error => wit::MessageKind::Error,
            },
            id: head.id.clone(),
            method: cx.method.to_owned(),
            tool: cx.tool.map(str::to_owned),
            session_id: self.session.id.as_deref().map(str::to_owned),
            upstream: self.session.upstream.to_string(),
            caller: self.session.caller.clone(),
            protocol_version: self.session.protocol_version.clone(),
            transport: self.session.transport,
            outcome: head.reply.as_ref().map(|reply| match reply {
                jsonrpc::Reply::Result { tool_error: false } => wit::Outcome::Success,
                jsonrpc::Reply::Result { tool_error: true } => wit::Outcome::ToolError,
                jsonrpc::Reply::Error { code, message } => {
                    wit::Outcome::Error(wit::ErrorFacts { code: *code, message: message.clone() })
                }
            }),
        }
    }
}

/// A hook's time and memory for a message of `len` bytes: the manifest's
/// limits for messages up to 1 MiB, and as much again per further MiB (a
/// 30 MiB result is scanned, not failed on a deadline meant for small ones),
/// within the pooling allocator's slot.
fn budget(manifest: &crate::config::Manifest, len: usize) -> (Duration, usize) {
    const MIB: usize = 1 << 20;
    let extra = len.saturating_sub(1) / MIB;
    let deadline = manifest.deadline.saturating_mul(1 + extra as u32);
    let memory = manifest.memory_bytes.saturating_add(len.saturating_mul(4)).min(super::runtime::MAX_PLUGIN_MEMORY);
    (deadline, memory)
}

fn classify(error: &wasmtime::Error, store: &Store<HostState>, plugin: &Plugin) -> FaultKind {
    if store.data().hit_memory_cap() {
        return FaultKind::MemoryCap(plugin.manifest.memory_bytes);
    }
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => FaultKind::Timeout(plugin.manifest.deadline),
        Some(trap) => FaultKind::Trap(trap.to_string()),
        None => FaultKind::Trap(format!("{error:#}")),
    }
}

/// Checks a `modify` verdict: valid JSON-RPC of the same kind with the same id.
fn replacement(original: &Message, text: String) -> Result<Message, String> {
    let message = Message::parse(text.into()).map_err(|e| e.to_string())?;
    let same_shape = message.head.kind.is_call() == original.head.kind.is_call()
        && (message.head.kind == Kind::Notification) == (original.head.kind == Kind::Notification);
    if !same_shape {
        return Err(format!("kind changed from {:?} to {:?}", original.head.kind, message.head.kind));
    }
    if message.head.id != original.head.id {
        return Err("id changed".into());
    }
    // What the plugins after it register for and judge by: a call renamed on
    // its way would pass the policy that judged the name it had.
    if message.head.method != original.head.method || message.head.tool != original.head.tool {
        return Err("method or tool name changed".into());
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &'static str) -> Message {
        Message::parse(bytes::Bytes::from_static(text.as_bytes())).expect("a message")
    }

    #[test]
    fn a_modify_keeps_what_later_plugins_judge_by() {
        let call =
            message(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{}}}"#);
        let renamed = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shell_exec","arguments":{}}}"#;
        assert!(replacement(&call, renamed.into()).unwrap_err().contains("tool"));
        let other = r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"search"}}"#;
        assert!(replacement(&call, other.into()).is_err());
        let arguments =
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":"x"}}}"#;
        assert!(replacement(&call, arguments.into()).is_ok(), "arguments may change");
    }
}
