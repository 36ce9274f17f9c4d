//! The one reading of a message: a strict, single-pass JSON reader.
//!
//! Whatever routes a message must read it exactly as the peer and the plugins
//! will. Parsers disagree on input the JSON grammar leaves open or forbids:
//! duplicate keys (serde_json keeps the last, others the first), invalid
//! UTF-8 and lone surrogate escapes (replaced, kept or refused), numbers no
//! float holds. This reader refuses all of them, so a message it accepts has
//! one meaning for every conforming parser, and it reads the routing facts
//! (id, method, `params.name`) in the same pass that checks the rest.
//!
//! It is linear in the message: string contents are jumped over with `memchr`
//! and checked a segment at a time, and object keys are kept on one stack
//! shared by every object (no allocation per object).

use std::borrow::Cow;
use std::collections::HashSet;

/// Deepest nesting of objects and arrays accepted. Plugins parse what Warden
/// forwards (serde_json stops at 128): anything deeper could not be judged.
pub const MAX_DEPTH: usize = 100;

/// Objects with more keys than this check duplicates with a set, not a scan.
const SCAN_KEYS: usize = 16;

/// Why a text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Not JSON text: the grammar, UTF-8 or an escape is broken.
    Syntax(String),
    /// JSON whose meaning parsers disagree on (a duplicate key) or that is
    /// nested too deeply to be judged.
    Ambiguous(String),
}

/// The top-level facts of a JSON-RPC object.
#[derive(Debug, Default)]
pub(crate) struct Top<'a> {
    /// Whether `jsonrpc` is the string `2.0`.
    pub jsonrpc_ok: bool,
    /// The `id` value as written, when present and not `null`.
    pub id: Option<&'a [u8]>,
    /// Where `id`'s text starts in the message.
    pub id_at: usize,
    /// `method`, when a string; `Err` when present but not a string.
    pub method: Option<Result<String, ()>>,
    /// `params.name` when `params` is an object and `name` a string.
    pub name: Option<String>,
    /// Whether `result` is an object whose `isError` is `true`.
    pub tool_error: bool,
    /// `error.code` and `error.message` as written, when `error` is an object.
    pub error: Option<[Option<&'a [u8]>; 2]>,
    /// Whether `result` / `error` are present.
    pub has_result: bool,
    /// See `has_result`.
    pub has_error: bool,
}

/// Reads a whole message: one JSON object, checked throughout. On failure,
/// the id is returned too when it was read before the fault (so the sender
/// can still be answered).
pub(crate) fn read_object(b: &[u8]) -> Result<Top<'_>, (Fault, Option<&[u8]>)> {
    let mut r = Reader { b, i: 0, depth: 0, keys: Vec::new() };
    let mut top = Top::default();
    let result = r.top(&mut top);
    match result {
        Ok(()) => Ok(top),
        Err(fault) => Err((fault, top.id)),
    }
}

/// Checks any JSON text (an array, say) with the same rules.
pub(crate) fn check_text(b: &[u8]) -> Result<(), Fault> {
    let mut r = Reader { b, i: 0, depth: 0, keys: Vec::new() };
    r.ws();
    r.value()?;
    r.ws();
    if r.i != b.len() {
        return Err(r.syntax("trailing characters"));
    }
    Ok(())
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
    /// Keys of the objects being read, innermost last.
    keys: Vec<Cow<'a, str>>,
}

impl<'a> Reader<'a> {
    fn syntax(&self, what: &str) -> Fault {
        Fault::Syntax(format!("{what} at byte {}", self.i))
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), Fault> {
        self.ws();
        if self.peek() != Some(c) {
            return Err(self.syntax(&format!("expected '{}'", c as char)));
        }
        self.i += 1;
        Ok(())
    }

