//! The `warden` command line. Thin: parse, set up logging on stderr, run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use warden::audit::AuditTrail;
use warden::config::{defaults, Manifest};
use warden::plugin::{versions, Runtime, RuntimeOptions};
use warden::serve::auth::Clients;
use warden::serve::{self, ServeOptions};
use warden::session::SessionEnd;
use warden::telemetry::traces;
use warden::upstream::http::{RemoteError, RemoteOptions};
use warden::upstream::Target;
use warden::wrap::{self, WrapOptions};

// Large messages come and go all the time: mimalloc keeps freed pages for
// reuse where glibc hands them back and faults them in again for the next one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "warden", version, about = "An MCP proxy with sandboxed WebAssembly plugins")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a stdio MCP server behind Warden: `warden wrap --plugins DIR -- CMD ARGS...`
    Wrap(Box<WrapArgs>),
    /// Serve a stdio MCP server over Streamable HTTP: `warden serve --listen ADDR --plugins DIR -- CMD ARGS...`
    Serve(Box<ServeArgs>),
    /// Work with plugin files.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Work with gateway config files (`warden.toml`).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Work with the gateway's pinned tool definitions (`warden.pins.json`).
    #[command(subcommand)]
    Pins(PinsCommand),
    /// Work with the signed audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Writes a new Ed25519 key pair for signing the trail: DIR/audit.key (0600) and DIR/audit.pub.
    Keygen {
        /// Where to write them (made if missing; an existing key is never overwritten).
        dir: PathBuf,
    },
    /// Checks a trail's files, in order (`audit.jsonl.* audit.jsonl`): exit status 0 only for a whole, signed chain.
    Verify {
        /// The files, oldest first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The trail's public key (`audit.pub`).
        #[arg(long)]
        public_key: PathBuf,
    },
}

