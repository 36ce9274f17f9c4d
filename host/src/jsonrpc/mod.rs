//! Just enough JSON-RPC to route a message: its kind, id, method and tool name.
//!
//! Warden is transparent by default: it never rebuilds a message it did not
//! change. [`Message`] keeps the bytes as they arrived and a small [`Head`]
//! parsed from them; unknown fields, methods and `_meta` ride along untouched.

use bytes::Bytes;

mod batch;
mod compose;
mod numbers;
mod peek;
mod prefix;
mod reader;
pub mod rewrite;
pub mod stream;

pub use batch::{batch_refused, is_batch, join_batch, split_batch, BATCHED_INITIALIZE, BATCH_VERSION};
pub use compose::{error_response, result_response, set_in};
pub use numbers::numbers_are_exact;
pub use peek::{cancelled_request, error_code, negotiated_version, progress_token};
pub use prefix::{prefix_head, sniff_id, PrefixHead};
pub use reader::MAX_DEPTH;

/// Error codes Warden itself answers with. The JSON-RPC standard ones come
/// first. Warden's own sit outside the range JSON-RPC reserves
/// (-32768..-32000), which MCP 2026-07-28 keeps for the specification; each
/// comes with `data.warden`, a machine-readable tag ([`tag`]).
pub mod code {
    /// The line was not valid JSON.
    pub const PARSE_ERROR: i32 = -32700;
    /// Valid JSON, but not a JSON-RPC message (or too large to read).
    pub const INVALID_REQUEST: i32 = -32600;
    /// No such method (in the 2026-07-28 era also HTTP 404).
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// Invalid params, e.g. a missing required `_meta` key.
    pub const INVALID_PARAMS: i32 = -32602;
    /// A plugin failed (trap, timeout, memory cap) and its failure mode is `closed`.
    pub const PLUGIN_FAILED: i32 = -31050;
    /// A plugin asked for human approval, which this Warden cannot collect.
    pub const APPROVAL_UNAVAILABLE: i32 = -31051;
    /// The upstream server went away before answering, or could not be reached.
    pub const UPSTREAM_FAILED: i32 = -31052;
    /// A message exceeded the configured size limit.
    pub const MESSAGE_TOO_LARGE: i32 = -31053;
    /// Warden is shutting down and the call could not finish in time.
    pub const SHUTTING_DOWN: i32 = -31054;
    /// The gateway refuses a tool whose definition changed since it was pinned.
    pub const TOOL_CHANGED: i32 = -31055;
    /// The audit trail cannot be written and `[audit] required = true`.
    pub const AUDIT_UNAVAILABLE: i32 = -31056;

    /// The `data.warden` tag of one of Warden's own codes.
    pub fn tag(code: i32) -> Option<&'static str> {
        Some(match code {
            PLUGIN_FAILED => "plugin-failed",
            APPROVAL_UNAVAILABLE => "approval-unavailable",
            UPSTREAM_FAILED => "upstream-failed",
            MESSAGE_TOO_LARGE => "too-large",
            SHUTTING_DOWN => "shutting-down",
            TOOL_CHANGED => "tool-changed",
            AUDIT_UNAVAILABLE => "audit-unavailable",
            _ => return None,
        })
    }
}

/// Method names the host itself acts on.
pub mod method {
    /// Opens a handshake-era session.
    pub const INITIALIZE: &str = "initialize";
    /// Cancels a request in flight.
    pub const CANCELLED: &str = "notifications/cancelled";
    /// Calls a tool: the one method whose `params.name` routing reads.
    pub const TOOLS_CALL: &str = "tools/call";
    /// The tool listing.
    pub const TOOLS_LIST: &str = "tools/list";
    /// The client's word that the handshake is complete.
    pub const INITIALIZED: &str = "notifications/initialized";
}

/// The JSON-RPC shape of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Method and id.
    Request,
    /// Method, no id.
    Notification,
    /// Id and `result`.
    Response,
    /// Id (possibly null) and `error`.
    Error,
}

impl Kind {
    /// Requests and notifications go through `on-request`.
    pub fn is_call(self) -> bool {
        matches!(self, Kind::Request | Kind::Notification)
    }

    /// Responses and errors answer a request.
    pub fn is_answer(self) -> bool {
        !self.is_call()
    }
}

