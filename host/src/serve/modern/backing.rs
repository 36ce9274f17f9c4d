//! One upstream session shared by modern requests: the era probe, Warden's
//! own `initialize`, and the change notifications it fans out to listeners.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::error::LaneError;
use super::{Backing, ModernReply, Subscriber, UpstreamEra};
use crate::era::Facts;
use crate::plugin::instances::Transport;
use crate::serve::streams::Event;
use crate::serve::{lock, Gateway};
use crate::{era, jsonrpc};

/// Asks the upstream `server/discover` on a session of its own: a discover
/// result means a modern upstream; anything else (an error, silence) a legacy one.
pub(super) async fn probe(gateway: &Gateway) -> Result<UpstreamEra, LaneError> {
    let session = gateway.start_session(
        "probe".to_owned(),
        false,
        Transport::StreamableHttp,
        None,
        Arc::from("warden"),
        Default::default(),
    )?;
    let discover = json!({
        "jsonrpc": "2.0", "id": "warden-probe", "method": "server/discover",
        "params": {"_meta": {era::meta::PROTOCOL_VERSION: era::MODERN, era::meta::CLIENT_CAPABILITIES: {}}}
    });
    let answer = session.ask("\"warden-probe\"", Bytes::from(discover.to_string())).await;
    session.close();
    let modern = answer.is_some_and(|a| {
        let versions = &a["result"]["supportedVersions"];
        versions.as_array().is_some_and(|v| v.iter().any(|v| v.as_str().is_some_and(era::is_modern)))
    });
    let era = if modern { UpstreamEra::Modern } else { UpstreamEra::Legacy };
    tracing::info!(?era, "the upstream's era, as probed with server/discover");
    Ok(era)
}

impl Backing {
    pub(super) async fn open(
        gateway: &Gateway,
        era: UpstreamEra,
        facts: &Facts,
        caller: Option<Arc<str>>,
        owner: Arc<str>,
        forwarded: crate::upstream::Forwarded,
    ) -> Result<Arc<Backing>, LaneError> {
        let session =
            gateway.start_session("modern".to_owned(), false, Transport::StreamableHttp, caller, owner, forwarded)?;
        let init = match era {
            UpstreamEra::Modern => Value::Null,
            UpstreamEra::Legacy => {
                let capabilities: Value =
                    facts.capabilities.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or(json!({}));
                let client_info: Value = facts
                    .client_info
                    .as_deref()
                    .and_then(|c| serde_json::from_str(c).ok())
                    .unwrap_or(json!({"name": "warden", "version": env!("CARGO_PKG_VERSION")}));
                let initialize = json!({
                    "jsonrpc": "2.0", "id": "warden-init", "method": "initialize",
                    "params": {"protocolVersion": era::LATEST_LEGACY, "capabilities": capabilities, "clientInfo": client_info}
                });
                let answer = session.ask("\"warden-init\"", Bytes::from(initialize.to_string())).await;
                let Some(result) = answer.and_then(|mut a| a.get_mut("result").map(Value::take)) else {
                    session.close();
                    return Err(LaneError::NoInitialize);
                };
                let initialized = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
                session.submit(initialized).await?;
                result
            }
        };
        let backing = Arc::new(Backing { session, era, init, subscribers: Mutex::new(Vec::new()) });
        if era == UpstreamEra::Legacy {
            tokio::spawn(backing.clone().fan_out());
        }
        Ok(backing)
    }

    /// Serves `subscriptions/listen` from a legacy upstream's change notifications.
    pub(super) fn listen(&self, client_id: &str, raw: &Bytes) -> ModernReply {
        let asked: Value = serde_json::from_slice::<Value>(raw)
            .ok()
            .map(|mut v| v["params"]["notifications"].take())
            .unwrap_or_default();
        let offered = |kind: &str| self.init["capabilities"][kind]["listChanged"].as_bool().unwrap_or(false);
        let mut wants = Vec::new();
        let mut honoured = Map::new();
        for (flag, kind, method) in [
            ("toolsListChanged", "tools", "notifications/tools/list_changed"),
            ("promptsListChanged", "prompts", "notifications/prompts/list_changed"),
            ("resourcesListChanged", "resources", "notifications/resources/list_changed"),
        ] {
            if asked[flag].as_bool() == Some(true) && offered(kind) {
                wants.push(method);
                honoured.insert(flag.to_owned(), Value::Bool(true));
            }
        }
        let (out, events) = mpsc::unbounded_channel();
        let id: Value = serde_json::from_str(client_id).unwrap_or(Value::Null);
        let ack = json!({
            "jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": honoured, "_meta": {era::meta::SUBSCRIPTION_ID: id}}
        });
        let _ = out.send(Event { id: None, message: Bytes::from(ack.to_string()), last: false });
        lock(&self.subscribers).push(Subscriber { id: client_id.to_owned(), wants, out });
        ModernReply::Events(events)
    }

    /// Passes the backing's change notifications to the subscriptions that asked for them.
    pub(super) async fn fan_out(self: Arc<Self>) {
        let Ok(mut changes) = self.session.listen(None) else { return };
        while let Some(event) = changes.recv().await {
            let Ok(head) = jsonrpc::parse_head(&event.message) else { continue };
            let method = head.method.unwrap_or_default();
            let mut subscribers = lock(&self.subscribers);
            subscribers.retain(|s| !s.out.is_closed());
            for subscriber in subscribers.iter().filter(|s| s.wants.contains(&method.as_str())) {
                let id: Value = serde_json::from_str(&subscriber.id).unwrap_or(Value::Null);
                let note =
                    json!({"jsonrpc": "2.0", "method": method, "params": {"_meta": {era::meta::SUBSCRIPTION_ID: id}}});
                let _ = subscriber.out.send(Event { id: None, message: Bytes::from(note.to_string()), last: false });
            }
        }
        // The upstream is gone: subscriptions end.
        lock(&self.subscribers).clear();
    }
}
