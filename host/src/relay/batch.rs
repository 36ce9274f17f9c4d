//! JSON-RPC batches (2025-03-26): each member through the chain on its own,
//! the client's answers gathered and sent back as one array.

use std::collections::HashMap;

use bytes::Bytes;

use super::Relay;
use crate::jsonrpc::{self, code, Kind, Message};
use crate::plugin::instances::Direction;

/// Client batches (2025-03-26) still owed answers: each goes back as one array.
#[derive(Debug, Default)]
pub(super) struct Batches {
    pub(super) next: u64,
    /// By request id, the batch it came in.
    pub(super) of: HashMap<String, u64>,
    pub(super) open: HashMap<u64, Batch>,
}

#[derive(Debug, Default)]
pub(super) struct Batch {
    /// Answers still to come.
    pub(super) waiting: usize,
    pub(super) answers: Vec<Bytes>,
    /// All its messages have been handled: it goes back once nothing is waited for.
    pub(super) closed: bool,
}

impl Batches {
    pub(super) fn open(&mut self) -> u64 {
        self.next += 1;
        self.open.insert(self.next, Batch::default());
        self.next
    }

    /// Expects an answer to request `id`; false if another request of an open batch has it.
    pub(super) fn expect(&mut self, batch: u64, id: &str) -> bool {
        if self.of.contains_key(id) {
            return false;
        }
        self.of.insert(id.to_owned(), batch);
        if let Some(b) = self.open.get_mut(&batch) {
            b.waiting += 1;
        }
        true
    }

    /// An answer Warden makes itself while reading the batch (an invalid member).
    pub(super) fn answer_now(&mut self, batch: u64, answer: Bytes) {
        if let Some(b) = self.open.get_mut(&batch) {
            b.answers.push(answer);
        }
    }

    /// Whether `id`'s answer belongs to a batch.
    pub(super) fn holds(&self, id: &str) -> bool {
        self.of.contains_key(id)
    }

    /// Settles `id` with its answer (`None`: it was cancelled and gets none).
    /// Returns the whole batch's answer once it is complete.
    pub(super) fn settle(&mut self, id: &str, answer: Option<Bytes>) -> Option<Bytes> {
        let number = self.of.remove(id)?;
        let batch = self.open.get_mut(&number)?;
        batch.waiting = batch.waiting.saturating_sub(1);
        batch.answers.extend(answer);
        self.finish(number)
    }

    /// All of a batch's messages have been handled.
    pub(super) fn close(&mut self, number: u64) -> Option<Bytes> {
        self.open.get_mut(&number)?.closed = true;
        self.finish(number)
    }

    pub(super) fn finish(&mut self, number: u64) -> Option<Bytes> {
        let batch = self.open.get(&number)?;
        if !batch.closed || batch.waiting > 0 {
            return None;
        }
        let batch = self.open.remove(&number)?;
        // A batch of notifications and responses only is answered with nothing.
        (!batch.answers.is_empty()).then(|| jsonrpc::join_batch(&batch.answers))
    }
}

impl Relay {
    /// A JSON-RPC batch (2025-03-26). Its messages go through the chain and on
    /// to the other side one by one, as if sent singly, so no plugin can be
    /// passed by batching; the client gets its answers back as one array.
    /// A server's batch is simply taken apart.
    pub(super) async fn batch(&mut self, from: Direction, raw: Bytes) {
        let parts = match jsonrpc::split_batch(&raw) {
            Ok(parts) => parts,
            Err(e) => return self.unreadable(from, e).await,
        };
        if from == Direction::ServerToClient {
            for part in parts {
                self.line(from, part).await;
            }
            return;
        }
        // Before the handshake settles a version, the server is the judge.
        let version = self.instances.session().protocol_version.as_deref();
        if let Some(why) = version.and_then(jsonrpc::batch_refused) {
            let reply = jsonrpc::error_response(None, code::INVALID_REQUEST, &why, None);
            return self.send_back(from, reply).await;
        }
        let batch = self.batches.open();
        let mut messages = Vec::with_capacity(parts.len());
        for part in parts {
            let message = match Message::parse(part) {
                Ok(message) => message,
                Err(e) => {
                    self.batches.answer_now(batch, jsonrpc::error_response(e.id(), e.code(), &e.to_string(), None));
                    continue;
                }
            };
            let id = message.head.id.as_deref().filter(|_| message.head.kind == Kind::Request);
            let refused = match id {
                _ if message.head.method.as_deref() == Some(jsonrpc::method::INITIALIZE) => {
                    Some(jsonrpc::BATCHED_INITIALIZE)
                }
                Some(id) if self.upstream_pending.contains_key(id) || !self.batches.expect(batch, id) => {
                    Some("a request with this id is already in flight")
                }
                _ => None,
            };
            match refused {
                Some(why) => {
                    let reply =
                        jsonrpc::error_response(message.head.raw_id.as_deref(), code::INVALID_REQUEST, why, None);
                    self.batches.answer_now(batch, reply);
                }
                None => messages.push(message),
            }
        }
        for message in messages {
            self.message(from, message).await;
        }
        if let Some(answers) = self.batches.close(batch) {
            self.send_back(from, answers).await;
        }
    }

    /// An answer to a request of a client's batch is kept until the batch is
    /// complete; then the batch's answer goes instead. Other messages go as they are.
    pub(super) fn unbatched(&mut self, bytes: Bytes) -> Option<Bytes> {
        if self.batches.of.is_empty() || jsonrpc::is_batch(&bytes) {
            return Some(bytes);
        }
        let id = match jsonrpc::parse_head(&bytes) {
            Ok(head) if matches!(head.kind, Kind::Response | Kind::Error) => head.id,
            _ => None,
        };
        match id {
            Some(id) if self.batches.holds(&id) => self.batches.settle(&id, Some(bytes)),
            _ => Some(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn a_batch_goes_back_once_closed_and_every_answer_is_in() {
        let mut batches = Batches::default();
        let n = batches.open();
        assert!(batches.expect(n, "1") && batches.expect(n, "2"));
        assert!(!batches.expect(n, "1"), "a duplicate id is refused");
        batches.answer_now(n, Bytes::from_static(b"{\"e\":0}"));
        // An answer before the batch has been read through is kept.
        assert_eq!(batches.settle("1", Some(Bytes::from_static(b"{\"a\":1}"))), None);
        assert_eq!(batches.close(n), None, "2 is still owed");
        // A cancelled request is owed nothing.
        let done = batches.settle("2", None).expect("complete");
        assert_eq!(&done[..], b"[{\"e\":0},{\"a\":1}]");
        assert!(batches.open.is_empty() && batches.of.is_empty());
        assert_eq!(batches.settle("3", None), None, "not batched");
        let notes_only = batches.open();
        assert_eq!(batches.close(notes_only), None, "notifications only: no answer");
        assert!(batches.open.is_empty());
    }
}
