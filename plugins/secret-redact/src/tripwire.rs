//! The tripwire: where in a raw message a secret could start.
//!
//! It looks for the detectors' anchor literals, and for `\u` escapes of the
//! characters they are made of. Each literal has a *key*: the two adjacent
//! bytes of it least likely in ordinary text (`k-` of `sk-`, `AK` of `AKIA`).
//! Every position of the message is tested for a key with nibble tables (the
//! "Teddy" technique of Hyperscan and the regex crate), sixteen positions at a
//! time with WebAssembly SIMD; only positions that pass are compared with the
//! literals. The regex crate's own literal search cannot use SIMD in
//! WebAssembly, and ran at a tenth of the speed on the same literals.

use std::ops::Range;

/// An anchor literal: ASCII, compared ASCII-case-insensitively when `ascii_case`
/// (then stored lowercase).
struct Literal {
    bytes: Vec<u8>,
    ascii_case: bool,
}

/// What a key at a position may be the start of.
#[derive(Clone, Copy)]
enum Target {
    /// The literal of this index, its key `offset` bytes into it.
    Literal { index: usize, offset: usize },
    /// A `\uXXXX` escape.
    Escape,
}

/// A key as the candidates' test sees it: the bytes it may start with and the
/// bytes that may follow (any, for a one-byte literal), as sets of their low
/// and high nibbles.
#[derive(Clone, Copy, PartialEq)]
struct Key {
    first_lo: u16,
    first_hi: u16,
    second_lo: u16,
    second_hi: u16,
}

impl Key {
    fn new(first: &[u8], second: Option<&[u8]>) -> Key {
        let nibbles =
            |bytes: &[u8]| bytes.iter().fold((0u16, 0u16), |(lo, hi), &b| (lo | 1 << (b & 15), hi | 1 << (b >> 4)));
        let (first_lo, first_hi) = nibbles(first);
        let (second_lo, second_hi) = second.map_or((u16::MAX, u16::MAX), nibbles);
        Key { first_lo, first_hi, second_lo, second_hi }
    }

    fn union(self, other: Key) -> Key {
        Key {
            first_lo: self.first_lo | other.first_lo,
            first_hi: self.first_hi | other.first_hi,
            second_lo: self.second_lo | other.second_lo,
            second_hi: self.second_hi | other.second_hi,
        }
    }

    /// Roughly how often the key's test passes on ordinary text: the
    /// commonness of the first bytes it lets through times that of the second.
    fn cost(self) -> u32 {
        let weight = |lo: u16, hi: u16| {
            (0..=255u8).filter(|b| lo & 1 << (b & 15) != 0 && hi & 1 << (b >> 4) != 0).map(commonness).sum::<u32>()
        };
        weight(self.first_lo, self.first_hi) * weight(self.second_lo, self.second_hi)
    }
}

/// Up to eight keys, one per bucket, from any number: while there are more,
/// the two whose union costs least over their own costs share a bucket.
fn into_buckets(mut keys: Vec<Key>) -> Vec<Key> {
    while keys.len() > 8 {
        let mut best = (u32::MAX, 0, 1);
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                let extra = keys[i].union(keys[j]).cost().saturating_sub(keys[i].cost() + keys[j].cost());
                if extra < best.0 {
                    best = (extra, i, j);
                }
            }
        }
        let (_, i, j) = best;
        let merged = keys[i].union(keys.swap_remove(j));
        keys[i] = merged;
    }
    keys
}

/// How common a byte is in text, code and data: keys are made of rare ones.
fn commonness(b: u8) -> u32 {
    match b {
        b'a'..=b'z' | b' ' => 4,
        b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' | b':' => 2,
        _ => 1,
    }
}

/// Nibble tables over up to eight buckets of keys: the byte pair (x, y) at a
/// position is a candidate when one bucket has x as a first byte and y as a
/// second (any second, for a single-byte key). Keys sharing a bucket (past
/// eight) only let more candidates through.
#[derive(Default)]
struct Buckets {
    first_lo: [u8; 16],
    first_hi: [u8; 16],
    second_lo: [u8; 16],
    second_hi: [u8; 16],
}

