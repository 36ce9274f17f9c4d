//! Following a message that streams past the chain (cut-through).
//!
//! A long message no plugin wants is forwarded while it arrives, routed by
//! the `id` and `method` its first bytes name. A later duplicate of a
//! top-level key would change that reading for the peer (`"method"` given
//! twice, or an answer's `"id"`), so [`TopKeys`] follows the top level of the
//! object piece by piece and says when a key comes twice: the relay then cuts
//! the line off there, so the peer sees it malformed and never acts on it.

/// The top-level keys of a streaming JSON object, fed piece by piece.
#[derive(Debug, Default)]
pub struct TopKeys {
    depth: u32,
    in_string: bool,
    /// The previous byte was a backslash inside a string.
    escape: bool,
    /// A top-level member's key is expected next.
    expect_key: bool,
    /// The raw text of the top-level key being read.
    key: Option<Vec<u8>>,
    /// The keys read so far, decoded and folded (see `reader::fold_key`).
    seen: Vec<String>,
    /// Keys that would change what the message is (an answer's `method`).
    refused: &'static [&'static str],
}

impl TopKeys {
    /// Refuses these top-level keys from now on (and says if one came already):
    /// a streaming answer must not grow a `method`, nor a request a `result`,
    /// or a peer could read it as the other kind, unjudged.
    pub fn refuse(&mut self, keys: &'static [&'static str]) -> Result<(), String> {
        self.refused = keys;
        match self.seen.iter().any(|k| keys.contains(&k.as_str())) {
            true => Err("a top-level key that changes the message's kind".into()),
            false => Ok(()),
        }
    }

    /// Reads the next piece. `Err` names a key given twice (or one that
    /// cannot be read), after which the message must not reach the peer whole.
    pub fn feed(&mut self, piece: &[u8]) -> Result<(), String> {
        let mut i = 0;
        while i < piece.len() {
            if self.in_string {
                if self.escape {
                    self.escape = false;
                    self.keep(&piece[i..i + 1]);
                    i += 1;
                    continue;
                }
                match memchr::memchr2(b'"', b'\\', &piece[i..]) {
                    None => {
                        self.keep(&piece[i..]);
                        return Ok(());
                    }
                    Some(k) => {
                        self.keep(&piece[i..i + k]);
                        i += k;
                        if piece[i] == b'\\' {
                            self.keep(b"\\");
                            self.escape = true;
                        } else {
                            self.in_string = false;
                            self.key_done()?;
                        }
                        i += 1;
                    }
                }
                continue;
            }
            match piece[i] {
                b'"' => {
                    self.in_string = true;
                    if self.depth == 1 && self.expect_key {
                        self.key = Some(Vec::new());
                    }
                }
                b'{' | b'[' => {
                    if self.depth == 0 {
                        self.expect_key = true;
                    }
                    self.depth += 1;
                }
                b'}' | b']' => self.depth = self.depth.saturating_sub(1),
                b':' if self.depth == 1 => self.expect_key = false,
                b',' if self.depth == 1 => self.expect_key = true,
                _ => {}
            }
            i += 1;
        }
        Ok(())
    }

    fn keep(&mut self, bytes: &[u8]) {
        if let Some(key) = self.key.as_mut() {
            key.extend_from_slice(bytes);
        }
    }

    fn key_done(&mut self) -> Result<(), String> {
        let Some(raw) = self.key.take() else { return Ok(()) };
        let mut quoted = Vec::with_capacity(raw.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(&raw);
        quoted.push(b'"');
        let key: String = serde_json::from_slice(&quoted).map_err(|e| format!("unreadable top-level key: {e}"))?;
        let key = super::reader::fold_key(&key).into_owned();
        // Never the key itself in the error: it may be a secret.
        if self.seen.contains(&key) {
            return Err("duplicate top-level key".into());
        }
        if self.refused.contains(&key.as_str()) {
            return Err("a top-level key that changes the message's kind".into());
        }
        self.seen.push(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_in_pieces(text: &str, size: usize) -> Result<(), String> {
        let mut keys = TopKeys::default();
        for piece in text.as_bytes().chunks(size) {
            keys.feed(piece)?;
        }
        Ok(())
    }

    #[test]
    fn a_streaming_answer_cannot_grow_a_request_s_keys() {
        let answer = br#"{"jsonrpc":"2.0","id":5,"result":{"content":[{"text":"method"}]},"#;
        let mut keys = TopKeys::default();
        keys.feed(answer).expect("an answer so far");
        keys.refuse(&["method", "params"]).expect("none of them yet");
        assert!(keys.feed(br#""Method":"sampling/createMessage"}"#).is_err(), "case-folded too");
        // Already there when the refusal is set: said at once.
        let mut keys = TopKeys::default();
        keys.feed(br#"{"jsonrpc":"2.0","method":"ping","id":1,"result":{"#).expect("read");
        assert!(keys.refuse(&["result", "error"]).is_err());
    }

    #[test]
    fn a_key_given_twice_is_caught_at_any_split() {
        let twice = r#"{"jsonrpc":"2.0","method":"ping","id":1,"params":{"method":"x","a":[{"id":2}],"s":"\"method\":"},"me\u0074hod":"tools/call"}"#;
        let once =
            r#"{"jsonrpc":"2.0","method":"ping","id":1,"params":{"method":"x","a":[{"id":2}],"s":"\"method\":\\"}}"#;
        for size in 1..12 {
            assert!(feed_in_pieces(twice, size).is_err(), "split {size}");
            assert_eq!(feed_in_pieces(once, size), Ok(()), "split {size}");
        }
    }
}
