//! Reading `text/event-stream` bodies, as Streamable HTTP servers send them.
//!
//! An incremental parser: feed it body chunks as they arrive, take complete
//! events out. It follows the WHATWG rules MCP servers rely on (`data:` lines
//! joined with newlines, `id:` remembered for resumption, `:` comments ignored,
//! a blank line ends an event) and refuses an event larger than its limit
//! instead of buffering without bound.

use bytes::{Buf, Bytes, BytesMut};

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` type; `message` when none was given.
    pub kind: String,
    /// The data lines, joined with `\n`.
    pub data: Bytes,
}

/// An event grew past the limit.
#[derive(Debug, thiserror::Error)]
#[error("server-sent event larger than {0} bytes")]
pub struct TooLarge(pub usize);

/// Incremental `text/event-stream` parser.
#[derive(Debug)]
pub struct Parser {
    max: usize,
    pending: BytesMut,
    data: BytesMut,
    kind: Option<String>,
    has_data: bool,
    last_id: Option<String>,
    retry: Option<u64>,
}

impl Parser {
    /// A parser that refuses events over `max` bytes.
    pub fn new(max: usize) -> Parser {
        Parser {
            max,
            pending: BytesMut::new(),
            data: BytesMut::new(),
            kind: None,
            has_data: false,
            last_id: None,
            retry: None,
        }
    }

    /// The reconnection delay the server asked for (`retry:`), in milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// The connection broke: an event half-received is dropped; the last event
    /// id and the retry delay are kept for resuming.
    pub fn interrupted(&mut self) {
        self.pending.clear();
        self.data.clear();
        self.kind = None;
        self.has_data = false;
    }

    /// The last event id seen, for `Last-Event-ID` when reconnecting.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Takes in a chunk of the body; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, TooLarge> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = memchr::memchr(b'\n', &self.pending) {
            let mut line = self.pending.split_to(end + 1);
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
            if self.data.len() > self.max {
                return Err(TooLarge(self.max));
            }
        }
        if self.pending.len() > self.max {
            return Err(TooLarge(self.max));
        }
        Ok(events)
    }

    fn line(&mut self, line: &[u8]) -> Option<Event> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return None;
        }
        let (field, mut value) = match memchr::memchr(b':', line) {
            Some(colon) => (&line[..colon], &line[colon + 1..]),
            None => (line, &b""[..]),
        };
        if value.first() == Some(&b' ') {
            value.advance(1);
        }
        match field {
            b"data" => {
                self.data.extend_from_slice(value);
                self.data.extend_from_slice(b"\n");
                self.has_data = true;
            }
            b"event" => self.kind = Some(String::from_utf8_lossy(value).into_owned()),
            b"id" if !value.contains(&0) => self.last_id = Some(String::from_utf8_lossy(value).into_owned()),
            b"retry" => {
                if let Some(ms) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<Event> {
        let kind = self.kind.take().unwrap_or_else(|| "message".to_owned());
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        let mut data = self.data.split();
        data.truncate(data.len().saturating_sub(1));
        Some(Event { kind, data: data.freeze() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks() {
        let mut p = Parser::new(1024);
        assert!(p.push(b": hello\n\nid: 7\nevent: message\ndata: {\"a\"").unwrap().is_empty());
        let events = p.push(b":1}\r\n\r\ndata: x\ndata:y\n\n").unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].data, Bytes::from_static(b"{\"a\":1}"));
        assert_eq!(events[0].kind, "message");
        assert_eq!(events[1].data, Bytes::from_static(b"x\ny"));
        assert_eq!(p.last_event_id(), Some("7"));
    }

    #[test]
    fn a_broken_stream_keeps_its_id_and_retry() {
        let mut p = Parser::new(1024);
        let priming = p.push(b"id: s-1\nretry: 500\ndata: \n\ndata: {\"half").unwrap();
        assert!(priming.len() == 1 && priming[0].data.is_empty());
        p.interrupted();
        assert_eq!((p.last_event_id(), p.retry()), (Some("s-1"), Some(500)));
        let events = p.push(b"id: s-2\ndata: {}\n\n").unwrap();
        assert_eq!(events[0].data, Bytes::from_static(b"{}"));
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut p = Parser::new(8);
        assert!(p.push(b"data: 0123456789\n").is_err());
        let mut p = Parser::new(8);
        assert!(p.push(b"data: 0123456789").is_err());
    }
}
