//! The strings of a raw JSON text, found and rewritten without parsing it.
//!
//! A value tree would cost a copy of the whole message (and serde_json stops
//! at 128 levels of nesting, which a server can exceed). In JSON every string,
//! key or value, at any depth, is delimited by quotes that cannot occur outside
//! strings, so a forward walk from quote to quote finds them all in one pass,
//! whatever the nesting. Strings are decoded only when something may hide in
//! them; a rewritten text is built once, copying the untouched stretches as
//! they came.

use std::fmt::Write as _;

/// Why a text cannot be walked.
#[derive(Debug, PartialEq)]
pub struct Malformed(pub String);

/// One string: the offsets of its quotes, and whether it has escapes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Str {
    pub open: usize,
    pub close: usize,
    pub escaped: bool,
}

/// The next string starting at or after `from`, if any.
pub fn next_string(raw: &str, from: usize) -> Result<Option<Str>, Malformed> {
    let Some(open) = find(raw, b'"', from, raw.len()) else { return Ok(None) };
    let unterminated = || Malformed(format!("unterminated string at byte {open}"));
    let mut i = open + 1;
    let mut close = find(raw, b'"', i, raw.len()).ok_or_else(unterminated)?;
    let mut escaped = false;
    // Each stretch is searched once: backslashes before the candidate quote,
    // and a new candidate only when the old one turned out to be escaped.
    while let Some(backslash) = find(raw, b'\\', i, close) {
        escaped = true;
        match raw.as_bytes().get(backslash + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' | b'u') => i = backslash + 2,
            _ => return Err(Malformed(format!("invalid escape at byte {backslash}"))),
        }
        if i > close {
            close = find(raw, b'"', i, raw.len()).ok_or_else(unterminated)?;
        }
    }
    Ok(Some(Str { open, close, escaped }))
}

/// The first `byte` (ASCII) in `raw[from..to]`; `str::find` on a char is a memchr.
fn find(raw: &str, byte: u8, from: usize, to: usize) -> Option<usize> {
    let hay = raw.get(from..to)?;
    hay.find(char::from(byte)).map(|at| from + at)
}

/// Whether the string ending at `close` is an object key (a `:` follows it).
pub fn is_key(raw: &str, close: usize) -> bool {
    raw.as_bytes()[close + 1..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b':')
}

/// How far apart (in decoded bytes) [`decode`] leaves marks for the [`Cursor`].
const MARK_EVERY: usize = 64 * 1024;

/// Decodes the contents of an escaped string into `out` (cleared first), and
/// leaves in `marks` (cleared first) a (raw, decoded) pair of offsets every
/// [`MARK_EVERY`] bytes, from which the [`Cursor`] can start. A lone
/// surrogate, which no Rust string can hold, becomes U+FFFD: detection then
/// sees a non-secret character where the peer sees an unpaired one.
pub fn decode(raw: &str, s: Str, out: &mut String, marks: &mut Vec<(usize, usize)>) -> Result<(), Malformed> {
    out.clear();
    marks.clear();
    let body = &raw[s.open + 1..s.close];
    out.reserve(body.len());
    let mut i = 0;
    while let Some(at) = body[i..].find('\\') {
        out.push_str(&body[i..i + at]);
        if out.len() >= marks.last().map_or(0, |m| m.1) + MARK_EVERY {
            marks.push((i + at, out.len()));
        }
        let (c, used) = escape(body, i + at).ok_or_else(|| bad_escape(s, i + at))?;
        out.push(c);
        i += at + used;
    }
    out.push_str(&body[i..]);
    Ok(())
}

fn bad_escape(s: Str, at: usize) -> Malformed {
    Malformed(format!("invalid escape at byte {}", s.open + 1 + at))
}

/// The character the escape at `body[e..]` stands for, and its length in `body`.
fn escape(body: &str, e: usize) -> Option<(char, usize)> {
    Some(match body.as_bytes().get(e + 1)? {
        b'"' => ('"', 2),
        b'\\' => ('\\', 2),
        b'/' => ('/', 2),
        b'b' => ('\u{8}', 2),
        b'f' => ('\u{c}', 2),
        b'n' => ('\n', 2),
        b'r' => ('\r', 2),
        b't' => ('\t', 2),
        b'u' => {
            let unit = hex4(body, e + 2)?;
            let low = (0xD800..0xDC00).contains(&unit).then(|| low_surrogate(body, e + 6)).flatten();
            match low {
                Some(low) => (pair(unit, low), 12),
                None => (char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER), 6),
            }
        }
        _ => return None,
    })
}