#[derive(Subcommand)]
enum PinsCommand {
    /// Takes a tool's new definition: forgets its pin (`upstream__tool`, or a
    /// whole `upstream`), so that the next listing pins what it says then.
    Accept {
        /// The tool as clients see it, or an upstream's name.
        name: String,
        /// The gateway config whose pins these are.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a `warden.toml` offline: its keys, upstreams, folders and
    /// secrets (read, never shown). Exit 1 with the file, line, key and fix if not.
    Check {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Validate a component offline: its WIT version, its hooks, the methods it
    /// asks for, and that its `init` accepts the config (the `.toml` beside it, or `--config`).
    Check(CheckArgs),
    /// Write a working plugin skeleton that builds with `./build.sh`.
    New(NewArgs),
}

#[derive(clap::Args)]
struct NewArgs {
    /// The language: rust, js, python or c.
    #[arg(long)]
    lang: warden::scaffold::Lang,
    /// The plugin's name (lowercase letters, digits, dashes); also its folder's.
    name: String,
    /// Where to create the folder (default: here).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// The component, `NAME.wasm`.
    wasm: PathBuf,
    /// The manifest to check it with (default: `NAME.toml` beside it, if any).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Cache of precompiled plugins (default: $XDG_CACHE_HOME/warden or ~/.cache/warden).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

/// Options both modes share.
#[derive(clap::Args)]
struct Common {
    /// A gateway config (`warden.toml`): every upstream it lists behind one
    /// server, their tools and prompts as `<upstream>__<name>`.
    #[arg(long, conflicts_with = "plugins")]
    config: Option<PathBuf>,
    /// Folder of plugins (`*.wasm`, each with an optional `.toml`).
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// Append audit events as JSON lines to this file.
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Sign the audit trail's checkpoints with this Ed25519 key (`warden audit keygen DIR`).
    #[arg(long)]
    audit_key: Option<PathBuf>,
    /// A signed checkpoint after this many audit records (default 1000; also every 10 s while records wait).
    #[arg(long)]
    audit_checkpoint_every: Option<u64>,
    /// Start a new audit file once the current one is this large, in bytes (the chain goes on).
    #[arg(long)]
    audit_max_bytes: Option<u64>,
    /// Start a new audit file once the current one is this old (`1d`, `12h`).
    #[arg(long, value_parser = humantime::parse_duration)]
    audit_max_age: Option<std::time::Duration>,
    /// Serve /metrics, /healthz and /readyz here (or `[admin] listen`); never the MCP endpoint.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<std::net::SocketAddr>,
    /// The admin token (one line, at least 16 characters; `[admin] token-file`):
    /// required off loopback, and for anything that changes state.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// `batch` (records written within 10 ms; the default) or `always`: an
    /// answer is released only once its record is on disk.
    #[arg(long, value_name = "batch|always")]
    audit_sync: Option<SyncArg>,
    /// Refuse calls while the audit trail cannot be written, rather than serve them unrecorded.
    #[arg(long)]
    audit_required: bool,
    /// Put each call's arguments in its record (as the chain passed them on: after redaction).
    #[arg(long)]
    audit_include_arguments: bool,
    /// Send OpenTelemetry traces to this OTLP/HTTP receiver (`http://127.0.0.1:4318`); off by default.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Largest JSON-RPC message accepted, in bytes.
    #[arg(long, default_value_t = defaults::MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Cache of precompiled plugins (default: $XDG_CACHE_HOME/warden or ~/.cache/warden).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Do not cache precompiled plugins.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
    /// Do not reload the plugins folder when it changes (SIGHUP still reloads it).
    #[arg(long)]
    no_watch: bool,
    /// Ask a stdio upstream `server/discover` before a client's `initialize`, and
    /// bridge a handshake-era client to it if it speaks only 2026-07-28 (remote
    /// upstreams are always asked).
    #[arg(long)]
    probe_era: bool,
    /// Name of the upstream in plugin contexts and audit records (default: the program name or URL host).
    #[arg(long)]
    name: Option<String>,
    /// A header sent to a remote upstream, `Name: value` (repeatable). Values are never logged.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// A header for a remote upstream whose value is read from an environment variable, `Name=VAR`.
    #[arg(long = "header-from-env", value_name = "NAME=VAR")]
    headers_from_env: Vec<String>,
    /// A header for a remote upstream whose value is read from a file, `Name=PATH` (trailing newline dropped).
    #[arg(long = "header-from-file", value_name = "NAME=PATH")]
    headers_from_file: Vec<String>,
}

/// `--audit-sync`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SyncArg {
    Batch,
    Always,
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// Address to listen on (default 127.0.0.1:8080, or `[serve] listen` of
    /// the config). Loopback by default: exposing Warden is a decision.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Path of the MCP endpoint.
    #[arg(long, default_value = "/mcp")]
    path: String,
    /// An origin allowed besides loopback ones (repeatable; `*` allows any).
    #[arg(long = "allow-origin")]
    allowed_origins: Vec<String>,
    /// A `Host` header value to accept besides loopback names (repeatable). On a
    /// loopback address only loopback names are accepted unless listed here, which
    /// defends against DNS rebinding; on other addresses any, unless some are listed.
    #[arg(long = "allow-host")]
    allowed_hosts: Vec<String>,
    /// Threads serving HTTP and the relays: 0 (default) one per core; 1 runs
    /// everything on one thread (no cross-thread wake-ups: less CPU per call
    /// when cores are few and shared).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Largest HTTP request body, in bytes.
    #[arg(long, default_value_t = defaults::MAX_MESSAGE_BYTES)]
    max_body_bytes: usize,
    /// Seconds a session may stay idle before it is closed and its server stopped.
    #[arg(long, default_value_t = 1800)]
    session_idle_secs: u64,
    /// Most sessions (each with its own server process) open at once.
    #[arg(long, default_value_t = 256)]
    max_sessions: usize,
    /// Most sessions one caller (its token's subject, or without tokens its
    /// address) holds; past it, its least recently used idle one is closed.
    #[arg(long, default_value_t = 32)]
    max_sessions_per_caller: usize,
    /// Most 2026-07-28 upstream sessions (one per set of client
    /// capabilities) one caller holds; past it, its least recently used idle one is closed.
    #[arg(long, default_value_t = 32)]
    max_backings_per_caller: usize,
    /// Most TCP connections open at once; one more gets `503` and is closed.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Milliseconds a client has to send a request's headers (and an idle
    /// keep-alive connection is kept).
    #[arg(long, default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// Milliseconds a client has to send a request's body.
    #[arg(long, default_value_t = 30_000)]
    body_timeout_ms: u64,
    /// Seconds shutdown (SIGTERM, SIGINT) waits for calls in flight before
    /// answering the rest with an error.
    #[arg(long, default_value_t = 10.0)]
    drain_secs: f64,
    /// Admit callers by JWT access tokens from this identity provider (OpenID
    /// discovery finds its keys); or `[auth] issuer` of the config.
    #[arg(long, value_name = "URL")]
    oauth_issuer: Option<String>,
    /// The resource URI tokens must name in `aud` (default: the endpoint's URL).
    #[arg(long, value_name = "URL", requires = "oauth_issuer")]
    oauth_audience: Option<String>,
    /// The provider's JWKS URL, instead of discovery.
    #[arg(long, value_name = "URL", requires = "oauth_issuer", conflicts_with = "oauth_jwks_file")]
    oauth_jwks_url: Option<String>,
    /// The provider's JWKS as a file, instead of discovery.
    #[arg(long, value_name = "FILE", requires = "oauth_issuer")]
    oauth_jwks_file: Option<PathBuf>,
    /// A scope every token must carry (repeatable).
    #[arg(long = "oauth-scope", value_name = "SCOPE", requires = "oauth_issuer")]
    oauth_scopes: Vec<String>,
    /// HTTPS on the listener: a PEM certificate chain, leaf first (with
    /// `--tls-key`; or `[serve] tls-cert` of the config).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Clients must present `Authorization: Bearer TOKEN`: a file of `SUBJECT TOKEN`
    /// lines (at least 16 characters a token; keep it chmod 600). The subject is the
    /// caller plugins see; a session is its opener's alone.
    #[arg(long, value_name = "FILE")]
    client_tokens: Option<PathBuf>,
    /// A remote Streamable HTTP server to front instead of a command.
    #[arg(long, conflicts_with = "command")]
    upstream_url: Option<String>,
    /// The upstream server command, started once per session.
    #[arg(last = true, required_unless_present_any = ["upstream_url", "config"])]
    command: Vec<String>,
}

#[derive(clap::Args)]
struct WrapArgs {
    #[command(flatten)]
    common: Common,
    /// A remote Streamable HTTP server to bridge to instead of a command.
    #[arg(long, conflicts_with = "command")]
    url: Option<String>,
    /// Milliseconds the server has to exit once the client has gone (or a
    /// signal came) before it is killed.
    #[arg(long, default_value_t = 5_000)]
    exit_grace_ms: u64,
    /// Who the client is, as plugins see it (`caller.subject`); default: the OS user.
    #[arg(long, value_name = "NAME")]
    caller: Option<String>,
    /// The caller's claims (`caller.claims`): one JSON object, or `@FILE` holding one.
    #[arg(long, value_name = "JSON|@FILE")]
    caller_claims: Option<String>,
    /// The upstream server command and its arguments.
    #[arg(last = true, required_unless_present_any = ["url", "config"])]
    command: Vec<String>,
}

/// The caller of `warden wrap`: `--caller` (or the OS user) with `--caller-claims`.
fn wrap_caller(args: &WrapArgs) -> anyhow::Result<warden::plugin::instances::Caller> {
    let subject = match &args.caller {
        Some(name) => name.clone(),
        None => std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "local".into()),
    };
    let claims = match args.caller_claims.as_deref() {
        None => "{}".to_owned(),
        Some(text) => {
            let text = match text.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path).with_context(|| format!("--caller-claims: {path}"))?,
                None => text.to_owned(),
            };
            warden::jsonrpc::strict_object(&text).ok_or_else(|| {
                anyhow::anyhow!("--caller-claims: not one JSON object (duplicate keys and invalid text are refused)")
            })?
        }
    };
    Ok(warden::plugin::instances::Caller { subject, claims })
}

