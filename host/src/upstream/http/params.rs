//! `x-mcp-header` (2026-07-28): a tool's input schema may name a header that
//! mirrors one of its arguments, and an HTTP client must then send
//! `Mcp-Param-<Name>` with that argument's value on `tools/call`. Warden is
//! that client to an HTTP upstream: it learns the annotations from the
//! `tools/list` answers it carries, drops (with a warning) any tool whose
//! annotations are invalid, as the spec requires, and computes the headers
//! from the message the upstream receives, after every plugin.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::era;

/// The annotation's key in a schema.
const ANNOTATION: &str = "x-mcp-header";

/// Most tools whose annotations are remembered.
const MAX_TOOLS: usize = 10_000;

/// The largest integer a header mirrors exactly (2^53 − 1).
const MAX_SAFE: i64 = (1 << 53) - 1;

/// A tool's mirrored arguments: the header, and the path of properties to its argument.
type Mirrors = Vec<(HeaderName, Vec<String>)>;

/// Each tool's mirrored arguments, by tool name.
#[derive(Default)]
pub(super) struct ParamHeaders(Mutex<HashMap<String, Mirrors>>);

impl ParamHeaders {
    /// Learns the annotations of a `tools/list` answer. Returns the answer
    /// without the tools whose annotations are invalid, if it had any.
    pub(super) fn learn(&self, message: &[u8]) -> Option<Bytes> {
        memchr::memmem::find(message, ANNOTATION.as_bytes())?;
        let mut top: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(message).ok()?;
        let mut result: BTreeMap<String, Box<RawValue>> = serde_json::from_str(top.get("result")?.get()).ok()?;
        let tools: Vec<Box<RawValue>> = serde_json::from_str(result.get("tools")?.get()).ok()?;
        let mut kept = Vec::with_capacity(tools.len());
        let mut dropped = 0usize;
        {
            let mut learned = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for raw in tools {
                let tool: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
                let name = tool.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
                match annotations(&tool) {
                    Some(headers) => {
                        if headers.is_empty() {
                            learned.remove(&name);
                        } else if learned.len() < MAX_TOOLS || learned.contains_key(&name) {
                            learned.insert(name, headers);
                        }
                        kept.push(raw);
                    }
                    None => {
                        tracing::warn!(tool = %name, "tool left out: its x-mcp-header annotations are invalid");
                        learned.remove(&name);
                        dropped += 1;
                    }
                }
            }
        }
        if dropped == 0 {
            return None;
        }
        result.insert("tools".into(), RawValue::from_string(serde_json::to_string(&kept).ok()?).ok()?);
        top.insert("result".into(), RawValue::from_string(serde_json::to_string(&result).ok()?).ok()?);
        serde_json::to_vec(&top).ok().map(Bytes::from)
    }

    /// The `Mcp-Param-*` headers of a `tools/call` of a tool with annotations.
    pub(super) fn headers_for(&self, message: &[u8]) -> Vec<(HeaderName, HeaderValue)> {
        let learned = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if learned.is_empty() {
            return Vec::new();
        }
        let Ok(call) = serde_json::from_slice::<Value>(message) else { return Vec::new() };
        if call.get("method").and_then(Value::as_str) != Some("tools/call") {
            return Vec::new();
        }
        let params = call.get("params");
        let Some(wanted) = params.and_then(|p| p.get("name")).and_then(Value::as_str).and_then(|n| learned.get(n))
        else {
            return Vec::new();
        };
        let arguments = params.and_then(|p| p.get("arguments"));
        wanted
            .iter()
            .filter_map(|(header, path)| {
                let value = path.iter().try_fold(arguments?, |v, key| v.get(key))?;
                let text = match value {
                    Value::String(s) => era::encode_header_value(s),
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => match n.as_i64() {
                        Some(i) if (-MAX_SAFE..=MAX_SAFE).contains(&i) => i.to_string(),
                        _ => return None,
                    },
                    _ => return None,
                };
                Some((header.clone(), HeaderValue::from_str(&text).ok()?))
            })
            .collect()
    }
}

