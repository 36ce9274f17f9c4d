//! The audit trail: JSON lines appended to the file given by `--audit`.
//!
//! Events come from plugins (through the `audit` import) and from the host
//! (every decision that is not "forward"). Records are buffered in memory as
//! they happen; a task writes them out at most [`FLUSH_DELAY`] after the first
//! unwritten one, so a busy proxy makes one `write` per interval rather than one
//! per message, and none on a message's way through. An idle proxy does not
//! wake at all. The buffer is also written whenever it fills, and on shutdown.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::Notify;

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
}

#[derive(Debug)]
struct Trail {
    out: BufWriter<File>,
    path: String,
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
    /// Opens (appends to) `path`.
    pub fn open(path: &Path) -> std::io::Result<(AuditSink, AuditWriter)> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let trail = Trail { out: BufWriter::with_capacity(64 * 1024, file), path: path.display().to_string() };
        let kick = tokio::runtime::Handle::try_current().ok().map(|_| Arc::new(Notify::new()));
        let shared = Arc::new(Shared { trail: Mutex::new(trail), kick: kick.clone() });
        if let Some(kick) = kick {
            let weak = Arc::downgrade(&shared);
            tokio::spawn(async move {
                loop {
                    kick.notified().await;
                    tokio::time::sleep(FLUSH_DELAY).await;
                    let Some(shared) = weak.upgrade() else { break };
                    flush(&shared.trail);
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
            write_record(&shared.trail, source, at, &event.to_string());
        }
    }

    /// Records an event given as JSON text (as plugins hand it over); text that
    /// is not JSON is recorded as a string.
    pub fn record_text(&self, source: Source<'_>, at: At<'_>, event: &str) {
        let Some(shared) = &self.file else { return };
        match serde_json::from_str::<&RawValue>(event) {
            Ok(raw) => write_record(&shared.trail, source, at, raw.get()),
            Err(_) => write_record(&shared.trail, source, at, &Value::String(event.to_owned()).to_string()),
        }
    }

    /// Has buffered records written within [`FLUSH_DELAY`]. The relay calls
    /// this after each message.
    pub fn schedule_flush(&self) {
        let Some(shared) = &self.file else { return };
        match &shared.kick {
            Some(kick) => kick.notify_one(),
            None => flush(&shared.trail),
        }
    }

    /// Writes buffered records to the file now.
    pub fn flush(&self) {
        if let Some(shared) = &self.file {
            flush(&shared.trail);
        }
    }
}

fn flush(trail: &Mutex<Trail>) {
    let mut trail = trail.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = trail.out.flush() {
        tracing::error!(file = %trail.path, "audit: write failed: {e}");
    }
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

fn write_record(file: &Mutex<Trail>, source: Source<'_>, at: At<'_>, event: &str) {
    let (source, plugin) = match source {
        Source::Host => ("host", Value::Null),
        Source::Plugin(name) => ("plugin", Value::from(name)),
    };
    let time = humantime::format_rfc3339_millis(SystemTime::now());
    let session = at.session.map_or(Value::Null, Value::from);
    let upstream = at.upstream.map_or(Value::Null, Value::from);
    let caller = at.caller.map_or(Value::Null, Value::from);
    let line = format!(
        "{{\"time\":\"{time}\",\"source\":\"{source}\",\"plugin\":{plugin},\"session\":{session},\"upstream\":{upstream},\"caller\":{caller},\"event\":{event}}}\n"
    );
    let mut trail = file.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = trail.out.write_all(line.as_bytes()) {
        tracing::error!(file = %trail.path, "audit: write failed: {e}");
    }
}

impl AuditWriter {
    /// Writes out whatever is still buffered.
    pub fn finish(self) {
        self.sink.flush();
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
    /// Appends to `path`, or records nothing without one.
    pub fn open(path: Option<&Path>) -> std::io::Result<AuditTrail> {
        Ok(match path {
            Some(path) => {
                let (sink, writer) = AuditSink::open(path)?;
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
        let (sink, writer) = AuditSink::open(&path).unwrap();
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
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2]["event"], "not json");
        assert_eq!(lines[0]["plugin"], "p");
        assert_eq!(lines[0]["session"], "s1");
        assert_eq!(lines[1]["source"], "host");
    }
}
