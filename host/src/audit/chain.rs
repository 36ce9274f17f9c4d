//! What ties each audit record to the one before it: `seq` counts records
//! across files and restarts, `prev` is the sha256 (hex) of the previous
//! record's line as written (without its newline; 64 zeros for the first).
//! A checkpoint record signs the chain's head with Ed25519: since every
//! `prev` covers all that came before, one signature covers them all.

use sha2::{Digest, Sha256};

/// The `prev` of the very first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// What a checkpoint signs: its own `seq`, `prev` and `time`.
pub fn checkpoint_message(seq: u64, prev: &str, time: &str) -> Vec<u8> {
    format!("warden-audit-checkpoint/v1\n{seq}\n{prev}\n{time}").into_bytes()
}

/// Lowercase hex of `bytes` (a table, not a char iterator: it runs per record).
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The time a record says, to the millisecond (RFC 3339, UTC). Formatted
/// once per millisecond and thread: many records share one.
pub fn now_rfc3339() -> std::rc::Rc<str> {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static LAST: RefCell<(u128, std::rc::Rc<str>)> = RefCell::new((0, std::rc::Rc::from("")));
    }
    let now = SystemTime::now();
    let millis = now.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default();
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != millis || last.1.is_empty() {
            *last = (millis, std::rc::Rc::from(humantime::format_rfc3339_millis(now).to_string()));
        }
        last.1.clone()
    })
}

/// The sha256 of a record's line.
pub fn digest(line: &[u8]) -> [u8; 32] {
    Sha256::digest(line).into()
}

/// The chain's head: the next record's `seq` and `prev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    /// The next record's `seq`.
    pub next: u64,
    /// The digest of the last record written.
    pub prev: [u8; 32],
}

impl Default for Chain {
    fn default() -> Chain {
        Chain { next: 1, prev: GENESIS }
    }
}

impl Chain {
    /// The chain after `line`, the last record written (`None` if it is no record).
    pub fn after(line: &[u8]) -> Option<Chain> {
        let value: serde_json::Value = serde_json::from_slice(line).ok()?;
        let seq = value.get("seq")?.as_u64()?;
        Some(Chain { next: seq.checked_add(1)?, prev: digest(line) })
    }

    /// The `prev` to write, as hex.
    pub fn prev_hex(&self) -> String {
        to_hex(&self.prev)
    }

    /// The line of the next record, whose other members are `body`
    /// (`"time":…,…`, without braces); the chain moves past it.
    pub fn seal(&mut self, body: &str) -> String {
        let line = format!("{{\"seq\":{},\"prev\":\"{}\",{body}}}", self.next, self.prev_hex());
        self.prev = digest(line.as_bytes());
        self.next += 1;
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_names_the_one_before() {
        let mut chain = Chain::default();
        let first = chain.seal(r#""event":1"#);
        let second = chain.seal(r#""event":2"#);
        assert!(first.starts_with(&format!(r#"{{"seq":1,"prev":"{}""#, "0".repeat(64))));
        assert!(second.contains(&hex::encode(digest(first.as_bytes()))));
        assert_eq!(to_hex(&[0, 0xab, 0x7f]), "00ab7f");
        assert_eq!(Chain::after(second.as_bytes()), Some(chain));
        assert_eq!(Chain::after(b"{\"seq\": \"x\"}"), None);
    }
}
