//! One modern request in flight on a backing: its events until the answer,
//! the input it may ask for, and its cancellation.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::translate::{complete, failure, input_required, parked_token, server_request, with_token};
use super::{Call, Parked, UpstreamEra, HANDSHAKE, INPUT_METHODS};
use crate::jsonrpc::{code, Kind};
use crate::serve::streams::{Event, Receiver};
use crate::serve::HttpSession;
use crate::{era, jsonrpc};

impl Call {
    /// Relays what the upstream says about the call until its answer, an
    /// input request (then the call is parked), or the client leaving (then
    /// the call is cancelled upstream).
    pub(super) async fn run(self, mut stream: Receiver, out: mpsc::UnboundedSender<Event>) {
        loop {
            let event = tokio::select! {
                event = stream.recv() => event,
                () = out.closed() => {
                    self.cancel().await;
                    return;
                }
            };
            let Some(event) = event else {
                let _ = out.send(Event {
                    id: None,
                    message: failure(&self.client_id, "the upstream session ended"),
                    last: true,
                });
                return;
            };
            if event.last {
                let answer = self.answer(&event.message);
                let _ = out.send(Event { id: None, message: answer, last: true });
                return;
            }
            let Ok(head) = jsonrpc::parse_head(&event.message) else { continue };
            match head.kind {
                Kind::Notification => {
                    let message = match (&self.progress, head.method.as_deref()) {
                        (Some(token), Some("notifications/progress")) => match with_token(&event.message, token) {
                            Some(message) => message,
                            None => {
                                tracing::warn!("progress notification without a params object dropped");
                                continue;
                            }
                        },
                        _ => event.message,
                    };
                    let _ = out.send(Event { id: None, message, last: false });
                }
                Kind::Request if self.backing.era == UpstreamEra::Legacy => {
                    let method = head.method.as_deref().unwrap_or_default();
                    let asked = head.id.unwrap_or_else(|| "null".to_owned());
                    if method == "ping" {
                        let pong = Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{asked},"result":{{}}}}"#));
                        let _ = self.backing.session.submit(pong).await;
                    } else if INPUT_METHODS.contains(&method) && self.lease.is_none() {
                        // A shared backing's clients declared no such capability: the
                        // request cannot be theirs to answer (nor told apart from another call's).
                        let why = format!("{method}: the client declared no capability for it");
                        let refusal = jsonrpc::error_response(Some(&asked), code::METHOD_NOT_FOUND, &why, None);
                        let _ = self.backing.session.submit(refusal).await;
                    } else if INPUT_METHODS.contains(&method) {
                        let request = server_request(&event.message);
                        let Some(token) = parked_token() else {
                            let why = "no OS random source for a requestState handle";
                            let _ = out.send(Event { id: None, message: failure(&self.client_id, why), last: true });
                            self.cancel().await;
                            return;
                        };
                        let message = input_required(&self.client_id, &request)(&token);
                        // Parked before the client can read the token and retry.
                        let modern = self.modern.clone();
                        modern.park(token, Parked { call: self, stream, asked, request });
                        let _ = out.send(Event { id: None, message, last: true });
                        return;
                    } else {
                        let why = format!("{method} has no carrier to a 2026-07-28 client");
                        let refusal = jsonrpc::error_response(Some(&asked), code::METHOD_NOT_FOUND, &why, None);
                        let _ = self.backing.session.submit(refusal).await;
                    }
                }
                _ => tracing::debug!(kind = ?head.kind, "unexpected message on a modern call's stream dropped"),
            }
        }
    }

    /// The upstream's answer, under the client's id (and bridged for a legacy upstream).
    pub(super) fn answer(&self, message: &[u8]) -> Bytes {
        let Ok(mut value) = serde_json::from_slice::<Value>(message) else {
            return failure(&self.client_id, "the upstream's answer is not JSON");
        };
        if !jsonrpc::set_in(&mut value, &["id"], serde_json::from_str(&self.client_id).unwrap_or(Value::Null)) {
            return failure(&self.client_id, "the upstream's answer is not a JSON-RPC object");
        }
        if self.backing.era == UpstreamEra::Legacy {
            if let Some(result) = value.get_mut("result").and_then(Value::as_object_mut) {
                complete(result, &self.method);
            }
            if let Some(error) = value.get_mut("error").and_then(Value::as_object_mut) {
                if error.get("code").and_then(Value::as_i64) == Some(era::code::LEGACY_RESOURCE_NOT_FOUND.into()) {
                    error.insert("code".to_owned(), code::INVALID_PARAMS.into());
                }
            }
        }
        Bytes::from(value.to_string())
    }

    /// Tells the upstream the call is no longer wanted.
    pub(super) async fn cancel(&self) {
        let note = json!({
            "jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": serde_json::from_str::<Value>(&self.upstream_id).unwrap_or(Value::Null),
                       "reason": "the client closed its response stream"}
        });
        tracing::debug!(method = %self.method, "client left; cancelling the call upstream");
        if let Some(lease) = &self.lease {
            lease.spoiled.store(true, Ordering::Relaxed);
        }
        self.backing.session.forget(&self.upstream_id);
        let _ = self.backing.session.submit(Bytes::from(note.to_string())).await;
    }
}

impl HttpSession {
    /// Sends a request of Warden's own and waits for its answer (parsed).
    pub(super) async fn ask(&self, id: &str, message: Bytes) -> Option<Value> {
        let (_, mut stream) = self.call(id.to_owned(), message).await.ok()?;
        let answer = tokio::time::timeout(HANDSHAKE, async {
            while let Some(event) = stream.recv().await {
                if event.last {
                    return Some(event.message);
                }
            }
            None
        });
        let message = answer.await.ok().flatten()?;
        serde_json::from_slice(&message).ok()
    }
}
