//! secret-redact: replaces credentials in what servers send.
//!
//! Every message a server sends (responses and errors to any request, its own
//! requests such as `sampling/createMessage`, and notifications such as
//! `notifications/message`) is scanned, every string of it (object keys
//! included, at any depth), decoded from its JSON escapes. Each API key,
//! cloud credential, token or private key found becomes a marker. With
//! `arguments = true`, outgoing `tools/call` requests are scanned too. An
//! audit event records how many were replaced, never what. A message that
//! cannot be scanned is refused, not passed on.

mod detect;
mod json;
mod tripwire;

use std::fmt::Write as _;
use std::ops::Range;

use serde::Deserialize;
use serde_json::json;
use warden_sdk::{audit, export_plugin, mcp, Config, Context, Direction, Interest, MessageKind, Plugin, Verdict};

use detect::Detectors;
use json::{Malformed, Str};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_marker")]
    marker: String,
    #[serde(default)]
    arguments: bool,
    #[serde(default)]
    patterns: Vec<String>,
}

fn default_marker() -> String {
    "[REDACTED]".into()
}

/// The detectors, compiled once at init.
pub struct SecretRedact {
    marker: String,
    arguments: bool,
    detectors: Detectors,
}

/// What scanning a message found.
#[derive(Debug, PartialEq)]
enum Scan {
    /// Nothing to redact: the message goes on byte for byte.
    Clean,
    /// The message with `count` secrets replaced.
    Redacted { text: String, count: usize },
}

impl SecretRedact {
    fn new(raw: RawConfig) -> Result<SecretRedact, String> {
        Ok(SecretRedact { marker: raw.marker, arguments: raw.arguments, detectors: Detectors::new(&raw.patterns)? })
    }

    /// Scans every string of the raw message. Only strings the tripwire points
    /// at (or every string, with a custom pattern it cannot speak for) are
    /// decoded and searched, and in those only where it saw an anchor; the
    /// output is built once, on the first secret, with the untouched stretches
    /// copied as they came.
    fn scan(&self, raw: &str) -> Result<Scan, Malformed> {
        let d = &self.detectors;
        let everything = d.scan_everything();
        let mut hit = if everything { None } else { d.tripwire_at(raw, 0) };
        if hit.is_none() && !everything {
            return Ok(Scan::Clean);
        }
        let mut out = Output { raw, marker: &self.marker, text: None, copied: 0, count: 0, keys: 0 };
        let mut decoded = String::new();
        let mut marks = Vec::new();
        let mut from = 0;
        while let Some(s) = json::next_string(raw, from)? {
            from = s.close + 1;
            // The tripwire is searched again only once the walk has passed its
            // last hit: a search per string pointed at, not per string.
            if hit.as_ref().is_some_and(|h| h.end <= s.open) {
                hit = d.tripwire_at(raw, s.open);
            }
            let pointed_at = hit.as_ref().is_some_and(|h| h.start <= s.close);
            if !(pointed_at || everything) {
                continue;
            }
            let text = if s.escaped {
                json::decode(raw, s, &mut decoded, &mut marks)?;
                decoded.as_str()
            } else {
                marks.clear();
                &raw[s.open + 1..s.close]
            };
            if everything {
                out.rewrite(s, &marks, d.spans(text))?;
                continue;
            }
            let mut starts = Starts::new(d, raw, s, text, &marks, hit.take());
            out.rewrite(s, &marks, d.spans_at(text, &mut starts))?;
            hit = starts.finish()?;
        }
        Ok(match out.text {
            Some(mut text) => {
                text.push_str(&raw[out.copied..]);
                Scan::Redacted { text, count: out.count }
            }
            None => Scan::Clean,
        })
    }

    /// Scans a message whose JSON-RPC id is `id` (as JSON text); an error says
    /// why it must be refused.
    fn check(&self, id: Option<&str>, message: &str) -> Result<Scan, String> {
        // The id must come back as it went: a secret in it cannot be replaced.
        if let Some(id) = id.filter(|id| id.starts_with('"')) {
            let decoded: String = serde_json::from_str(id).unwrap_or_default();
            if self.detectors.spans(&decoded).next().is_some() {
                return Err("secret-redact: the message's id looks like a secret; refused".into());
            }
        }
        // Warden passes only valid JSON, so a walk that fails is a bug somewhere: fail closed.
        self.scan(message)
            .map_err(|Malformed(why)| format!("secret-redact: the message cannot be scanned ({why}); refused"))
    }

    /// The verdict on a message from the side it is scanned for.
    fn verdict(&self, ctx: &Context, message: &str, place: &str) -> Verdict {
        match self.check(ctx.id.as_deref(), message) {
            Ok(Scan::Clean) => Verdict::Forward,
            Ok(Scan::Redacted { text, count }) => {
                audit::emit(&json!({
                    "type": "redaction",
                    "method": ctx.method,
                    "tool": ctx.tool,
                    "id": ctx.id,
                    "in": place,
                    "count": count,
                }));
                Verdict::Modify(text)
            }
            Err(why) => mcp::deny(why),
        }
    }
}