/// A tool's annotations: `None` when any is invalid (not a token, given
/// twice, on a type other than integer, string or boolean, or reached other
/// than through `properties`).
fn annotations(tool: &Value) -> Option<Mirrors> {
    let schema = tool.get("inputSchema")?;
    let mut found = Vec::new();
    walk(schema, &mut Vec::new(), &mut found)?;
    // Every annotation in the schema must have been reached through `properties`.
    let everywhere = schema.to_string().matches(&format!("\"{ANNOTATION}\"")).count();
    if everywhere != found.len() {
        return None;
    }
    let mut seen: Vec<String> = Vec::new();
    let mut headers = Vec::new();
    for (name, path) in found {
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return None;
        }
        seen.push(lower);
        let header = HeaderName::from_bytes(format!("mcp-param-{name}").as_bytes()).ok()?;
        headers.push((header, path));
    }
    Some(headers)
}

fn walk(node: &Value, path: &mut Vec<String>, found: &mut Vec<(String, Vec<String>)>) -> Option<()> {
    let Some(properties) = node.get("properties").and_then(Value::as_object) else { return Some(()) };
    for (key, sub) in properties {
        path.push(key.clone());
        if let Some(annotation) = sub.get(ANNOTATION) {
            let name = annotation.as_str()?;
            let token =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            let typed = matches!(sub.get("type").and_then(Value::as_str), Some("integer" | "string" | "boolean"));
            if !token || !typed {
                return None;
            }
            found.push((name.to_owned(), path.clone()));
        }
        walk(sub, path, found)?;
        path.pop();
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(tools: Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}})).unwrap()
    }

    #[test]
    fn a_call_mirrors_its_annotated_arguments_and_invalid_tools_are_left_out() {
        let params = ParamHeaders::default();
        let tools = serde_json::json!([
            {"name": "query", "inputSchema": {"type": "object", "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "limit": {"type": "integer", "x-mcp-header": "Limit"},
                "dry": {"type": "boolean", "x-mcp-header": "Dry"},
                "opts": {"type": "object", "properties": {"tenant": {"type": "string", "x-mcp-header": "Tenant"}}}
            }}},
            {"name": "bad_type", "inputSchema": {"properties": {"x": {"type": "number", "x-mcp-header": "X"}}}},
            {"name": "bad_name", "inputSchema": {"properties": {"x": {"type": "string", "x-mcp-header": "a b"}}}},
            {"name": "twice", "inputSchema": {"properties": {
                "a": {"type": "string", "x-mcp-header": "Same"}, "b": {"type": "string", "x-mcp-header": "same"}}}},
            {"name": "in_items", "inputSchema": {"properties": {"a": {"type": "array", "items": {"type": "string", "x-mcp-header": "I"}}}}},
            {"name": "plain", "inputSchema": {"type": "object", "properties": {"big": {"type": "integer", "maximum": 1}}}}
        ]);
        // A number no f64 holds, to show kept tools are passed as written.
        let text = String::from_utf8(list(tools))
            .unwrap()
            .replace("\"maximum\":1", "\"maximum\":123456789012345678901234567890");
        let replaced = params.learn(text.as_bytes()).expect("invalid tools are dropped");
        let kept: Value = serde_json::from_slice(&replaced).unwrap();
        let names: Vec<&str> =
            kept["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["query", "plain"]);
        // What is kept is kept as it was written (a huge number stays whole).
        assert!(String::from_utf8_lossy(&replaced).contains("123456789012345678901234567890"));
        let call = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "query", "arguments": {
            "region": "eu-west", "limit": 5, "dry": false, "opts": {"tenant": "Zürich"}}}});
        let headers = params.headers_for(&serde_json::to_vec(&call).unwrap());
        let shown: Vec<(String, String)> =
            headers.iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned())).collect();
        assert!(shown.contains(&("mcp-param-region".into(), "eu-west".into())), "{shown:?}");
        assert!(shown.contains(&("mcp-param-limit".into(), "5".into())), "{shown:?}");
        assert!(shown.contains(&("mcp-param-dry".into(), "false".into())), "{shown:?}");
        assert!(shown.iter().any(|(n, v)| n == "mcp-param-tenant" && v.starts_with("=?base64?")), "{shown:?}");
        // Absent or null arguments, and integers past 2^53, send nothing.
        let call = serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "query", "arguments": {
            "region": null, "limit": 9007199254740993u64}}});
        assert!(params.headers_for(&serde_json::to_vec(&call).unwrap()).is_empty());
    }
}
