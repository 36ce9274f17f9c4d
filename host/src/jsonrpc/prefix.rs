//! What the first bytes of a long message say (its id, method, whether it is an
//! answer), read without waiting for the rest, to route it while it streams.

use super::ParseError;

/// What the first bytes of a long message say about it: the top-level fields
/// complete in `prefix`, read up to the first one still arriving (or up to
/// `result` / `error`, which mark an answer).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PrefixHead {
    /// The id as JSON text, if it came early.
    pub id: Option<String>,
    /// The method, if it came early.
    pub method: Option<String>,
    /// Whether a `result` or `error` member starts in the prefix.
    pub answer: bool,
}

/// Reads a [`PrefixHead`] from the start of a message whose end has not arrived.
pub fn prefix_head(prefix: &[u8]) -> PrefixHead {
    let mut head = PrefixHead::default();
    let mut seen: Vec<String> = Vec::new();
    let mut scan = Scanner { b: prefix, i: 0 };
    if scan.eat(b'{').is_err() {
        return head;
    }
    loop {
        scan.ws();
        if scan.peek() != Some(b'"') {
            return head;
        }
        let start = scan.i;
        if scan.string().is_err() || scan.i > prefix.len() {
            return head;
        }
        let Ok(key) = serde_json::from_slice::<String>(&prefix[start..scan.i]) else { return head };
        if scan.eat(b':').is_err() {
            return head;
        }
        if key == "result" || key == "error" {
            head.answer = true;
            return head;
        }
        scan.ws();
        let value_start = scan.i;
        if scan.skip_value().is_err() || scan.i > prefix.len() {
            return head;
        }
        let value = &prefix[value_start..scan.i];
        if seen.contains(&key) {
            // Ambiguous already: nothing read from it is trusted.
            return PrefixHead::default();
        }
        scan.ws();
        // Only a value followed by a comma is known to be whole (`12` may be
        // the start of `123`).
        if scan.peek() != Some(b',') {
            return head;
        }
        scan.i += 1;
        seen.push(key.clone());
        match key.as_str() {
            "id" => head.id = (value != b"null").then(|| String::from_utf8_lossy(value).into_owned()),
            "method" => head.method = serde_json::from_slice::<String>(value).ok(),
            _ => {}
        }
    }
}

pub(super) struct Scanner<'a> {
    pub(super) b: &'a [u8],
    pub(super) i: usize,
}

impl<'a> Scanner<'a> {
    fn error(&self, what: &str) -> ParseError {
        ParseError::Json { reason: format!("{what} at byte {}", self.i), id: None }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), ParseError> {
        self.ws();
        if self.peek() != Some(c) {
            return Err(self.error(&format!("expected '{}'", c as char)));
        }
        self.i += 1;
        Ok(())
    }

    /// At an opening quote: moves past the closing one.
    fn string(&mut self) -> Result<(), ParseError> {
        self.i += 1;
        loop {
            match memchr::memchr2(b'"', b'\\', &self.b[self.i..]) {
                Some(k) if self.b[self.i + k] == b'\\' => self.i += k + 2,
                Some(k) => {
                    self.i += k + 1;
                    return Ok(());
                }
                None => return Err(self.error("unterminated string")),
            }
            if self.i > self.b.len() {
                return Err(self.error("unterminated string"));
            }
        }
    }

    fn skip_value(&mut self) -> Result<(), ParseError> {
        self.ws();
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'{' | b'[') => {
                let mut stack: Vec<u8> = Vec::new();
                loop {
                    match self.peek() {
                        None => return Err(self.error("unterminated container")),
                        Some(b'"') => self.string()?,
                        Some(open @ (b'{' | b'[')) => {
                            stack.push(if open == b'{' { b'}' } else { b']' });
                            self.i += 1;
                        }
                        Some(close @ (b'}' | b']')) => {
                            if stack.pop() != Some(close) {
                                return Err(self.error("mismatched bracket"));
                            }
                            self.i += 1;
                            if stack.is_empty() {
                                return Ok(());
                            }
                        }
                        Some(_) => self.i += 1,
                    }
                }
            }
            Some(_) => {
                let start = self.i;
                while self.peek().is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace()) {
                    self.i += 1;
                }
                let token = &self.b[start..self.i];
                let scalar = matches!(token, b"true" | b"false" | b"null")
                    || serde_json::from_slice::<serde_json::Number>(token).is_ok();
                if scalar {
                    Ok(())
                } else {
                    Err(self.error("invalid value"))
                }
            }
            None => Err(self.error("expected a value")),
        }
    }
}

/// Best effort: the top-level id of a message too large to parse, read from
/// its first bytes, so that its sender still gets an answer. Only an `id`
/// member of the message object itself counts (never one inside `params`),
/// and only when it comes before any member too long to read.
pub fn sniff_id(prefix: &[u8]) -> Option<String> {
    prefix_head(prefix).id
}
