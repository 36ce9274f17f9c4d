//! HTTP benchmark: the same MCP calls, side by side, over
//!
//! - `direct`: the fixture server's own Streamable HTTP endpoint (`mcp-fixture --http`),
//! - `http→stdio`: `warden serve` in front of the fixture over stdio (a child per session),
//!   on a thread per core and on one thread (`--threads 1`),
//! - `http→http`: `warden serve --upstream-url` in front of the fixture's HTTP endpoint,
//! - `stdio→http`: `warden wrap --url` in front of it, one Warden per client (a stdio
//!   client has one session),
//!
//! with no plugins, 100-byte and 1 MiB `echo` calls, by 1 and by 16 concurrent
//! sessions each making calls one after another. Reports calls per second, the
//! median round trip, the CPU time per call of the measured process (the direct
//! server, or Warden without its children) at 16 sessions, and Warden's peak
//! memory per session. Run with
//! `scripts/bench.sh` or `cargo bench -p warden-tests --bench http`.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::json;

#[path = "support/cel_rules.rs"]
mod cel_rules;

/// A started server that printed `listening on URL` on stderr.
struct Listening {
    child: Child,
    url: String,
}

impl Listening {
    fn start(command: &mut Command) -> Listening {
        let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on ") {
                    let _ = tx.send(line[at + "listening on ".len()..].trim().to_owned());
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(60)).expect("server did not start listening");
        Listening { child, url }
    }

    /// Peak and current resident memory, in KiB.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    /// CPU time it has used (user + system), in microseconds.
    fn cpu_us(&self) -> u64 {
        cpu_us(&self.child.id().to_string())
    }

    /// CPU time its child processes (Warden's stdio upstreams) have used, in microseconds.
    fn children_cpu_us(&self) -> u64 {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id()));
        tasks
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
            .flat_map(|children| children.split_whitespace().map(cpu_us).collect::<Vec<_>>())
            .sum()
    }
}

/// CPU time process `pid` (or `self`) has used, all its threads, in microseconds.
/// Read from `schedstat` (nanoseconds on the CPU): `stat`'s clock ticks of 10 ms
/// round a stdio server's share of a run to nothing.
fn cpu_us(pid: &str) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    let nanos: u64 = tasks
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum();
    nanos / 1000
}

/// CPU time this process (the clients) has used, in microseconds, threads that
/// have ended included (`schedstat` lists only live ones).
fn client_cpu_us() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name start at `) `; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let mut fields = after.split_whitespace().skip(11);
    let ticks: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    // Clock ticks of 1/100 s (USER_HZ).
    ticks * 10_000
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn call(id: u64, tool: &str, text: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {"text": text}}})
        .to_string()
}

fn initialize() -> String {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}}).to_string()
}

/// One HTTP client session.
struct HttpSession {
    agent: ureq::Agent,
    url: String,
    session: Option<String>,
    /// `Authorization: Bearer …`, when Warden checks tokens.
    bearer: Option<String>,
}

impl HttpSession {
    fn open(url: &str) -> HttpSession {
        HttpSession::open_as(url, None)
    }

    fn open_as(url: &str, token: Option<&str>) -> HttpSession {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut s = HttpSession { agent: ureq::Agent::new(), url: url.to_owned(), session: None, bearer };
        let response = s.post(&initialize());
        s.session = response.header("mcp-session-id").map(str::to_owned);
        let _ = response.into_string();
        let _ = s.post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).into_string();
        s
    }

    fn post(&self, body: &str) -> ureq::Response {
        let mut request = self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json")
            .set("Accept", "application/json, text/event-stream")
            .set("MCP-Protocol-Version", "2025-06-18");
        if let Some(session) = &self.session {
            request = request.set("Mcp-Session-Id", session);
        }
        if let Some(bearer) = &self.bearer {
            request = request.set("Authorization", bearer);
        }
        request.send_string(body).expect("POST")
    }

    fn round_trip(&self, body: &str) -> Duration {
        let started = Instant::now();
        let mut text = String::new();
        self.post(body).into_reader().take(64 << 20).read_to_string(&mut text).expect("read");
        let elapsed = started.elapsed();
        assert!(text.contains("\"result\""), "not a result: {}", &text[..text.len().min(200)]);
        elapsed
    }

    fn close(self) {
        if let Some(session) = &self.session {
            let mut request = self.agent.delete(&self.url).set("Mcp-Session-Id", session);
            if let Some(bearer) = &self.bearer {
                request = request.set("Authorization", bearer);
            }
            let _ = request.call();
        }
    }
}

