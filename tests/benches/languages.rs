//! Plugin languages benchmark (`cargo bench -p warden-tests --bench languages`):
//! for the Rust tool-policy, the JavaScript pii-redact, the Python rate-limit
//! and the C allowlist plugins (built by scripts/build-plugins.sh):
//!
//! - load, cold: `warden plugin check` with an empty precompiled cache (compile + `init`);
//! - load, cached: the same with the cache filled;
//! - instantiate: the first call of a session (which makes the instance) minus a warm call;
//! - memory per instance: Warden's resident memory after the first call minus before it;
//! - per message, warm: the median 100 B `echo` round trip with the plugin minus without
//!   any plugin (each plugin sees every `tools/call`), the two taking turns in 8 rounds (and at going first)
//!   and the median of the rounds' differences reported, with both medians.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::Wrap;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The first call of a session (which makes the instance) and the memory it took, in KiB.
fn first_call(wrap: &mut Wrap) -> (Duration, u64) {
    let before = wrap.rss_kib();
    let first = wrap.echo();
    let after = wrap.rss_kib();
    for _ in 0..200 {
        wrap.echo();
    }
    (first, after.saturating_sub(before))
}

/// Warm medians of `plugin` and `baseline`, taking turns in rounds so that both
/// see the same machine: (plugin, baseline, the median of the rounds' differences).
fn warm(plugin: &mut Wrap, baseline: &mut Wrap) -> (Duration, Duration, f64) {
    let mut diffs = Vec::new();
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..8 {
        // Whichever goes first in a round pays for waking up: take turns at that too.
        let (a, b) = if round % 2 == 0 {
            let a = median((0..500).map(|_| plugin.echo()).collect());
            (a, median((0..500).map(|_| baseline.echo()).collect()))
        } else {
            let b = median((0..500).map(|_| baseline.echo()).collect());
            (median((0..500).map(|_| plugin.echo()).collect()), b)
        };
        diffs.push(a.as_secs_f64() - b.as_secs_f64());
        with.push(a);
        without.push(b);
    }
    diffs.sort_by(|a, b| a.total_cmp(b));
    (median(with), median(without), diffs[diffs.len() / 2])
}

fn main() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("repo").to_owned();
    let warden = repo.join("target/release/warden");
    let built = repo.join("target/wasm32-wasip2/plugin");
    let fixture = env!("CARGO_BIN_EXE_mcp-fixture");
    let plugins = [
        ("Rust: tool-policy", "tool_policy.wasm", "[config]\nallow = [\"*\"]\ndeny = [\"delete_*\"]\n"),
        ("JavaScript: pii-redact", "pii_redact_js.wasm", "[limits]\nmemory-mib = 128\n"),
        ("Python: rate-limit", "rate_limit_py.wasm", "[limits]\nmemory-mib = 128\n[config]\nlimit = 100000000\n"),
        ("C: allowlist", "allowlist_c.wasm", "[config]\ntools = [\"echo\"]\n"),
    ];

    let empty = tempfile::tempdir().expect("temp");
    let cache = tempfile::tempdir().expect("temp");
    let mut baseline = Wrap::start(&warden, fixture, empty.path(), cache.path());
    first_call(&mut baseline);

    println!(
        "| plugin | component | load, cold | load, cached | instantiate | memory per instance | per message, warm |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, file, manifest) in plugins {
        let wasm = built.join(file);
        if !wasm.exists() {
            println!("| {name} | not built | | | | | |");
            continue;
        }
        let dir = tempfile::tempdir().expect("temp");
        std::fs::copy(&wasm, dir.path().join("plugin.wasm")).expect("copy");
        std::fs::write(dir.path().join("plugin.toml"), manifest).expect("manifest");
        let cold_cache = tempfile::tempdir().expect("temp");
        let load = |cache: &Path| {
            let started = Instant::now();
            let status = Command::new(&warden)
                .args(["plugin", "check"])
                .arg(dir.path().join("plugin.wasm"))
                .arg("--cache-dir")
                .arg(cache)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("plugin check");
            assert!(status.success(), "{name} does not load");
            started.elapsed()
        };
        let cold = load(cold_cache.path());
        let cached = load(cold_cache.path());
        let mut wrap = Wrap::start(&warden, fixture, dir.path(), cold_cache.path());
        let (first, memory) = first_call(&mut wrap);
        let (warm, base, extra) = warm(&mut wrap, &mut baseline);
        let size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0) as f64 / (1 << 20) as f64;
        println!(
            "| {name} | {size:.1} MiB | {:.2} s | {:.0} ms | {:.2} ms | {:.1} MiB | {:+.1} µs ({:.1} vs {:.1}) |",
            cold.as_secs_f64(),
            cached.as_secs_f64() * 1e3,
            first.saturating_sub(warm).as_secs_f64() * 1e3,
            memory as f64 / 1024.0,
            extra * 1e6,
            warm.as_secs_f64() * 1e6,
            base.as_secs_f64() * 1e6,
        );
    }
}
