//! What counts as a secret, and the cheap test of whether a raw message could hold one.
//!
//! Detection runs on decoded string values (JSON escapes resolved). The
//! tripwire runs on the raw message first, so that most messages are passed on
//! without being walked: it must hit wherever detection could, escapes or not.
//! Every detector has an *anchor*, literals one of which starts each of its
//! matches, made of characters no JSON escape but `\uXXXX` decodes to (letters,
//! digits, `-`, `_` and a few more). A decoded anchor therefore appears in the
//! raw text either as it is or with some of its characters written as `\u`
//! escapes: the tripwire looks for the anchors and for `\u` escapes of their
//! characters. Case-insensitive anchors are ASCII-only, in the detectors too,
//! so that the two agree exactly.
//!
//! An operator's pattern gets an anchor when it starts with such literal
//! characters and has no `|` (`corp-[0-9a-f]{32}`: `corp-`). With one without
//! (`(?i)secret`, `[a-f0-9]{40}`), every string of every message is decoded
//! and scanned: correct, but much slower.

use std::ops::Range;

use regex::Regex;

use crate::tripwire::Tripwire;

/// Built-in detectors: (name, anchor, pattern). Word boundaries are ASCII
/// (`(?-u:\b)`): a Unicode `\b` keeps the regex engine off its fast DFA, and
/// secrets are ASCII anyway.
const BUILT_IN: &[(&str, Anchor, &str)] = &[
    ("anthropic-key", Anchor::exact(&["sk-"]), r"(?-u:\b)sk-ant-[A-Za-z0-9_\-]{20,}"),
    ("openai-key", Anchor::exact(&["sk-"]), r"(?-u:\b)sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
    (
        "aws-access-key-id",
        Anchor::exact(&["AKIA", "ASIA", "ABIA", "ACCA"]),
        r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?-u:\b)",
    ),
    // Also as JSON or YAML text: `"aws_secret_access_key": "…"`.
    (
        "aws-secret-access-key",
        Anchor::ascii_case(&["aws_secret_access_key"]),
        r#"(?i-u:aws_secret_access_key)["']?\s*[=:]\s*["']?[A-Za-z0-9/+=]{40}"#,
    ),
    (
        "github-token",
        Anchor::exact(&["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]),
        r"(?-u:\b)(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}(?-u:\b)",
    ),
    ("github-pat", Anchor::exact(&["github_pat_"]), r"(?-u:\b)github_pat_[A-Za-z0-9_]{22,}(?-u:\b)"),
    ("slack-token", Anchor::exact(&["xox"]), r"(?-u:\b)xox[abposr]-[A-Za-z0-9-]{10,}"),
    ("bearer-token", Anchor::ascii_case(&["bearer"]), r"(?-u:\b)(?i-u:bearer)\s+[A-Za-z0-9\-._~+/]{16,}=*"),
];

/// PEM keys are searched on their own: a `BEGIN` line with no `END` after it
/// keeps a search going to the end of the text, and sharing one search with
/// the other detectors would make every match after it search to the end again.
const PEM: (Anchor, &str) = (
    Anchor::exact(&["-----BEGIN"]),
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----",
);

/// Literals one of which starts every match of a detector.
struct Anchor {
    literals: &'static [&'static str],
    ascii_case: bool,
}

impl Anchor {
    const fn exact(literals: &'static [&'static str]) -> Anchor {
        Anchor { literals, ascii_case: false }
    }

    const fn ascii_case(literals: &'static [&'static str]) -> Anchor {
        Anchor { literals, ascii_case: true }
    }
}

/// Characters an anchor may be made of: only `\u` escapes decode to them.
fn anchor_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '-' | '_' | ':' | '=' | '@' | '%' | ',' | ';' | '!' | '~' | '&' | '<' | '>' | ' ')
}

/// The literal an operator's pattern starts with, if every match must: the
/// characters before its first regex syntax, less one that a quantifier may
/// repeat or drop (`ab*` starts with `a`). None when it has an alternation anywhere.
fn literal_prefix(pattern: &str) -> Option<String> {
    if pattern.contains('|') {
        return None;
    }
    let plain: String = pattern.chars().take_while(|&c| anchor_char(c)).collect();
    let rest = &pattern[plain.len()..];
    let mut prefix = plain;
    if rest.starts_with(['*', '?', '{', '+']) {
        prefix.pop();
    }
    (!prefix.is_empty()).then_some(prefix)
}