/// Maps offsets in a string's decoded text back to the raw message, moving
/// forward only: from one escape to the next, so a string is read once
/// however many offsets are asked for.
pub struct Cursor<'r> {
    body: &'r str,
    s: Str,
    marks: &'r [(usize, usize)],
    raw: usize,
    decoded: usize,
    /// Where the next escape starts (the body's length when there is none).
    next_escape: usize,
}

impl<'r> Cursor<'r> {
    /// A cursor at the start of string `s` of `raw`, with the marks [`decode`] left.
    pub fn new(raw: &'r str, s: Str, marks: &'r [(usize, usize)]) -> Cursor<'r> {
        let body = &raw[s.open + 1..s.close];
        let next_escape = if s.escaped { body.find('\\').unwrap_or(body.len()) } else { body.len() };
        Cursor { body, s, marks, raw: 0, decoded: 0, next_escape }
    }

    /// The offset in the raw message of decoded offset `target` (not before the last one asked for).
    pub fn seek(&mut self, target: usize) -> Result<usize, Malformed> {
        // Jump to the last mark before the target, if it is ahead: each mark sits on an escape.
        let ahead = self.marks.partition_point(|m| m.1 <= target);
        if let Some(&(raw, decoded)) = ahead.checked_sub(1).and_then(|i| self.marks.get(i)) {
            if decoded > self.decoded {
                (self.raw, self.decoded, self.next_escape) = (raw, decoded, raw);
            }
        }
        while self.decoded < target {
            let run = self.next_escape - self.raw;
            if self.decoded + run >= target {
                self.raw += target - self.decoded;
                self.decoded = target;
                break;
            }
            self.step(run)?;
        }
        Ok(self.s.open + 1 + self.raw)
    }

    /// The decoded offset of raw message offset `target`, a byte of the string
    /// outside any escape or the start of one (not before the last one asked for).
    pub fn decoded_of(&mut self, target: usize) -> Result<usize, Malformed> {
        let target = target.saturating_sub(self.s.open + 1).min(self.body.len());
        let ahead = self.marks.partition_point(|m| m.0 <= target);
        if let Some(&(raw, decoded)) = ahead.checked_sub(1).and_then(|i| self.marks.get(i)) {
            if raw > self.raw {
                (self.raw, self.decoded, self.next_escape) = (raw, decoded, raw);
            }
        }
        while self.raw < target {
            let run = self.next_escape - self.raw;
            if self.raw + run >= target {
                self.decoded += target - self.raw;
                self.raw = target;
                break;
            }
            self.step(run)?;
        }
        Ok(self.decoded)
    }

    /// Moves over `run` plain bytes and the escape after them.
    fn step(&mut self, run: usize) -> Result<(), Malformed> {
        self.raw = self.next_escape;
        self.decoded += run;
        let (c, used) = escape(self.body, self.raw).ok_or_else(|| bad_escape(self.s, self.raw))?;
        self.raw += used;
        self.decoded += c.len_utf8();
        self.next_escape = self.body[self.raw..].find('\\').map_or(self.body.len(), |at| self.raw + at);
        Ok(())
    }
}