/// One stdio client of its own `warden wrap --url`.
struct StdioSession {
    child: Child,
    stdin: BufWriter<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl StdioSession {
    fn open(warden: &str, url: &str) -> StdioSession {
        let mut child = Command::new(warden)
            .args(["wrap", "--no-cache", "--url", url])
            .env("WARDEN_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn warden wrap");
        let stdin = BufWriter::new(child.stdin.take().expect("stdin"));
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut s = StdioSession { child, stdin, stdout };
        s.round_trip(&initialize());
        s.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        s
    }

    fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).expect("write");
        self.stdin.write_all(b"\n").expect("write");
        self.stdin.flush().expect("flush");
    }

    fn round_trip(&mut self, line: &str) -> Duration {
        let started = Instant::now();
        self.send(line);
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).expect("read");
        let elapsed = started.elapsed();
        assert!(answer.contains("\"result\""), "not a result: {}", &answer[..answer.len().min(200)]);
        elapsed
    }

    fn close(mut self) {
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

enum Session {
    Http(HttpSession),
    Stdio(StdioSession),
}

enum Path<'a> {
    Http(&'a str),
    /// Warden checking OAuth tokens: every request carries this one.
    HttpWithToken {
        url: &'a str,
        token: &'a str,
    },
    StdioToHttp {
        warden: &'a str,
        url: &'a str,
    },
}

/// CPU time used so far (µs) by the client (this process), Warden and the upstream server(s).
type CpuSample<'a> = &'a dyn Fn() -> [u64; 3];

/// `sessions` clients at once, each making `calls` calls: (calls per second,
/// median µs, CPU µs per call of client, Warden and upstream while they ran).
fn run(
    path: &Path<'_>,
    sessions: usize,
    calls: usize,
    tool: &str,
    text: &str,
    cpu: CpuSample<'_>,
) -> (f64, f64, [f64; 3]) {
    let barrier = Arc::new(Barrier::new(sessions + 1));
    let workers: Vec<_> = (0..sessions)
        .map(|_| {
            let barrier = barrier.clone();
            let text = text.to_owned();
            let bodies: Vec<String> = (1..=calls as u64).map(|id| call(id, tool, &text)).collect();
            match path {
                Path::Http(_) | Path::HttpWithToken { .. } => {
                    let s = match path {
                        Path::HttpWithToken { url, token } => HttpSession::open_as(url, Some(token)),
                        Path::Http(url) | Path::StdioToHttp { url, .. } => HttpSession::open(url),
                    };
                    std::thread::spawn(move || {
                        barrier.wait();
                        let samples: Vec<Duration> = bodies.iter().map(|b| s.round_trip(b)).collect();
                        (samples, Session::Http(s))
                    })
                }
                Path::StdioToHttp { warden, url } => {
                    let mut s = StdioSession::open(warden, url);
                    std::thread::spawn(move || {
                        barrier.wait();
                        let samples: Vec<Duration> = bodies.iter().map(|b| s.round_trip(b)).collect();
                        (samples, Session::Stdio(s))
                    })
                }
            }
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let cpu_before = cpu();
    let (samples, open): (Vec<_>, Vec<_>) = workers.into_iter().map(|w| w.join().expect("worker")).unzip();
    let elapsed = started.elapsed();
    // Sampled before the sessions close, while Warden's children are there to be read.
    let cpu_after = cpu();
    for session in open {
        match session {
            Session::Http(s) => s.close(),
            Session::Stdio(s) => s.close(),
        }
    }
    let mut samples: Vec<Duration> = samples.into_iter().flatten().collect();
    samples.sort();
    let median = samples[samples.len() / 2].as_secs_f64() * 1e6;
    let total = (sessions * calls) as f64;
    let per_call = std::array::from_fn(|i| cpu_after[i].saturating_sub(cpu_before[i]) as f64 / total);
    (total / elapsed.as_secs_f64(), median, per_call)
}

/// Where a row's upstream CPU is read.
enum Upstream<'a> {
    /// The children of this Warden (a stdio server per session).
    ChildrenOf(&'a Listening),
    /// This server process.
    Process(&'a Listening),
}

/// One line of the table.
struct Row<'a> {
    name: &'static str,
    path: Path<'a>,
    /// The Warden measured, when it is one process.
    gateway: Option<&'a Listening>,
    upstream: Upstream<'a>,
    /// The tool called with a `text` argument.
    tool: &'static str,
    /// Whether the tool sends its argument back (1 MiB runs are skipped otherwise).
    echoes: bool,
}

fn main() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("repo").to_owned();
    let warden = repo.join("target/release/warden").display().to_string();
    let fixture = env!("CARGO_BIN_EXE_mcp-fixture").to_owned();
    let serve = |args: &[&str]| {
        Listening::start(
            Command::new(&warden)
                .args(["serve", "--listen", "127.0.0.1:0", "--no-cache"])
                .args(args)
                .env("WARDEN_LOG", "info"),
        )
    };

    let direct = Listening::start(Command::new(&fixture).args(["--http", "127.0.0.1:0"]));
    let to_stdio = serve(&["--", &fixture]);
    let to_stdio_one_thread = serve(&["--threads", "1", "--", &fixture]);
    let to_http = serve(&["--upstream-url", &direct.url]);
    let fixture_rows = |tool| {
        [
            ("direct (fixture over HTTP)", Path::Http(&direct.url), None, Upstream::Process(&direct)),
            ("http→stdio (warden serve)", Path::Http(&to_stdio.url), Some(&to_stdio), Upstream::ChildrenOf(&to_stdio)),
            (
                "http→stdio (warden serve --threads 1)",
                Path::Http(&to_stdio_one_thread.url),
                Some(&to_stdio_one_thread),
                Upstream::ChildrenOf(&to_stdio_one_thread),
            ),
            (
                "http→http (warden serve --upstream-url)",
                Path::Http(&to_http.url),
                Some(&to_http),
                Upstream::Process(&direct),
            ),
            (
                "stdio→http (warden wrap --url)",
                Path::StdioToHttp { warden: &warden, url: &direct.url },
                None,
                Upstream::Process(&direct),
            ),
        ]
        .map(|(name, path, gateway, upstream)| Row { name, path, gateway, upstream, tool, echoes: true })
    };
    let mut rows: Vec<Row<'_>> = fixture_rows("echo").into_iter().collect();

    // The gateway (`warden serve --config`) with 1 and with 10 upstreams, each
    // the fixture over stdio: routing is a map lookup, whatever their number.
    let gateway_config = |n: usize, extra: &[&str]| {
        let file = std::env::temp_dir().join(format!("warden-bench-{}-{n}{}.toml", std::process::id(), extra.len()));
        let mut command = vec![fixture.clone()];
        command.extend(extra.iter().map(|s| s.to_string()));
        let command = serde_json::to_string(&command).expect("json");
        let text: String = (0..n).map(|i| format!("[upstreams.u{i}]\ncommand = {command}\n")).collect();
        std::fs::write(&file, text).expect("write bench config");
        file.display().to_string()
    };
    let (one_config, ten_config) = (gateway_config(1, &[]), gateway_config(10, &[]));
    let gateway_one = serve(&["--config", &one_config]);
    let gateway_ten = serve(&["--config", &ten_config]);
    rows.push(Row {
        name: "http→gateway, 1 upstream (warden serve --config)",
        path: Path::Http(&gateway_one.url),
        gateway: Some(&gateway_one),
        upstream: Upstream::ChildrenOf(&gateway_one),
        tool: "u0__echo",
        echoes: true,
    });
    rows.push(Row {
        name: "http→gateway, 10 upstreams (warden serve --config)",
        path: Path::Http(&gateway_ten.url),
        gateway: Some(&gateway_ten),
        upstream: Upstream::ChildrenOf(&gateway_ten),
        tool: "u9__echo",
        echoes: true,
    });

    // Who is calling: an ES256 access token checked by the OAuth resource
    // server (kept by digest after its first request), then the same with
    // tool-policy deciding by 20 CEL rules over the caller, the tool and its
    // arguments. Token and key from tests/oidc/forge.mjs (`npm ci --prefix tests/oidc`).
    let identity_dir = tempfile::tempdir().expect("temp dir");
    let identity = repo.join("tests/oidc/node_modules/jose").exists().then(|| {
        let dir = identity_dir.path();
        let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) + 7200;
        let claims = json!({"iss": "https://idp.bench", "aud": "http://bench.test/mcp", "sub": "ada", "scope": "mcp", "exp": exp, "groups": ["infra", "dev"], "email": "ada@example.com"});
        let out = Command::new("node")
            .current_dir(repo.join("tests/oidc"))
            .args(["forge.mjs", "keyed", &claims.to_string(), &dir.display().to_string()])
            .output()
            .expect("node");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let policy = |folder: &str, manifest: &str| {
            let plugins = dir.join(folder);
            std::fs::create_dir_all(&plugins).expect("plugins folder");
            let wasm = repo.join("target/wasm32-wasip2/plugin/tool_policy.wasm");
            std::fs::copy(&wasm, plugins.join("10-policy.wasm")).expect("tool_policy.wasm (scripts/build-plugins.sh)");
            std::fs::write(plugins.join("10-policy.toml"), manifest).expect("manifest");
            plugins.display().to_string()
        };
        let globs = policy("globs", "order = 10\nfailure = \"closed\"\n[config]\nallow = [\"*\"]\ndeny = [\"delete_*\"]\n");
        let rules = policy("rules", &cel_rules::twenty_rules());
        let jwks = dir.join("jwks.json").display().to_string();
        let auth = ["--oauth-issuer", "https://idp.bench", "--oauth-audience", "http://bench.test/mcp", "--oauth-jwks-file", &jwks, "--oauth-scope", "mcp"];
        let mut plain = auth.to_vec();
        plain.extend(["--", fixture.as_str()]);
        let with = |plugins: &str| {
            let mut args = auth.to_vec();
            args.extend(["--plugins", plugins, "--", fixture.as_str()]);
            serve(&args)
        };
        (serve(&plain), with(&globs), with(&rules), token)
    });
    if let Some((oauth, globbed, policed, token)) = &identity {
        rows.push(Row {
            name: "http→stdio, OAuth ES256 token (warden serve --oauth-…)",
            path: Path::HttpWithToken { url: &oauth.url, token },
            gateway: Some(oauth),
            upstream: Upstream::ChildrenOf(oauth),
            tool: "echo",
            echoes: false,
        });
        rows.push(Row {
            name: "http→stdio, OAuth ES256 token + tool-policy with globs only",
            path: Path::HttpWithToken { url: &globbed.url, token },
            gateway: Some(globbed),
            upstream: Upstream::ChildrenOf(globbed),
            tool: "echo",
            echoes: false,
        });
        rows.push(Row {
            name: "http→stdio, OAuth ES256 token + tool-policy with 20 CEL rules",
            path: Path::HttpWithToken { url: &policed.url, token },
            gateway: Some(policed),
            upstream: Upstream::ChildrenOf(policed),
            tool: "echo",
            echoes: false,
        });
    } else {
        eprintln!("tests/oidc/node_modules missing (npm ci --prefix tests/oidc): the OAuth rows are skipped");
    }

    // The same paths in front of a server on the official TypeScript SDK
    // (the conformance upstream, `npm ci --prefix tests/conformance`).
    let sdk_server = repo.join("tests/conformance/server.mjs").display().to_string();
    let sdk = repo.join("tests/conformance/node_modules/@modelcontextprotocol/sdk").exists().then(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let direct = Listening::start(Command::new("node").args([sdk_server.as_str(), "--http", &port.to_string()]));
        let to_stdio = serve(&["--", "node", &sdk_server]);
        let to_http = serve(&["--upstream-url", &direct.url]);
        (direct, to_stdio, to_http)
    });
    match &sdk {
        Some((direct, to_stdio, to_http)) => rows.extend(
            [
                ("direct (TypeScript SDK server over HTTP)", Path::Http(&direct.url), None, Upstream::Process(direct)),
                ("http→stdio (warden serve, TypeScript SDK server)", Path::Http(&to_stdio.url), Some(to_stdio), Upstream::ChildrenOf(to_stdio)),
                ("http→http (warden serve --upstream-url, TypeScript SDK server)", Path::Http(&to_http.url), Some(to_http), Upstream::Process(direct)),
            ]
            .map(|(name, path, gateway, upstream)| Row { name, path, gateway, upstream, tool: "test_simple_text", echoes: false }),
        ),
        None => eprintln!("tests/conformance/node_modules missing (npm ci --prefix tests/conformance): the TypeScript SDK rows are skipped"),
    }

    let small = "a".repeat(100);
    let large = "b".repeat(1 << 20);
    // `WARDEN_BENCH_SOAK=SECONDS cargo bench --bench http -- NAME`: only the paths
    // whose name holds NAME, 100 B by 16 sessions for that long (for a profiler).
    let soak: Option<f64> = std::env::var("WARDEN_BENCH_SOAK").ok().and_then(|s| s.parse().ok());
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    println!("| path | 100 B, 1 session: calls/s | p50 µs | 100 B, 16 sessions: calls/s | p50 µs | CPU µs/call: client, Warden, upstream | 1 MiB, 1 session: calls/s | 1 MiB, 16 sessions: calls/s | Warden peak RSS |");
    println!("|---|---:|---:|---:|---:|---|---:|---:|---:|");
    for row in rows.iter().filter(|row| only.as_deref().is_none_or(|o| row.name.contains(o))) {
        let Row { name, path, gateway, tool, .. } = row;
        // Warden's CPU for stdio→http is left out: each client starts its own Warden inside the run.
        let cpu = || {
            let upstream = match row.upstream {
                Upstream::ChildrenOf(g) => g.children_cpu_us(),
                Upstream::Process(p) => p.cpu_us(),
            };
            [client_cpu_us(), gateway.map_or(0, Listening::cpu_us), upstream]
        };
        if let Some(seconds) = soak {
            let until = Instant::now() + Duration::from_secs_f64(seconds);
            while Instant::now() < until {
                let (rps, p50, _) = run(path, 16, 2000, tool, &small, &cpu);
                println!("{name}: {rps:.0} calls/s, p50 {p50:.0} µs");
            }
            continue;
        }
        run(path, 1, 200, tool, &small, &cpu); // warm-up
        let before = gateway.map(|g| g.memory());
        let (one_rps, one_p50, _) = run(path, 1, 2000, tool, &small, &cpu);
        let (many_rps, many_p50, [client, proxy, upstream]) = run(path, 16, 2000, tool, &small, &cpu);
        let proxy = if gateway.is_some() { format!("{proxy:.0}") } else { "-".to_owned() };
        let (big_one, big_many) = if row.echoes {
            let (one, _, _) = run(path, 1, 20, tool, &large, &cpu);
            let (many, _, _) = run(path, 16, 5, tool, &large, &cpu);
            (format!("{one:.1}"), format!("{many:.1}"))
        } else {
            ("-".to_owned(), "-".to_owned())
        };
        let memory = match (gateway, before) {
            (Some(g), Some((_, rss_before))) => {
                let (peak, _) = g.memory();
                format!(
                    "{:.1} MiB ({:.2} MiB/session over idle)",
                    peak as f64 / 1024.0,
                    (peak.saturating_sub(rss_before)) as f64 / 1024.0 / 16.0
                )
            }
            _ => "-".to_owned(),
        };
        println!("| {name} | {one_rps:.0} | {one_p50:.0} | {many_rps:.0} | {many_p50:.0} | {client:.0}, {proxy}, {upstream:.0} | {big_one} | {big_many} | {memory} |");
    }

    // tools/list through the gateway, 10 upstreams of 100 tools each that answer
    // after 50 ms (no CPU): the fan-out is concurrent, so it takes about as long
    // as one of them.
    if only.as_deref().is_none_or(|o| "tools/list".contains(o)) {
        let slow = ["--list-tools", "100", "--list-delay-ms", "50"];
        let gateway = serve(&["--config", &gateway_config(10, &slow)]);
        let mut alone = vec!["--", fixture.as_str()];
        alone.extend(slow);
        let single = serve(&alone);
        let list = r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#;
        let p50 = |url: &str| {
            let session = HttpSession::open(url);
            let mut samples: Vec<Duration> = (0..21).map(|_| session.round_trip(list)).collect();
            session.close();
            samples.sort();
            samples[samples.len() / 2].as_secs_f64() * 1e3
        };
        let (through, one) = (p50(&gateway.url), p50(&single.url));
        println!();
        println!("| tools/list, upstreams answering after 50 ms | p50 ms |");
        println!("|---|---:|");
        println!("| one upstream of 100 tools (warden serve) | {one:.1} |");
        println!(
            "| gateway of 10 upstreams of 100 tools each (1010 tools listed) | {through:.1} ({:.2}× the one) |",
            through / one
        );
        // The same upstreams announcing `listChanged`: a session keeps its merged list until one changes.
        let mut announcing = slow.to_vec();
        announcing.push("--list-changed");
        let cached = serve(&["--config", &gateway_config(10, &announcing)]);
        let session = HttpSession::open(&cached.url);
        let first = session.round_trip(list).as_secs_f64() * 1e3;
        let mut samples: Vec<Duration> = (0..21).map(|_| session.round_trip(list)).collect();
        session.close();
        samples.sort();
        let kept = samples[samples.len() / 2].as_secs_f64() * 1e3;
        println!("| the same, upstreams announcing listChanged: the session's kept list | {kept:.2} (its first: {first:.1}) |");
    }

    // Memory with 10 configured upstreams: each session starts only the upstream it calls.
    if only.as_deref().is_none_or(|o| "memory".contains(o)) {
        let gateway = serve(&["--config", &ten_config]);
        let (_, idle) = gateway.memory();
        let sessions: Vec<HttpSession> = (0..16).map(|_| HttpSession::open(&gateway.url)).collect();
        let call =
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"u3__echo","arguments":{"text":"hi"}}}"#;
        for session in &sessions {
            session.round_trip(call);
        }
        let (peak, _) = gateway.memory();
        let children = children_of(gateway.child.id());
        for session in sessions {
            session.close();
        }
        println!();
        println!("| gateway of 10 upstreams, 16 sessions each calling one of them | Warden peak RSS | per session | upstream processes |");
        println!("|---|---:|---:|---:|");
        println!(
            "| lazy start | {:.1} MiB | {:.2} MiB | {children} (1 per session) |",
            peak as f64 / 1024.0,
            peak.saturating_sub(idle) as f64 / 1024.0 / 16.0
        );
    }
}

/// How many child processes `pid` has (over all its threads).
fn children_of(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .map(|t| std::fs::read_to_string(t.path().join("children")).unwrap_or_default().split_whitespace().count())
        .sum()
}
