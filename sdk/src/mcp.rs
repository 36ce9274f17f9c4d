//! Helpers for the common MCP message shapes.
//!
//! Messages arrive as JSON text; these read what plugins usually need and build
//! the verdicts that change it. Everything not touched is kept as it was.

use serde_json::{Map, Value};

use crate::{RpcError, Verdict};

/// The error code of a policy denial (in JSON-RPC's server-defined range).
pub const DENIED: i32 = -32001;

/// A `tools/call` request's tool name and arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// `params.name`.
    pub name: String,
    /// `params.arguments` (an empty object when absent).
    pub arguments: Value,
}

/// Parses a message; `None` if it is not JSON (Warden only passes valid JSON).
pub fn parse(message: &str) -> Option<Value> {
    serde_json::from_str(message).ok()
}

/// Reads a `tools/call` request.
pub fn tool_call(message: &str) -> Option<ToolCall> {
    let value = parse(message)?;
    let params = value.get("params")?;
    let name = params.get("name")?.as_str()?.to_owned();
    let arguments = params.get("arguments").cloned().unwrap_or_else(|| Value::Object(Map::new()));
    Some(ToolCall { name, arguments })
}

/// A verdict that replaces a `tools/call` request's arguments.
pub fn set_arguments(message: &str, arguments: Value) -> Verdict {
    match parse(message) {
        Some(mut value) => {
            if let Some(params) = value.get_mut("params").and_then(Value::as_object_mut) {
                params.insert("arguments".into(), arguments);
            }
            Verdict::Modify(value.to_string())
        }
        None => Verdict::Forward,
    }
}

/// Applies `f` to a response's `result`; forwards unchanged unless `f` returns true
/// (meaning it changed something).
pub fn rewrite_result(message: &str, f: impl FnOnce(&mut Value) -> bool) -> Verdict {
    let Some(mut value) = parse(message) else { return Verdict::Forward };
    let Some(result) = value.get_mut("result") else { return Verdict::Forward };
    if f(result) {
        Verdict::Modify(value.to_string())
    } else {
        Verdict::Forward
    }
}

/// Removes tools from a `tools/list` response for which `keep(name)` is false.
pub fn filter_tools(message: &str, mut keep: impl FnMut(&str) -> bool) -> Verdict {
    rewrite_result(message, |result| {
        let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else { return false };
        let before = tools.len();
        tools.retain(|tool| tool.get("name").and_then(Value::as_str).is_none_or(&mut keep));
        tools.len() != before
    })
}

/// Calls `f` on every string inside `value` (object keys excluded); true if any changed.
pub fn rewrite_strings(value: &mut Value, f: &mut impl FnMut(&mut String) -> bool) -> bool {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter_mut().fold(false, |changed, v| rewrite_strings(v, f) | changed),
        Value::Object(map) => map.values_mut().fold(false, |changed, v| rewrite_strings(v, f) | changed),
        _ => false,
    }
}

/// Rejects the message with `code` and `message`.
pub fn reject(code: i32, message: impl Into<String>) -> Verdict {
    Verdict::Reject(RpcError { code, message: message.into(), data: None })
}

/// Rejects the message with [`DENIED`] and a reason.
pub fn deny(message: impl Into<String>) -> Verdict {
    reject(DENIED, message)
}

/// Rejects with [`DENIED`], a reason and structured detail.
pub fn deny_with(message: impl Into<String>, data: &Value) -> Verdict {
    Verdict::Reject(RpcError { code: DENIED, message: message.into(), data: Some(data.to_string()) })
}

/// Answers a request here with `result`; the upstream never sees it.
pub fn respond(result: &Value) -> Verdict {
    Verdict::Respond(result.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_tool_calls() {
        let call =
            tool_call(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":1}}}"#);
        assert_eq!(call, Some(ToolCall { name: "x".into(), arguments: json!({"a": 1}) }));
    }

    #[test]
    fn filters_tools() {
        let msg = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"b"}],"nextCursor":"c"}}"#;
        let Verdict::Modify(text) = filter_tools(msg, |n| n != "b") else { panic!("not modified") };
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["result"], json!({"tools": [{"name": "a"}], "nextCursor": "c"}));
        assert!(matches!(filter_tools(msg, |_| true), Verdict::Forward));
    }

    #[test]
    fn rewrites_strings_deeply() {
        let mut v = json!({"a": ["x", {"b": "x"}], "c": 1});
        let changed = rewrite_strings(&mut v, &mut |s| {
            let hit = s == "x";
            if hit {
                *s = "y".into();
            }
            hit
        });
        assert!(changed);
        assert_eq!(v, json!({"a": ["y", {"b": "y"}], "c": 1}));
    }
}
