//! The audit trail: JSON lines appended to the file given by `--audit`,
//! each tied to the one before ([`chain`]), signed at checkpoints when a key
//! is given ([`keys`]), rotated with the chain going on ([`trail`]), and
//! checked by `warden audit verify` ([`verify`]).
//!
//! Events come from plugins (through the `audit` import) and from the host
//! (every decision that is not "forward"). Records are buffered in memory as
//! they happen; a task writes them out at most [`FLUSH_DELAY`] after the first
//! unwritten one, so a busy proxy makes one `write` per interval rather than one
//! per message, and none on a message's way through. An idle proxy wakes only
//! to sign what is unsigned. The buffer is also written whenever it fills, and
//! on shutdown (after a last checkpoint).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::Notify;

use crate::telemetry::metrics::{self, METRICS};

pub mod chain;
pub mod keys;
pub mod trail;
pub mod verify;

use trail::Trail;
pub use trail::TrailOptions;

/// How long a record may wait in memory before it is written (the same idea as
/// Envoy's access-log flush interval, much shorter).
pub const FLUSH_DELAY: std::time::Duration = std::time::Duration::from_millis(10);

/// Where audit events go. Cheap to clone; a sink without a file drops events.
#[derive(Clone, Debug, Default)]
pub struct AuditSink {
    file: Option<Arc<Shared>>,
}

#[derive(Debug)]
struct Shared {
    trail: Mutex<Trail>,
    /// Wakes the flushing task; `None` outside a runtime (flushes happen inline).
    kick: Option<Arc<Notify>>,
    /// The last write failed (and none has succeeded since).
    failing: AtomicBool,
    /// See [`TrailOptions::sync_always`].
    sync_always: bool,
    /// See [`TrailOptions::required`].
    required: bool,
    /// See [`TrailOptions::include_arguments`].
    include_arguments: bool,
}

impl Shared {
    /// Notes how the last write went: a failure is said loudly once (and
    /// counted every time), the recovery too.
    fn wrote(&self, path: &std::path::Path, result: std::io::Result<()>) -> bool {
        match result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::warn!(file = %path.display(), "audit: the trail is written again");
                }
                true
            }
            Err(e) => {
                METRICS.audit_failures.inc();
                if !self.failing.swap(true, Ordering::Relaxed) {
                    let then = if self.required {
                        "calls are refused until it can be written ([audit] required = true)"
                    } else {
                        "records are being LOST; calls go on unrecorded (set [audit] required = true to refuse them)"
                    };
                    tracing::error!(file = %path.display(), "audit: the trail cannot be written: {e}; {then}");
                } else {
                    tracing::debug!(file = %path.display(), "audit: write failed again: {e}");
                }
                false
            }
        }
    }
}

/// Flushes what is buffered when the run is over.
#[derive(Debug)]
pub struct AuditWriter {
    sink: AuditSink,
}

/// Who produced an event.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// Warden itself.
    Host,
    /// The named plugin.
    Plugin(&'a str),
}

impl AuditSink {
    /// Opens (appends to, continuing its chain) the trail `options` name.
    pub fn open(options: TrailOptions) -> std::io::Result<(AuditSink, AuditWriter)> {
        let (sync_always, required, include_arguments) =
            (options.sync_always, options.required, options.include_arguments);
        let trail = Trail::open(options)?;
        let kick = tokio::runtime::Handle::try_current().ok().map(|_| Arc::new(Notify::new()));
        let shared = Arc::new(Shared {
            trail: Mutex::new(trail),
            kick: kick.clone(),
            failing: AtomicBool::new(false),
            sync_always,
            required,
            include_arguments,
        });
        if let Some(kick) = kick {
            let weak = Arc::downgrade(&shared);
            tokio::spawn(async move {
                let mut signing = None;
                loop {
                    // Idle unless records wait to be written, or to be signed.
                    match signing {
                        Some(after) => {
                            if tokio::time::timeout(after, kick.notified()).await.is_ok() {
                                tokio::time::sleep(FLUSH_DELAY).await;
                            }
                        }
                        None => {
                            kick.notified().await;
                            tokio::time::sleep(FLUSH_DELAY).await;
                        }
                    }
                    let Some(shared) = weak.upgrade() else { break };
                    let mut trail = lock(&shared.trail);
                    // A tick that wrote nothing says nothing of the file.
                    if let Err(e) = trail.tick() {
                        let path = trail.path().to_owned();
                        shared.wrote(&path, Err(e));
                    }
                    flush_locked(&shared, &mut trail);
                    signing = trail.unsigned().then(|| trail.checkpoint_after());
                }
            });
        }
        let sink = AuditSink { file: Some(shared) };
        Ok((sink.clone(), AuditWriter { sink }))
    }

