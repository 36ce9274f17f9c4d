//! Relay benchmark: the same MCP client workload, side by side, against
//!
//! - `direct`: the fixture server itself,
//! - `byte-relay`: a plain process that copies bytes both ways (the floor for any proxy),
//! - `warden`: `warden wrap` with no plugins,
//! - `warden+idle`: three plugins that are not interested in `tools/call`,
//! - `warden+noop`: one plugin that sees every message and forwards it (the cost of a hook call),
//! - `warden+examples`: audit-log, tool-policy and secret-redact with their sample configs,
//! - `warden+<plugin>`: each example plugin alone,
//!
//! with 100-byte and 1 MiB `tools/call` payloads (echoed back), one at a time
//! (round-trip latency) and pipelined (throughput), and small calls answered
//! with a 1 MiB result (round-trip latency). Run with `scripts/bench.sh`.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "support/cel_rules.rs"]
mod cel_rules;

use serde_json::json;

struct Setup {
    name: &'static str,
    command: Vec<String>,
}

struct Peer {
    child: Child,
    stdin: BufWriter<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn start(command: &[String]) -> Peer {
        let mut child = Command::new(&command[0])
            .args(&command[1..])
            .env("WARDEN_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdin = BufWriter::new(child.stdin.take().expect("stdin"));
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut peer = Peer { child, stdin, stdout };
        peer.round_trip(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}}).to_string());
        peer.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string());
        peer
    }

    fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).expect("write");
        self.stdin.write_all(b"\n").expect("write");
        self.stdin.flush().expect("flush");
    }

    fn read(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read");
        assert!(!line.is_empty(), "peer closed");
        line
    }

    fn round_trip(&mut self, line: &str) -> Duration {
        let started = Instant::now();
        self.send(line);
        let answer = self.read();
        let elapsed = started.elapsed();
        assert!(answer.contains("\"result\""), "not a result: {}", &answer[..answer.len().min(200)]);
        elapsed
    }

    fn stop(mut self) {
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

fn call(id: u64, text: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": text}}})
        .to_string()
}

/// A small call answered with a `bytes`-long text result.
fn call_big(id: u64, bytes: usize) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "big", "arguments": {"bytes": bytes}}})
        .to_string()
}

/// Sequential round trips of small calls with a `bytes`-long result.
fn result_latency(peer: &mut Peer, bytes: usize, count: usize) -> Vec<Duration> {
    (0..count).map(|i| peer.round_trip(&call_big(i as u64, bytes))).collect()
}

/// Sequential round trips, one sample each.
fn latency(peer: &mut Peer, text: &str, count: usize) -> Vec<Duration> {
    (0..count).map(|i| peer.round_trip(&call(i as u64, text))).collect()
}

/// The `q` quantile of `samples`, in microseconds.
fn quantile(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort();
    samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_secs_f64() * 1e6
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Pipelined with `window` requests in flight: requests per second.
fn throughput(peer: &mut Peer, text: &str, count: usize, window: usize) -> f64 {
    let requests: Vec<String> = (0..count).map(|i| call(i as u64, text)).collect();
    let (credit_tx, credit_rx) = mpsc::channel::<()>();
    for _ in 0..window {
        credit_tx.send(()).expect("credit");
    }
    let started = Instant::now();
    std::thread::scope(|s| {
        let stdin = &mut peer.stdin;
        s.spawn(move || {
            for request in &requests {
                credit_rx.recv().expect("credit");
                stdin.write_all(request.as_bytes()).expect("write");
                stdin.write_all(b"\n").expect("write");
                stdin.flush().expect("flush");
            }
        });
        let stdout = &mut peer.stdout;
        let mut line = String::new();
        for _ in 0..count {
            line.clear();
            stdout.read_line(&mut line).expect("read");
            let _ = credit_tx.send(());
        }
    });
    count as f64 / started.elapsed().as_secs_f64()
}

/// `bench relay -- CMD...`: the plain byte relay, two threads copying.
fn byte_relay(command: &[String]) {
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut child_in = child.stdin.take().expect("stdin");
    let mut child_out = child.stdout.take().expect("stdout");
    let up = std::thread::spawn(move || {
        let _ = copy_flushing(&mut std::io::stdin().lock(), &mut child_in);
    });
    let _ = copy_flushing(&mut child_out, &mut std::io::stdout().lock());
    let _ = up.join();
    let _ = child.wait();
}

fn copy_flushing(from: &mut impl Read, to: &mut impl Write) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
        to.flush()?;
    }
}