    fn top(&mut self, top: &mut Top<'a>) -> Result<(), Fault> {
        self.ws();
        if self.peek() != Some(b'{') {
            return Err(self.syntax("expected a JSON object"));
        }
        let base = self.keys.len();
        self.open()?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
        } else {
            loop {
                let (key, folded) = self.key(base)?;
                self.ws();
                let start = self.i;
                match &*key {
                    "params" if self.peek() == Some(b'{') => {
                        let [name] = self.object(["name"])?;
                        top.name = match name {
                            Some(raw) if raw.first() == Some(&b'"') => Some(string_value(raw)?.into_owned()),
                            _ => None,
                        };
                    }
                    "result" if self.peek() == Some(b'{') => {
                        let [is_error] = self.object(["isError"])?;
                        top.tool_error = is_error == Some(b"true");
                    }
                    "error" if self.peek() == Some(b'{') => top.error = Some(self.object(["code", "message"])?),
                    "method" if self.peek() == Some(b'"') => {
                        let (text, escaped) = self.string()?;
                        top.method = Some(Ok(decode(text, escaped)?.into_owned()));
                    }
                    "method" => {
                        self.value()?;
                        top.method = Some(Err(()));
                    }
                    "jsonrpc" if self.peek() == Some(b'"') => {
                        let (text, escaped) = self.string()?;
                        top.jsonrpc_ok = decode(text, escaped)? == "2.0";
                    }
                    _ => self.value()?,
                }
                let value = &self.b[start..self.i];
                match &*key {
                    "id" if value != b"null" => {
                        top.id = Some(value);
                        top.id_at = start;
                    }
                    "result" => top.has_result = true,
                    "error" => top.has_error = true,
                    _ => {}
                }
                self.keys.push(folded);
                if self.after_member()? {
                    break;
                }
            }
        }
        self.close(base);
        self.ws();
        if self.i != self.b.len() {
            return Err(self.syntax("trailing characters"));
        }
        Ok(())
    }

    /// Reads a key (at its opening quote, after whitespace) and its colon,
    /// refusing one the object at `base` already has. Returns it, and its
    /// folded form (what siblings are compared by, see [`fold_key`]).
    fn key(&mut self, base: usize) -> Result<(Cow<'a, str>, Cow<'a, str>), Fault> {
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(self.syntax("expected a key"));
        }
        let at = self.i;
        let (text, escaped) = self.string()?;
        let key = decode(text, escaped)?;
        let folded = fold_key(&key);
        let siblings = &self.keys[base..];
        let duplicate = if siblings.len() <= SCAN_KEYS {
            siblings.contains(&folded)
        } else {
            siblings.iter().collect::<HashSet<_>>().contains(&folded)
        };
        if duplicate {
            // Never the key itself: it may be a secret (a credential as a map key).
            return Err(Fault::Ambiguous(format!("duplicate key at byte {at}")));
        }
        self.expect(b':')?;
        let folded = match folded {
            Cow::Borrowed(_) => key.clone(),
            Cow::Owned(f) => Cow::Owned(f),
        };
        Ok((key, folded))
    }

    /// After a member: `,` (more follow) or `}` (returns true).
    fn after_member(&mut self) -> Result<bool, Fault> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(false)
            }
            Some(b'}') => {
                self.i += 1;
                Ok(true)
            }
            _ => Err(self.syntax("expected ',' or '}'")),
        }
    }

    fn open(&mut self) -> Result<(), Fault> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Fault::Ambiguous(format!("nested deeper than {MAX_DEPTH} levels at byte {}", self.i)));
        }
        self.i += 1;
        Ok(())
    }

    fn close(&mut self, base: usize) {
        self.depth -= 1;
        self.keys.truncate(base);
    }

    fn value(&mut self) -> Result<(), Fault> {
        self.ws();
        match self.peek() {
            Some(b'{') => self.object([]).map(drop),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(drop),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.syntax("expected a value")),
            None => Err(self.syntax("unexpected end")),
        }
    }

    /// An object; returns the text of the members named in `want`, as written.
    fn object<const N: usize>(&mut self, want: [&str; N]) -> Result<[Option<&'a [u8]>; N], Fault> {
        let base = self.keys.len();
        self.open()?;
        let mut found = [None; N];
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
        } else {
            loop {
                let (key, folded) = self.key(base)?;
                self.ws();
                let start = self.i;
                self.value()?;
                if let Some(slot) = want.iter().position(|w| *w == key) {
                    found[slot] = Some(&self.b[start..self.i]);
                }
                self.keys.push(folded);
                if self.after_member()? {
                    break;
                }
            }
        }
        self.close(base);
        Ok(found)
    }

    fn array(&mut self) -> Result<(), Fault> {
        let base = self.keys.len();
        self.open()?;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
        } else {
            loop {
                self.value()?;
                self.ws();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(b']') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(self.syntax("expected ',' or ']'")),
                }
            }
        }
        self.close(base);
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Fault> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.syntax("invalid literal"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, within
    /// what a double holds: parsers split on larger ones (serde_json
    /// refuses them, JavaScript reads `Infinity`), so they are refused.
    fn number(&mut self) -> Result<(), Fault> {
        let start = self.i;
        self.number_grammar()?;
        let text = &self.b[start..self.i];
        let may_overflow = text.len() > 300 || text.iter().any(|c| matches!(c, b'e' | b'E'));
        if may_overflow {
            let value = std::str::from_utf8(text).ok().and_then(|t| t.parse::<f64>().ok());
            if !value.is_some_and(f64::is_finite) {
                return Err(Fault::Ambiguous(format!("number out of range at byte {start}")));
            }
        }
        Ok(())
    }

    fn number_grammar(&mut self) -> Result<(), Fault> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.syntax("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.syntax("invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.syntax("invalid number"));
            }
        }
        Ok(())
    }

    /// A string, at its opening quote: its text between the quotes and
    /// whether it holds escapes. UTF-8, control characters and every escape
    /// (surrogates paired) are checked.
    fn string(&mut self) -> Result<(&'a [u8], bool), Fault> {
        self.i += 1;
        let start = self.i;
        let b = self.b;
        let mut escaped = false;
        loop {
            // Printable ASCII goes by in one pass; anything else stops it.
            self.i += plain_run(&b[self.i..]);
            match b.get(self.i) {
                None => return Err(self.syntax("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok((&b[start..self.i - 1], escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(&c) if c < 0x20 => return Err(self.syntax("control character in a string")),
                // Not ASCII: the text up to the next quote or backslash, checked as UTF-8 at once.
                Some(_) => {
                    let rest = &b[self.i..];
                    let Some(k) = memchr::memchr2(b'"', b'\\', rest) else {
                        return Err(self.syntax("unterminated string"));
                    };
                    let segment = &rest[..k];
                    let (control, ascii) = scan_segment(segment);
                    if control {
                        return Err(self.syntax("control character in a string"));
                    }
                    if !ascii && std::str::from_utf8(segment).is_err() {
                        return Err(self.syntax("invalid UTF-8 in a string"));
                    }
                    self.i += k;
                }
            }
        }
    }

    /// At a backslash: one escape, a surrogate pair counted as one.
    fn escape(&mut self) -> Result<(), Fault> {
        self.i += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.i += 1;
                Ok(())
            }
            Some(b'u') => {
                self.i += 1;
                let unit = self.hex4()?;
                match unit {
                    0xD800..=0xDBFF => {
                        if !self.b[self.i..].starts_with(b"\\u") {
                            return Err(self.syntax("lone surrogate escape"));
                        }
                        self.i += 2;
                        match self.hex4()? {
                            0xDC00..=0xDFFF => Ok(()),
                            _ => Err(self.syntax("lone surrogate escape")),
                        }
                    }
                    0xDC00..=0xDFFF => Err(self.syntax("lone surrogate escape")),
                    _ => Ok(()),
                }
            }
            _ => Err(self.syntax("invalid escape")),
        }
    }

    fn hex4(&mut self) -> Result<u32, Fault> {
        let digits = self.b.get(self.i..self.i + 4).ok_or_else(|| self.syntax("short \\u escape"))?;
        let text = std::str::from_utf8(digits).map_err(|_| self.syntax("invalid \\u escape"))?;
        if !text.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(self.syntax("invalid \\u escape"));
        }
        let unit = u32::from_str_radix(text, 16).map_err(|_| self.syntax("invalid \\u escape"))?;
        self.i += 4;
        Ok(unit)
    }
}

