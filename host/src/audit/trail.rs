//! The audit file itself: records appended to the chain, checkpoints signed,
//! files rotated by size and age with the chain going on, and a file written
//! before (by an earlier run) continued where it ended.
//!
//! - The first record of every file is `{"type": "audit-file", "key": …}`
//!   (the signing key's fingerprint, or null); after a restart the run's
//!   first record is `{"type": "audit-restart", …}`.
//! - A checkpoint (`{"type": "checkpoint", "signs": N, "key": …, "signature": …}`)
//!   is written every [`TrailOptions::checkpoint_every`] records, when
//!   [`TrailOptions::checkpoint_after`] passed with records unsigned, before a
//!   rotation and at exit.
//! - A rotated file is renamed `<file>.<seq of its first record, 12 digits>`,
//!   so the files sort in the chain's order: `warden audit verify audit.jsonl.* audit.jsonl`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use serde_json::{json, Value};

use super::chain::{checkpoint_message, Chain};
use super::keys::Signer;

/// How much of a file's end is read to find its last record.
const TAIL: u64 = 8 << 20;

/// How the trail is kept.
#[derive(Debug)]
pub struct TrailOptions {
    /// The file.
    pub path: PathBuf,
    /// Signs checkpoints, when given.
    pub signer: Option<Signer>,
    /// A checkpoint after this many records.
    pub checkpoint_every: u64,
    /// A checkpoint once this long passed with records unsigned.
    pub checkpoint_after: Duration,
    /// A new file once this one is this large.
    pub max_bytes: Option<u64>,
    /// A new file once this one is this old.
    pub max_age: Option<Duration>,
    /// Each request's record is on disk (written and synced) before its answer is released.
    pub sync_always: bool,
    /// Calls are refused while the trail cannot be written.
    pub required: bool,
    /// Request records carry the arguments (as the chain passed them on).
    pub include_arguments: bool,
}

impl TrailOptions {
    /// Defaults for `path`: no signing, a checkpoint every 1000 records or 10 s, no rotation.
    pub fn new(path: &Path) -> TrailOptions {
        TrailOptions {
            path: path.to_owned(),
            signer: None,
            checkpoint_every: 1000,
            checkpoint_after: Duration::from_secs(10),
            max_bytes: None,
            max_age: None,
            sync_always: false,
            required: false,
            include_arguments: false,
        }
    }
}

/// An open trail file and the chain's head.
#[derive(Debug)]
pub struct Trail {
    out: BufWriter<File>,
    options: TrailOptions,
    chain: Chain,
    /// The `seq` of this file's first record.
    first: u64,
    /// Bytes in this file.
    size: u64,
    opened: Instant,
    /// Records since the last checkpoint, and when it was.
    unsigned: u64,
    checkpointed: Instant,
}

/// The body of a host record (`"time":…,…`) with `event`.
pub fn host_body(event: &Value) -> String {
    let time = humantime::format_rfc3339_millis(SystemTime::now());
    format!(
        "\"time\":\"{time}\",\"source\":\"host\",\"plugin\":null,\"session\":null,\"upstream\":null,\"caller\":null,\"event\":{event}"
    )
}

impl Trail {
    /// Opens `options.path`: continues the chain of what is there, or starts one.
    pub fn open(options: TrailOptions) -> std::io::Result<Trail> {
        let mut file = private().create(true).read(true).append(true).open(&options.path)?;
        let size = file.metadata()?.len();
        let (chain, first, torn) = if size == 0 { (Chain::default(), 1, false) } else { resume(&mut file, size)? };
        let key = options.signer.as_ref().map(Signer::fingerprint);
        let mut trail = Trail {
            out: BufWriter::with_capacity(64 * 1024, file),
            options,
            chain,
            first,
            size,
            opened: Instant::now(),
            unsigned: 0,
            checkpointed: Instant::now(),
        };
        if size == 0 {
            trail.write(&host_body(&json!({"type": "audit-file", "key": key, "previous": null})))?;
        } else {
            if torn {
                // The run before ended mid-record: the torn line stays (verify names it) and the chain goes on after it.
                trail.out.write_all(b"\n")?;
                trail.size += 1;
                tracing::warn!(file = %trail.options.path.display(), "audit: the file ended in a torn record; it is kept as it is");
            }
            trail.write(&host_body(&json!({"type": "audit-restart", "key": key, "after_torn_record": torn})))?;
        }
        trail.flush()?;
        Ok(trail)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.options.path
    }

