//! Pure translations between the eras: results made complete, ids replaced,
//! server requests carried as `input_required`, and the replies Warden builds.

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::error::LaneError;
use super::{ModernReply, CACHEABLE, INPUT_CAPABILITIES, INPUT_KEY};
use crate::jsonrpc::code;
use crate::serve::streams::Event;
use crate::{era, jsonrpc};

/// Whether clients with these capabilities (JSON text) may be sent requests
/// by a legacy server.
pub(super) fn asks_for_input(capabilities: &str) -> bool {
    let capabilities: Value = serde_json::from_str(capabilities).unwrap_or(Value::Null);
    INPUT_CAPABILITIES.iter().any(|c| capabilities.get(c).is_some_and(|v| !v.is_null()))
}

/// A complete result as a 2026-07-28 client expects it.
pub(super) fn complete(result: &mut Map<String, Value>, method: &str) {
    result.entry("resultType").or_insert_with(|| "complete".into());
    if CACHEABLE.contains(&method) {
        result.entry("ttlMs").or_insert_with(|| 0.into());
        result.entry("cacheScope").or_insert_with(|| "private".into());
    }
}

/// `server/discover`'s result for a legacy upstream, from its `initialize` result.
pub(super) fn discover_result(init: &Value) -> Value {
    let mut result = Map::new();
    result.insert("supportedVersions".to_owned(), json!([era::MODERN]));
    result.insert("capabilities".to_owned(), init.get("capabilities").cloned().unwrap_or(json!({})));
    if let Some(instructions) = init.get("instructions") {
        result.insert("instructions".to_owned(), instructions.clone());
    }
    if let Some(info) = init.get("serverInfo") {
        result.insert("_meta".to_owned(), json!({era::meta::SERVER_INFO: info}));
    }
    complete(&mut result, "server/discover");
    Value::Object(result)
}

/// `{method, params}` of a server→client request.
pub(super) fn server_request(message: &[u8]) -> Value {
    let value: Value = serde_json::from_slice(message).unwrap_or_default();
    json!({"method": value["method"], "params": value.get("params").cloned().unwrap_or(json!({}))})
}

/// An `input_required` answer to `client_id` asking for `request`, given its state token.
pub(super) fn input_required(client_id: &str, request: &Value) -> impl Fn(&str) -> Bytes {
    let id: Value = serde_json::from_str(client_id).unwrap_or(Value::Null);
    let request = request.clone();
    move |token| {
        let answer = json!({
            "jsonrpc": "2.0", "id": id,
            "result": {"resultType": "input_required", "inputRequests": {INPUT_KEY: request}, "requestState": token}
        });
        Bytes::from(answer.to_string())
    }
}

/// A `requestState` handle: 128 random bits as hex. `None` without an OS
/// random source (a guessable handle would let others take over the call).
pub(super) fn parked_token() -> Option<String> {
    let mut bytes = [0u8; 16];
    match getrandom::fill(&mut bytes) {
        Ok(()) => Some(hex::encode(bytes)),
        Err(e) => {
            tracing::error!("no OS random source for a requestState handle: {e}");
            None
        }
    }
}

/// A request with its id replaced by `id` (JSON text), and its progress token
/// too if `progress`. For a legacy upstream the 2026-07-28 envelope (`_meta`
/// protocol version, capabilities, client info, log level) is taken off: the
/// session's `initialize` said all that, and some legacy servers refuse it.
pub(super) fn rewrite(message: &[u8], id: &str, progress: bool, legacy: bool) -> Option<Bytes> {
    let mut value: Value = serde_json::from_slice(message).ok()?;
    let id: Value = serde_json::from_str(id).ok()?;
    if progress && !jsonrpc::set_in(&mut value, &["params", "_meta", "progressToken"], id.clone()) {
        return None;
    }
    if legacy {
        if let Some(params) = value.get_mut("params").and_then(Value::as_object_mut) {
            if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
                meta.retain(|key, _| !era::meta::ENVELOPE.contains(&key.as_str()));
                if meta.is_empty() {
                    params.remove("_meta");
                }
            }
        }
    }
    jsonrpc::set_in(&mut value, &["id"], id).then(|| Bytes::from(value.to_string()))
}