/// What routing needs to know about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The shape.
    pub kind: Kind,
    /// The id by value, as canonical JSON text (`1e2` and `100.0` are `100`,
    /// `"\u0078"` is `"x"`): the key pending tables match answers by.
    /// `None` for notifications.
    pub id: Option<String>,
    /// The id exactly as its sender wrote it: what that sender gets back.
    pub raw_id: Option<String>,
    /// Where `raw_id` starts in the message.
    id_at: usize,
    /// The method, for requests and notifications.
    pub method: Option<String>,
    /// `params.name` of a `tools/call` request.
    pub tool: Option<String>,
    /// For responses and errors: what the answer says.
    pub reply: Option<Reply>,
}

/// What an answer says, as the reader saw it: plugins that are not handed the
/// body learn the outcome from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A `result`; `tool_error` when it is an object with `"isError": true`.
    Result {
        /// See above.
        tool_error: bool,
    },
    /// An `error`.
    Error {
        /// `error.code`, when an integer that fits.
        code: Option<i32>,
        /// `error.message`, when a string: at most its first [`REPLY_MESSAGE_BYTES`].
        message: String,
    },
}

/// How much of an error's message a [`Reply`] keeps.
pub const REPLY_MESSAGE_BYTES: usize = 4096;

/// A message as it travels: the original bytes (no trailing newline) and its head.
#[derive(Debug, Clone)]
pub struct Message {
    /// The bytes as they arrived, forwarded as-is when nothing changes them.
    pub raw: Bytes,
    /// What was parsed from `raw`.
    pub head: Head,
    /// The bytes the strict reader checked (`raw` as parsed, shared, not
    /// copied): while `raw` is still they, it is known to be UTF-8.
    checked: Bytes,
}

/// Why a line could not be routed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON text: broken grammar, invalid UTF-8, a lone surrogate escape.
    #[error("parse error: {reason}")]
    Json {
        /// What is wrong.
        reason: String,
        /// The id, when one was read before the fault.
        id: Option<String>,
    },
    /// JSON, but not a single JSON-RPC 2.0 message, or one parsers would read
    /// differently (a duplicate key, nesting too deep to judge).
    #[error("invalid request: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
        /// The id, when one could be read, so the error can answer it.
        id: Option<String>,
    },
}

impl ParseError {
    /// The JSON-RPC error code to answer with.
    pub fn code(&self) -> i32 {
        match self {
            ParseError::Json { .. } => code::PARSE_ERROR,
            ParseError::Invalid { .. } => code::INVALID_REQUEST,
        }
    }

    /// The id to answer (as its sender wrote it), if any could be read.
    pub fn id(&self) -> Option<&str> {
        match self {
            ParseError::Json { id, .. } | ParseError::Invalid { id, .. } => id.as_deref(),
        }
    }

    /// The id by value ([`Head::id`]), if one could be read.
    pub fn id_key(&self) -> Option<String> {
        self.id().and_then(|id| reader::id_key(id.as_bytes()).ok())
    }
}

impl Message {
    /// Reads one message, checked throughout. The bytes are kept, not copied.
    ///
    /// A message is also made one line: JSON allows CR and LF between tokens
    /// (a pretty-printed HTTP body), but a stdio peer ends a message at each
    /// (some at a lone CR too), and would read the pieces as messages of their
    /// own that no plugin judged. The strict reader refuses them inside
    /// strings, so every CR or LF left is whitespace: each becomes a space,
    /// which keeps the meaning and every offset.
    pub fn parse(raw: Bytes) -> Result<Message, ParseError> {
        let head = parse_head(&raw)?;
        let raw = one_line(raw);
        Ok(Message { checked: raw.clone(), raw, head })
    }

    /// The message as text, for a plugin's hook. A message is UTF-8 once read
    /// (the strict reader checks every string, and anything else must be ASCII
    /// JSON): that check is not run again, 1 MiB at a time, for every plugin.
    pub fn text(&self) -> Result<&str, std::str::Utf8Error> {
        let same = self.raw.as_ptr() == self.checked.as_ptr() && self.raw.len() == self.checked.len();
        if !same {
            return std::str::from_utf8(&self.raw);
        }
        // SAFETY: `raw` is the very memory `parse` read and found UTF-8
        // (`one_line` only turns CR and LF into spaces): `checked` holds it,
        // so it cannot have been freed and reused, and `Bytes` are immutable.
        #[allow(unsafe_code)]
        Ok(unsafe { std::str::from_utf8_unchecked(&self.raw) })
    }

