//! Just enough JSON-RPC to route a message: its kind, id, method and tool name.
//!
//! Warden is transparent by default: it never rebuilds a message it did not
//! change. [`Message`] keeps the bytes as they arrived and a small [`Head`]
//! parsed from them; unknown fields, methods and `_meta` ride along untouched.

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Error codes Warden itself answers with. The JSON-RPC reserved ones come
/// first; the rest sit in the implementation-defined server range.
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
    pub const PLUGIN_FAILED: i32 = -32050;
    /// A plugin asked for human approval, which this Warden cannot collect.
    pub const APPROVAL_UNAVAILABLE: i32 = -32051;
    /// The upstream server went away before answering.
    pub const UPSTREAM_FAILED: i32 = -32052;
    /// A message exceeded the configured size limit.
    pub const MESSAGE_TOO_LARGE: i32 = -32053;
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
}

/// What routing needs to know about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The shape.
    pub kind: Kind,
    /// The id exactly as written (`7`, `"a"`); `None` for notifications.
    pub id: Option<String>,
    /// The method, for requests and notifications.
    pub method: Option<String>,
    /// `params.name` of a `tools/call` request.
    pub tool: Option<String>,
}

/// A message as it travels: the original bytes (no trailing newline) and its head.
#[derive(Debug, Clone)]
pub struct Message {
    /// The bytes as they arrived, forwarded as-is when nothing changes them.
    pub raw: Bytes,
    /// What was parsed from `raw`.
    pub head: Head,
}

/// Why a line could not be routed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON at all.
    #[error("parse error: {0}")]
    Json(String),
    /// JSON, but not a single JSON-RPC 2.0 message.
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
            ParseError::Json(_) => code::PARSE_ERROR,
            ParseError::Invalid { .. } => code::INVALID_REQUEST,
        }
    }

    /// The id to answer, if any could be read.
    pub fn id(&self) -> Option<&str> {
        match self {
            ParseError::Json(_) => None,
            ParseError::Invalid { id, .. } => id.as_deref(),
        }
    }
}

/// The fields routing reads. Everything else is skipped without being kept.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow)]
    jsonrpc: Option<&'a str>,
    #[serde(borrow, default, deserialize_with = "raw_or_null")]
    id: Option<&'a RawValue>,
    method: Option<String>,
    #[serde(default)]
    params: ParamsProbe,
    result: Option<IgnoredAny>,
    error: Option<IgnoredAny>,
}

/// Keeps `"id": null` distinct from a missing id: both read as `None` here,
/// which is what routing wants (a null id can never be answered).
fn raw_or_null<'de, D>(d: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw: &RawValue = Deserialize::deserialize(d)?;
    Ok((raw.get() != "null").then_some(raw))
}

/// `params.name` when `params` is an object with a string `name`, read in the
/// same pass as the rest of the message (a 1 MiB call is scanned once).
#[derive(Default)]
struct ParamsProbe {
    name: Option<String>,
}

impl<'de> Deserialize<'de> for ParamsProbe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = ParamsProbe;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON-RPC params")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ParamsProbe, A::Error> {
                let mut name = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "name" && name.is_none() {
                        name = map.next_value::<serde_json::Value>()?.as_str().map(str::to_owned);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(ParamsProbe { name })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ParamsProbe, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(ParamsProbe::default())
            }
            fn visit_unit<E>(self) -> Result<ParamsProbe, E> {
                Ok(ParamsProbe::default())
            }
        }
        d.deserialize_any(Visit)
    }
}

impl Message {
    /// Parses the head of one line. The bytes are kept, not copied.
    pub fn parse(raw: Bytes) -> Result<Message, ParseError> {
        let head = parse_head(&raw)?;
        Ok(Message { raw, head })
    }
}

/// Messages this large are routed by [`scan_head`]: a structural scan that
/// jumps over string contents instead of parsing every byte of them.
const SCAN_BYTES: usize = 64 * 1024;