/// Whether a string segment holds a raw control character, and whether it is
/// all ASCII (then it is UTF-8 without a second look). One pass, written so
/// the compiler can vectorise it: no early exit inside a chunk.
/// How many bytes at the start of `b` may stand in a string as they are:
/// printable ASCII other than the quote and the backslash. Sixty-four at a
/// time, in a form the compiler turns into vector compares.
fn plain_run(b: &[u8]) -> usize {
    let plain = |c: u8| c.wrapping_sub(0x20) < 0x60 && c != b'"' && c != b'\\';
    let mut n = 0;
    for chunk in b.chunks_exact(64) {
        let stop = chunk.iter().fold(0u8, |stop, &c| {
            stop | u8::from(c.wrapping_sub(0x20) >= 0x60) | u8::from(c == b'"') | u8::from(c == b'\\')
        });
        if stop != 0 {
            break;
        }
        n += 64;
    }
    n + b[n..].iter().take_while(|&&c| plain(c)).count()
}

fn scan_segment(segment: &[u8]) -> (bool, bool) {
    let mut high = 0u8;
    for chunk in segment.chunks(64) {
        let (control, bits) = chunk.iter().fold((false, 0u8), |(control, bits), &c| (control | (c < 0x20), bits | c));
        if control {
            return (true, false);
        }
        high |= bits;
    }
    (false, high < 0x80)
}

