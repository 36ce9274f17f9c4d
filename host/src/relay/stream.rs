//! Cut-through: a long message no plugin wants is streamed on while it
//! arrives; anything else for that side waits until its last piece has gone.
//! A top-level key given twice cuts the stream off.

use bytes::{Bytes, BytesMut};

use super::pending::{Pending, MAX_PENDING};
use super::record::Ended;
use super::{opposite, side, sniff, way, Relay};
use crate::jsonrpc::{self, code};
use crate::plugin::instances::Direction;
use crate::transport::framing::{Frame, Outgoing};

/// A long message arriving in pieces from one side.
#[derive(Debug)]
pub(super) struct Partial {
    /// Bytes so far.
    pub(super) len: usize,
    pub(super) way: Way,
    /// The top-level keys so far, while streaming: a key given twice cuts it off.
    pub(super) keys: jsonrpc::stream::TopKeys,
}

#[derive(Debug)]
pub(super) enum Way {
    /// Forwarded as it arrives. `id` is the request it carries or answers
    /// (by value), which stays in its pending table until the last piece has gone.
    Stream { id: String, raw_id: String, answer: bool },
    /// Was streaming, cut off at a top-level key given twice: skipped to its
    /// end, then its sender (or, for an answer, the one it was owed to) is told.
    Cut { id: String, raw_id: String, answer: bool, why: String },
    /// Gathered, to be handled whole: the pieces so far, joined once at the end.
    Gather(Vec<Bytes>),
    /// Over the size limit: skipped to its end, then answered.
    Skip(Option<String>),
}

impl Relay {
    /// Whether a message is being streamed `travel`-wards.
    pub(super) fn streaming(&self, travel: Direction) -> bool {
        matches!(self.partial[way(travel)], Some(Partial { way: Way::Stream { .. }, .. }))
    }

    /// Sends a piece of a streaming message, in order with everything before it.
    /// A stdio line holds no LF; a lone CR in it, which some stdio readers
    /// take for a line end, goes on as a space (it can only be whitespace
    /// where a peer would not refuse the line anyway).
    pub(super) async fn push(&mut self, travel: Direction, item: Outgoing) {
        let item = match item {
            Outgoing::Part(part) => Outgoing::Part(jsonrpc::one_line(part)),
            Outgoing::Message(last) => Outgoing::Message(jsonrpc::one_line(last)),
        };
        let tx = match travel {
            Direction::ClientToServer => self.to_upstream.as_ref(),
            Direction::ServerToClient => Some(&self.to_client),
        };
        if let Some(tx) = tx {
            let _ = tx.send(item).await;
        }
    }

    /// Sends what was held back while a message streamed `travel`-wards.
    pub(super) async fn release(&mut self, travel: Direction) {
        while let Some(bytes) = self.held[way(travel)].pop_front() {
            self.send_on(travel, bytes).await;
        }
    }

