//! Bridged calls: the `_meta` envelope on every request, and an
//! `input_required` result turned into real server→client requests, the call
//! sent again once the client has answered them all.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{Awaiting, Bridge, RETRIABLE};
use crate::era;
use crate::jsonrpc::{self, code, method};

impl Bridge {
    pub(super) async fn modern_from_client(&mut self, message: Bytes) {
        let Ok(mut value) = serde_json::from_slice::<Value>(&message) else {
            return self.up(message).await;
        };
        let method = value.get("method").and_then(Value::as_str).map(str::to_owned);
        let id = value.get("id").filter(|id| !id.is_null()).cloned();
        match (method.as_deref(), id) {
            (Some(method::INITIALIZED), None) => {}
            (Some("ping"), Some(id)) => self.down_value(json!({"jsonrpc": "2.0", "id": id, "result": {}})).await,
            (Some("logging/setLevel"), Some(id)) => {
                if let Some(level) = value["params"].get("level") {
                    self.envelope.insert(era::meta::LOG_LEVEL.to_owned(), level.clone());
                }
                self.down_value(json!({"jsonrpc": "2.0", "id": id, "result": {}})).await;
            }
            (Some(method @ ("resources/subscribe" | "resources/unsubscribe")), Some(id)) => {
                let Some(uri) = value["params"]["uri"].as_str() else {
                    let error = json!({"code": code::INVALID_PARAMS, "message": "params.uri must be a string"});
                    return self.down_value(json!({"jsonrpc": "2.0", "id": id, "error": error})).await;
                };
                let changed = if method == "resources/subscribe" {
                    self.listening.uris.insert(uri.to_owned())
                } else {
                    self.listening.uris.remove(uri)
                };
                if changed {
                    self.relisten(Some(id)).await;
                } else {
                    self.down_value(json!({"jsonrpc": "2.0", "id": id, "result": {}})).await;
                }
            }
            (Some(method), Some(id)) => {
                self.stamp(&mut value);
                if RETRIABLE.contains(&method) {
                    self.originals.insert(id.to_string(), value.clone());
                }
                self.up_value(&value).await;
            }
            (None, Some(id)) => self.input_answered(id.to_string(), value).await,
            _ => self.up(message).await,
        }
    }

    /// Puts the `_meta` envelope on a request.
    pub(super) fn stamp(&self, request: &mut Value) {
        if !request.get("params").is_some_and(Value::is_object) {
            jsonrpc::set_in(request, &["params"], json!({}));
        }
        if !request.pointer("/params/_meta").is_some_and(Value::is_object) {
            jsonrpc::set_in(request, &["params", "_meta"], json!({}));
        }
        if let Some(meta) = request.pointer_mut("/params/_meta").and_then(Value::as_object_mut) {
            for (key, value) in &self.envelope {
                meta.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
    }

    /// An answer from a modern upstream: a retry's answer goes back under the
    /// client's id; an `input_required` result becomes requests to the client.
    pub(super) async fn modern_answer(&mut self, upstream_id: String, message: Bytes) {
        let client_id = self.retries.remove(&upstream_id).unwrap_or_else(|| upstream_id.clone());
        let input_required = memchr::memmem::find(&message, b"input_required").is_some();
        let value = if input_required || client_id != upstream_id {
            serde_json::from_slice::<Value>(&message).ok()
        } else {
            None
        };
        let Some(mut value) = value else {
            self.originals.remove(&client_id);
            return self.down(message).await;
        };
        if value["result"]["resultType"] == "input_required" && self.originals.contains_key(&client_id) {
            return self.ask_client(client_id, value["result"].take()).await;
        }
        self.originals.remove(&client_id);
        if !jsonrpc::set_in(&mut value, &["id"], serde_json::from_str(&client_id).unwrap_or(Value::Null)) {
            tracing::warn!("an upstream answer that is no JSON-RPC object dropped");
            return;
        }
        self.down_value(value).await;
    }

    /// Sends the client the requests an `input_required` result names.
    pub(super) async fn ask_client(&mut self, client_id: String, result: Value) {
        let key = self.next;
        self.next += 1;
        let inputs = result.get("inputRequests").and_then(Value::as_object).cloned().unwrap_or_default();
        let awaiting = Awaiting {
            client_id,
            responses: Map::new(),
            outstanding: inputs.len(),
            request_state: result.get("requestState").cloned(),
        };
        self.awaiting.insert(key, awaiting);
        if inputs.is_empty() {
            return self.retry(key).await;
        }
        for (name, request) in inputs {
            let id = format!("warden-input-{key}-{name}");
            self.asked.insert(Value::from(id.as_str()).to_string(), (key, name));
            let mut ask = json!({"jsonrpc": "2.0", "id": id, "method": request["method"]});
            if let Some(params) = request.get("params") {
                ask["params"] = params.clone();
            }
            self.down_value(ask).await;
        }
    }

    /// The client answered one of Warden's input requests.
    pub(super) async fn input_answered(&mut self, id: String, answer: Value) {
        let Some((key, name)) = self.asked.remove(&id) else {
            // An answer to something else: pass it on.
            return self.up_value(&answer).await;
        };
        let Some(awaiting) = self.awaiting.get_mut(&key) else { return };
        // A refusal travels as the error it was; the server decides what it means.
        let response = answer.get("result").cloned().unwrap_or_else(|| json!({"error": answer.get("error")}));
        awaiting.responses.insert(name, response);
        awaiting.outstanding = awaiting.outstanding.saturating_sub(1);
        if awaiting.outstanding == 0 {
            self.retry(key).await;
        }
    }

    /// Sends the request again with the client's input, under a new id.
    pub(super) async fn retry(&mut self, key: u64) {
        let Some(awaiting) = self.awaiting.remove(&key) else { return };
        let Some(mut request) = self.originals.get(&awaiting.client_id).cloned() else { return };
        let retry_id = format!("warden-retry-{key}");
        let placed = jsonrpc::set_in(&mut request, &["id"], Value::from(retry_id.as_str()))
            && jsonrpc::set_in(&mut request, &["params", "inputResponses"], Value::Object(awaiting.responses));
        if !placed {
            tracing::warn!("a request to retry with its input is no JSON-RPC object; dropped");
            return;
        }
        match awaiting.request_state {
            Some(state) => {
                jsonrpc::set_in(&mut request, &["params", "requestState"], state);
            }
            None => {
                if let Some(params) = request["params"].as_object_mut() {
                    params.remove("requestState");
                }
            }
        }
        self.retries.insert(Value::from(retry_id).to_string(), awaiting.client_id);
        self.up_value(&request).await;
    }
}