    /// The message under another id (JSON text), the rest byte for byte.
    pub fn with_raw_id(&self, id: &str) -> Bytes {
        match &self.head.raw_id {
            Some(raw_id) if raw_id != id => {
                let at = self.head.id_at;
                let mut out = Vec::with_capacity(self.raw.len() + id.len());
                out.extend_from_slice(&self.raw[..at]);
                out.extend_from_slice(id.as_bytes());
                out.extend_from_slice(&self.raw[at + raw_id.len()..]);
                Bytes::from(out)
            }
            _ => self.raw.clone(),
        }
    }
}

/// `raw` with every CR and LF turned into a space (copied only if it has any).
/// Only for text whose strings hold none (checked JSON, or a stdio line).
pub fn one_line(raw: Bytes) -> Bytes {
    if memchr::memchr2(b'\n', b'\r', &raw).is_none() {
        return raw;
    }
    let mut flat = raw.to_vec();
    for byte in &mut flat {
        if matches!(*byte, b'\n' | b'\r') {
            *byte = b' ';
        }
    }
    Bytes::from(flat)
}

/// Reads kind, id, method and tool name out of one JSON-RPC message, checking
/// all of it (see [`reader`]): a message this accepts means one thing to
/// every conforming parser.
pub fn parse_head(raw: &[u8]) -> Result<Head, ParseError> {
    if is_batch(raw) {
        reader::check_text(raw).map_err(|f| fault(f, None))?;
        return Err(invalid("a JSON-RPC batch is not accepted here", None));
    }
    let first = raw.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        // JSON that is no object is no JSON-RPC message; anything else is no JSON.
        reader::check_text(raw).map_err(|f| fault(f, None))?;
        return Err(invalid("not a JSON-RPC message: expected an object", None));
    }
    let top = reader::read_object(raw).map_err(|(f, id)| fault(f, id))?;
    let raw_id = top.id.map(|id| String::from_utf8_lossy(id).into_owned());
    let id = match top.id {
        Some(text) => Some(reader::id_key(text).map_err(|why| invalid(&why, None))?),
        None => None,
    };
    if !top.jsonrpc_ok {
        return Err(invalid("\"jsonrpc\" must be \"2.0\"", raw_id));
    }
    let method = match top.method {
        Some(Ok(method)) => Some(method),
        Some(Err(())) => return Err(invalid("\"method\" must be a string", raw_id)),
        None => None,
    };
    let kind = match (&method, &id, top.has_result, top.has_error) {
        (Some(_), Some(_), false, false) => Kind::Request,
        (Some(_), None, false, false) => Kind::Notification,
        (None, Some(_), true, false) => Kind::Response,
        (None, _, false, true) => Kind::Error,
        _ => return Err(invalid("not a request, notification, response or error", raw_id)),
    };
    let tool = match &method {
        Some(m) if m == method::TOOLS_CALL && kind == Kind::Request => top.name,
        _ => None,
    };
    let reply = match kind {
        Kind::Response => Some(Reply::Result { tool_error: top.tool_error }),
        Kind::Error => {
            let [code, message] = top.error.unwrap_or_default();
            // By value, as a JavaScript or pydantic client reads it: `-32600.0` is -32600.
            let code = code.and_then(|c| reader::integer(c).ok()).and_then(|c| i32::try_from(c).ok());
            let message = match message {
                Some(raw) if raw.first() == Some(&b'"') => {
                    let text = reader::string_value(raw).map_err(|f| fault(f, top.id))?;
                    let mut end = text.len().min(REPLY_MESSAGE_BYTES);
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    text[..end].to_owned()
                }
                _ => String::new(),
            };
            Some(Reply::Error { code, message })
        }
        Kind::Request | Kind::Notification => None,
    };
    Ok(Head { kind, id, raw_id, id_at: top.id_at, method, tool, reply })
}

fn fault(fault: reader::Fault, id: Option<&[u8]>) -> ParseError {
    let id = id.map(|i| String::from_utf8_lossy(i).into_owned());
    match fault {
        reader::Fault::Syntax(reason) => ParseError::Json { reason, id },
        reader::Fault::Ambiguous(reason) => ParseError::Invalid { reason, id },
    }
}

/// A JSON id (or progress token) by value, as [`Head::id`] keys it; `None`
/// for text that is no valid id.
pub fn id_key(id: &str) -> Option<String> {
    reader::id_key(id.as_bytes()).ok()
}

fn invalid(reason: &str, id: Option<String>) -> ParseError {
    ParseError::Invalid { reason: reason.to_owned(), id }
}

