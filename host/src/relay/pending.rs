//! The pending tables (requests each way awaiting an answer) and the chain
//! generations: a request's answer goes back through the chain it went through.

use std::collections::HashMap;

use bytes::Bytes;

use super::record::{Ended, Opened};
use super::Relay;
use crate::jsonrpc::{self, Message};
use crate::plugin::instances::Direction;
use crate::plugin::Instances;

/// Requests one side may have in flight before new ones are refused.
pub(super) const MAX_PENDING: usize = 16_384;

/// What is remembered about a request until its answer passes.
#[derive(Debug)]
pub(super) struct Pending {
    /// The request's id as its sender wrote it: its answer goes back under it.
    pub(super) raw_id: String,
    pub(super) method: String,
    pub(super) tool: Option<String>,
    /// The chain the request went through; its answer goes back through the same one.
    pub(super) generation: u64,
    /// The host's audit record of it, while audit is on.
    pub(super) record: Option<Box<Opened>>,
}

impl Relay {
    /// Puts a reloaded chain in force for the messages to come. The instances
    /// of the one before stay while answers to requests that went through them
    /// are still to come.
    pub(super) fn refresh(&mut self) {
        let Some(updates) = self.chain_updates.as_mut() else { return };
        if !updates.has_changed().unwrap_or(false) {
            return;
        }
        let chain = updates.borrow_and_update().clone();
        if chain.generation() == self.instances.chain().generation() {
            return;
        }
        let next = self.instances.successor(chain);
        let previous = std::mem::replace(&mut self.instances, next);
        tracing::debug!(
            session = self.instances.session().id.as_deref().unwrap_or("-"),
            generation = self.instances.chain().generation(),
            "next messages use the reloaded chain"
        );
        self.retired.push(previous);
        self.release_retired();
    }

    /// Frees the instances of earlier chains no pending request needs any more
    /// (a scan of the pending tables, done only when an earlier chain may have
    /// just been released: a swap, an answer through it, a cancellation).
    pub(super) fn release_retired(&mut self) {
        if self.retired.is_empty() {
            return;
        }
        let (upstream, client) = (&self.upstream_pending, &self.client_pending);
        self.retired.retain(|old| {
            let generation = old.chain().generation();
            upstream.values().chain(client.values()).any(|p| p.generation == generation)
        });
    }

    /// The instances of the chain `generation` (the one in force if it is gone).
    pub(super) fn instances_of(&mut self, generation: u64) -> &mut Instances {
        match self.retired.iter().position(|i| i.chain().generation() == generation) {
            Some(index) => &mut self.retired[index],
            None => &mut self.instances,
        }
    }

    /// A cancelled request may never be answered; stop waiting for it. Returns
    /// the answer to the client's batch it completes, if it was in one.
    pub(super) fn forget_cancelled(&mut self, from: Direction, message: &Message) -> Option<Bytes> {
        let id = jsonrpc::cancelled_request(&message.raw)?;
        let mut cancelled = self.pending(from).remove(&id);
        self.settled(cancelled.as_mut(), Ended::Cancelled);
        self.release_retired();
        (from == Direction::ClientToServer).then(|| self.batches.settle(&id, None)).flatten()
    }

    /// Writes the audit record of `pending`, if it has one, as ended so.
    pub(super) fn settled(&self, pending: Option<&mut Pending>, ended: Ended<'_>) {
        if let Some(pending) = pending {
            if let Some(record) = pending.record.take() {
                // Cancelled, refused or cut off: an error or nothing, either way.
                let _ = self.close_record(*record, &pending.method, pending.tool.as_deref(), ended);
            }
        }
    }

    /// The table of requests sent `from` this side.
    pub(super) fn pending(&mut self, from: Direction) -> &mut HashMap<String, Pending> {
        match from {
            Direction::ClientToServer => &mut self.upstream_pending,
            Direction::ServerToClient => &mut self.client_pending,
        }
    }

    /// The table an answer coming `from` this side settles.
    pub(super) fn answered(&mut self, from: Direction) -> &mut HashMap<String, Pending> {
        match from {
            Direction::ClientToServer => &mut self.client_pending,
            Direction::ServerToClient => &mut self.upstream_pending,
        }
    }

    pub(super) fn note_protocol_version(&mut self, message: &Message) {
        if let Some(v) = jsonrpc::negotiated_version(&message.raw) {
            self.instances.session_mut().protocol_version = Some(v);
        }
    }
}