impl Buckets {
    fn add(&mut self, key: Key, bucket: usize) {
        let bit = 1 << bucket;
        for nibble in 0..16 {
            let set = |mask: u16, table: &mut [u8; 16]| {
                if mask & 1 << nibble != 0 {
                    table[nibble] |= bit;
                }
            };
            set(key.first_lo, &mut self.first_lo);
            set(key.first_hi, &mut self.first_hi);
            set(key.second_lo, &mut self.second_lo);
            set(key.second_hi, &mut self.second_hi);
        }
    }

    #[inline(always)]
    fn at(&self, x: u8, y: u8) -> bool {
        let first = self.first_lo[usize::from(x & 15)] & self.first_hi[usize::from(x >> 4)];
        first & self.second_lo[usize::from(y & 15)] & self.second_hi[usize::from(y >> 4)] != 0
    }
}

/// The compiled tripwire.
pub struct Tripwire {
    literals: Vec<Literal>,
    buckets: Buckets,
    /// For each first byte of a key: the byte that must follow (any, if none),
    /// whether it compares ASCII-case-insensitively, and what it finds.
    by_first: Vec<Vec<(Option<u8>, bool, Target)>>,
    /// The ASCII characters whose `\u` escape could spell part of an anchor.
    escaped: [bool; 128],
}

impl Tripwire {
    /// A tripwire for these literals (ASCII, none empty), each with whether it
    /// is ASCII-case-insensitive.
    pub fn new(literals: &[(String, bool)]) -> Tripwire {
        let mut t = Tripwire {
            literals: Vec::new(),
            buckets: Buckets::default(),
            by_first: (0..256).map(|_| Vec::new()).collect(),
            escaped: [false; 128],
        };
        t.by_first[usize::from(b'\\')].push((Some(b'u'), false, Target::Escape));
        let mut keys = vec![Key::new(b"\\", Some(b"u"))];
        for (text, ascii_case) in literals {
            let ascii_case = *ascii_case;
            let bytes = if ascii_case { text.to_ascii_lowercase().into_bytes() } else { text.clone().into_bytes() };
            let cased =
                |b: u8| if ascii_case && b.is_ascii_alphabetic() { vec![b, b.to_ascii_uppercase()] } else { vec![b] };
            let index = t.literals.len();
            // The rarest adjacent pair; a one-byte literal is its own key.
            let offset = (0..bytes.len().saturating_sub(1))
                .min_by_key(|&i| commonness(bytes[i]) * commonness(bytes[i + 1]))
                .unwrap_or(0);
            let Some(&first) = bytes.get(offset) else { continue };
            let second = bytes.get(offset + 1).copied();
            let key = Key::new(&cased(first), second.map(cased).as_deref());
            for x in cased(first) {
                t.by_first[usize::from(x)].push((second, ascii_case, Target::Literal { index, offset }));
            }
            if !keys.contains(&key) {
                keys.push(key);
            }
            for &b in &bytes {
                for c in cased(b) {
                    t.escaped[usize::from(c & 0x7f)] = true;
                }
            }
            t.literals.push(Literal { bytes, ascii_case });
        }
        for (bucket, key) in into_buckets(keys).into_iter().enumerate() {
            t.buckets.add(key, bucket);
        }
        t
    }

    /// The first hit whose key lies at or after `from` and that starts there or
    /// later: the bytes of an anchor literal, or of a `\u` escape that could be
    /// part of one. (Literals never contain a quote, so a hit lies inside one
    /// string, or outside all of them.)
    pub fn find_at(&self, raw: &str, from: usize) -> Option<Range<usize>> {
        let b = raw.as_bytes();
        #[cfg(target_arch = "wasm32")]
        let from_tail = match simd::find(self, b, from) {
            Ok(hit) => return Some(hit),
            Err(tail) => tail,
        };
        #[cfg(not(target_arch = "wasm32"))]
        let from_tail = from;
        (from_tail..b.len())
            .filter(|&i| self.buckets.at(b[i], b.get(i + 1).copied().unwrap_or(0)))
            .find_map(|i| self.hit_at(b, i, from))
    }