    /// A sink that drops everything (no `--audit`).
    pub fn disabled() -> AuditSink {
        AuditSink { file: None }
    }

    /// Whether events are written anywhere.
    pub fn enabled(&self) -> bool {
        self.file.is_some()
    }

    /// Records one event with the time, its source, the session and the upstream.
    pub fn record(&self, source: Source<'_>, at: At<'_>, event: &Value) {
        if let Some(shared) = &self.file {
            write_record(shared, source, at, &event.to_string());
        }
    }

    /// Records a request's end; with `sync = "always"` it is on disk when this
    /// returns. `false`: it could not be (the answer must not go out
    /// unrecorded when the trail is required).
    pub fn record_request(&self, at: At<'_>, event: &str) -> bool {
        let Some(shared) = &self.file else { return true };
        if !write_record(shared, Source::Host, at, event) {
            return false;
        }
        if !shared.sync_always {
            return true;
        }
        let mut trail = lock(&shared.trail);
        let synced = trail.sync();
        let path = trail.path().to_owned();
        shared.wrote(&path, synced)
    }

    /// Whether calls must be refused: the trail is required and cannot be written.
    pub fn refusing(&self) -> bool {
        self.file.as_ref().is_some_and(|s| s.required && s.failing.load(Ordering::Relaxed))
    }

    /// Whether a record that could not be written must stop its answer.
    pub fn required(&self) -> bool {
        self.file.as_ref().is_some_and(|s| s.required)
    }

    /// Whether request records carry the arguments themselves.
    pub fn includes_arguments(&self) -> bool {
        self.file.as_ref().is_some_and(|s| s.include_arguments)
    }

    /// Records an event given as JSON text (as plugins hand it over); text that
    /// is not JSON is recorded as a string.
    pub fn record_text(&self, source: Source<'_>, at: At<'_>, event: &str) {
        let Some(shared) = &self.file else { return };
        match serde_json::from_str::<&RawValue>(event) {
            Ok(raw) => write_record(shared, source, at, raw.get()),
            Err(_) => write_record(shared, source, at, &Value::String(event.to_owned()).to_string()),
        };
    }

    /// Has buffered records written within [`FLUSH_DELAY`]. The relay calls
    /// this after each message.
    pub fn schedule_flush(&self) {
        let Some(shared) = &self.file else { return };
        match &shared.kick {
            Some(kick) => kick.notify_one(),
            None => flush(shared),
        }
    }

    /// Writes buffered records to the file now.
    pub fn flush(&self) {
        if let Some(shared) = &self.file {
            flush(shared);
        }
    }

    /// Signs what is unsigned and writes everything out (at exit).
    pub fn seal(&self) {
        if let Some(shared) = &self.file {
            let mut trail = lock(&shared.trail);
            let signed = trail.checkpoint();
            let path = trail.path().to_owned();
            shared.wrote(&path, signed);
            flush_locked(shared, &mut trail);
        }
    }
}

fn lock(trail: &Mutex<Trail>) -> std::sync::MutexGuard<'_, Trail> {
    trail.lock().unwrap_or_else(|p| p.into_inner())
}

fn flush(shared: &Shared) {
    flush_locked(shared, &mut lock(&shared.trail));
}

fn flush_locked(shared: &Shared, trail: &mut Trail) {
    let flushed = trail.flush();
    let path = trail.path().to_owned();
    shared.wrote(&path, flushed);
}