fn hex4(body: &str, at: usize) -> Option<u32> {
    let digits = body.get(at..at + 4)?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// The low half of a surrogate pair at `at` (`\uDC00`–`\uDFFF`), if there is one.
fn low_surrogate(body: &str, at: usize) -> Option<u32> {
    if body.get(at..at + 2)? != "\\u" {
        return None;
    }
    hex4(body, at + 2).filter(|low| (0xDC00..0xE000).contains(low))
}

fn pair(high: u32, low: u32) -> char {
    char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// Appends `text` as the inside of a JSON string, escaped as serde_json would.
pub fn encode(text: &str, out: &mut String) {
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[start..i]);
        if escape.is_empty() {
            // Writing into a String cannot fail.
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&text[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Every string of `raw`, decoded, in order.
    fn strings(raw: &str) -> Result<Vec<String>, Malformed> {
        let mut found = Vec::new();
        let mut from = 0;
        while let Some(s) = next_string(raw, from)? {
            let mut text = String::new();
            if s.escaped {
                decode(raw, s, &mut text, &mut Vec::new())?;
            } else {
                text.push_str(&raw[s.open + 1..s.close]);
            }
            found.push(text);
            from = s.close + 1;
        }
        Ok(found)
    }

    /// The same, read by serde_json: keys and string values.
    fn serde_strings(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|v| serde_strings(v, out)),
            Value::Object(map) => map.iter().for_each(|(k, v)| {
                out.push(k.clone());
                serde_strings(v, out);
            }),
            _ => {}
        }
    }

    #[test]
    fn the_walk_reads_strings_as_serde_json_does() {
        for raw in [
            r#"{"a":"b","c":["d",1,true,null,{"e\"f":"g\\"}],"h":"\u00e9\ud83d\ude00\n\t\/"}"#,
            r#"["", "\"", "\\", "\\\"", "x\\\\\"y", "\u0041\u0000"]"#,
            r#"{"nested":[[[[{"k":"v"}]]]], "n": -1.5e3, "s": "a]b}c{d[e,f:g"}"#,
        ] {
            let value: Value = serde_json::from_str(raw).unwrap();
            let mut expected = Vec::new();
            serde_strings(&value, &mut expected);
            // serde_json keeps keys sorted, the walk in document order.
            let mut found = strings(raw).unwrap();
            found.sort();
            expected.sort();
            assert_eq!(found, expected, "{raw}");
        }
    }

    #[test]
    fn depth_does_not_matter() {
        let raw = format!(r#"{}"deep"{}"#, "[".repeat(10_000), "]".repeat(10_000));
        assert!(serde_json::from_str::<Value>(&raw).is_err(), "serde_json gives up");
        assert_eq!(strings(&raw).unwrap(), vec!["deep".to_owned()]);
    }

    #[test]
    fn what_cannot_be_read_is_an_error() {
        assert!(strings(r#"{"a":"b"#).is_err());
        assert!(strings(r#"{"a":"b\"}"#).is_err());
        assert!(strings(r#"{"a":"\x41"}"#).is_err());
        assert!(strings(r#"{"a":"\u00g1"}"#).is_err());
        assert!(strings(r#"{"a":"\u00"}"#).is_err());
        assert!(strings(r#"{"a":"\é"}"#).is_err());
        assert_eq!(strings(r#"["\ud800x"]"#).unwrap(), vec!["\u{fffd}x".to_owned()]);
    }

    #[test]
    fn encoding_round_trips() {
        let text = "quote \" backslash \\ newline \n tab \t bell \u{7} é 😀";
        let mut out = String::new();
        encode(text, &mut out);
        assert_eq!(out, serde_json::to_string(text).unwrap().trim_matches('"'));
        let back: String = serde_json::from_str(&format!("\"{out}\"")).unwrap();
        assert_eq!(back, text);
    }

    #[test]
    fn the_cursor_maps_decoded_offsets_to_raw_ones() {
        let raw = r#"["a\u00e9\n\ud83d\ude00b\"c"]"#;
        let s = next_string(raw, 0).unwrap().unwrap();
        let mut decoded = String::new();
        decode(raw, s, &mut decoded, &mut Vec::new()).unwrap();
        assert_eq!(decoded, "a\u{e9}\n\u{1F600}b\"c");
        let mut cursor = Cursor::new(raw, s, &[]);
        let expected = [(0, 2), (1, 3), (3, 9), (4, 11), (8, 23), (9, 24), (10, 26), (11, 27)];
        for (at, raw_at) in expected {
            assert_eq!(cursor.seek(at).unwrap(), raw_at, "decoded {at}");
        }
        assert_eq!(s.close, 27);
    }

    #[test]
    fn marks_let_the_cursor_jump_and_land_where_walking_would() {
        let text = "é\n\"".repeat(100_000);
        let raw = serde_json::to_string(&vec![text.clone()]).unwrap();
        let s = next_string(&raw, 0).unwrap().unwrap();
        let (mut decoded, mut marks) = (String::new(), Vec::new());
        decode(&raw, s, &mut decoded, &mut marks).unwrap();
        assert_eq!(decoded, text);
        assert!(marks.len() > 4);
        let targets = [0, 2, 3, 70_000, 70_003, 200_000, text.len() - 1, text.len()];
        let (mut jumping, mut walking) = (Cursor::new(&raw, s, &marks), Cursor::new(&raw, s, &[]));
        let (mut back, mut back_walking) = (Cursor::new(&raw, s, &marks), Cursor::new(&raw, s, &[]));
        for target in targets {
            let at = jumping.seek(target).unwrap();
            assert_eq!(at, walking.seek(target).unwrap(), "{target}");
            assert_eq!(back.decoded_of(at).unwrap(), target, "{target} and back");
            assert_eq!(back_walking.decoded_of(at).unwrap(), target, "{target} and back, walking");
            // The raw text up to there decodes to the decoded text up to there.
            let head: String = serde_json::from_str(&format!("{}\"", &raw[s.open..at])).unwrap();
            assert_eq!(head, text[..target], "{target}");
        }
    }

    #[test]
    fn keys_are_told_from_values() {
        let raw = r#"{"k" : "v", "w":["x"]}"#;
        let first = next_string(raw, 0).unwrap().unwrap();
        assert!(is_key(raw, first.close));
        let second = next_string(raw, first.close + 1).unwrap().unwrap();
        assert!(!is_key(raw, second.close));
    }
}
