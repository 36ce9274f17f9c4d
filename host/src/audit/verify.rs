//! `warden audit verify FILE… --public-key KEY`: reads a trail's files in
//! order and says exactly what is wrong and where.
//!
//! Found: a record that is not one (edited past reading, or torn), a `seq`
//! that skips (records deleted) or goes back (inserted or reordered), a
//! `prev` that does not name the record before (that one edited, or this one
//! inserted), a file that does not continue the one before (a file missing
//! from the series), a first record that does not name the key, a checkpoint
//! whose signature does not verify, a torn last line, and records after the
//! last checkpoint (not signed yet). The trail is whole only with none of these.

use base64::Engine as _;
use serde_json::Value;

use super::chain::{checkpoint_message, digest, GENESIS};
use super::keys::PublicKey;

/// What verifying found.
#[derive(Debug, Default)]
pub struct Report {
    /// Each problem, with its file and line.
    pub problems: Vec<String>,
    /// Records read.
    pub records: u64,
    /// Records a verified checkpoint covers.
    pub signed: u64,
    /// Checkpoints whose signature verified.
    pub checkpoints: u64,
}

impl Report {
    /// A whole trail: no problem, and every record signed.
    pub fn whole(&self) -> bool {
        self.problems.is_empty() && self.records > 0 && self.signed == self.records
    }
}

/// Checks `files` (name and contents, in order) against `key`.
pub fn verify(files: &[(String, Vec<u8>)], key: &PublicKey) -> Report {
    let mut report = Report::default();
    let fingerprint = key.fingerprint();
    let mut expected: Option<u64> = None;
    let mut prev: Option<[u8; 32]> = None;
    let mut last_place = String::new();
    for (index, (name, bytes)) in files.iter().enumerate() {
        let last_file = index + 1 == files.len();
        let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
        let unterminated = lines.pop().filter(|l| !l.is_empty());
        if bytes.is_empty() {
            report.problems.push(format!("{name}: empty: no record"));
        }
        let mut first_in_file = true;
        let torn_line = lines.len() + 1;
        for (n, line) in lines.iter().enumerate() {
            let place = format!("{name}:{}", n + 1);
            let Some((seq, record)) = read(line) else {
                report.problems.push(format!("{place}: not a record (torn by a crash, or edited past reading)"));
                // Go on from it: the next record's `prev` says whether the chain holds.
                prev = Some(digest(line));
                first_in_file = false;
                continue;
            };
            report.records += 1;
            if first_in_file {
                check_first(&place, &record, &fingerprint, index > 0, &mut report);
            }
            match expected {
                Some(want) if seq > want => {
                    let what = if first_in_file && index > 0 { "between files: " } else { "" };
                    report.problems.push(format!(
                        "{place}: {what}records {want}..{} are missing (seq jumps from {} to {seq})",
                        seq - 1,
                        want - 1
                    ))
                }
                Some(want) if seq < want => report
                    .problems
                    .push(format!("{place}: seq {seq} after {} (a record inserted, or records reordered)", want - 1)),
                _ => {}
            }
            let chained = record.get("prev").and_then(Value::as_str).map(str::to_owned).unwrap_or_default();
            let want_prev = hex::encode(prev.unwrap_or(GENESIS));
            if (prev.is_some() || seq == 1) && chained != want_prev {
                let message = if first_in_file && index > 0 {
                    format!(
                        "{place}: does not continue {last_place} (a file of the series is missing, or out of order)"
                    )
                } else {
                    format!("{place}: record {seq} does not chain to the record before it ({last_place} was changed, or this one inserted or moved)")
                };
                report.problems.push(message);
            }
            if record.get("event").and_then(|e| e.get("type")).and_then(Value::as_str) == Some("checkpoint")
                && record.get("source").and_then(Value::as_str) == Some("host")
            {
                if checkpoint_holds(&record, seq, &chained, key) {
                    report.checkpoints += 1;
                    report.signed = report.records;
                } else {
                    report.problems.push(format!("{place}: checkpoint {seq}: the signature does not verify"));
                }
            }
            prev = Some(digest(line));
            expected = Some(seq.saturating_add(1));
            last_place = place;
            first_in_file = false;
        }
        if unterminated.is_some() {
            let where_ = if last_file { "the last line" } else { "a line inside the series" };
            report.problems.push(format!(
                "{name}:{torn_line}: {where_} is torn (a record cut short, e.g. by a crash): not accepted"
            ));
        }
    }
    let first_seq = files.iter().find_map(|(_, bytes)| bytes.split(|b| *b == b'\n').find_map(read)).map(|(seq, _)| seq);
    if let Some(first) = first_seq.filter(|s| *s != 1) {
        report
            .problems
            .push(format!("the trail starts at seq {first}: records 1..{} are in none of the files given", first - 1));
    }
    if report.records > report.signed {
        let first = report.signed + 1;
        report.problems.push(format!(
            "{} record(s) after the last checkpoint are not signed yet (the {}{} of {})",
            report.records - report.signed,
            ordinal(first),
            if report.records > first { format!(" to {}", ordinal(report.records)) } else { String::new() },
            report.records
        ));
    }
    report
}

fn ordinal(n: u64) -> String {
    format!("{n}.")
}

/// A record's `seq` and its members.
fn read(line: &[u8]) -> Option<(u64, Value)> {
    let record: Value = serde_json::from_slice(line).ok()?;
    let seq = record.get("seq")?.as_u64()?;
    Some((seq, record))
}

/// The first record of a file names the key the trail is signed with.
fn check_first(place: &str, record: &Value, fingerprint: &str, rotated: bool, report: &mut Report) {
    let event = record.get("event");
    let kind = event.and_then(|e| e.get("type")).and_then(Value::as_str);
    if !matches!(kind, Some("audit-file")) {
        let why = if rotated { "a rotated file" } else { "the trail" };
        report.problems.push(format!("{place}: {why} does not start with its audit-file record"));
        return;
    }
    match event.and_then(|e| e.get("key")).and_then(Value::as_str) {
        Some(key) if key == fingerprint => {}
        Some(key) => report.problems.push(format!("{place}: the file names key {key}, not {fingerprint}")),
        None => report.problems.push(format!("{place}: the file names no signing key")),
    }
}

/// Whether a checkpoint's signature is the key's over its `seq`, `prev` and `time`.
fn checkpoint_holds(record: &Value, seq: u64, prev: &str, key: &PublicKey) -> bool {
    let time = record.get("time").and_then(Value::as_str).unwrap_or_default();
    let signature = record
        .get("event")
        .and_then(|e| e.get("signature"))
        .and_then(Value::as_str)
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok());
    signature.is_some_and(|s| key.verifies(&checkpoint_message(seq, prev, time), &s))
}