/// A key as the most lenient reader compares keys: Go's `encoding/json`
/// (mcp-go and other Go servers) matches struct fields case-insensitively,
/// with Unicode simple folding (`ſ` is `s`, the Kelvin sign is `k`), and takes
/// the last. Two sibling keys equal under this folding are a duplicate.
pub(crate) fn fold_key(key: &str) -> Cow<'_, str> {
    let plain = key.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase());
    if plain {
        return Cow::Borrowed(key);
    }
    Cow::Owned(
        key.chars()
            .map(|c| match c {
                '\u{17F}' => 's',
                '\u{212A}' => 'k',
                c => c.to_ascii_lowercase(),
            })
            .collect(),
    )
}

/// The text of a checked string value, quotes included.
pub(crate) fn string_value(raw: &[u8]) -> Result<Cow<'_, str>, Fault> {
    let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
    decode(inner, memchr::memchr(b'\\', inner).is_some())
}

/// The text of a checked string.
fn decode(text: &[u8], escaped: bool) -> Result<Cow<'_, str>, Fault> {
    if !escaped {
        // Checked as UTF-8 already, segment by segment.
        return std::str::from_utf8(text).map(Cow::Borrowed).map_err(|e| Fault::Syntax(e.to_string()));
    }
    let mut quoted = Vec::with_capacity(text.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(text);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted).map(Cow::Owned).map_err(|e| Fault::Syntax(e.to_string()))
}

/// The value an id names, so that equal ids match however they are written:
/// a number as its integer (`1e2` and `100.0` are 100), a string as its text
/// after unescaping (`"\u0078"` is `"x"`). Returned as canonical JSON text.
pub(crate) fn id_key(id: &[u8]) -> Result<String, String> {
    match id.first() {
        Some(b'"') => {
            let text: String = serde_json::from_slice(id).map_err(|e| e.to_string())?;
            serde_json::to_string(&text).map_err(|e| e.to_string())
        }
        Some(b'-' | b'0'..=b'9') => integer(id).map(|n| n.to_string()),
        _ => Err("id must be a string or a number".into()),
    }
}

/// The most an id's magnitude may be: every integer up to it is exact in a
/// double, so every peer reads the same number.
const MAX_SAFE: u64 = 1 << 53;

