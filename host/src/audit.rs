//! The audit trail: JSON lines appended to the file given by `--audit`.
//!
//! Events come from plugins (through the `audit` import) and from the host
//! (every decision that is not "forward"). A dedicated thread does the file
//! I/O so that a hook call never waits on the disk; it flushes whenever its
//! queue runs dry and once more when the last sender goes away.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::SystemTime;

use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Where audit events go. Cheap to clone; a sink without a file drops events.
#[derive(Clone, Debug, Default)]
pub struct AuditSink {
    tx: Option<mpsc::UnboundedSender<Vec<u8>>>,
}

/// Owns the writer thread; [`AuditWriter::finish`] waits until every event is on disk.
#[derive(Debug)]
pub struct AuditWriter {
    thread: JoinHandle<()>,
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
    /// Opens (appends to) `path` and starts the writer thread.
    pub fn open(path: &Path) -> std::io::Result<(AuditSink, AuditWriter)> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let file_name = path.display().to_string();
        let thread = std::thread::Builder::new().name("warden-audit".into()).spawn(move || {
            let mut out = BufWriter::new(file);
            while let Some(line) = rx.blocking_recv() {
                let mut result = out.write_all(&line);
                while let Ok(line) = rx.try_recv() {
                    result = result.and_then(|()| out.write_all(&line));
                }
                if let Err(e) = result.and_then(|()| out.flush()) {
                    tracing::error!(file = %file_name, "audit: write failed: {e}");
                }
            }
        })?;
        Ok((AuditSink { tx: Some(tx) }, AuditWriter { thread }))
    }

    /// A sink that drops everything (no `--audit`).
    pub fn disabled() -> AuditSink {
        AuditSink { tx: None }
    }

    /// Whether events are written anywhere.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Records one event with the time, its source and the session.
    pub fn record(&self, source: Source<'_>, session: Option<&str>, event: Value) {
        let Some(tx) = &self.tx else { return };
        let (source, plugin) = match source {
            Source::Host => ("host", None),
            Source::Plugin(name) => ("plugin", Some(name)),
        };
        let record = json!({
            "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            "source": source,
            "plugin": plugin,
            "session": session,
            "event": event,
        });
        let mut line = record.to_string().into_bytes();
        line.push(b'\n');
        // The writer only stops once every sender is gone, so this cannot fail
        // while `self` exists.
        let _ = tx.send(line);
    }
}

impl AuditWriter {
    /// Waits for the writer to drain. Call after every [`AuditSink`] clone is dropped.
    pub fn finish(self) {
        if self.thread.join().is_err() {
            tracing::error!("audit: writer thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (sink, writer) = AuditSink::open(&path).unwrap();
        sink.record(Source::Plugin("p"), Some("s1"), json!({"type": "x"}));
        sink.record(Source::Host, None, json!({"type": "y"}));
        drop(sink);
        writer.finish();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["plugin"], "p");
        assert_eq!(lines[0]["session"], "s1");
        assert_eq!(lines[1]["source"], "host");
    }
}