/// A group of detectors asked for a match starting at one position: only as
/// much of the text is read as the match (or the attempt) covers, however long
/// the text is.
struct Anchored {
    at_start: Regex,
    after_char: Regex,
}

impl Anchored {
    fn new(alternation: &str) -> Result<Anchored, String> {
        let compile = |prefix: &str| Regex::new(&format!("{prefix}(?:{alternation})")).map_err(|e| e.to_string());
        // The character before the position is matched too, so that `\b` sees it.
        Ok(Anchored { at_start: compile("^")?, after_char: compile("^(?s:.)")? })
    }

    /// Where the match starting exactly at `at` (a character boundary) ends.
    fn end_of_match_at(&self, text: &str, at: usize) -> Option<usize> {
        match text.get(..at)?.chars().next_back() {
            None => self.at_start.find(text).map(|m| m.end()),
            Some(c) => {
                let from = at - c.len_utf8();
                self.after_char.find(text.get(from..)?).map(|m| from + m.end())
            }
        }
    }
}

/// The compiled detectors and tripwire.
pub struct Detectors {
    tripwire: Tripwire,
    /// The longest anchor, in characters.
    longest_anchor: usize,
    built_in: Regex,
    pem: Regex,
    custom: Option<Regex>,
    /// The same, by position.
    built_in_at: Anchored,
    pem_header_at: Anchored,
    pem_end: Regex,
    custom_at: Option<Anchored>,
    /// Some custom pattern has no anchor, so the tripwire cannot speak for it.
    scan_everything: bool,
}

impl Detectors {
    /// Compiles the built-in detectors and the operator's `patterns`.
    pub fn new(patterns: &[String]) -> Result<Detectors, String> {
        let mut anchors: Vec<(String, bool)> = BUILT_IN
            .iter()
            .map(|(_, a, _)| a)
            .chain([&PEM.0])
            .flat_map(|a| a.literals.iter().map(|l| ((*l).to_owned(), a.ascii_case)))
            .collect();
        let mut scan_everything = false;
        for (i, p) in patterns.iter().enumerate() {
            let regex = Regex::new(p).map_err(|e| format!("patterns[{i}]: {e}"))?;
            // It would match everywhere: a marker between every two characters.
            if regex.is_match("") {
                return Err(format!("patterns[{i}]: {p:?} matches the empty string"));
            }
            match literal_prefix(p) {
                Some(prefix) => anchors.push((prefix, false)),
                None => scan_everything = true,
            }
        }
        let alternation =
            |sources: &mut dyn Iterator<Item = &str>| sources.map(|p| format!("(?:{p})")).collect::<Vec<_>>().join("|");
        let compile = |source: &str| Regex::new(source).map_err(|e| e.to_string());
        let built_in = alternation(&mut BUILT_IN.iter().map(|(_, _, p)| *p));
        let custom = (!patterns.is_empty()).then(|| alternation(&mut patterns.iter().map(String::as_str)));
        Ok(Detectors {
            longest_anchor: anchors.iter().map(|(a, _)| a.chars().count()).max().unwrap_or(0),
            tripwire: Tripwire::new(&anchors),
            built_in: compile(&built_in)?,
            pem: compile(PEM.1)?,
            custom: custom.as_deref().map(compile).transpose()?,
            built_in_at: Anchored::new(&built_in)?,
            pem_header_at: Anchored::new(PEM_HEADER)?,
            pem_end: compile(PEM_END)?,
            custom_at: custom.as_deref().map(Anchored::new).transpose()?,
            scan_everything,
        })
    }

    /// The first tripwire hit at or after `from` in the raw message.
    pub fn tripwire_at(&self, raw: &str, from: usize) -> Option<Range<usize>> {
        self.tripwire.find_at(raw, from)
    }

    /// How many characters before an escape the tripwire hit on an anchor may start.
    pub fn longest_anchor(&self) -> usize {
        self.longest_anchor
    }

    /// Whether every string must be scanned, the tripwire notwithstanding.
    pub fn scan_everything(&self) -> bool {
        self.scan_everything
    }