    /// The hit keyed at `at`, if one is there and starts at or after `from`.
    fn hit_at(&self, b: &[u8], at: usize, from: usize) -> Option<Range<usize>> {
        let next = b.get(at + 1).copied().unwrap_or(0);
        for &(second, ascii_case, target) in &self.by_first[usize::from(b[at])] {
            let follows = match second {
                None => true,
                Some(y) if ascii_case => next.eq_ignore_ascii_case(&y),
                Some(y) => next == y,
            };
            if !follows {
                continue;
            }
            let hit = match target {
                Target::Escape => self.escape_at(b, at),
                Target::Literal { index, offset } => self.literal_at(b, at, index, offset, from),
            };
            if hit.is_some() {
                return hit;
            }
        }
        None
    }

    fn literal_at(&self, b: &[u8], at: usize, index: usize, offset: usize, from: usize) -> Option<Range<usize>> {
        let literal = self.literals.get(index)?;
        let start = at.checked_sub(offset).filter(|s| *s >= from)?;
        let here = b.get(start..start + literal.bytes.len())?;
        let same = if literal.ascii_case { here.eq_ignore_ascii_case(&literal.bytes) } else { here == literal.bytes };
        same.then_some(start..start + literal.bytes.len())
    }

    /// A `\uXXXX` escape at `at` that decodes to a character some anchor has.
    fn escape_at(&self, b: &[u8], at: usize) -> Option<Range<usize>> {
        let digits = b.get(at + 2..at + 6).filter(|_| b.get(at + 1) == Some(&b'u'))?;
        let code = std::str::from_utf8(digits).ok().and_then(|d| u32::from_str_radix(d, 16).ok())?;
        let ascii = usize::try_from(code).ok().filter(|c| *c < 128)?;
        self.escaped[ascii].then_some(at..at + 6)
    }
}

/// The nibble-table test sixteen positions at a time. WebAssembly SIMD is on
/// in every engine Warden runs plugins on (wasmtime); a module using it where
/// it is off fails to load, it does not misbehave.
#[cfg(target_arch = "wasm32")]
mod simd {
    use std::ops::Range;

    use core::arch::wasm32::{
        i8x16_relaxed_swizzle, u8x16_bitmask, u8x16_ne, u8x16_shr, u8x16_splat, v128, v128_and, v128_any_true,
        v128_load, v128_or,
    };

    use super::Tripwire;

    #[target_feature(enable = "simd128")]
    fn vector(t: &[u8; 16]) -> v128 {
        // SAFETY: sixteen readable bytes; wasm loads need no alignment.
        unsafe { v128_load(t.as_ptr().cast()) }
    }

    /// Which of the sixteen positions at `p` (and the bytes after each) pass
    /// the nibble tables: a lane of all ones where one bucket has the byte at
    /// a position as a first byte and the next as a second. The swizzles are
    /// the relaxed ones (a bare `pshufb`): every index is a nibble, in range.
    #[target_feature(enable = "simd128,relaxed-simd")]
    #[inline]
    unsafe fn lanes(tables: &[v128; 4], p: *const u8) -> v128 {
        let low = u8x16_splat(15);
        // SAFETY (caller): seventeen readable bytes at `p`; wasm loads need no alignment.
        let (first, second) = unsafe { (v128_load(p.cast()), v128_load(p.add(1).cast())) };
        let first = v128_and(
            i8x16_relaxed_swizzle(tables[0], v128_and(first, low)),
            i8x16_relaxed_swizzle(tables[1], u8x16_shr(first, 4)),
        );
        let second = v128_and(
            i8x16_relaxed_swizzle(tables[2], v128_and(second, low)),
            i8x16_relaxed_swizzle(tables[3], u8x16_shr(second, 4)),
        );
        v128_and(first, second)
    }

    /// [`Tripwire::find_at`] thirty-two positions at a time (then sixteen):
    /// the first hit, or where the bytes too few for a vector start.
    #[target_feature(enable = "simd128,relaxed-simd")]
    pub fn find(t: &Tripwire, b: &[u8], from: usize) -> Result<Range<usize>, usize> {
        let buckets = &t.buckets;
        let tables = [
            vector(&buckets.first_lo),
            vector(&buckets.first_hi),
            vector(&buckets.second_lo),
            vector(&buckets.second_hi),
        ];
        let mut at = from;
        loop {
            let (block, width, mut candidates) = scan(&tables, b, at);
            if candidates == 0 {
                return Err(block);
            }
            while candidates != 0 {
                if let Some(hit) = t.hit_at(b, block + candidates.trailing_zeros() as usize, from) {
                    return Ok(hit);
                }
                candidates &= candidates - 1;
            }
            at = block + width;
        }
    }