/// Reads kind, id, method and tool name out of one JSON-RPC message.
pub fn parse_head(raw: &[u8]) -> Result<Head, ParseError> {
    if raw.len() >= SCAN_BYTES {
        return scan_head(raw);
    }
    strict_head(raw)
}

/// The head by a full serde parse: every value is checked.
fn strict_head(raw: &[u8]) -> Result<Head, ParseError> {
    let first = raw.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        // A batch is split (see `split_batch`) where one may come; not here.
        serde_json::from_slice::<IgnoredAny>(raw).map_err(|e| ParseError::Json(e.to_string()))?;
        return Err(invalid("a JSON-RPC batch is not accepted here", None));
    }
    let probe: Probe<'_> = serde_json::from_slice(raw).map_err(|e| {
        if e.is_data() {
            invalid(&format!("not a JSON-RPC message: {e}"), None)
        } else {
            ParseError::Json(e.to_string())
        }
    })?;
    let id = probe.id.map(|r| r.get().to_owned());
    let fields = Fields {
        jsonrpc_ok: probe.jsonrpc == Some("2.0"),
        id,
        method: probe.method,
        has_result: probe.result.is_some(),
        has_error: probe.error.is_some(),
        name: probe.params.name,
    };
    fields.into_head()
}

/// The top-level facts both readers gather.
struct Fields {
    jsonrpc_ok: bool,
    id: Option<String>,
    method: Option<String>,
    has_result: bool,
    has_error: bool,
    /// `params.name`, when a string.
    name: Option<String>,
}

impl Fields {
    fn into_head(self) -> Result<Head, ParseError> {
        let Fields { jsonrpc_ok, id, method, has_result, has_error, name } = self;
        if let Some(id_text) = &id {
            let first = id_text.as_bytes().first();
            if !matches!(first, Some(b'"' | b'-' | b'0'..=b'9')) {
                return Err(invalid("id must be a string or a number", None));
            }
        }
        if !jsonrpc_ok {
            return Err(invalid("\"jsonrpc\" must be \"2.0\"", id));
        }
        let kind = match (&method, &id, has_result, has_error) {
            (Some(_), Some(_), false, false) => Kind::Request,
            (Some(_), None, false, false) => Kind::Notification,
            (None, Some(_), true, false) => Kind::Response,
            (None, _, false, true) => Kind::Error,
            _ => return Err(invalid("not a request, notification, response or error", id)),
        };
        let tool = match &method {
            Some(m) if m == "tools/call" && kind == Kind::Request => name,
            _ => None,
        };
        Ok(Head { kind, id, method, tool })
    }
}

/// The head by a structural scan, for large messages: the top-level object and
/// `params` are walked key by key, other values are skipped, and string
/// contents are jumped over with `memchr`. It checks UTF-8, quoting, nesting and
/// the fields routing reads; it does not check every number and escape inside
/// the values it skips (the peer still does).
pub fn scan_head(raw: &[u8]) -> Result<Head, ParseError> {
    if std::str::from_utf8(raw).is_err() {
        return Err(ParseError::Json("invalid UTF-8".into()));
    }
    let mut scan = Scanner { b: raw, i: 0 };
    scan.ws();
    match scan.peek() {
        Some(b'[') => {
            scan.skip_value()?;
            return Err(invalid("a JSON-RPC batch is not accepted here", None));
        }
        Some(b'{') => {}
        _ => return Err(ParseError::Json("expected a JSON object".into())),
    }
    let mut fields =
        Fields { jsonrpc_ok: false, id: None, method: None, has_result: false, has_error: false, name: None };
    let mut params = None;
    scan.object(|key, value| match key {
        "jsonrpc" => fields.jsonrpc_ok = value == b"\"2.0\"",
        "id" => fields.id = (value != b"null").then(|| String::from_utf8_lossy(value).into_owned()),
        "method" => fields.method = serde_json::from_slice::<String>(value).ok(),
        "params" => params = Some(value),
        "result" => fields.has_result = true,
        "error" => fields.has_error = true,
        _ => {}
    })?;
    scan.ws();
    if scan.i != raw.len() {
        return Err(scan.error("trailing characters"));
    }
    if fields.method.as_deref() == Some("tools/call") {
        if let Some(params) = params.filter(|p| p.first() == Some(&b'{')) {
            let mut inner = Scanner { b: params, i: 0 };
            inner.object(|key, value| {
                if key == "name" && fields.name.is_none() {
                    fields.name = serde_json::from_slice::<String>(value).ok();
                }
            })?;
        }
    }
    fields.into_head()
}