/// A `notifications/progress` with the client's token put back; `None` when
/// it has no `params` object to put it in (it names no progress, then).
pub(super) fn with_token(message: &Bytes, token: &str) -> Option<Bytes> {
    let mut value = serde_json::from_slice::<Value>(message).ok()?;
    let token = serde_json::from_str(token).unwrap_or(Value::Null);
    jsonrpc::set_in(&mut value, &["params", "progressToken"], token).then(|| Bytes::from(value.to_string()))
}

pub(super) fn answered(client_id: &str, result: &Value) -> ModernReply {
    let (out, events) = mpsc::unbounded_channel();
    let id: Value = serde_json::from_str(client_id).unwrap_or(Value::Null);
    let message = json!({"jsonrpc": "2.0", "id": id, "result": result});
    let _ = out.send(Event { id: None, message: Bytes::from(message.to_string()), last: true });
    ModernReply::Events(events)
}

pub(super) fn failure(client_id: &str, why: &str) -> Bytes {
    jsonrpc::error_response(Some(client_id), code::UPSTREAM_FAILED, why, None)
}

pub(super) fn failed(client_id: &str, why: &str) -> ModernReply {
    tracing::warn!("modern request failed: {why}");
    ModernReply::Refused(hyper::StatusCode::BAD_GATEWAY, failure(client_id, why))
}

/// A request the lane could not carry, answered and logged by kind.
pub(super) fn lane_failed(client_id: &str, why: &LaneError) -> ModernReply {
    tracing::warn!(kind = why.kind(), "modern request failed: {why}");
    ModernReply::Refused(hyper::StatusCode::BAD_GATEWAY, failure(client_id, &why.to_string()))
}

pub(super) fn refused(status: hyper::StatusCode, id: Option<&str>, code: i32, why: &str) -> ModernReply {
    ModernReply::Refused(status, jsonrpc::error_response(id, code, why, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_results_become_complete_modern_ones() {
        let mut list = Map::new();
        complete(&mut list, "tools/list");
        assert_eq!(Value::Object(list), json!({"resultType": "complete", "ttlMs": 0, "cacheScope": "private"}));
        let mut call = serde_json::from_str::<Map<String, Value>>(r#"{"resultType":"input_required"}"#).unwrap();
        complete(&mut call, "tools/call");
        assert_eq!(call["resultType"], "input_required", "an upstream's own resultType stays");
        let discover = discover_result(&json!({"capabilities": {"tools": {}}, "serverInfo": {"name": "s"}}));
        assert_eq!(discover["supportedVersions"], json!(["2026-07-28"]));
        assert_eq!(discover["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "s");
    }

    #[test]
    fn ids_are_replaced_whatever_their_type() {
        let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"progressToken":1}}}"#;
        let value: Value = serde_json::from_slice(&rewrite(call, "\"w7\"", true, false).unwrap()).unwrap();
        assert_eq!((&value["id"], &value["params"]["_meta"]["progressToken"]), (&json!("w7"), &json!("w7")));
        let modern = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"x":1}}}"#;
        let value: Value = serde_json::from_slice(&rewrite(modern, "2", false, true).unwrap()).unwrap();
        assert_eq!(value["params"], json!({"_meta": {"x": 1}}), "a legacy upstream gets no modern envelope");
        let note = Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"w7"}}"#,
        );
        let value: Value = serde_json::from_slice(&with_token(&note, "1").unwrap()).unwrap();
        let array = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/progress","params":[1]}"#);
        assert_eq!(with_token(&array, "1"), None, "params as an array: no panic, dropped");
        assert_eq!(value["params"]["progressToken"], 1);
        let asked = input_required("3", &json!({"method": "roots/list", "params": {}}))("t");
        let value: Value = serde_json::from_slice(&asked).unwrap();
        assert_eq!(value["id"], 3);
        assert_eq!(value["result"]["inputRequests"]["input"]["method"], "roots/list");
        assert_eq!(value["result"]["requestState"], "t");
    }
}