/// `warden plugin check`: prints what the component is and whether it loads; exit 1 if not.
async fn check_main(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let cache_dir = args.cache_dir.or_else(warden::plugin::cache::default_dir);
    let runtime = Runtime::new(RuntimeOptions { cache_dir, audit: warden::audit::AuditSink::disabled() })?;
    let manifest_path = args.config.clone().unwrap_or_else(|| args.wasm.with_extension("toml"));
    let report = async {
        let manifest = Manifest::load(&manifest_path)?;
        let (imports, exports) = runtime.surface(&args.wasm)?;
        let plugin = runtime.load_with(&args.wasm, manifest).await?;
        Ok::<_, warden::plugin::LoadError>((imports, exports, plugin))
    };
    match report.await {
        Ok((imports, exports, plugin)) => {
            println!("{}: ok", args.wasm.display());
            println!("  digest:    sha256:{}", plugin.digest);
            let served = format!("this Warden serves {}", versions::SERVED.join(", "));
            println!("  wit:       warden:interceptor@{} ({served})", plugin.wit_version());
            println!("  exports:   {}", exports.join(", "));
            println!("  imports:   {}", imports.join(", "));
            println!("  requests:  {}", plugin.requests.describe());
            println!("  responses: {}", plugin.responses.describe());
            println!(
                "  config:    {} (init accepted it)",
                if manifest_path.exists() { manifest_path.display().to_string() } else { "none".to_owned() }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{}: refused: {e}", args.wasm.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Logs on stderr (`WARDEN_LOG`), and trace spans to an OTLP receiver when one is given.
fn start_logging(otlp: Option<&str>, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Option<traces::Exporter>> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| "warden=info,info".into());
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_filter(filter)
        .with_filter(tracing_subscriber::filter::filter_fn(|m| m.target() != traces::TARGET));
    let (exporter, spans) = match otlp {
        Some(endpoint) => {
            let (exporter, tracer) = traces::start(endpoint, runtime.handle().clone())?;
            let spans = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(tracing_subscriber::filter::filter_fn(|m| m.target() == traces::TARGET));
            (Some(exporter), Some(spans))
        }
        None => (None, None),
    };
    tracing_subscriber::registry().with(logs).with(spans).init();
    Ok(exporter)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One session needs one thread: in `wrap` every hop between the two pipes
    // stays on it, with no cross-thread wake-ups on the hot path. The gateway
    // serves many sessions and uses every core, unless told how many threads.
    let mut builder = match &cli.command {
        Command::Wrap(_) => tokio::runtime::Builder::new_current_thread(),
        Command::Serve(args) if args.threads == 1 => tokio::runtime::Builder::new_current_thread(),
        Command::Plugin(_) | Command::Config(_) | Command::Pins(_) | Command::Audit(_) => {
            tokio::runtime::Builder::new_current_thread()
        }
        Command::Serve(args) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if args.threads > 1 {
                builder.worker_threads(args.threads);
            }
            builder
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warden: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let otlp = match &cli.command {
        Command::Wrap(args) => args.common.otlp_endpoint.clone(),
        Command::Serve(args) => args.common.otlp_endpoint.clone(),
        _ => None,
    };
    let exporter = match start_logging(otlp.as_deref(), &runtime) {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("warden: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Wrap(args) => runtime.block_on(wrap_main(*args)),
        Command::Serve(args) => runtime.block_on(serve_main(*args)),
        Command::Plugin(PluginCommand::Check(args)) => runtime.block_on(check_main(args)),
        Command::Pins(PinsCommand::Accept { name, config }) => {
            let separator = warden::config::gateway::load(&config).map(|c| c.separator);
            match separator {
                Ok(separator) => match warden::gateway::pins::accept(&config, &separator, &name) {
                    Ok(0) => {
                        println!("{name}: nothing pinned under that name");
                        Ok(ExitCode::FAILURE)
                    }
                    Ok(n) => {
                        println!("{name}: {n} pin(s) forgotten; the next listing pins the new definition");
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => Err(anyhow::anyhow!("pins of {}: {e}", config.display())),
                },
                Err(e) => {
                    println!("{e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Config(ConfigCommand::Check { file }) => match warden::config::gateway::load(&file) {
            Ok(config) => {
                if let Some((cert, key)) = &config.tls {
                    if let Err(e) = warden::serve::tls::Tls::load(cert, key) {
                        println!("{}: serve: {e}", file.display());
                        return ExitCode::FAILURE;
                    }
                }
                println!("{}: ok", file.display());
                for upstream in &config.upstreams {
                    let reach = match &upstream.reach {
                        warden::config::gateway::Reach::Command { command, .. } => {
                            format!("command {}", command.first().map(String::as_str).unwrap_or_default())
                        }
                        warden::config::gateway::Reach::Remote { url, .. } => {
                            format!("url {}", warden::config::gateway::shown_url(url))
                        }
                    };
                    println!("  upstream {}: {reach}", upstream.name);
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                println!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Audit(command) => audit_main(command),
        Command::Plugin(PluginCommand::New(args)) => {
            match warden::scaffold::new_plugin(args.lang, &args.name, &args.dir) {
                Ok(root) => {
                    println!("{}: build it with {}/build.sh", root.display(), root.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(e),
            }
        }
    };
    // The last spans go out while the runtime still runs their client.
    if let Some(exporter) = exporter {
        runtime.block_on(async {
            let _ = tokio::task::spawn_blocking(move || exporter.shutdown()).await;
        });
    }
    // A read of a terminal stdin may still be parked on a blocking thread: do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The upstream the command line names: a gateway config, a command or a URL.
fn target(command: Vec<String>, url: Option<&str>, common: &Common) -> anyhow::Result<Target> {
    if let Some(file) = &common.config {
        if !command.is_empty() || url.is_some() {
            anyhow::bail!("--config names the upstreams: give no command or URL beside it");
        }
        let config = warden::config::gateway::load(file)?;
        return Ok(Target::Gateway(Arc::new(config)));
    }
    Ok(Target::from_parts(command, remote_options(url, common)?, common.probe_era)?)
}

fn remote_options(url: Option<&str>, common: &Common) -> Result<Option<RemoteOptions>, RemoteError> {
    RemoteOptions::gather(url, &common.headers, &common.headers_from_env, &common.headers_from_file)
}

fn cache_dir(common: &Common) -> Option<PathBuf> {
    if common.no_cache {
        None
    } else {
        common.cache_dir.clone().or_else(warden::plugin::cache::default_dir)
    }
}

/// `warden audit keygen | verify`.
fn audit_main(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Keygen { dir } => {
            let (key, public, fingerprint) = warden::audit::keys::generate(&dir)?;
            println!("{}: the signing key (keep it secret; give it to --audit-key)", key.display());
            println!("{}: the public key (give it to `warden audit verify --public-key`)", public.display());
            println!("fingerprint {fingerprint}");
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { files, public_key } => {
            let key = warden::audit::keys::PublicKey::load(&public_key)?;
            let mut read = Vec::new();
            for file in &files {
                let bytes = std::fs::read(file).with_context(|| file.display().to_string())?;
                read.push((file.display().to_string(), bytes));
            }
            let report = warden::audit::verify::verify(&read, &key);
            for problem in &report.problems {
                println!("{problem}");
            }
            println!(
                "{} record(s) in {} file(s), {} checkpoint(s) verified, {} record(s) signed: {}",
                report.records,
                files.len(),
                report.checkpoints,
                report.signed,
                if report.whole() { "the trail is whole and signed" } else { "NOT a whole, signed trail" }
            );
            Ok(if report.whole() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

/// The audit trail: `--audit` and its flags, or `[audit]` of the config (the flags win).
fn open_audit(common: &Common, upstream: &Target) -> anyhow::Result<AuditTrail> {
    let configured = match upstream {
        Target::Gateway(config) => config.audit.clone(),
        _ => Default::default(),
    };
    let Some(path) = common.audit.clone().or(configured.file) else {
        if common.audit_key.is_some() || common.audit_required {
            anyhow::bail!("--audit-key and --audit-required need an audit file (--audit FILE, or [audit] file)");
        }
        return Ok(AuditTrail::open(None)?);
    };
    let mut options = warden::audit::TrailOptions::new(&path);
    if let Some(key) = common.audit_key.clone().or(configured.key) {
        let signer = warden::audit::keys::Signer::load(&key).with_context(|| "--audit-key".to_string())?;
        options.signer = Some(signer);
    }
    if let Some(every) = common.audit_checkpoint_every.or(configured.checkpoint_every) {
        anyhow::ensure!(every > 0, "--audit-checkpoint-every: give at least 1");
        options.checkpoint_every = every;
    }
    if let Some(interval) = configured.checkpoint_interval {
        options.checkpoint_after = interval;
    }
    options.max_bytes = common.audit_max_bytes.or(configured.max_bytes);
    options.max_age = common.audit_max_age.or(configured.max_age);
    options.sync_always = match common.audit_sync {
        Some(SyncArg::Always) => true,
        Some(SyncArg::Batch) => false,
        None => configured.sync == warden::config::gateway::AuditSync::Always,
    };
    options.required = common.audit_required || configured.required;
    options.include_arguments = common.audit_include_arguments || configured.include_arguments;
    AuditTrail::open(Some(options)).with_context(|| format!("--audit {}", path.display()))
}

/// The admin listener: `--admin-listen` and `--admin-token-file`, or `[admin]` of the config.
async fn start_admin(common: &Common, upstream: &Target) -> anyhow::Result<Option<warden::admin::Admin>> {
    let configured = match upstream {
        Target::Gateway(config) => config.admin.clone(),
        _ => Default::default(),
    };
    let Some(listen) = common.admin_listen.or(configured.listen) else {
        if common.admin_token_file.is_some() {
            anyhow::bail!("--admin-token-file needs an admin listener (--admin-listen ADDR, or [admin] listen)");
        }
        return Ok(None);
    };
    let token_file = common.admin_token_file.clone().or(configured.token_file);
    let options = warden::admin::AdminOptions { listen, token_file };
    Ok(Some(warden::admin::start(&options).await?))
}

async fn wrap_main(args: WrapArgs) -> anyhow::Result<ExitCode> {
    let caller = wrap_caller(&args)?;
    let upstream = target(args.command, args.url.as_deref(), &args.common)?;
    let _admin = start_admin(&args.common, &upstream).await?;
    let trail = open_audit(&args.common, &upstream)?;
    let audit = trail.sink();
    let options = WrapOptions {
        plugins: args.common.plugins.clone(),
        upstream,
        upstream_name: args.common.name.clone(),
        max_message_bytes: args.common.max_message_bytes,
        cache_dir: cache_dir(&args.common),
        audit,
        watch: !args.common.no_watch,
        exit_grace: std::time::Duration::from_millis(args.exit_grace_ms),
        caller: Some(caller),
    };
    let exit = wrap::run(options, shutdown_signal()).await;
    trail.close();
    Ok(match exit? {
        SessionEnd::Clean => ExitCode::SUCCESS,
        SessionEnd::UpstreamFailedOnShutdown(status) => {
            tracing::warn!("upstream exited with {status} after the client left");
            ExitCode::FAILURE
        }
        SessionEnd::UpstreamDied(status) => {
            tracing::error!("exiting: the upstream server exited ({status}) while the client was connected");
            ExitCode::from(2)
        }
    })
}

async fn serve_main(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let clients = match &args.client_tokens {
        Some(path) => Some(Arc::new(Clients::load(path).context("--client-tokens")?)),
        None => None,
    };
    let upstream = target(args.command, args.upstream_url.as_deref(), &args.common)?;
    let _admin = start_admin(&args.common, &upstream).await?;
    let trail = open_audit(&args.common, &upstream)?;
    let audit = trail.sink();
    // `[serve]` of the config applies unless the command line says otherwise.
    let (configured, configured_tls, configured_auth) = match &upstream {
        Target::Gateway(config) => (config.listen, config.tls.clone(), config.auth.clone()),
        _ => (None, None, None),
    };
    let auth = match args.oauth_issuer.clone() {
        Some(issuer) => Some(warden::serve::oauth::OAuthConfig {
            issuer,
            audience: args.oauth_audience.clone(),
            jwks: match (&args.oauth_jwks_url, &args.oauth_jwks_file) {
                (Some(url), _) => Some(warden::serve::oauth::JwksSource::Url(url.clone())),
                (None, Some(file)) => Some(warden::serve::oauth::JwksSource::File(file.clone())),
                (None, None) => None,
            },
            required_scopes: args.oauth_scopes.clone(),
        }),
        None => configured_auth,
    };
    let oauth = match auth {
        Some(config) => {
            let server = Arc::new(warden::serve::oauth::ResourceServer::new(config));
            match server.warm().await {
                Ok(()) => tracing::info!("access tokens are checked against the identity provider's keys"),
                Err(why) => {
                    tracing::error!("the identity provider's keys cannot be had yet (token calls get 503): {why}")
                }
            }
            Some(server)
        }
        None => None,
    };
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        _ => configured_tls,
    };
    let tls = tls.map(|(cert, key)| serve::tls::Tls::load(&cert, &key)).transpose()?;
    let listen = args.listen.or(configured).unwrap_or(std::net::SocketAddr::from(([127, 0, 0, 1], 8080)));
    let options = ServeOptions {
        listen,
        path: args.path,
        plugins: args.common.plugins.clone(),
        upstream,
        upstream_name: args.common.name.clone(),
        max_message_bytes: args.common.max_message_bytes,
        max_body_bytes: args.max_body_bytes,
        allowed_origins: args.allowed_origins,
        allowed_hosts: args.allowed_hosts,
        session_idle: std::time::Duration::from_secs(args.session_idle_secs),
        max_sessions: args.max_sessions,
        max_sessions_per_caller: args.max_sessions_per_caller.max(1),
        max_backings_per_caller: args.max_backings_per_caller.max(1),
        limits: serve::listener::ConnectionLimits {
            max_connections: args.max_connections.max(1),
            header_timeout: std::time::Duration::from_millis(args.header_timeout_ms.max(1)),
            body_timeout: std::time::Duration::from_millis(args.body_timeout_ms.max(1)),
            drain: std::time::Duration::try_from_secs_f64(args.drain_secs).unwrap_or_default(),
        },
        cache_dir: cache_dir(&args.common),
        audit,
        watch: !args.common.no_watch,
        clients,
        tls,
        oauth,
        main_path: None,
    };
    let result = serve::run(options, shutdown_signal()).await;
    trail.close();
    Ok(result.map(|()| ExitCode::SUCCESS)?)
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled, so that a signal arriving
/// during start-up is not taken by the default action (an abrupt exit).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