    /// The first block of positions from `at` with candidates: where it
    /// starts, how many positions it has (32 or 16) and their mask; or where
    /// the bytes too few for a vector start, and no candidates. No calls, so
    /// the loop keeps its vectors in registers.
    #[target_feature(enable = "simd128,relaxed-simd")]
    #[inline(never)]
    fn scan(tables: &[v128; 4], b: &[u8], mut at: usize) -> (usize, usize, u32) {
        let zero = u8x16_splat(0);
        while b.len() >= at.saturating_add(33) {
            // SAFETY: 33 bytes at `at`, so seventeen at `at` and at `at + 16`.
            let (lo, hi) = unsafe { (lanes(tables, b.as_ptr().add(at)), lanes(tables, b.as_ptr().add(at + 16))) };
            if v128_any_true(v128_or(lo, hi)) {
                let mask =
                    u32::from(u8x16_bitmask(u8x16_ne(lo, zero))) | u32::from(u8x16_bitmask(u8x16_ne(hi, zero))) << 16;
                return (at, 32, mask);
            }
            at += 32;
        }
        if b.len() >= at.saturating_add(17) {
            // SAFETY: seventeen bytes at `at`.
            let lo = unsafe { lanes(tables, b.as_ptr().add(at)) };
            let mask = u32::from(u8x16_bitmask(u8x16_ne(lo, zero)));
            if mask != 0 {
                return (at, 16, mask);
            }
            at += 16;
        }
        (at, 0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire() -> Tripwire {
        Tripwire::new(&[
            ("sk-".into(), false),
            ("AKIA".into(), false),
            ("aws_secret_access_key".into(), true),
            ("bearer".into(), true),
            ("x".into(), false),
        ])
    }

    /// The first hit by looking at every position, for comparison.
    fn slow(t: &Tripwire, raw: &str, from: usize) -> Option<Range<usize>> {
        (from..raw.len()).find_map(|at| t.hit_at(raw.as_bytes(), at, from))
    }

    #[test]
    fn finds_each_literal_and_escape_wherever_it_lies() {
        let t = wire();
        for needle in ["sk-", "AKIA", "AWS_Secret_Access_Key", "BeArEr", "x", r"\u0053", r"\u005F"] {
            for pad in 0..40 {
                let raw = format!("{}{needle}{}", " ".repeat(pad), " ".repeat(pad % 19));
                assert_eq!(t.find_at(&raw, 0), Some(pad..pad + needle.len()), "{needle} at {pad}");
                assert_eq!(t.find_at(&raw, pad + 1), None, "{needle} at {pad}, from after it");
            }
        }
    }

    #[test]
    fn ordinary_text_and_harmless_escapes_do_not_trip_it() {
        let t = wire();
        for text in ["the quick brown dog — a-b_c", r#"caf\u00e9 \n \" \\ \u003c"#, "bees be ready", "sk AK IA"] {
            assert_eq!(t.find_at(text, 0), None, "{text}");
        }
    }

    #[test]
    fn agrees_with_a_scan_of_every_position() {
        // More keys than buckets, too: shared buckets only let more through.
        let many: Vec<(String, bool)> = (0..12).map(|i| (format!("k{i}y"), i % 2 == 0)).collect();
        for t in [wire(), Tripwire::new(&many)] {
            let mut seed = 7u64;
            let alphabet = b"skAKIAbearerx-_\\u0053 \"aws_secret_access_keyK0Y1k2y";
            for _ in 0..2000 {
                let text: String = (0..64)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        alphabet[(seed >> 33) as usize % alphabet.len()] as char
                    })
                    .collect();
                for from in [0, 3, 17] {
                    assert_eq!(t.find_at(&text, from), slow(&t, &text, from), "{text:?} from {from}");
                }
            }
        }
    }
}
