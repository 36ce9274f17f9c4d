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
    read_tool_call(message).ok()
}

/// Reads a `tools/call` request, or says why it cannot (not JSON, nested deeper
/// than the parser goes, no tool name): for plugins that refuse what they cannot read.
pub fn read_tool_call(message: &str) -> Result<ToolCall, String> {
    let mut value: Value = serde_json::from_str(message).map_err(|e| format!("not readable as JSON: {e}"))?;
    let Some(params) = value.get_mut("params").and_then(Value::as_object_mut) else {
        return Err("no params object".into());
    };
    let Some(name) = params.get("name").and_then(Value::as_str).map(str::to_owned) else {
        return Err("no tool name".into());
    };
    let arguments = params.remove("arguments").unwrap_or_else(|| Value::Object(Map::new()));
    Ok(ToolCall { name, arguments })
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
    fn says_why_a_tool_call_cannot_be_read() {
        let deep = format!(r#"{{"params":{{"name":"x","arguments":{}1{}}}}}"#, "[".repeat(200), "]".repeat(200));
        assert!(read_tool_call(&deep).unwrap_err().contains("recursion limit"));
        assert_eq!(read_tool_call(r#"{"params":{}}"#).unwrap_err(), "no tool name");
        assert_eq!(read_tool_call(r#"{"params":[1]}"#).unwrap_err(), "no params object");
        assert!(tool_call("{").is_none());
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
