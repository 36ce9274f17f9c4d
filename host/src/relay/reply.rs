//! The answers Warden builds for what the chain decided, and the audit
//! record of every decision that was not "forward".

use serde_json::json;

use super::Relay;
use crate::audit::{At, Source};
use bytes::Bytes;

use crate::jsonrpc::{self, code, Message};
use crate::plugin::ChainOutcome;

/// What the chain's outcome makes of a message.
pub(super) enum Onward {
    /// It goes on: unchanged, or as the plugins changed it.
    Pass(Option<Message>),
    /// It is answered instead, when there is an id to answer under: with the
    /// result a plugin gave, or with the error for a refusal.
    Answer(Option<Bytes>),
}

impl Relay {
    /// The one reply builder: what `outcome` makes of `message` (recorded in
    /// the audit trail when it is not "forward"). An answer goes under `id`;
    /// `answered` names the request's method when `message` is itself an answer.
    pub(super) fn onward(
        &self,
        outcome: ChainOutcome,
        message: &Message,
        id: Option<&str>,
        answered: Option<&str>,
    ) -> Onward {
        match outcome {
            ChainOutcome::Forward(replacement) => Onward::Pass(replacement),
            ChainOutcome::Respond { plugin, result } => {
                self.decision(&plugin, "respond", message, answered);
                Onward::Answer(id.map(|id| jsonrpc::result_response(id, &result)))
            }
            other => {
                let (code, text, data) = self.refusal(other, message);
                Onward::Answer(Some(jsonrpc::error_response(id, code, &text, data.as_deref())))
            }
        }
    }

    /// The error for a message the chain stopped, recorded in the audit trail.
    fn refusal(&self, outcome: ChainOutcome, message: &Message) -> (i32, String, Option<String>) {
        match outcome {
            ChainOutcome::Reject { plugin, error } => {
                self.decision(&plugin, "reject", message, None);
                (error.code, error.message, error.data)
            }
            ChainOutcome::Approval { plugin, prompt } => {
                self.decision(&plugin, "require-approval", message, None);
                let text = format!(
                    "plugin \"{plugin}\" requires human approval ({prompt}), but approval is not available in this Warden"
                );
                (code::APPROVAL_UNAVAILABLE, text, None)
            }
            ChainOutcome::Failed(fault) => {
                self.decision(&fault.plugin, fault.kind.tag(), message, None);
                (code::PLUGIN_FAILED, fault.to_string(), None)
            }
            ChainOutcome::Forward(_) | ChainOutcome::Respond { .. } => {
                (code::PLUGIN_FAILED, "internal: not a refusal".to_owned(), None)
            }
        }
    }

    /// One audit record per decision that was not "forward". Never the message body:
    /// it may hold secrets.
    pub(super) fn decision(&self, plugin: &str, verdict: &str, message: &Message, answered: Option<&str>) {
        if !self.audit.enabled() {
            return;
        }
        let head = &message.head;
        let event = json!({
            "type": "decision",
            "verdict": verdict,
            "plugin": plugin,
            "method": answered.or(head.method.as_deref()),
            "tool": head.tool,
            "id": head.id,
        });
        let facts = self.instances.session();
        let caller = facts.caller.as_ref().map(|c| c.subject.as_str());
        let at = At { session: facts.id.as_deref(), upstream: Some(&facts.upstream), caller };
        self.audit.record(Source::Host, at, &event);
    }
}
