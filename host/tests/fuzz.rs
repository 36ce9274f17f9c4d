//! Bounded fuzzing on the stable toolchain, and the differential test behind
//! "one reading of a message".
//!
//! Each target starts from its seed corpus (`tests/corpus/<target>/`), mutates
//! it with a seeded generator (byte flips, inserted tokens that parsers
//! disagree on, duplicated members, splices, cuts) and checks an invariant,
//! for `WARDEN_FUZZ_SECS` seconds (default 2; CI sets more). A failure
//! prints the seed and the input, so it can be added to the corpus.
//!
//! - `head`: Warden's reader never panics, and what it accepts serde_json
//!   reads the same way (no duplicate key, the same id by value, method and
//!   tool name); what serde_json reads unambiguously Warden does not call
//!   broken text. The streaming key tracker agrees at every split.
//! - `framing`: the line codec never panics and, fed in any pieces, yields
//!   the lines the input holds.
//! - `sse`: the event parser never panics and yields the same events however
//!   the body is cut into chunks.
//! - `batch`: splitting never panics and yields exactly serde_json's members.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use tokio_util::codec::Decoder;
use warden::jsonrpc::{self, stream::TopKeys, ParseError};
use warden::transport::framing::{Frame, LineCodec};
use warden::upstream::sse;

/// xorshift64*: small, seeded, repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Tokens parsers read differently, or that sit on a reader's edges.
const TOKENS: &[&str] = &[
    r#""name":"#,
    r#""method":"#,
    r#""id":"#,
    r#""params":{"#,
    r#""na\u006de":"#,
    r#""\u0069d":"#,
    r#"\ud800"#,
    r#"\udc00"#,
    r#"\ud83d\ude00"#,
    r#"\u0000"#,
    r#"\""#,
    r#"\\"#,
    "\u{ff}",
    "1e2",
    "100.0",
    "-0",
    "1.5",
    "123456789012345678901234567890",
    "9007199254740993",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "\"",
    "null",
    "true",
    " ",
    "\n",
    "\r\n",
    "data: ",
    "id: ",
    "event: x",
    "retry: 5",
];

fn budget() -> Duration {
    let secs = std::env::var("WARDEN_FUZZ_SECS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut input = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(7) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 | 2 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                input.splice(at..at, token.iter().copied());
            }
            3 if !input.is_empty() => {
                // Duplicate a stretch (a member, often enough).
                let start = rng.below(input.len());
                let end = (start + 1 + rng.below(40)).min(input.len());
                let copy = input[start..end].to_vec();
                let to = rng.below(input.len() + 1);
                input.splice(to..to, copy);
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                input.splice(at..at, other[from..].iter().copied());
            }
            5 if !input.is_empty() => {
                let end = (at + rng.below(8)).min(input.len());
                input.drain(at..end);
            }
            _ => {
                // Deep nesting, now and then.
                let depth = rng.below(140);
                let nest: Vec<u8> = std::iter::repeat_n(b'[', depth).chain(std::iter::repeat_n(b']', depth)).collect();
                input.splice(at..at, nest);
            }
        }
    }
    input
}

/// Runs `check` on the seeds, then on mutations, for the budget.
fn fuzz(target: &str, check: impl Fn(&[u8], &mut Rng)) {
    let seeds = corpus(target);
    let seed = std::env::var("WARDEN_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_0000_u64);
    let mut rng = Rng(seed | 1);
    for input in &seeds {
        check(input, &mut rng);
    }
    let deadline = Instant::now() + budget();
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let input = mutate(&mut rng, &seeds);
        let state = rng.0;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input, &mut rng)));
        if outcome.is_err() {
            panic!(
                "{target}: failed after {runs} runs (rng state {state:#x}) on input {:?}",
                String::from_utf8_lossy(&input)
            );
        }
        runs += 1;
    }
    eprintln!("{target}: {runs} inputs in {:?}", budget());
}

// === head: the differential ===

