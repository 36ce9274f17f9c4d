//! Reload benchmark (`cargo bench -p warden-tests --bench reload`):
//!
//! - landing → active: a plugin (tool-policy, denying `delete_*`) is renamed
//!   into the plugins folder of a running `warden wrap`; the time until a call
//!   is denied, once with an empty precompiled cache (the component compiles)
//!   and then from the cache, 10 times each way (removal included);
//! - traffic during swaps: 100-byte `echo` round trips, one at a time, in
//!   steady state and while the plugin is added and removed every 100 ms:
//!   p50, p99 and max.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

mod support;

use support::Wrap;

fn land(policy: &Path, dir: &Path) {
    let staged = dir.join(".10-tool-policy.wasm.part");
    std::fs::copy(policy, &staged).expect("stage");
    std::fs::write(dir.join("10-tool-policy.toml"), "[config]\nallow = [\"*\"]\ndeny = [\"delete_*\"]\n")
        .expect("config");
    std::fs::rename(&staged, dir.join("10-tool-policy.wasm")).expect("rename in");
}

fn lift(dir: &Path) {
    let _ = std::fs::remove_file(dir.join("10-tool-policy.wasm"));
    let _ = std::fs::remove_file(dir.join("10-tool-policy.toml"));
}

fn denied(wrap: &mut Wrap) -> bool {
    wrap.call("tools/call", json!({"name": "delete_everything", "arguments": {}})).get("error").is_some()
}

/// Calls until the verdict is `want`; the time it took.
fn until(wrap: &mut Wrap, want: bool, from: Instant) -> Duration {
    while denied(wrap) != want {
        assert!(from.elapsed() < Duration::from_secs(60), "the swap never took effect");
    }
    from.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e6
}

fn main() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("repo").to_owned();
    let warden = repo.join("target/release/warden");
    let policy = repo.join("target/wasm32-wasip2/plugin/tool_policy.wasm");
    let fixture = env!("CARGO_BIN_EXE_mcp-fixture");
    let plugins = tempfile::tempdir().expect("temp");
    let cache = tempfile::tempdir().expect("temp");
    let mut wrap = Wrap::start(&warden, fixture, plugins.path(), cache.path());

    // Landing → active, first with nothing precompiled, then from the cache.
    let started = Instant::now();
    land(&policy, plugins.path());
    let cold = until(&mut wrap, true, started);
    lift(plugins.path());
    until(&mut wrap, false, Instant::now());
    let mut landed = Vec::new();
    let mut lifted = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        land(&policy, plugins.path());
        landed.push(until(&mut wrap, true, started));
        let started = Instant::now();
        lift(plugins.path());
        lifted.push(until(&mut wrap, false, started));
    }
    landed.sort();
    lifted.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("| landing → active | ms |");
    println!("|---|---:|");
    println!("| added, compiled (empty cache) | {:.0} |", ms(cold));
    println!("| added, precompiled (median of 10) | {:.0} |", ms(landed[5]));
    println!("| added, precompiled (max of 10) | {:.0} |", ms(landed[9]));
    println!("| removed (median of 10) | {:.0} |", ms(lifted[5]));
    println!();

    // Traffic latency, steady and while the plugin comes and goes every 100 ms.
    let echo = json!({"name": "echo", "arguments": {"text": "a".repeat(100)}});
    let sample = |wrap: &mut Wrap, n: usize| {
        let mut times: Vec<Duration> = (0..n)
            .map(|_| {
                let started = Instant::now();
                wrap.call("tools/call", echo.clone());
                started.elapsed()
            })
            .collect();
        times.sort();
        times
    };
    sample(&mut wrap, 2000); // warm-up
    let steady = sample(&mut wrap, 20_000);
    let swapping = Arc::new(AtomicBool::new(true));
    let swapper = {
        let (swapping, dir) = (swapping.clone(), plugins.path().to_owned());
        std::thread::spawn(move || {
            let mut swaps = 0;
            while swapping.load(Ordering::Relaxed) {
                if swaps % 2 == 0 {
                    land(&policy, &dir);
                } else {
                    lift(&dir);
                }
                swaps += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            swaps
        })
    };
    let during = sample(&mut wrap, 20_000);
    swapping.store(false, Ordering::Relaxed);
    let swaps = swapper.join().expect("swapper");
    println!("| 100 B echo round trip | p50 µs | p99 µs | max µs |");
    println!("|---|---:|---:|---:|");
    for (name, times) in [("steady".to_owned(), &steady), (format!("during {swaps} swaps"), &during)] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            percentile(times, 0.5),
            percentile(times, 0.99),
            percentile(times, 1.0)
        );
    }
}