/// The one protocol version with JSON-RPC batches (2025-06-18 removed them).
pub const BATCH_VERSION: &str = "2025-03-26";

/// The answer to an `initialize` inside a batch.
pub const BATCHED_INITIALIZE: &str = "initialize must not be part of a JSON-RPC batch";

/// Why a session at protocol `version` takes no batch; `None` when it does.
pub fn batch_refused(version: &str) -> Option<String> {
    (version != BATCH_VERSION)
        .then(|| format!("JSON-RPC batches are not part of protocol version {version} (only {BATCH_VERSION})"))
}

/// Whether a message is a JSON-RPC batch: a JSON array.
pub fn is_batch(raw: &[u8]) -> bool {
    raw.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
}

/// The messages of a batch, each a slice of `raw` (not copied).
pub fn split_batch(raw: &Bytes) -> Result<Vec<Bytes>, ParseError> {
    let items: Vec<&RawValue> = serde_json::from_slice(raw).map_err(|e| {
        if e.is_data() {
            invalid(&format!("not a batch of JSON-RPC messages: {e}"), None)
        } else {
            ParseError::Json(e.to_string())
        }
    })?;
    if items.is_empty() {
        return Err(invalid("empty batch", None));
    }
    Ok(items.iter().map(|item| raw.slice_ref(item.get().as_bytes())).collect())
}

/// The answers to a batch, as one JSON array.
pub fn join_batch(answers: &[Bytes]) -> Bytes {
    let mut out = Vec::with_capacity(answers.iter().map(|a| a.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, answer) in answers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(answer);
    }
    out.push(b']');
    Bytes::from(out)
}

/// The protocol version an `initialize` answer settles on (`result.protocolVersion`).
pub fn negotiated_version(answer: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Init {
        result: Option<InitResult>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct InitResult {
        protocol_version: Option<String>,
    }
    // Most messages are not `initialize` answers: no parse for them.
    memchr::memmem::find(answer, b"\"protocolVersion\"")?;
    serde_json::from_slice::<Init>(answer).ok()?.result?.protocol_version
}

/// The progress token a message carries, as JSON text: `params._meta.progressToken`
/// of a request that asks for progress, or `params.progressToken` of a
/// `notifications/progress`. Messages without the word are not parsed.
pub fn progress_token(message: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Outer<'a> {
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Params<'a> {
        #[serde(borrow, rename = "_meta")]
        meta: Option<Meta<'a>>,
        #[serde(borrow)]
        progress_token: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta<'a> {
        #[serde(borrow)]
        progress_token: Option<&'a RawValue>,
    }
    memchr::memmem::find(message, b"progressToken")?;
    let params = serde_json::from_slice::<Outer>(message).ok()?.params?;
    let token = params.progress_token.or(params.meta.and_then(|m| m.progress_token))?;
    Some(token.get().to_owned())
}

/// `params.requestId` of a `notifications/cancelled`, as JSON text.
pub fn cancelled_request(message: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Cancelled {
        params: Option<Params>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Params {
        request_id: Option<serde_json::Value>,
    }
    let id = serde_json::from_slice::<Cancelled>(message).ok()?.params?.request_id?;
    (!id.is_null()).then(|| id.to_string())
}

/// What the first bytes of a long message say about it: the top-level fields
/// complete in `prefix`, read up to the first one still arriving (or up to
/// `result` / `error`, which mark an answer).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PrefixHead {
    /// The id as JSON text, if it came early.
    pub id: Option<String>,
    /// The method, if it came early.
    pub method: Option<String>,
    /// Whether a `result` or `error` member starts in the prefix.
    pub answer: bool,
}

