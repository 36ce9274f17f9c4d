//! Where each message for an HTTP client goes, and how a lost stream is resumed.
//!
//! Every response stream of a session is numbered: one per POST that carries
//! a request, one for the GET stream. A message for the client goes to
//! - the stream of the request it answers;
//! - for `notifications/progress`, the stream of the request that asked for it;
//! - for change notifications (`…/list_changed`, `resources/updated`), the GET
//!   stream, else the newest open POST stream;
//! - for anything else the server says during a call (logging, sampling,
//!   elicitation, roots), the newest open POST stream, else the GET stream;
//! - with no stream open, a bounded backlog the next GET stream starts with.
//!
//! In the legacy era each SSE event carries an id `<stream>-<event>`, and the
//! events of a stream are kept (within a per-session byte budget) so that a
//! client whose connection broke can GET the rest with `Last-Event-ID`; a
//! stream's events keep arriving meanwhile and go to whichever connection
//! resumed it.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::jsonrpc::{self, Head, Kind};

/// Server→client messages kept for a session with no open stream to carry them.
const BACKLOG: usize = 1024;
/// Bytes of sent events kept per session for resumption.
const REPLAY_BUDGET: usize = 8 * 1024 * 1024;
/// Finished streams kept for resumption per session, at most.
const FINISHED_KEPT: usize = 64;

/// One SSE event (or the single JSON answer) on its way to a client.
#[derive(Debug)]
pub struct Event {
    /// The SSE event id, when the stream is resumable.
    pub id: Option<EventId>,
    /// The JSON-RPC message.
    pub message: Bytes,
    /// Whether it is the answer that ends its stream.
    pub last: bool,
}

/// An SSE event id: the stream and the event's number on it, written `<stream>-<event>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventId {
    /// The stream's number in its session.
    pub stream: u64,
    /// The event's number on the stream (0: the priming event).
    pub event: u64,
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.stream, self.event)
    }
}

impl std::str::FromStr for EventId {
    type Err = ();

    fn from_str(text: &str) -> Result<EventId, ()> {
        let (stream, event) = text.split_once('-').ok_or(())?;
        Ok(EventId { stream: stream.parse().map_err(|_| ())?, event: event.parse().map_err(|_| ())? })
    }
}

/// A stream's receiving end, for one HTTP response.
pub type Receiver = mpsc::UnboundedReceiver<Event>;

/// The streams of one session.
pub struct Streams {
    resumable: bool,
    streams: HashMap<u64, Stream>,
    next_stream: u64,
    /// Requests awaiting their answer.
    waiting: HashMap<String, Waiting>,
    /// Progress token (JSON text) → the request that asked for it.
    progress: HashMap<String, String>,
    /// POST streams still open, newest last.
    open_posts: Vec<u64>,
    listener: Option<u64>,
    backlog: VecDeque<Bytes>,
    finished: VecDeque<u64>,
    kept_bytes: usize,
    ended: bool,
}

struct Waiting {
    stream: u64,
    progress: Option<String>,
}

struct Stream {
    /// Events sent so far (numbered from 1), kept for resumption.
    sent: VecDeque<(u64, Bytes)>,
    next_event: u64,
    /// The connection carrying it now, if any.
    conn: Option<mpsc::UnboundedSender<Event>>,
    finished: bool,
    /// Whether it goes out as SSE (then its events are kept for resumption);
    /// a request answered with plain JSON has nothing to resume.
    sse: bool,
}

impl Streams {
    /// The streams of a session. A legacy session's events carry ids and are
    /// kept for resumption, and messages with no stream to go on wait for the
    /// next GET stream; the modern era has neither.
    pub fn new(legacy: bool) -> Streams {
        Streams {
            resumable: legacy,
            streams: HashMap::new(),
            next_stream: 1,
            waiting: HashMap::new(),
            progress: HashMap::new(),
            open_posts: Vec::new(),
            listener: None,
            backlog: VecDeque::new(),
            finished: VecDeque::new(),
            kept_bytes: 0,
            ended: false,
        }
    }

    /// Whether the session has ended (no stream can be opened).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Whether a request with this id awaits its answer.
    pub fn is_waiting(&self, id: &str) -> bool {
        self.waiting.contains_key(id)
    }

