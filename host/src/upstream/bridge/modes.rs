//! The mode machine: the client's `initialize` goes on as it is; a refusal
//! brings the era probe, whose answer settles whether the session is bridged.

use bytes::Bytes;
use serde_json::{json, Value};

use super::{Bridge, Mode};
use crate::era;
use crate::jsonrpc::{self, method};

impl Bridge {
    /// A message from the client.
    pub(super) async fn on_client(&mut self, message: Bytes) {
        match &mut self.mode {
            Mode::Start => {
                let head = jsonrpc::parse_head(&message).ok();
                let id = head
                    .as_ref()
                    .filter(|h| h.method.as_deref() == Some(method::INITIALIZE))
                    .and_then(|h| h.id.clone());
                match id {
                    Some(id) => {
                        self.up(message.clone()).await;
                        self.mode = Mode::Initializing { initialize: message, id, held: Vec::new() };
                    }
                    None => {
                        // Not a handshake client (a modern one, or a stray message): nothing to bridge.
                        self.mode = Mode::Legacy;
                        self.up(message).await;
                    }
                }
            }
            Mode::Initializing { held, .. } | Mode::Probing { held, .. } => held.push(message),
            Mode::Legacy => self.up(message).await,
            Mode::Modern => self.modern_from_client(message).await,
        }
    }

    /// The session's mode is settled: with `discover`, bridged; without, as it
    /// is (`answer`, if any, goes to the client first). What the client sent
    /// meanwhile goes on.
    pub(super) async fn settle(&mut self, discover: Option<Value>, answer: Option<Bytes>) {
        let (initialize, held) = match std::mem::replace(&mut self.mode, Mode::Legacy) {
            Mode::Initializing { initialize, held, .. } | Mode::Probing { initialize, held, .. } => (initialize, held),
            other => {
                self.mode = other;
                return;
            }
        };
        match discover {
            Some(discover) => {
                tracing::info!("the upstream refused initialize and speaks 2026-07-28; bridging this session");
                self.mode = Mode::Modern;
                self.answer_initialize(&initialize, &discover).await;
                // The list changes the server declared reach the client as they did on a legacy session.
                let capabilities = &discover["capabilities"];
                for (kind, flag) in [
                    ("tools", "toolsListChanged"),
                    ("prompts", "promptsListChanged"),
                    ("resources", "resourcesListChanged"),
                ] {
                    if capabilities[kind]["listChanged"] == true {
                        self.listening.lists.insert(flag.to_owned(), Value::Bool(true));
                    }
                }
                if !self.listening.lists.is_empty() {
                    self.relisten(None).await;
                }
            }
            None => {
                if let Some(answer) = answer {
                    self.down(answer).await;
                }
            }
        }
        for message in held {
            Box::pin(self.on_client(message)).await;
        }
    }

    /// Answers the client's `initialize` from the upstream's discover result.
    pub(super) async fn answer_initialize(&mut self, initialize: &[u8], discover: &Value) {
        let request: Value = serde_json::from_slice(initialize).unwrap_or_default();
        let params = &request["params"];
        self.envelope.insert(era::meta::PROTOCOL_VERSION.to_owned(), era::MODERN.into());
        let capabilities = params.get("capabilities").cloned().unwrap_or(json!({}));
        self.envelope.insert(era::meta::CLIENT_CAPABILITIES.to_owned(), capabilities);
        if let Some(info) = params.get("clientInfo") {
            self.envelope.insert(era::meta::CLIENT_INFO.to_owned(), info.clone());
        }
        let requested = params["protocolVersion"].as_str().unwrap_or(era::LATEST_LEGACY);
        let version = if era::LEGACY_VERSIONS.contains(&requested) { requested } else { era::LATEST_LEGACY };
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": discover.get("capabilities").cloned().unwrap_or(json!({})),
            "serverInfo": discover["_meta"][era::meta::SERVER_INFO].clone(),
        });
        if result["serverInfo"].is_null() {
            result["serverInfo"] = json!({"name": "upstream", "version": "unknown"});
        }
        if let Some(instructions) = discover.get("instructions") {
            result["instructions"] = instructions.clone();
        }
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        self.down_value(json!({"jsonrpc": "2.0", "id": id, "result": result})).await;
    }
}