/// Reads a [`PrefixHead`] from the start of a message whose end has not arrived.
pub fn prefix_head(prefix: &[u8]) -> PrefixHead {
    let mut head = PrefixHead::default();
    let mut scan = Scanner { b: prefix, i: 0 };
    if scan.eat(b'{').is_err() {
        return head;
    }
    loop {
        scan.ws();
        if scan.peek() != Some(b'"') {
            return head;
        }
        let start = scan.i;
        if scan.string().is_err() || scan.i > prefix.len() {
            return head;
        }
        let Ok(key) = serde_json::from_slice::<String>(&prefix[start..scan.i]) else { return head };
        if scan.eat(b':').is_err() {
            return head;
        }
        if key == "result" || key == "error" {
            head.answer = true;
            return head;
        }
        scan.ws();
        let value_start = scan.i;
        if scan.skip_value().is_err() || scan.i > prefix.len() {
            return head;
        }
        let value = &prefix[value_start..scan.i];
        scan.ws();
        // Only a value followed by a comma is known to be whole (`12` may be
        // the start of `123`).
        if scan.peek() != Some(b',') {
            return head;
        }
        scan.i += 1;
        match key.as_str() {
            "id" => head.id = (value != b"null").then(|| String::from_utf8_lossy(value).into_owned()),
            "method" => head.method = serde_json::from_slice::<String>(value).ok(),
            _ => {}
        }
    }
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn error(&self, what: &str) -> ParseError {
        ParseError::Json(format!("{what} at byte {}", self.i))
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), ParseError> {
        self.ws();
        if self.peek() != Some(c) {
            return Err(self.error(&format!("expected '{}'", c as char)));
        }
        self.i += 1;
        Ok(())
    }

    /// At an opening quote: moves past the closing one.
    fn string(&mut self) -> Result<(), ParseError> {
        self.i += 1;
        loop {
            match memchr::memchr2(b'"', b'\\', &self.b[self.i..]) {
                Some(k) if self.b[self.i + k] == b'\\' => self.i += k + 2,
                Some(k) => {
                    self.i += k + 1;
                    return Ok(());
                }
                None => return Err(self.error("unterminated string")),
            }
            if self.i > self.b.len() {
                return Err(self.error("unterminated string"));
            }
        }
    }

    fn skip_value(&mut self) -> Result<(), ParseError> {
        self.ws();
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'{' | b'[') => {
                let mut stack: Vec<u8> = Vec::new();
                loop {
                    match self.peek() {
                        None => return Err(self.error("unterminated container")),
                        Some(b'"') => self.string()?,
                        Some(open @ (b'{' | b'[')) => {
                            stack.push(if open == b'{' { b'}' } else { b']' });
                            self.i += 1;
                        }
                        Some(close @ (b'}' | b']')) => {
                            if stack.pop() != Some(close) {
                                return Err(self.error("mismatched bracket"));
                            }
                            self.i += 1;
                            if stack.is_empty() {
                                return Ok(());
                            }
                        }
                        Some(_) => self.i += 1,
                    }
                }
            }
            Some(_) => {
                let start = self.i;
                while self.peek().is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace()) {
                    self.i += 1;
                }
                let token = &self.b[start..self.i];
                let scalar = matches!(token, b"true" | b"false" | b"null")
                    || serde_json::from_slice::<serde_json::Number>(token).is_ok();
                if scalar {
                    Ok(())
                } else {
                    Err(self.error("invalid value"))
                }
            }
            None => Err(self.error("expected a value")),
        }
    }

    /// Walks an object, calling `field` with each key and its raw value.
    fn object(&mut self, mut field: impl FnMut(&str, &'a [u8])) -> Result<(), ParseError> {
        self.eat(b'{')?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a key"));
            }
            let start = self.i;
            self.string()?;
            let key: String =
                serde_json::from_slice(&self.b[start..self.i]).map_err(|e| ParseError::Json(e.to_string()))?;
            self.eat(b':')?;
            self.ws();
            let value_start = self.i;
            self.skip_value()?;
            field(&key, &self.b[value_start..self.i]);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }
}

