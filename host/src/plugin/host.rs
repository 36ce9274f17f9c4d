//! The host side of a plugin instance: its `Store` data and the imports it may call.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWrite;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::warden::interceptor::{audit, log, state};
use super::state::KvStore;
use crate::audit::{At, AuditSink, Source};
use crate::config::Manifest;

/// One epoch tick: a running hook yields to the other tasks once a tick (so
/// one session's spinning plugin delays another's call by about a tick), and
/// load-time deadlines are counted in ticks.
pub const TICK: Duration = Duration::from_millis(1);

/// A deadline in epoch ticks, never zero.
pub fn ticks(deadline: Duration) -> u64 {
    (deadline.as_micros() / TICK.as_micros()).max(1) as u64
}

/// How long a plugin's `init` may take: it runs once per instance, not per
/// message, and may build tables or compile rules (20 times a hook's
/// deadline, at least 2 s), so a busy machine does not fail a good plugin.
pub fn init_deadline(deadline: Duration) -> Duration {
    deadline.saturating_mul(20).max(Duration::from_secs(2))
}

/// Everything a plugin instance's `Store` holds.
pub struct HostState {
    plugin: Arc<str>,
    session: Option<Arc<str>>,
    upstream: Option<Arc<str>>,
    caller: Option<Arc<str>>,
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    kv: Arc<KvStore>,
    audit: AuditSink,
    /// Epoch ticks the call running now may still run for (see [`HostState::arm`]).
    ticks_left: u64,
}

impl HostState {
    /// A fresh state for one instance of `plugin`, with only the granted capabilities.
    pub fn new(
        plugin: Arc<str>,
        manifest: &Manifest,
        session: Option<Arc<str>>,
        upstream: Option<Arc<str>>,
        caller: Option<Arc<str>>,
        kv: Arc<KvStore>,
        audit: AuditSink,
    ) -> HostState {
        let mut wasi = WasiCtx::builder();
        // No args, no environment, no files, no sockets: only what is granted.
        // stdin stays empty; stdout and stderr become log lines.
        wasi.stdout(LogStream { plugin: plugin.clone(), stream: "stdout" });
        wasi.stderr(LogStream { plugin: plugin.clone(), stream: "stderr" });
        // Sockets and name lookups are denied by wasmtime-wasi's defaults too; say it here.
        wasi.allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
        wasi.envs(&manifest.env);
        for dir in &manifest.read_dirs {
            let path = dir.to_string_lossy();
            if let Err(e) = wasi.preopened_dir(dir, &*path, wasmtime_wasi::FsPerms::ReadOnly) {
                tracing::warn!(plugin = %plugin, "grant.read-dirs: {}: {e}", dir.display());
            }
        }
        HostState {
            plugin,
            session,
            upstream,
            caller,
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: Limiter::new(manifest.memory_bytes),
            kv,
            audit,
            ticks_left: 0,
        }
    }

    /// Sets the next call's budget: `deadline` of running time (counted in
    /// the epoch ticks it runs through, not wall clock: a hook that yields to
    /// other sessions is not charged for their time), in at most `memory`
    /// bytes of linear memory.
    pub fn arm(&mut self, deadline: Duration, memory: usize) {
        self.ticks_left = ticks(deadline);
        self.limiter.set_cap(memory);
    }

    /// Charges the call one tick of running; false once it has none left.
    pub fn charge_tick(&mut self) -> bool {
        match self.ticks_left.checked_sub(1) {
            Some(left) => {
                self.ticks_left = left;
                true
            }
            None => false,
        }
    }

    /// The memory limiter, for `Store::limiter`.
    pub fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limiter
    }

    /// Whether the last failure was this instance hitting its memory cap.
    pub fn hit_memory_cap(&self) -> bool {
        self.limiter.hit
    }

    /// The most linear memory the instance has grown to, in bytes.
    pub fn memory_peak(&self) -> usize {
        self.limiter.peak
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

// === impl imports ===

impl log::Host for HostState {
    fn write(&mut self, level: log::Level, message: String) {
        let plugin = &*self.plugin;
        let session = self.session.as_deref().unwrap_or("-");
        match level {
            log::Level::Trace => tracing::trace!(plugin, session, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, session, "{message}"),
            log::Level::Info => tracing::info!(plugin, session, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, session, "{message}"),
            log::Level::Error => tracing::error!(plugin, session, "{message}"),
        }
    }
}

impl audit::Host for HostState {
    fn emit(&mut self, event: String) {
        let at =
            At { session: self.session.as_deref(), upstream: self.upstream.as_deref(), caller: self.caller.as_deref() };
        self.audit.record_text(Source::Plugin(&self.plugin), at, &event);
    }
}

impl state::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.kv.get(&key)
    }

    fn set(&mut self, key: String, value: String, ttl_ms: Option<u64>) {
        if !self.kv.set(key, value, ttl_ms.map(Duration::from_millis)) {
            tracing::warn!(plugin = %self.plugin, "state: store full or entry too large; value not kept");
        }
    }

    fn remove(&mut self, key: String) {
        self.kv.remove(&key);
    }

    fn increment(&mut self, key: String, delta: i64, ttl_ms: Option<u64>) -> i64 {
        self.kv.increment(key, delta, ttl_ms.map(Duration::from_millis)).unwrap_or_else(|| {
            tracing::warn!(plugin = %self.plugin, "state: store full; counter not kept");
            delta
        })
    }
}

impl super::bindings::warden::interceptor::types::Host for HostState {}

// === memory cap ===

/// `StoreLimits` plus a note of whether the cap was hit, so that a trap caused
/// by the cap is reported as such rather than guessed from a message.
struct Limiter {
    inner: StoreLimits,
    cap: usize,
    hit: bool,
    /// The largest linear memory the instance has grown to.
    peak: usize,
}

impl Limiter {
    fn new(cap: usize) -> Limiter {
        let inner = StoreLimitsBuilder::new().memory_size(cap).trap_on_grow_failure(true).build();
        Limiter { inner, cap, hit: false, peak: 0 }
    }

    fn set_cap(&mut self, cap: usize) {
        if cap != self.cap {
            *self = Limiter { peak: self.peak, ..Limiter::new(cap) };
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit = true;
        } else {
            self.peak = self.peak.max(desired);
        }
        self.inner.memory_growing(current, desired, maximum)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }
}

// === plugin stdout/stderr ===

/// A plugin's stdout or stderr, turned into log lines (never onto the protocol stream).
#[derive(Clone)]
struct LogStream {
    plugin: Arc<str>,
    stream: &'static str,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineLogger { out: self.clone(), line: Vec::new() })
    }
}

/// Longest line kept before it is logged in pieces.
const MAX_LOG_LINE: usize = 4096;

struct LineLogger {
    out: LogStream,
    line: Vec<u8>,
}

impl LineLogger {
    fn emit(&mut self) {
        if !self.line.is_empty() {
            let text = String::from_utf8_lossy(&self.line);
            tracing::info!(plugin = %self.out.plugin, stream = self.out.stream, "{}", text.trim_end());
            self.line.clear();
        }
    }
}

impl AsyncWrite for LineLogger {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        for &b in buf {
            if b == b'\n' {
                self.emit();
            } else {
                self.line.push(b);
                if self.line.len() >= MAX_LOG_LINE {
                    self.emit();
                }
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.emit();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        self.emit();
    }
}