/// A JSON number's exact value, when it is an integer within ±2^53.
pub(crate) fn integer(text: &[u8]) -> Result<i64, String> {
    let refuse = || {
        format!("numeric id {} must be an integer within ±2^53", String::from_utf8_lossy(&text[..text.len().min(40)]))
    };
    let (negative, rest) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (mantissa, exponent) = match rest.iter().position(|c| matches!(c, b'e' | b'E')) {
        Some(at) => {
            let exp =
                std::str::from_utf8(&rest[at + 1..]).ok().and_then(|e| e.parse::<i64>().ok()).ok_or_else(refuse)?;
            (&rest[..at], exp)
        }
        None => (rest, 0),
    };
    let (whole, fraction) = match mantissa.iter().position(|&c| c == b'.') {
        Some(at) => (&mantissa[..at], &mantissa[at + 1..]),
        None => (mantissa, &[][..]),
    };
    let mut digits: Vec<u8> = whole.iter().chain(fraction).copied().collect();
    let mut scale = exponent.checked_sub(fraction.len() as i64).ok_or_else(refuse)?;
    while digits.len() > 1 && digits.first() == Some(&b'0') {
        digits.remove(0);
    }
    while scale < 0 && digits.last() == Some(&b'0') && digits.len() > 1 {
        digits.pop();
        scale += 1;
    }
    if digits == b"0" {
        return Ok(0);
    }
    if scale < 0 || digits.len() as i64 + scale > 16 {
        return Err(refuse());
    }
    let mut value: u64 = 0;
    for &d in &digits {
        value = value * 10 + u64::from(d - b'0');
    }
    for _ in 0..scale {
        value = value.checked_mul(10).ok_or_else(refuse)?;
    }
    if value > MAX_SAFE {
        return Err(refuse());
    }
    let value = value as i64;
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_by_value() {
        assert_eq!(id_key(b"1e2").unwrap(), "100");
        assert_eq!(id_key(b"100.0").unwrap(), "100");
        assert_eq!(id_key(b"-0").unwrap(), "0");
        assert_eq!(id_key(b"0.0e5").unwrap(), "0");
        assert_eq!(id_key(b"-12").unwrap(), "-12");
        assert_eq!(id_key(b"9007199254740992").unwrap(), "9007199254740992");
        assert!(id_key(b"9007199254740993").is_err());
        assert!(id_key(b"123456789012345678901234567890").is_err());
        assert!(id_key(b"1.5").is_err());
        assert!(id_key(b"1e400").is_err());
        assert!(id_key(b"1e-400").is_err());
        assert_eq!(id_key(br#""\u0078""#).unwrap(), r#""x""#);
        assert_eq!(id_key(br#""a\/b""#).unwrap(), r#""a/b""#);
        assert_eq!(id_key(br#""x""#).unwrap(), r#""x""#);
    }

    #[test]
    fn refuses_what_parsers_read_differently() {
        let ambiguous = |s: &str| matches!(read_object(s.as_bytes()), Err((Fault::Ambiguous(_), _)));
        let syntax = |s: &[u8]| matches!(read_object(s), Err((Fault::Syntax(_), _)));
        assert!(ambiguous(r#"{"a":1,"a":2}"#));
        assert!(ambiguous(r#"{"params":{"name":"x","name":"y"}}"#));
        assert!(ambiguous(r#"{"params":{"arguments":{"p":[{"q":1,"\u0071":2}]}}}"#));
        assert!(ambiguous(&format!("{{\"a\":{}1{}}}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH))));
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":1")).collect();
        assert!(ambiguous(&format!("{{{},\"k3\":2}}", many.join(","))));
        assert!(read_object(format!("{{{}}}", many.join(",")).as_bytes()).is_ok());
        assert!(syntax(b"{\"a\":\"\xff\"}"));
        assert!(syntax(br#"{"a":"\ud800"}"#));
        assert!(syntax(br#"{"a":"\udc00\ud800"}"#));
        assert!(syntax(br#"{"a":"\ud800\u0041"}"#));
        assert!(syntax(b"{\"a\":\"\x01\"}"));
        assert!(syntax(br#"{"a":01}"#));
        assert!(syntax(br#"{"a":1.}"#));
        assert!(syntax(br#"{"a":+1}"#));
        assert!(syntax(br#"{"a":tru}"#));
        assert!(syntax(br#"{"a":"\x"}"#));
        assert!(syntax(br#"{"a":1,}"#));
        assert!(ambiguous(r#"{"a":1e400}"#), "no double holds it");
        assert!(read_object(br#"{"a":1e300,"b":-2.5E-400}"#).is_ok(), "underflow is a zero everywhere");
        assert!(syntax(br#"{"a":1} x"#));
        assert!(read_object(br#"{"a":"\ud83d\ude00 \u00e9 \" \\ \/","b":[1,-2.5e-3,true,null,{}]}"#).is_ok());
    }

    #[test]
    fn the_id_read_before_a_fault_is_kept() {
        let (_, id) = read_object(br#"{"id":7,"params":{"a":1,"a":2}}"#).unwrap_err();
        assert_eq!(id, Some(&b"7"[..]));
    }
}
