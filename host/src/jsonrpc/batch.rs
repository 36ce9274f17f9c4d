//! JSON-RPC batches (2025-03-26 only): told apart, split into members, joined
//! back into one answer.

use bytes::Bytes;
use serde_json::value::RawValue;

use super::{fault, invalid, reader, ParseError};

/// The one protocol version with JSON-RPC batches (2025-06-18 removed them).
pub const BATCH_VERSION: &str = "2025-03-26";

/// The answer to an `initialize` inside a batch.
pub const BATCHED_INITIALIZE: &str = "initialize must not be part of a JSON-RPC batch";

/// Why a session at protocol `version` takes no batch; `None` when it does.
pub fn batch_refused(version: &str) -> Option<String> {
    let takes_batches = crate::era::Version::parse(version).is_some_and(crate::era::Version::has_batches);
    (!takes_batches)
        .then(|| format!("JSON-RPC batches are not part of protocol version {version} (only {BATCH_VERSION})"))
}

/// Whether a message is a JSON-RPC batch: a JSON array.
pub fn is_batch(raw: &[u8]) -> bool {
    raw.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
}

/// The messages of a batch, each a slice of `raw` (not copied). The whole
/// text is checked first, with the rules every message is read by.
pub fn split_batch(raw: &Bytes) -> Result<Vec<Bytes>, ParseError> {
    reader::check_text(raw).map_err(|f| fault(f, None))?;
    let items: Vec<&RawValue> = serde_json::from_slice(raw).map_err(|e| {
        if e.is_data() {
            invalid(&format!("not a batch of JSON-RPC messages: {e}"), None)
        } else {
            ParseError::Json { reason: e.to_string(), id: None }
        }
    })?;
    if items.is_empty() {
        return Err(invalid("empty batch", None));
    }
    Ok(items.iter().map(|item| raw.slice_ref(item.get().as_bytes())).collect())
}

/// The answers to a batch, as one JSON array.
pub fn join_batch(answers: &[Bytes]) -> Bytes {
    let mut out = Vec::with_capacity(answers.iter().map(|a| a.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, answer) in answers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(answer);
    }
    out.push(b']');
    Bytes::from(out)
}