fn invalid(reason: &str, id: Option<String>) -> ParseError {
    ParseError::Invalid { reason: reason.to_owned(), id }
}

/// Builds an error response. `id` is JSON text; `None` becomes `null`.
pub fn error_response(id: Option<&str>, code: i32, message: &str, data: Option<&str>) -> Bytes {
    let id = id.unwrap_or("null");
    let message = serde_json::Value::from(message);
    let text = match data.and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok()) {
        Some(data) => {
            format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message},"data":{data}}}}}"#)
        }
        None => format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message}}}}}"#),
    };
    Bytes::from(text)
}

/// Builds a result response from a JSON text the caller has checked.
pub fn result_response(id: &str, result: &RawValue) -> Bytes {
    Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{}}}"#, result.get()))
}

/// Best effort: the id of a message too large to parse, read from its first
/// bytes, so that its sender still gets an answer.
pub fn sniff_id(prefix: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(prefix);
    let mut rest = &text[..];
    while let Some(at) = rest.find("\"id\"") {
        rest = &rest[at + 4..];
        let after = rest.trim_start();
        let Some(value) = after.strip_prefix(':') else { continue };
        let value = value.trim_start();
        let end = if let Some(s) = value.strip_prefix('"') {
            s.find('"').map(|e| e + 2)
        } else {
            value.find(|c: char| !(c.is_ascii_digit() || c == '-')).filter(|&e| e > 0)
        };
        if let Some(end) = end {
            let candidate = &value[..end];
            if serde_json::from_str::<serde_json::Value>(candidate).is_ok() {
                return Some(candidate.to_owned());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
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

    /// The structural scan agrees with the full parse on every shape routing meets.
    #[test]
    fn the_scan_agrees_with_the_parse() {
        let cases = [
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"x":[1,{"y":"]}"}]}}}"#,
            r#" { "params" : {"arguments":{"name":"inner"},"name":"outer"} , "method":"tools/call","id":"a\"b","jsonrpc":"2.0" } "#,
            r#"{"jsonrpc":"2.0","method":"notifications/x","params":[1,2,{"a":null}]}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"q\\\"{["}]}}"#,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#,
            r#"{"jsonrpc":"1.0","id":3,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#,
            r#"{"jsonrpc":"2.0","id":-1.5e3,"result":true}"#,
        ];
        for case in cases {
            assert_eq!(scan_head(case.as_bytes()), strict_head(case.as_bytes()), "{case}");
        }
        for bad in [
            r#"{"jsonrpc":"2.0","id":1,"result":{"a":"unterminated}}"#,
            r#"{"a":[1,2}"#,
            r#"{"a":1} x"#,
            r#"{"a":tru}"#,
            "[1,2]",
            "\"x\"",
        ] {
            assert!(scan_head(bad.as_bytes()).is_err(), "{bad}");
            assert!(strict_head(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn large_messages_take_the_scan() {
        let text = "x".repeat(SCAN_BYTES);
        let msg = format!(
            r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"arguments":{{"t":"{text}"}},"name":"echo"}}}}"#
        );
        let head = parse_head(msg.as_bytes()).unwrap();
        assert_eq!((head.kind, head.tool.as_deref()), (Kind::Request, Some("echo")));
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
        assert!(matches!(k("{nope"), Err(ParseError::Json(_))));
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
        assert!(matches!(split_batch(&Bytes::from_static(b"[1,")), Err(ParseError::Json(_))));
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