fn plugin_dir(name: &str, plugins: &[(&str, &str, String)], wasm: &Path) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warden-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    for (file, artifact, manifest) in plugins {
        std::fs::copy(wasm.join(format!("{artifact}.wasm")), dir.join(format!("{file}.wasm"))).expect("copy");
        std::fs::write(dir.join(format!("{file}.toml")), manifest).expect("toml");
    }
    dir
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "relay") {
        return byte_relay(&args[pos + 2..]);
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("repo").to_owned();
    let target = repo.join("target");
    let warden = target.join("release/warden").display().to_string();
    let fixture = env!("CARGO_BIN_EXE_mcp-fixture").to_owned();
    let me = std::env::current_exe().expect("exe").display().to_string();
    let wasm = target.join("wasm32-wasip2/plugin");
    let sample =
        |name: &str| std::fs::read_to_string(repo.join("plugins").join(name).join("sample.toml")).expect("sample");
    let idle = |i: usize| {
        (format!("{i}0-idle"), "misbehave", "[config]\naction = \"nothing\"\nmethods = [\"never/this\"]\n".to_owned())
    };
    let idle_plugins: Vec<(String, &str, String)> = (1..=3).map(idle).collect();
    let idle_refs: Vec<(&str, &str, String)> =
        idle_plugins.iter().map(|(f, a, m)| (f.as_str(), *a, m.clone())).collect();
    let idle_dir = plugin_dir("idle", &idle_refs, &wasm);
    let noop_dir = plugin_dir(
        "noop",
        &[("10-noop", "misbehave", "[config]\naction = \"nothing\"\nmethods = [\"*\"]\n".to_owned())],
        &wasm,
    );
    let examples_dir = plugin_dir(
        "examples",
        &[
            ("00-audit-log", "audit_log", sample("audit-log")),
            ("10-tool-policy", "tool_policy", sample("tool-policy")),
            ("20-secret-redact", "secret_redact", sample("secret-redact")),
        ],
        &wasm,
    );
    let single: Vec<(&'static str, PathBuf)> =
        [("audit-log", "audit_log"), ("tool-policy", "tool_policy"), ("secret-redact", "secret_redact")]
            .iter()
            .map(|&(name, artifact)| (name, plugin_dir(name, &[("10-plugin", artifact, sample(name))], &wasm)))
            .collect();
    let cel_dir = plugin_dir("cel", &[("10-policy", "tool_policy", cel_rules::twenty_rules())], &wasm);
    let audit = std::env::temp_dir().join(format!("warden-bench-{}.audit", std::process::id()));
    let cache = target.join("warden-bench-cache").display().to_string();
    let wrap = |extra: &[&str]| -> Vec<String> {
        let mut c = vec![warden.clone(), "wrap".into(), "--cache-dir".into(), cache.clone()];
        c.extend(extra.iter().map(|s| s.to_string()));
        c.push("--".into());
        c.push(fixture.clone());
        c
    };
    let mut setups = vec![
        Setup { name: "direct", command: vec![fixture.clone()] },
        Setup { name: "byte-relay", command: vec![me.clone(), "relay".into(), "--".into(), fixture.clone()] },
        Setup { name: "warden", command: wrap(&[]) },
        Setup { name: "warden+idle", command: wrap(&["--plugins", &idle_dir.display().to_string()]) },
        Setup { name: "warden+noop", command: wrap(&["--plugins", &noop_dir.display().to_string()]) },
        Setup {
            name: "warden+examples",
            command: wrap(&["--plugins", &examples_dir.display().to_string(), "--audit", &audit.display().to_string()]),
        },
    ];
    let small = "a".repeat(100);
    let large = "b".repeat(1 << 20);
    for (name, dir) in &single {
        let label: &'static str = match *name {
            "audit-log" => "warden+audit-log",
            "tool-policy" => "warden+tool-policy",
            _ => "warden+secret-redact",
        };
        let mut flags = vec!["--plugins".to_owned(), dir.display().to_string()];
        if *name == "audit-log" {
            flags.extend(["--audit".to_owned(), audit.display().to_string()]);
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        setups.push(Setup { name: label, command: wrap(&flags) });
    }
    // tool-policy deciding by 20 CEL rules for a caller with claims (`--caller`).
    let caller = ["--caller", "ada", "--caller-claims", r#"{"groups": ["infra", "dev"], "email": "ada@example.com"}"#];
    let mut cel_flags = vec!["--plugins".to_owned(), cel_dir.display().to_string()];
    cel_flags.extend(caller.iter().map(|s| s.to_string()));
    let cel_flags: Vec<&str> = cel_flags.iter().map(String::as_str).collect();
    setups.push(Setup { name: "warden+tool-policy-cel", command: wrap(&cel_flags) });
    // The host's audit trail alone (a record per request, chained), and signed.
    let host_audit = std::env::temp_dir().join(format!("warden-bench-{}.host.audit", std::process::id()));
    let signed_audit = std::env::temp_dir().join(format!("warden-bench-{}.signed.audit", std::process::id()));
    let keys = std::env::temp_dir().join(format!("warden-bench-{}-keys", std::process::id()));
    let _ = Command::new(&warden).args(["audit", "keygen"]).arg(&keys).output();
    let key = keys.join("audit.key").display().to_string();
    setups.push(Setup { name: "warden+audit", command: wrap(&["--audit", &host_audit.display().to_string()]) });
    setups.push(Setup {
        name: "warden+audit-signed",
        command: wrap(&["--audit", &signed_audit.display().to_string(), "--audit-key", &key]),
    });
    // Operations: metrics (counted once an admin listener is up), metrics with
    // the host's trail (everything the audit issue asks for with tracing off),
    // and spans sent to an OTLP receiver (a sink here).
    setups.push(Setup { name: "warden+metrics", command: wrap(&["--admin-listen", "127.0.0.1:0"]) });
    let ops_audit = std::env::temp_dir().join(format!("warden-bench-{}.ops.audit", std::process::id()));
    setups.push(Setup {
        name: "warden+ops",
        command: wrap(&["--admin-listen", "127.0.0.1:0", "--audit", &ops_audit.display().to_string()]),
    });
    let otlp = otlp_sink();
    setups.push(Setup { name: "warden+traces", command: wrap(&["--otlp-endpoint", &otlp]) });
    // `cargo bench --bench relay -- NAME...` runs only the named setups.
    let only: Vec<&String> = args.iter().skip(1).filter(|a| !a.starts_with('-')).collect();
    // Every setup runs at once, idle but for its turn, and the rounds take them in
    // turn with short slices of each workload: a slow minute of a small shared
    // machine then falls on all of them alike instead of on one. Latency figures
    // are quantiles of all the samples; throughput figures, medians of the rounds.
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(10);
    let chosen: Vec<&Setup> = setups.iter().filter(|s| only.is_empty() || only.iter().any(|o| *o == s.name)).collect();
    let mut peers: Vec<Peer> = chosen.iter().map(|s| Peer::start(&s.command)).collect();
    for peer in &mut peers {
        latency(peer, &small, 500);
        latency(peer, &large, 4);
    }
    #[derive(Clone, Default)]
    struct Figures {
        small: Vec<Duration>,
        small_rps: Vec<f64>,
        large: Vec<Duration>,
        large_rps: Vec<f64>,
        result: Vec<Duration>,
    }
    let mut figures = vec![Figures::default(); chosen.len()];
    for _ in 0..rounds {
        for (peer, f) in peers.iter_mut().zip(&mut figures) {
            f.small.extend(latency(peer, &small, 500));
            f.small_rps.push(throughput(peer, &small, 4000, 64));
            f.large.extend(latency(peer, &large, 8));
            f.large_rps.push(throughput(peer, &large, 16, 8));
            f.result.extend(result_latency(peer, 1 << 20, 8));
        }
    }
    for peer in peers {
        peer.stop();
    }
    println!("| setup | 100 B p50 µs | 100 B p99 µs | 100 B pipelined req/s | 1 MiB p50 µs | 1 MiB pipelined req/s | 1 MiB result p50 µs |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (setup, f) in chosen.iter().zip(&mut figures) {
        println!(
            "| {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.1} | {:.0} |",
            setup.name,
            quantile(&mut f.small, 0.5),
            quantile(&mut f.small, 0.99),
            median(&mut f.small_rps),
            quantile(&mut f.large, 0.5),
            median(&mut f.large_rps),
            quantile(&mut f.result, 0.5),
        );
    }
    let _ = std::fs::remove_dir_all(idle_dir);
    let _ = std::fs::remove_dir_all(examples_dir);
    let _ = std::fs::remove_dir_all(noop_dir);
    for (_, dir) in single {
        let _ = std::fs::remove_dir_all(dir);
    }
    let _ = std::fs::remove_file(audit);
}

/// An OTLP/HTTP receiver that takes every export and answers 200; its URL.
fn otlp_sink() -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(read) = stream.try_clone() else { return };
                let mut reader = BufReader::new(read);
                let mut writer = stream;
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let header = line.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err()
                        || writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    url
}