/// `text` if it is one JSON object by the strict rules every message is read
/// by (no duplicate key, valid UTF-8 and escapes, bounded depth): claims and
/// other JSON Warden hands to plugins as it was given.
pub fn strict_object(text: &str) -> Option<String> {
    let trimmed = text.trim();
    (trimmed.starts_with('{') && reader::check_text(trimmed.as_bytes()).is_ok()).then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_message_is_text_once_read_and_checked_again_once_changed() {
        let mut m = Message::parse(Bytes::from_static(
            "{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"params\":{\"é\":1}}\r\n".as_bytes(),
        ))
        .expect("a message");
        assert_eq!(m.text(), Ok("{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"params\":{\"é\":1}}  "));
        m.raw = Bytes::from_static(b"{\"x\":\"\xff\"}");
        assert!(m.text().is_err());
    }

    #[test]
    fn prefix_heads_read_only_whole_fields() {
        let call = prefix_head(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"arguments":{"text":"aaa"#);
        assert_eq!(call, PrefixHead { id: Some("7".into()), method: Some("tools/call".into()), answer: false });
        let answer = prefix_head(br#"{"id":"a","jsonrpc":"2.0","result":{"content":[{"text":"bb"#);
        assert_eq!(answer, PrefixHead { id: Some("\"a\"".into()), method: None, answer: true });
        assert_eq!(prefix_head(br#"{"id":12"#).id, None, "a number cut short is not an id");
        assert_eq!(prefix_head(br#"{"params":{"x":"yyy"#), PrefixHead::default());
        assert_eq!(prefix_head(b"[{\"id\":1,"), PrefixHead::default());
    }

    use super::*;

    #[test]
    fn reads_a_tool_call() {
        let h = parse_head(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"x":1}}}"#,
        )
        .unwrap();
        assert_eq!(h.kind, Kind::Request);
        assert_eq!(h.id.as_deref(), Some("7"));
        assert_eq!(h.tool.as_deref(), Some("echo"));
    }

    #[test]
    fn answers_say_how_they_went() {
        let reply = |text: &str| parse_head(text.as_bytes()).unwrap().reply;
        assert_eq!(
            reply(r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#),
            Some(Reply::Result { tool_error: false })
        );
        let tool_error =
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"text":"\"isError\":false"}],"isError":true}}"#;
        assert_eq!(reply(tool_error), Some(Reply::Result { tool_error: true }));
        // Only the result's own member counts, not a text or a nested object saying so.
        let nested = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"isError":true,"text":"\"isError\":true"}]}}"#;
        assert_eq!(reply(nested), Some(Reply::Result { tool_error: false }));
        assert_eq!(
            reply(r#"{"jsonrpc":"2.0","id":1,"error":{"message":"no \u0074ool","code":-32602,"data":{"code":1}}}"#),
            Some(Reply::Error { code: Some(-32602), message: "no tool".into() })
        );
        assert_eq!(
            reply(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-3.26e4,"message":"m"}}"#),
            Some(Reply::Error { code: Some(-32600), message: "m".into() })
        );
        assert_eq!(
            reply(r#"{"jsonrpc":"2.0","id":1,"error":{"code":99999999999,"message":7}}"#),
            Some(Reply::Error { code: None, message: String::new() })
        );
        let long = format!(r#"{{"jsonrpc":"2.0","id":1,"error":{{"code":1,"message":"{}"}}}}"#, "é".repeat(5000));
        let Some(Reply::Error { message, .. }) = reply(&long) else { panic!("an error") };
        assert!(message.len() <= REPLY_MESSAGE_BYTES && message.len() > REPLY_MESSAGE_BYTES - 2);
        assert_eq!(reply(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), None);
    }

    #[test]
    fn large_messages_are_read_whole() {
        let text = "x".repeat(256 * 1024);
        let msg = format!(
            r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"arguments":{{"t":"{text}"}},"name":"echo"}}}}"#
        );
        let head = parse_head(msg.as_bytes()).unwrap();
        assert_eq!((head.kind, head.tool.as_deref()), (Kind::Request, Some("echo")));
        let twice = msg.replacen(r#""name":"echo""#, r#""name":"echo","name":"rm""#, 1);
        assert!(matches!(parse_head(twice.as_bytes()), Err(ParseError::Invalid { .. })));
    }

    #[test]
    fn answers_go_back_under_the_id_as_written() {
        let m = Message::parse(Bytes::from_static(br#"{"jsonrpc":"2.0","id":100.0,"result":{}}"#)).unwrap();
        assert_eq!(m.head.id.as_deref(), Some("100"));
        assert_eq!(&m.with_raw_id("1e2")[..], br#"{"jsonrpc":"2.0","id":1e2,"result":{}}"#);
        assert_eq!(&m.with_raw_id("100.0")[..], &m.raw[..]);
        let bad = parse_head(br#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#).unwrap_err();
        assert_eq!(bad.code(), code::INVALID_REQUEST);
    }

    #[test]
    fn sniffed_ids_are_top_level_only() {
        assert_eq!(sniff_id(br#"{"jsonrpc":"2.0","params":{"id":666,"x":"#), None);
        assert_eq!(sniff_id(br#"{"jsonrpc":"2.0","id":5,"params":{"id":666,"x":"#).as_deref(), Some("5"));
        assert_eq!(sniff_id(br#"{"id":5,"id":6,"params":{"#), None);
    }

    #[test]
    fn odd_params_do_not_break_routing() {
        let tool = |s: &str| parse_head(s.as_bytes()).map(|h| h.tool);
        assert_eq!(tool(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1,{"name":"x"}]}"#), Ok(None));
        assert_eq!(tool(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":{"a":1}}}"#), Ok(None));
        assert_eq!(tool(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":null}"#), Ok(None));
        assert_eq!(tool(r#"{"jsonrpc":"2.0","id":1,"method":"other","params":{"name":"x"}}"#), Ok(None));
        assert_eq!(
            tool(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"name":"inner"},"name":"outer"}}"#
            ),
            Ok(Some("outer".into()))
        );
    }

    #[test]
    fn tells_kinds_apart() {
        let k = |s: &str| parse_head(s.as_bytes()).map(|h| h.kind);
        assert_eq!(k(r#"{"jsonrpc":"2.0","method":"notifications/x"}"#), Ok(Kind::Notification));
        assert_eq!(k(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#), Ok(Kind::Response));
        assert_eq!(k(r#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}}"#), Ok(Kind::Error));
        assert!(matches!(k("{nope"), Err(ParseError::Json { .. })));
        assert!(matches!(k(r#"{"jsonrpc":"2.0","id":1}"#), Err(ParseError::Invalid { .. })));
        assert!(matches!(k(r#"[1]"#), Err(ParseError::Invalid { .. })));
        assert!(matches!(k(r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#), Err(ParseError::Invalid { .. })));
    }

    #[test]
    fn batches_split_into_their_messages_and_answers_join() {
        let raw = Bytes::from_static(br#" [{"jsonrpc":"2.0","id":1,"method":"a"}, {"jsonrpc":"2.0","method":"b"}] "#);
        assert!(is_batch(&raw));
        let parts = split_batch(&raw).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(&parts[1][..], br#"{"jsonrpc":"2.0","method":"b"}"#);
        assert!(matches!(split_batch(&Bytes::from_static(b"[]")), Err(ParseError::Invalid { .. })));
        assert!(matches!(split_batch(&Bytes::from_static(b"[1,")), Err(ParseError::Json { .. })));
        let joined = join_batch(&[Bytes::from_static(b"{\"a\":1}"), Bytes::from_static(b"{\"b\":2}")]);
        assert_eq!(&joined[..], br#"[{"a":1},{"b":2}]"#);
        assert!(!is_batch(br#"{"jsonrpc":"2.0"}"#));
    }

    #[test]
    fn invalid_messages_keep_their_id() {
        let e = parse_head(br#"{"jsonrpc":"1.0","id":3,"method":"x"}"#).unwrap_err();
        assert_eq!(e.id(), Some("3"));
    }

    #[test]
    fn sniffs_ids_of_huge_messages() {
        assert_eq!(sniff_id(br#"{"jsonrpc":"2.0","id": 42,"method":"tools/call","params":{"#).as_deref(), Some("42"));
        assert_eq!(sniff_id(br#"{"id":"abc","params":{"x":"#).as_deref(), Some("\"abc\""));
        assert_eq!(sniff_id(br#"{"method":"x","params":{"#), None);
    }

    #[test]
    fn builds_errors() {
        let e = error_response(Some("1"), -1, "no \"way\"", Some(r#"{"a":1}"#));
        let v: serde_json::Value = serde_json::from_slice(&e).unwrap();
        assert_eq!(v["error"]["message"], "no \"way\"");
        assert_eq!(v["error"]["data"]["a"], 1);
    }
}