    /// The same detectors, reading every string whole: the reference the
    /// tripwire's shortcut is tested against.
    #[cfg(test)]
    pub fn reading_everything(mut self) -> Detectors {
        self.scan_everything = true;
        self
    }

    /// The byte ranges of `text` to redact, in order, overlapping matches merged.
    pub fn spans<'t>(&'t self, text: &'t str) -> Spans<'t> {
        let mut searches = vec![self.built_in.find_iter(text).peekable(), self.pem.find_iter(text).peekable()];
        if let Some(custom) = &self.custom {
            searches.push(custom.find_iter(text).peekable());
        }
        Spans { searches }
    }

    /// The same, for matches starting at `starts` only (ascending offsets of
    /// `text`, character boundaries): where the tripwire saw an anchor. Every
    /// match starts at an anchor, so this finds what [`Detectors::spans`] finds
    /// without reading the text between them.
    pub fn spans_at<'t, I: Iterator<Item = usize>>(&'t self, text: &'t str, starts: I) -> SpansAt<'t, I> {
        SpansAt { d: self, text, starts, covered: [0; 3], pem_end: None, pending: None }
    }
}

const PEM_HEADER: &str = r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----";
const PEM_END: &str = r"-----END [A-Z0-9 ]*PRIVATE KEY-----";

/// Matches of every search over one text, merged in order. Each search moves
/// forward only, so the whole walk is linear in the text.
pub struct Spans<'t> {
    searches: Vec<std::iter::Peekable<regex::Matches<'t, 't>>>,
}

impl Iterator for Spans<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        loop {
            let first = self.searches.iter_mut().filter_map(|s| s.peek().map(regex::Match::start)).min()?;
            let mut span = first..first;
            let mut grew = true;
            while grew {
                grew = false;
                for search in &mut self.searches {
                    while let Some(m) = search.next_if(|m| m.start() <= span.end) {
                        span.end = span.end.max(m.end());
                        grew = true;
                    }
                }
            }
            // Empty matches (a custom pattern like `\bx*`) redact nothing.
            if !span.is_empty() {
                return Some(span);
            }
        }
    }
}

/// Matches starting at given offsets, merged in order. As with [`Spans`], a
/// group of detectors is not asked again inside its own last match (which
/// keeps a run of anchors inside one long match from being read again for
/// each), and the end line of a PEM key is searched for once, not per header.
pub struct SpansAt<'t, I> {
    d: &'t Detectors,
    text: &'t str,
    starts: I,
    /// Per group (built-in, PEM, custom): where its last match ended.
    covered: [usize; 3],
    /// The last search for a PEM end line: where from, and what it found.
    pem_end: Option<(usize, Option<(usize, usize)>)>,
    pending: Option<Range<usize>>,
}

impl<I> SpansAt<'_, I> {
    /// Where a PEM key whose header ends at `from` ends: at the first end
    /// line after it. The last search is reused when its answer still holds.
    fn pem_end_after(&mut self, from: usize) -> Option<usize> {
        let reusable = match self.pem_end {
            Some((searched, None)) => searched <= from,
            Some((searched, Some((start, _)))) => searched <= from && start >= from,
            None => false,
        };
        if !reusable {
            let found = self.d.pem_end.find_at(self.text, from).map(|m| (m.start(), m.end()));
            self.pem_end = Some((from, found));
        }
        self.pem_end.and_then(|(_, found)| found).map(|(_, end)| end)
    }

    fn match_at(&mut self, group: usize, at: usize) -> Option<usize> {
        if at < self.covered[group] {
            return None;
        }
        let end = match group {
            0 => self.d.built_in_at.end_of_match_at(self.text, at),
            1 => {
                let header = self.d.pem_header_at.end_of_match_at(self.text, at)?;
                self.pem_end_after(header)
            }
            _ => self.d.custom_at.as_ref()?.end_of_match_at(self.text, at),
        }?;
        self.covered[group] = end;
        Some(end)
    }
}

