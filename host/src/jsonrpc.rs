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

/// Reads kind, id, method and tool name out of one JSON-RPC message.
pub fn parse_head(raw: &[u8]) -> Result<Head, ParseError> {
    let first = raw.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        // Batches only existed in 2025-03-26; no client in use sends them.
        serde_json::from_slice::<IgnoredAny>(raw).map_err(|e| ParseError::Json(e.to_string()))?;
        return Err(invalid("batches are not supported", None));
    }
    let probe: Probe<'_> = serde_json::from_slice(raw).map_err(|e| {
        if e.is_data() {
            invalid(&format!("not a JSON-RPC message: {e}"), None)
        } else {
            ParseError::Json(e.to_string())
        }
    })?;
    let id = probe.id.map(|r| r.get().to_owned());
    if let Some(id_text) = &id {
        let first = id_text.as_bytes().first();
        if !matches!(first, Some(b'"' | b'-' | b'0'..=b'9')) {
            return Err(invalid("id must be a string or a number", None));
        }
    }
    if probe.jsonrpc != Some("2.0") {
        return Err(invalid("\"jsonrpc\" must be \"2.0\"", id));
    }
    let kind = match (&probe.method, &id, &probe.result, &probe.error) {
        (Some(_), Some(_), None, None) => Kind::Request,
        (Some(_), None, None, None) => Kind::Notification,
        (None, Some(_), Some(_), None) => Kind::Response,
        (None, _, None, Some(_)) => Kind::Error,
        _ => return Err(invalid("not a request, notification, response or error", id)),
    };
    let tool = match &probe.method {
        Some(m) if m == "tools/call" && kind == Kind::Request => probe.params.name,
        _ => None,
    };
    Ok(Head { kind, id, method: probe.method, tool })
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
