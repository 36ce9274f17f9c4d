//! Subscriptions and list-changed notifications carried by one
//! `subscriptions/listen` of Warden's, renewed when the subscribed set changes.

use bytes::Bytes;
use serde_json::{json, Value};

use super::{Bridge, Listening};
use crate::era;
use crate::jsonrpc::{self, code, method};

impl Bridge {
    /// Opens a listen for what the client follows now; `answer` is the
    /// client request it answers once acknowledged. With nothing to follow,
    /// the live listen is only cancelled.
    pub(super) async fn relisten(&mut self, answer: Option<Value>) {
        let listening = &mut self.listening;
        if listening.uris.is_empty() && listening.lists.is_empty() {
            self.cancel_listen().await;
            if let Some(id) = answer {
                self.down_value(json!({"jsonrpc": "2.0", "id": id, "result": {}})).await;
            }
            return;
        }
        listening.next += 1;
        let id = format!("warden-listen-{}", listening.next);
        let mut filter = listening.lists.clone();
        if !listening.uris.is_empty() {
            filter.insert("resourceSubscriptions".to_owned(), listening.uris.iter().cloned().collect());
        }
        listening.opening.insert(Value::from(id.as_str()).to_string(), answer.into_iter().collect());
        let mut listen =
            json!({"jsonrpc": "2.0", "id": id, "method": "subscriptions/listen", "params": {"notifications": filter}});
        self.stamp(&mut listen);
        self.up_value(&listen).await;
    }

    /// Ends the live listen, if any.
    pub(super) async fn cancel_listen(&mut self) {
        if let Some(old) = self.listening.live.take() {
            let id: Value = serde_json::from_str(&old).unwrap_or(Value::Null);
            let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id, "reason": "subscriptions changed"}});
            self.up_value(&cancel).await;
        }
    }

    /// A message about one of Warden's listens: its acknowledgement, its end
    /// (a final answer, an error, or the server's `notifications/cancelled`).
    /// Returns whether it was one (and so stays here).
    pub(super) async fn listen_message(
        &mut self,
        head: Option<&jsonrpc::Head>,
        answer_id: Option<&str>,
        message: &Bytes,
    ) -> bool {
        let Some(head) = head else { return false };
        let method = head.method.as_deref();
        let ours = |listening: &Listening, listen: &str| {
            listening.live.as_deref() == Some(listen) || listening.opening.contains_key(listen)
        };
        // Every listen message names its listen: the answer by id (read before
        // any parse: most answers are not a listen's), the notifications by
        // `_meta` or `requestId`.
        if answer_id.is_some_and(|id| !ours(&self.listening, id))
            || (answer_id.is_none()
                && !matches!(method, Some("notifications/subscriptions/acknowledged" | method::CANCELLED)))
        {
            return false;
        }
        let value: Value = serde_json::from_slice(message).unwrap_or_default();
        let listen = match answer_id {
            Some(id) => id.to_owned(),
            None if method == Some(method::CANCELLED) => value["params"]["requestId"].to_string(),
            None => value["params"]["_meta"][era::meta::SUBSCRIPTION_ID].to_string(),
        };
        if !ours(&self.listening, &listen) {
            return false;
        }
        if method == Some("notifications/subscriptions/acknowledged") {
            let waiting = self.listening.opening.remove(&listen).unwrap_or_default();
            self.cancel_listen().await;
            self.listening.live = Some(listen);
            for id in waiting {
                self.down_value(json!({"jsonrpc": "2.0", "id": id, "result": {}})).await;
            }
            return true;
        }
        // The listen ended (or was refused): the clients waiting on it get the refusal.
        if self.listening.live.as_deref() == Some(listen.as_str()) {
            tracing::info!("the upstream ended Warden's subscriptions/listen");
            self.listening.live = None;
        }
        let waiting = self.listening.opening.remove(&listen).unwrap_or_default();
        let error = value.get("error").cloned().unwrap_or_else(
            || json!({"code": code::UPSTREAM_FAILED, "message": "the upstream ended the subscription"}),
        );
        for id in waiting {
            self.down_value(json!({"jsonrpc": "2.0", "id": id, "error": error})).await;
        }
        true
    }
}