    /// Opens the stream of the request `id`; `progress` is the token it asked progress with.
    /// Returns the stream's number and its receiving end.
    pub fn open_request(&mut self, id: String, progress: Option<String>) -> (u64, Receiver) {
        let (number, rx) = self.open();
        if let Some(token) = &progress {
            self.progress.insert(token.clone(), id.clone());
        }
        self.waiting.insert(id, Waiting { stream: number, progress });
        self.open_posts.push(number);
        (number, rx)
    }

    /// Stream `number` goes out as SSE: its events are kept for resumption.
    /// Returns the id of a priming event for it (an id, no data).
    pub fn streamed(&mut self, number: u64) -> Option<EventId> {
        let stream = self.streams.get_mut(&number).filter(|_| self.resumable)?;
        stream.sse = true;
        Some(EventId { stream: number, event: 0 })
    }

    /// Opens the GET stream, replacing any previous one; the backlog comes first.
    pub fn open_listener(&mut self) -> Receiver {
        if let Some(old) = self.listener.take() {
            self.finish(old);
        }
        let (number, rx) = self.open();
        if let Some(stream) = self.streams.get_mut(&number) {
            stream.sse = true;
        }
        self.listener = Some(number);
        for message in std::mem::take(&mut self.backlog) {
            self.send(number, message, false);
        }
        rx
    }

    /// Resumes the stream an event id names: the events after it, then what
    /// still comes on that stream. `None` when the id names no kept stream.
    pub fn resume(&mut self, last_event: &str) -> Option<Receiver> {
        let EventId { stream: number, event: after } = last_event.parse().ok()?;
        let stream = self.streams.get_mut(&number)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let final_event = stream.sent.back().map(|(e, _)| *e).filter(|_| stream.finished);
        for (event, message) in stream.sent.iter().filter(|(e, _)| *e > after) {
            let last = Some(*event) == final_event;
            let id = Some(EventId { stream: number, event: *event });
            let _ = tx.send(Event { id, message: message.clone(), last });
        }
        if !stream.finished {
            stream.conn = Some(tx);
        }
        // A finished stream's response ends after the replay (`tx` is dropped).
        Some(rx)
    }

    /// Routes one message from the relay to the client. Returns false for a
    /// server request that no stream can carry and no backlog keeps (the
    /// 2026-07-28 lane between calls): nobody will answer it, so the caller
    /// refuses it at once rather than let the server wait for its timeout.
    pub fn deliver(&mut self, head: &Head, message: Bytes) -> bool {
        match head.kind {
            Kind::Response | Kind::Error => {
                let Some(waiting) = head.id.as_ref().and_then(|id| self.waiting.remove(id)) else {
                    tracing::debug!(id = ?head.id, "answer with no waiting request dropped");
                    return true;
                };
                if let Some(token) = waiting.progress {
                    self.progress.remove(&token);
                }
                self.open_posts.retain(|s| *s != waiting.stream);
                self.send(waiting.stream, message, true);
                self.finish(waiting.stream);
            }
            Kind::Request | Kind::Notification => {
                let method = head.method.as_deref().unwrap_or_default();
                let target = if let Some(listen) = subscription_of(&message) {
                    // A modern subscription's notification goes on that `subscriptions/listen` stream.
                    self.waiting.get(&listen).map(|w| w.stream)
                } else if method == "notifications/progress" {
                    jsonrpc::progress_token(&message)
                        .and_then(|token| self.progress.get(&token))
                        .and_then(|id| self.waiting.get(id))
                        .map(|w| w.stream)
                        .or_else(|| self.newest_post())
                } else if method.ends_with("/list_changed") || method == "notifications/resources/updated" {
                    self.live_listener().or_else(|| self.newest_post())
                } else {
                    self.newest_post().or_else(|| self.live_listener())
                };
                match target {
                    Some(stream) => self.send(stream, message, false),
                    None if !self.resumable => {
                        tracing::debug!(method, "no stream for a server message; dropped");
                        return head.kind != Kind::Request;
                    }
                    None => {
                        if self.backlog.len() >= BACKLOG {
                            tracing::warn!("no open stream for server messages; dropping the oldest kept one");
                            self.backlog.pop_front();
                        }
                        self.backlog.push_back(message);
                    }
                }
            }
        }
        true
    }