/// Where an event happened: the session and the upstream, where there are ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct At<'a> {
    /// The session id.
    pub session: Option<&'a str>,
    /// The upstream's name.
    pub upstream: Option<&'a str>,
    /// The caller's subject, when one is known.
    pub caller: Option<&'a str>,
}

impl At<'static> {
    /// Neither a session nor an upstream: Warden's own events.
    pub const WARDEN: At<'static> = At { session: None, upstream: None, caller: None };
}

/// Appends one record; `false` if it could not be.
fn write_record(shared: &Shared, source: Source<'_>, at: At<'_>, event: &str) -> bool {
    let (source, plugin) = match source {
        Source::Host => ("host", None),
        Source::Plugin(name) => ("plugin", Some(name)),
    };
    // Written member by member: no JSON values are built on a message's way.
    let mut body = Vec::with_capacity(event.len() + 200);
    body.extend_from_slice(b"\"time\":\"");
    body.extend_from_slice(chain::now_rfc3339().as_bytes());
    body.extend_from_slice(b"\",\"source\":\"");
    body.extend_from_slice(source.as_bytes());
    body.push(b'"');
    for (name, value) in [("plugin", plugin), ("session", at.session), ("upstream", at.upstream), ("caller", at.caller)]
    {
        body.extend_from_slice(b",\"");
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(b"\":");
        match value.map(|text| serde_json::to_writer(&mut body, text)) {
            Some(Ok(())) => {}
            Some(Err(_)) | None => body.extend_from_slice(b"null"),
        }
    }
    body.extend_from_slice(b",\"event\":");
    body.extend_from_slice(event.as_bytes());
    let Ok(body) = String::from_utf8(body) else { return false };
    let mut trail = lock(&shared.trail);
    let appended = trail.append(&body);
    if appended.is_ok() && metrics::enabled() {
        METRICS.audit_records.inc();
    }
    // A failed append is said by `wrote`; a good one says nothing until its flush.
    match appended {
        Ok(()) => true,
        Err(e) => {
            let path = trail.path().to_owned();
            shared.wrote(&path, Err(e))
        }
    }
}

impl AuditWriter {
    /// Signs and writes out whatever is still buffered.
    pub fn finish(self) {
        self.sink.seal();
    }
}

/// The audit trail of one run: opened at start (or disabled), closed at exit
/// once every sink handed out has done its work.
#[derive(Debug)]
pub struct AuditTrail {
    sink: AuditSink,
    writer: Option<AuditWriter>,
}

impl AuditTrail {
    /// Appends to the trail `options` name, or records nothing without one.
    pub fn open(options: Option<TrailOptions>) -> std::io::Result<AuditTrail> {
        Ok(match options {
            Some(options) => {
                let (sink, writer) = AuditSink::open(options)?;
                AuditTrail { sink, writer: Some(writer) }
            }
            None => AuditTrail { sink: AuditSink::disabled(), writer: None },
        })
    }

    /// A handle to record through.
    pub fn sink(&self) -> AuditSink {
        self.sink.clone()
    }

    /// Writes out what is still buffered.
    pub fn close(self) {
        if let Some(writer) = self.writer {
            writer.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (sink, writer) = AuditSink::open(TrailOptions::new(&path)).unwrap();
        sink.record(
            Source::Plugin("p"),
            At { session: Some("s1"), upstream: Some("u"), caller: Some("ada") },
            &json!({"type": "x"}),
        );
        sink.record(Source::Host, At::WARDEN, &json!({"type": "y"}));
        sink.record_text(Source::Plugin("p"), At::WARDEN, "not json");
        drop(sink);
        writer.finish();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        // The file's first record, then the three.
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["event"]["type"], "audit-file");
        assert_eq!(lines[3]["event"], "not json");
        assert_eq!(lines[1]["plugin"], "p");
        assert_eq!(lines[1]["session"], "s1");
        assert_eq!(lines[2]["source"], "host");
        assert_eq!(lines[3]["seq"], 4);
    }
}