/// The rewritten message, started on the first secret.
struct Output<'r> {
    raw: &'r str,
    marker: &'r str,
    text: Option<String>,
    /// How much of the raw message is in `text` already.
    copied: usize,
    count: usize,
    /// Secrets replaced in object keys so far.
    keys: usize,
}

impl Output<'_> {
    /// Replaces `spans` of string `s` (offsets into its decoded `text`).
    fn rewrite(
        &mut self,
        s: Str,
        marks: &[(usize, usize)],
        spans: impl Iterator<Item = Range<usize>>,
    ) -> Result<(), Malformed> {
        let raw = self.raw;
        let mut cursor = json::Cursor::new(raw, s, marks);
        let key = json::is_key(raw, s.close);
        for span in spans {
            // What stays of the string is copied from the raw text, escapes as
            // the server wrote them; only the secrets change.
            let start = cursor.seek(span.start)?;
            let out = self.text.get_or_insert_with(|| String::with_capacity(raw.len()));
            out.push_str(&raw[self.copied..start]);
            json::encode(self.marker, out);
            if key {
                // Two keys redacted alike would collide: each gets its own number.
                self.keys += 1;
                // Writing into a String cannot fail.
                let _ = write!(out, "#{}", self.keys);
            }
            self.copied = cursor.seek(span.end)?;
            self.count += 1;
        }
        Ok(())
    }
}

/// Where in one string detection must look: the decoded offsets of the
/// tripwire's hits in it. A hit on a `\u` escape may be any character of an
/// anchor, so the anchor may start up to its length before it: those offsets
/// are tried too.
struct Starts<'a> {
    d: &'a Detectors,
    raw: &'a str,
    s: Str,
    text: &'a str,
    cursor: json::Cursor<'a>,
    hit: Option<Range<usize>>,
    /// Offsets still to give for the current hit, last first.
    queued: Vec<usize>,
    /// The last offset given: offsets only ascend.
    last: Option<usize>,
    error: Option<Malformed>,
}

impl<'a> Starts<'a> {
    fn new(
        d: &'a Detectors,
        raw: &'a str,
        s: Str,
        text: &'a str,
        marks: &'a [(usize, usize)],
        hit: Option<Range<usize>>,
    ) -> Starts<'a> {
        let cursor = json::Cursor::new(raw, s, marks);
        Starts { d, raw, s, text, cursor, hit, queued: Vec::new(), last: None, error: None }
    }

    /// The first hit past this string, once every one in it has been given.
    fn finish(mut self) -> Result<Option<Range<usize>>, Malformed> {
        while self.next().is_some() {}
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.hit),
        }
    }
}

impl Iterator for Starts<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        loop {
            if let Some(at) = self.queued.pop() {
                if self.last.is_none_or(|last| at > last) {
                    self.last = Some(at);
                    return Some(at);
                }
                continue;
            }
            let hit = match self.hit.take() {
                Some(hit) if hit.start <= self.s.close => hit,
                past => {
                    self.hit = past;
                    return None;
                }
            };
            self.hit = self.d.tripwire_at(self.raw, hit.start + 1);
            let at = match self.cursor.decoded_of(hit.start) {
                Ok(at) => at,
                Err(e) => {
                    self.error = Some(e);
                    self.hit = None;
                    return None;
                }
            };
            self.queued.push(at);
            if self.raw.as_bytes()[hit.start] == b'\\' {
                let before = self.text.get(..at).unwrap_or_default().char_indices().rev();
                // Popped last first: the furthest back comes out first.
                self.queued.extend(before.take(self.d.longest_anchor().saturating_sub(1)).map(|(i, _)| i));
            }
        }
    }
}

/// Where in the exchange a message sits, for the audit event.
fn place(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Request => "request",
        MessageKind::Notification => "notification",
        MessageKind::Response => "result",
        MessageKind::Error => "error",
    }
}

impl Plugin for SecretRedact {
    fn init(config: Config) -> Result<Self, String> {
        SecretRedact::new(config.parse()?)
    }

    // A server speaks in answers, in requests of its own and in notifications,
    // under any method: all of them are scanned. The client's messages arrive
    // only when `arguments` is on (and then pass at once unless `tools/call`).
    fn methods(&self) -> Vec<String> {
        vec!["*".into()]
    }

    fn requests(&self) -> Interest {
        match self.arguments {
            true => Interest::new(self.methods()),
            false => Interest::new(self.methods()).from_server(),
        }
    }

    fn responses(&self) -> Interest {
        Interest::new(self.methods()).from_server()
    }

    fn on_request(&mut self, ctx: &Context, message: &str) -> Verdict {
        match ctx.direction {
            Direction::ServerToClient => self.verdict(ctx, message, place(ctx.kind)),
            Direction::ClientToServer if self.arguments && ctx.method == "tools/call" => {
                self.verdict(ctx, message, "arguments")
            }
            Direction::ClientToServer => Verdict::Forward,
        }
    }

    fn on_response(&mut self, ctx: &Context, message: &str) -> Verdict {
        match ctx.direction {
            Direction::ServerToClient => self.verdict(ctx, message, place(ctx.kind)),
            // The client's answers to the server's requests are the client's own.
            Direction::ClientToServer => Verdict::Forward,
        }
    }
}

export_plugin!(SecretRedact);

#[cfg(test)]
mod tests;