    /// The first piece of a long message: stream it on, or start gathering it.
    pub(super) async fn start(&mut self, from: Direction, prefix: Bytes) {
        let len = prefix.len();
        // A reloaded chain is in force for this message too.
        self.refresh();
        let head = jsonrpc::prefix_head(&prefix);
        // While it streams, a request must not grow an answer's keys, nor an answer a request's.
        let refused: &'static [&'static str] =
            if head.method.is_some() { &["result", "error"] } else { &["method", "params"] };
        let mut keys = jsonrpc::stream::TopKeys::default();
        // A prefix that already names a key twice (or the other kind's) is
        // gathered, then refused whole.
        let stream = match keys.feed(&prefix).and_then(|()| keys.refuse(refused)) {
            Ok(()) => self.streamable(from, &head),
            Err(_) => None,
        };
        let way = match stream {
            Some(stream) => {
                self.push(from, Outgoing::Part(prefix)).await;
                stream
            }
            None if len > self.max_message_bytes => Way::Skip(sniff(&prefix)),
            None => Way::Gather(vec![prefix]),
        };
        self.partial[self::way(from)] = Some(Partial { len, way, keys });
    }

    /// Whether a message starting with `head` may be streamed: its side takes
    /// pieces, its head came early, and no plugin wants to see it (nor, for a
    /// request, its answer, whose context would lack the tool name).
    pub(super) fn streamable(&mut self, from: Direction, head: &jsonrpc::PrefixHead) -> Option<Way> {
        let takes_pieces = match from {
            Direction::ClientToServer => self.upstream_streams,
            Direction::ServerToClient => self.client_streams,
        };
        if !takes_pieces {
            return None;
        }
        let raw_id = head.id.clone()?;
        let id = jsonrpc::id_key(&raw_id)?;
        let chain = self.instances.chain().clone();
        match &head.method {
            Some(method) => {
                let quiet = !chain.wants_request(method, from) && !chain.wants_response(method, opposite(from));
                let special = matches!(method.as_str(), jsonrpc::method::INITIALIZE | jsonrpc::method::CANCELLED);
                let pending = self.pending(from);
                if !quiet || special || pending.len() >= MAX_PENDING || pending.contains_key(&id) {
                    return None;
                }
                let generation = chain.generation();
                // Streamed past the chain, read only this far: recorded without an arguments digest.
                let record = super::record::Opened::streamed(self, from, &raw_id);
                let entry = Pending { raw_id: raw_id.clone(), method: method.clone(), tool: None, generation, record };
                self.pending(from).insert(id.clone(), entry);
                Some(Way::Stream { id, raw_id, answer: false })
            }
            // An answer owed to a client's batch is gathered: it goes back inside the batch's array.
            None if head.answer && from == Direction::ServerToClient && self.batches.holds(&id) => None,
            None if head.answer => {
                let pending = self.answered(from).get(&id)?;
                let (method, generation) = (pending.method.clone(), pending.generation);
                // An answer under an id written otherwise than the request's is
                // gathered, so that it can go back under the asker's spelling.
                let respelled = pending.raw_id != raw_id;
                // The answer goes back through the chain its request went through.
                let wanted = self.instances_of(generation).chain().wants_response(&method, from);
                if wanted || method == jsonrpc::method::INITIALIZE || respelled {
                    return None;
                }
                Some(Way::Stream { id, raw_id, answer: true })
            }
            None => None,
        }
    }

    /// A middle piece of a long message.
    pub(super) async fn more(&mut self, from: Direction, part: Bytes) {
        let Some(mut partial) = self.partial[way(from)].take() else { return };
        partial.len += part.len();
        let over = partial.len > self.max_message_bytes;
        partial.way = match partial.way {
            Way::Stream { id, raw_id, answer } if over => {
                // Cut the line short where the limit was passed; the rest is skipped
                // and the message answered as too large once its end arrives.
                self.cut_stream(from, &id, answer).await;
                Way::Skip(Some(raw_id))
            }
            Way::Stream { id, raw_id, answer } => match partial.keys.feed(&part) {
                Ok(()) => {
                    self.push(from, Outgoing::Part(part)).await;
                    Way::Stream { id, raw_id, answer }
                }
                Err(why) => {
                    self.cut_stream(from, &id, answer).await;
                    Way::Cut { id, raw_id, answer, why }
                }
            },
            Way::Gather(pieces) if over => Way::Skip(pieces.first().and_then(|p| sniff(p))),
            Way::Gather(mut pieces) => {
                pieces.push(part);
                Way::Gather(pieces)
            }
            other @ (Way::Skip(_) | Way::Cut { .. }) => other,
        };
        self.partial[way(from)] = Some(partial);
    }

    /// Ends a streaming line short, so the peer sees it malformed and acts on
    /// none of it. A request cut off is no longer in flight.
    pub(super) async fn cut_stream(&mut self, from: Direction, id: &str, answer: bool) {
        if !answer {
            let mut cut = self.pending(from).remove(id);
            self.settled(cut.as_mut(), Ended::Error(code::INVALID_REQUEST.into()));
        }
        self.push(from, Outgoing::Message(Bytes::new())).await;
        self.release(from).await;
    }

    /// The last piece of a long message. Returns what is left to handle: the
    /// gathered message, or a too-large one to answer.
    pub(super) async fn end(&mut self, from: Direction, part: Bytes) -> Option<Frame> {
        let mut partial = self.partial[way(from)].take()?;
        partial.len += part.len();
        let over = partial.len > self.max_message_bytes;
        match partial.way {
            Way::Stream { id, raw_id, answer } => {
                let twice = partial.keys.feed(&part).err();
                if over || twice.is_some() {
                    self.cut_stream(from, &id, answer).await;
                    return match twice {
                        Some(why) if !over => {
                            self.refuse_cut(from, &id, raw_id, answer, why).await;
                            None
                        }
                        _ => Some(Frame::TooLarge { len: partial.len, id: Some(raw_id) }),
                    };
                }
                if answer {
                    let mut done = self.answered(from).remove(&id);
                    self.settled(done.as_mut(), Ended::Streamed);
                }
                self.push(from, Outgoing::Message(part)).await;
                self.release(from).await;
                None
            }
            Way::Cut { id, raw_id, answer, why } => {
                self.refuse_cut(from, &id, raw_id, answer, why).await;
                None
            }
            Way::Gather(pieces) if over => {
                Some(Frame::TooLarge { len: partial.len, id: pieces.first().and_then(|p| sniff(p)) })
            }
            Way::Gather(mut pieces) => {
                pieces.push(part);
                let mut line = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
                for piece in &pieces {
                    line.extend_from_slice(piece);
                }
                Some(Frame::Line(line.freeze()))
            }
            Way::Skip(id) => Some(Frame::TooLarge { len: partial.len, id }),
        }
    }

    /// Tells whoever waits on a message that was cut off for naming a key twice:
    /// its sender (a request) or the one it answered (an answer).
    pub(super) async fn refuse_cut(&mut self, from: Direction, id: &str, raw_id: String, answer: bool, why: String) {
        tracing::warn!(from = side(from), id = raw_id.as_str(), "streaming message cut off: {why}");
        if answer {
            let Some(mut pending) = self.answered(from).remove(id) else { return };
            self.settled(Some(&mut pending), Ended::Error(code::UPSTREAM_FAILED.into()));
            if from == Direction::ServerToClient {
                let text = format!("upstream sent an unreadable answer: {why}");
                let reply = jsonrpc::error_response(Some(&pending.raw_id), code::UPSTREAM_FAILED, &text, None);
                self.send_on(from, reply).await;
            }
        } else if from == Direction::ClientToServer {
            let reply = jsonrpc::error_response(Some(&raw_id), code::INVALID_REQUEST, &why, None);
            self.send_back(from, reply).await;
        }
    }
}