    /// Appends a record whose members after `seq` and `prev` are `body`;
    /// rotates first and signs after when it is time.
    pub fn append(&mut self, body: &str) -> std::io::Result<()> {
        let too_big = self.options.max_bytes.is_some_and(|max| self.size + body.len() as u64 > max);
        let too_old = self.options.max_age.is_some_and(|max| self.opened.elapsed() >= max);
        if (too_big || too_old) && self.size > 0 && self.chain.next > self.first + 1 {
            self.rotate()?;
        }
        self.write(body)?;
        if self.unsigned >= self.options.checkpoint_every {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn write(&mut self, body: &str) -> std::io::Result<()> {
        let line = self.chain.seal(body);
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.size += line.len() as u64 + 1;
        self.unsigned += 1;
        Ok(())
    }

    /// How long unsigned records may wait for a checkpoint.
    pub fn checkpoint_after(&self) -> Duration {
        self.options.checkpoint_after
    }

    /// Whether records wait for a signature (the flushing task then wakes to sign them).
    pub fn unsigned(&self) -> bool {
        self.options.signer.is_some() && self.unsigned > 0
    }

    /// Signs what is unsigned if [`TrailOptions::checkpoint_after`] passed;
    /// `Ok(false)` when it was not time (nothing written).
    pub fn tick(&mut self) -> std::io::Result<bool> {
        if self.unsigned() && self.checkpointed.elapsed() >= self.options.checkpoint_after {
            self.checkpoint()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Writes a signed checkpoint over every record so far (none without a key or records to sign).
    pub fn checkpoint(&mut self) -> std::io::Result<()> {
        let Some(signer) = &self.options.signer else { return Ok(()) };
        if self.unsigned == 0 {
            return Ok(());
        }
        let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let message = checkpoint_message(self.chain.next, &self.chain.prev_hex(), &time);
        let signature = base64::engine::general_purpose::STANDARD.encode(signer.sign(&message));
        let event =
            json!({"type": "checkpoint", "signs": self.unsigned, "key": signer.fingerprint(), "signature": signature});
        let body = format!(
            "\"time\":\"{time}\",\"source\":\"host\",\"plugin\":null,\"session\":null,\"upstream\":null,\"caller\":null,\"event\":{event}"
        );
        self.write(&body)?;
        self.unsigned = 0;
        self.checkpointed = Instant::now();
        Ok(())
    }

    /// Writes buffered records out.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Writes buffered records out and has the disk keep them (`fdatasync`).
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }

    /// The options it was opened with.
    pub fn options(&self) -> &TrailOptions {
        &self.options
    }

    /// Closes this file (signed) under its rotated name and starts the next.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.checkpoint()?;
        self.out.flush()?;
        let path = self.options.path.clone();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let rotated = path.with_file_name(format!("{name}.{:012}", self.first));
        std::fs::rename(&path, &rotated)?;
        let file = private().create_new(true).read(true).append(true).open(&path)?;
        self.out = BufWriter::with_capacity(64 * 1024, file);
        self.first = self.chain.next;
        self.size = 0;
        self.opened = Instant::now();
        let key = self.options.signer.as_ref().map(Signer::fingerprint);
        let previous = rotated.file_name().map(|n| n.to_string_lossy().into_owned());
        self.write(&host_body(&json!({"type": "audit-file", "key": key, "previous": previous})))
    }
}

/// Options that make a new audit file readable by its owner alone (a
/// trail may carry arguments; who called what is nobody else's business).
fn private() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// The chain after an existing file's last record, the file's first `seq`,
/// and whether it ended in a torn (unterminated) line.
fn resume(file: &mut File, size: u64) -> std::io::Result<(Chain, u64, bool)> {
    let unreadable = |what: &str| {
        std::io::Error::other(format!(
            "the audit file's {what} is not a record: move the file away to start a new trail"
        ))
    };
    let mut head = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    Read::by_ref(file).take(TAIL).read_to_end(&mut head)?;
    let first_line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let first: u64 = serde_json::from_slice::<Value>(first_line)
        .ok()
        .and_then(|v| v.get("seq")?.as_u64())
        .ok_or_else(|| unreadable("first line"))?;
    let start = size.saturating_sub(TAIL);
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(start))?;
    file.read_to_end(&mut tail)?;
    let torn = !tail.ends_with(b"\n");
    let complete =
        tail.iter().rposition(|b| *b == b'\n').and_then(|end| tail.get(..end)).ok_or_else(|| unreadable("end"))?;
    let last = complete.rsplit(|b| *b == b'\n').next().unwrap_or_default();
    let chain = Chain::after(last).ok_or_else(|| unreadable("last complete line"))?;
    Ok((chain, first, torn))
}