/// serde_json's reading, refusing duplicate keys (serde_json itself keeps the last).
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Strict;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
                Ok(Strict(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
                Ok(Strict(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
                Ok(Strict(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
                Ok(Strict(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
                Ok(Strict(v.into()))
            }
            fn visit_string<E>(self, v: String) -> Result<Strict, E> {
                Ok(Strict(v.into()))
            }
            fn visit_unit<E>(self) -> Result<Strict, E> {
                Ok(Strict(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
                let mut items = Vec::new();
                while let Some(Strict(v)) = seq.next_element()? {
                    items.push(v);
                }
                Ok(Strict(Value::Array(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
                let mut object = serde_json::Map::new();
                let mut seen = HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    // Compared as Go's encoding/json matches struct fields:
                    // ASCII case and the two simple folds outside ASCII.
                    let folded: String = key
                        .chars()
                        .map(|c| match c {
                            '\u{17F}' => 's',
                            '\u{212A}' => 'k',
                            c => c.to_ascii_lowercase(),
                        })
                        .collect();
                    if !seen.insert(folded) {
                        return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    let Strict(v) = map.next_value()?;
                    object.insert(key, v);
                }
                Ok(Strict(Value::Object(object)))
            }
        }
        d.deserialize_any(V)
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn check_head(input: &[u8], rng: &mut Rng) {
    let warden = jsonrpc::parse_head(input);
    let serde = serde_json::from_slice::<Strict>(input).map(|s| s.0);
    if let Ok(head) = &warden {
        let v = serde.as_ref().unwrap_or_else(|e| panic!("Warden accepted what serde_json refuses: {e}"));
        assert_eq!(head.method.as_deref(), v.get("method").and_then(Value::as_str), "method");
        let id = v.get("id").filter(|i| !i.is_null());
        assert_eq!(head.id.is_some(), id.is_some(), "id present");
        if let (Some(key), Some(id)) = (&head.id, id) {
            match id {
                Value::String(s) => assert_eq!(key, &serde_json::to_string(s).unwrap(), "string id"),
                Value::Number(n) => {
                    let value = n.as_f64().expect("a number");
                    assert_eq!(key.parse::<f64>().ok(), Some(value), "numeric id by value");
                }
                other => panic!("id {other} accepted"),
            }
        }
        if head.tool.is_some() {
            assert_eq!(head.tool.as_deref(), v.pointer("/params/name").and_then(Value::as_str), "tool");
        }
        // The streaming tracker, cut anywhere, finds no key twice either.
        let mut keys = TopKeys::default();
        let cut = rng.below(input.len() + 1);
        assert!(keys.feed(&input[..cut]).and_then(|()| keys.feed(&input[cut..])).is_ok(), "tracker disagrees");
    }
    if let (Ok(v), Err(ParseError::Json { reason, .. })) = (&serde, &warden) {
        // serde_json read it and found no duplicate: Warden may refuse its
        // shape or depth, never call it broken text (bar what serde lets by:
        // lone surrogates it replaces, and nesting past Warden's limit).
        let lone = String::from_utf8_lossy(input).contains("\\u");
        assert!(lone || depth(v) > jsonrpc::MAX_DEPTH, "serde_json read it, Warden called it broken: {reason}");
    }
    if let Err(ParseError::Invalid { reason, .. }) = &warden {
        if reason.contains("duplicate key") {
            assert!(serde.is_err(), "Warden saw a duplicate that serde_json did not");
        }
    }
}

#[test]
fn fuzz_head_differential() {
    fuzz("head", check_head);
}

// === framing ===

fn check_framing(input: &[u8], rng: &mut Rng) {
    let max = 64 + rng.below(512);
    let stream_from = if rng.below(2) == 0 { usize::MAX } else { 16 + rng.below(128) };
    let mut codec = LineCodec::streaming(max, stream_from);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut at = 0;
    while at < input.len() {
        let end = (at + 1 + rng.below(64)).min(input.len());
        buf.extend_from_slice(&input[at..end]);
        at = end;
        while let Some(frame) = codec.decode(&mut buf).expect("decode") {
            frames.push(frame);
        }
    }
    while let Some(frame) = codec.decode_eof(&mut buf).expect("decode_eof") {
        frames.push(frame);
    }
    // Reassemble what was handed over and compare with the input's lines.
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let mut skipped = 0usize;
    for frame in frames {
        match frame {
            Frame::Line(l) => lines.push(l.to_vec()),
            Frame::Start(p) => current = Some(p.to_vec()),
            Frame::More(p) => current.get_or_insert_with(Vec::new).extend_from_slice(&p),
            Frame::End(p) => {
                let mut line = current.take().unwrap_or_default();
                line.extend_from_slice(&p);
                lines.push(line);
            }
            Frame::TooLarge { .. } => skipped += 1,
        }
    }
    if skipped == 0 && stream_from == usize::MAX {
        let expected: Vec<Vec<u8>> = input
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .collect();
        assert_eq!(lines, expected, "lines");
    }
}

#[test]
fn fuzz_framing() {
    fuzz("framing", check_framing);
}

// === sse ===

fn events(parser: &mut sse::Parser, chunks: &[&[u8]]) -> Result<Vec<sse::Event>, String> {
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend(parser.push(chunk).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

fn check_sse(input: &[u8], rng: &mut Rng) {
    let whole = events(&mut sse::Parser::new(4096), &[input]);
    let cut = rng.below(input.len() + 1);
    let cut2 = cut + rng.below(input.len() - cut + 1);
    let pieces = events(&mut sse::Parser::new(4096), &[&input[..cut], &input[cut..cut2], &input[cut2..]]);
    // A CR at a cut is ambiguous until the next byte says whether LF follows;
    // the parser must still end up with the same events.
    assert_eq!(whole, pieces, "chunking changed the events");
}

#[test]
fn fuzz_sse() {
    fuzz("sse", check_sse);
}

// === batch ===

fn check_batch(input: &[u8], _rng: &mut Rng) {
    let raw = Bytes::copy_from_slice(input);
    let Ok(parts) = jsonrpc::split_batch(&raw) else { return };
    let members = serde_json::from_slice::<Strict>(input).expect("serde_json reads a batch Warden split").0;
    let members = members.as_array().expect("an array");
    assert_eq!(parts.len(), members.len(), "member count");
    for (part, member) in parts.iter().zip(members) {
        let read: Value = serde_json::from_slice(part).expect("each part is JSON");
        assert_eq!(&read, member, "member");
    }
}

#[test]
fn fuzz_batch() {
    fuzz("batch", check_batch);
}