    /// Stops waiting for the answer to `id` (a cancelled request may get none); its stream ends.
    pub fn forget(&mut self, id: &str) {
        if let Some(waiting) = self.waiting.remove(id) {
            if let Some(token) = waiting.progress {
                self.progress.remove(&token);
            }
            self.open_posts.retain(|s| *s != waiting.stream);
            self.finish(waiting.stream);
        }
    }

    /// Answers every request still waiting with this error (shutdown).
    pub fn answer_waiting(&mut self, code: i32, why: &str) {
        let ids: Vec<String> = self.waiting.keys().cloned().collect();
        for id in ids {
            let message = jsonrpc::error_response(Some(&id), code, why, None);
            if let Ok(head) = jsonrpc::parse_head(&message) {
                self.deliver(&head, message);
            }
        }
    }

    /// Ends the GET stream, if one is open (shutdown: it would never end itself).
    pub fn close_listener(&mut self) {
        if let Some(number) = self.listener.take() {
            self.finish(number);
        }
    }

    /// Whether any request awaits its answer.
    pub fn calls_in_flight(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Whether any request awaits its answer or a GET stream is connected.
    pub fn busy(&self) -> bool {
        !self.waiting.is_empty() || self.live_listener().is_some()
    }

    /// The session has ended: every stream closes.
    pub fn end(&mut self) {
        self.ended = true;
        self.waiting.clear();
        self.streams.clear();
        self.kept_bytes = 0;
        self.open_posts.clear();
        self.listener = None;
    }

    fn open(&mut self) -> (u64, Receiver) {
        let number = self.next_stream;
        self.next_stream += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        let stream = Stream { sent: VecDeque::new(), next_event: 1, conn: Some(tx), finished: false, sse: false };
        self.streams.insert(number, stream);
        (number, rx)
    }

    fn newest_post(&self) -> Option<u64> {
        self.open_posts.last().copied()
    }

    fn live_listener(&self) -> Option<u64> {
        let number = self.listener?;
        let stream = self.streams.get(&number)?;
        stream.conn.as_ref().is_some_and(|c| !c.is_closed()).then_some(number)
    }

    fn send(&mut self, number: u64, message: Bytes, last: bool) {
        let Some(stream) = self.streams.get_mut(&number) else { return };
        let id = if self.resumable {
            let event = stream.next_event;
            stream.next_event += 1;
            self.kept_bytes += message.len();
            stream.sent.push_back((event, message.clone()));
            Some(EventId { stream: number, event })
        } else {
            None
        };
        if let Some(conn) = &stream.conn {
            if conn.send(Event { id, message, last }).is_err() {
                // The client went away; events are kept until it resumes.
                stream.conn = None;
            }
        }
        self.trim();
    }

    /// A stream has sent its last event: kept for resumption until the budget needs room.
    fn finish(&mut self, number: u64) {
        let Some(stream) = self.streams.get_mut(&number) else { return };
        stream.finished = true;
        stream.conn = None;
        if !self.resumable || !stream.sse {
            if let Some(stream) = self.streams.remove(&number) {
                self.kept_bytes -= stream.sent.iter().map(|(_, m)| m.len()).sum::<usize>();
            }
            return;
        }
        self.finished.push_back(number);
        self.trim();
    }

    /// Forgets the oldest finished streams while over the budget or the count.
    fn trim(&mut self) {
        while self.kept_bytes > REPLAY_BUDGET || self.finished.len() > FINISHED_KEPT {
            let Some(oldest) = self.finished.pop_front() else { break };
            if let Some(stream) = self.streams.remove(&oldest) {
                self.kept_bytes -= stream.sent.iter().map(|(_, m)| m.len()).sum::<usize>();
            }
        }
    }
}

/// The `subscriptions/listen` request id (JSON text) a notification names in
/// `_meta`; only messages that mention it are parsed.
fn subscription_of(message: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Params<'a> {
        #[serde(rename = "_meta", borrow)]
        meta: Option<Meta<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Meta<'a> {
        #[serde(rename = "io.modelcontextprotocol/subscriptionId", borrow)]
        subscription: Option<&'a serde_json::value::RawValue>,
    }
    memchr::memmem::find(message, b"io.modelcontextprotocol/subscriptionId")?;
    let body: Body = serde_json::from_slice(message).ok()?;
    Some(body.params?.meta?.subscription?.get().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(message: &str) -> Head {
        jsonrpc::parse_head(message.as_bytes()).expect("head")
    }

    fn deliver(streams: &mut Streams, message: &'static str) {
        streams.deliver(&head(message), Bytes::from_static(message.as_bytes()));
    }

    fn drain(rx: &mut Receiver) -> Vec<(Option<String>, String, bool)> {
        let mut out = Vec::new();
        while let Ok(e) = rx.try_recv() {
            out.push((e.id.map(|id| id.to_string()), String::from_utf8_lossy(&e.message).into_owned(), e.last));
        }
        out
    }

    #[test]
    fn progress_follows_its_request_and_changes_go_to_the_listener() {
        let mut streams = Streams::new(true);
        let mut get = streams.open_listener();
        let (_, mut first) = streams.open_request("1".into(), Some("\"t1\"".into()));
        let (_, mut second) = streams.open_request("2".into(), None);
        deliver(
            &mut streams,
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t1","progress":1}}"#,
        );
        deliver(&mut streams, r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info"}}"#);
        deliver(&mut streams, r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#);
        deliver(&mut streams, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        let first = drain(&mut first);
        assert_eq!(first.len(), 2, "{first:?}");
        assert!(first[0].1.contains("progress") && first[1].2);
        let second = drain(&mut second);
        assert_eq!(second.len(), 1);
        assert!(second[0].1.contains("notifications/message"));
        let get = drain(&mut get);
        assert_eq!(get.len(), 1);
        assert!(get[0].1.contains("list_changed"));
    }

    #[test]
    fn a_broken_stream_resumes_after_its_last_event() {
        let mut streams = Streams::new(true);
        let (number, rx) = streams.open_request("7".into(), None);
        assert_eq!(streams.streamed(number).map(|id| id.to_string()), Some(format!("{number}-0")));
        deliver(&mut streams, r#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#);
        drop(rx); // the connection broke after the first event
        deliver(&mut streams, r#"{"jsonrpc":"2.0","method":"sampling/createMessage","id":"s1","params":{}}"#);
        let mut resumed = streams.resume(&format!("{number}-1")).expect("kept");
        assert!(drain(&mut resumed)[0].1.contains("sampling"));
        deliver(&mut streams, r#"{"jsonrpc":"2.0","id":7,"result":{}}"#);
        let rest = drain(&mut resumed);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].0.as_deref(), Some(&*format!("{number}-3")));
        assert!(rest[0].2, "the answer ends the resumed stream");
        // A finished stream replays its answer once more, then ends.
        let mut again = streams.resume(&format!("{number}-2")).expect("kept");
        let replay = drain(&mut again);
        assert_eq!(replay.len(), 1);
        assert!(replay[0].2);
        assert!(streams.resume("99-1").is_none());
    }

    #[test]
    fn without_streams_legacy_messages_wait_for_the_next_listener_and_modern_ones_do_not() {
        let mut legacy = Streams::new(true);
        deliver(&mut legacy, r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#);
        let got = drain(&mut legacy.open_listener());
        assert_eq!(got.len(), 1);
        assert!(got[0].0.is_some(), "legacy events carry ids");
        let mut modern = Streams::new(false);
        deliver(&mut modern, r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#);
        assert!(drain(&mut modern.open_listener()).is_empty());
        let (_, mut call) = modern.open_request("1".into(), None);
        deliver(&mut modern, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        assert_eq!(drain(&mut call)[0].0, None, "no event ids in the modern era");
        // Between calls, a server's request has nobody to answer it: said, so it is refused at once.
        let roots = r#"{"jsonrpc":"2.0","id":"r1","method":"roots/list"}"#;
        assert!(!modern.deliver(&head(roots), Bytes::from_static(roots.as_bytes())));
        let note = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#;
        assert!(modern.deliver(&head(note), Bytes::from_static(note.as_bytes())));
    }
}