impl<I: Iterator<Item = usize>> Iterator for SpansAt<'_, I> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        while let Some(at) = self.starts.next() {
            // All groups are asked at `at` before a finished span goes out.
            let mut done = None;
            for group in 0..3 {
                let Some(end) = self.match_at(group, at).filter(|end| *end > at) else { continue };
                match &mut self.pending {
                    Some(span) if at <= span.end => span.end = span.end.max(end),
                    pending => done = pending.replace(at..end),
                }
            }
            if done.is_some() {
                return done;
            }
        }
        self.pending.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One sample per detector, each starting with its anchor.
    pub const SAMPLES: &[&str] = &[
        "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
        "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
        "AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "github_pat_11ABCDEFG0123456789_abcdefghijkl",
        "xoxb-1234567890-abcdefghij",
        "Bearer eyJhbGciOiJIUzI1NiJ9.abc.def",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
    ];

    fn detectors() -> Detectors {
        Detectors::new(&[]).unwrap()
    }

    #[test]
    fn every_detector_has_a_sample_and_the_tripwire_sees_it() {
        let d = detectors();
        assert_eq!(SAMPLES.len(), BUILT_IN.len() + 1);
        for sample in SAMPLES {
            assert_eq!(d.spans(sample).collect::<Vec<_>>(), vec![0..sample.len()], "{sample}");
            assert_eq!(d.tripwire_at(sample, 0).map(|m| m.start), Some(0), "{sample}");
        }
    }

    #[test]
    fn each_anchor_starts_every_match_of_its_pattern() {
        for (name, anchor, pattern) in BUILT_IN.iter().map(|(n, a, p)| (*n, a, *p)).chain([("pem", &PEM.0, PEM.1)]) {
            let pattern = Regex::new(pattern).unwrap();
            for sample in SAMPLES {
                if let Some(m) = pattern.find(sample) {
                    let at = &sample.as_bytes()[m.start()..];
                    let starts = |l: &&str| {
                        at.get(..l.len()).is_some_and(|head| {
                            if anchor.ascii_case {
                                head.eq_ignore_ascii_case(l.as_bytes())
                            } else {
                                head == l.as_bytes()
                            }
                        })
                    };
                    assert!(anchor.literals.iter().any(starts), "{name}: {sample}");
                }
                assert!(anchor.literals.iter().all(|l| l.chars().all(anchor_char)), "{name}");
            }
        }
    }

    #[test]
    fn custom_patterns_get_an_anchor_when_they_start_with_literals() {
        assert_eq!(literal_prefix("corp-[0-9a-f]{32}").as_deref(), Some("corp-"));
        assert_eq!(literal_prefix("key=x*").as_deref(), Some("key="));
        assert_eq!(literal_prefix("abc+").as_deref(), Some("ab"));
        for none in ["(?i)corp-x", "[a-f0-9]{40}", "corp-x|other", "^corp", "\\bcorp", "x?"] {
            assert_eq!(literal_prefix(none), None, "{none}");
        }
        let d = Detectors::new(&["corp-[0-9]{6}".into()]).unwrap();
        assert!(d.tripwire_at(r"c\u006frp-123456", 0).is_some());
        assert!(!d.scan_everything());
        assert!(Detectors::new(&["(?i)hush-[0-9]{4}".into()]).unwrap().scan_everything());
    }

    #[test]
    fn escapes_of_anchor_characters_trip_the_wire() {
        let d = detectors();
        for escaped in [r"s\u006b-proj", r"\u0041KIA", r"\u002d----BEGIN", r"aws\u005fsecret", r"\u0062earer"] {
            assert!(d.tripwire_at(escaped, 0).is_some(), "{escaped}");
        }
        for harmless in [r#"caf\u00e9 \u003cb\u003e \n\t\""#, "plain text, no secret", "a-b_c A b"] {
            assert!(d.tripwire_at(harmless, 0).is_none(), "{harmless}");
        }
    }

    #[test]
    fn overlapping_matches_make_one_span() {
        let d = Detectors::new(&["KEY-----\\s+MII".into()]).unwrap();
        let text =
            "x -----BEGIN EC PRIVATE KEY-----\nMII\n-----END EC PRIVATE KEY----- sk-proj-abcdefghijklmnopqrstuvwxyz y";
        let spans: Vec<_> = d.spans(text).collect();
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert_eq!(&text[spans[1].clone()], "sk-proj-abcdefghijklmnopqrstuvwxyz");
    }
}
