//! The `warden` command line. Thin: parse, set up logging on stderr, run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use warden::audit::AuditSink;
use warden::config::defaults;
use warden::wrap::{self, WrapExit, WrapOptions};

#[derive(Parser)]
#[command(name = "warden", version, about = "An MCP proxy with sandboxed WebAssembly plugins")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a stdio MCP server behind Warden: `warden wrap --plugins DIR -- CMD ARGS...`
    Wrap(WrapArgs),
}

#[derive(clap::Args)]
struct WrapArgs {
    /// Folder of plugins (`*.wasm`, each with an optional `.toml`).
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// Append audit events as JSON lines to this file.
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Largest JSON-RPC message accepted, in bytes.
    #[arg(long, default_value_t = defaults::MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Cache of precompiled plugins (default: $XDG_CACHE_HOME/warden or ~/.cache/warden).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Do not cache precompiled plugins.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
    /// Name of the upstream in plugin contexts and audit records (default: the program name).
    #[arg(long)]
    name: Option<String>,
    /// The upstream server command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| "warden=info,info".into()),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warden: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Wrap(args) => runtime.block_on(wrap_main(args)),
    };
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

async fn wrap_main(args: WrapArgs) -> anyhow::Result<ExitCode> {
    let (audit, writer) = match &args.audit {
        Some(path) => {
            let (sink, writer) = AuditSink::open(path).with_context(|| format!("--audit {}", path.display()))?;
            (sink, Some(writer))
        }
        None => (AuditSink::disabled(), None),
    };
    let cache_dir = if args.no_cache { None } else { args.cache_dir.or_else(default_cache_dir) };
    let options = WrapOptions {
        plugins: args.plugins,
        command: args.command,
        upstream_name: args.name,
        max_message_bytes: args.max_message_bytes,
        cache_dir,
        audit,
    };
    let exit = wrap::run(options, shutdown_signal()).await;
    // Every sink clone lived in the run; once it returns the writer can drain.
    if let Some(writer) = writer {
        tokio::task::spawn_blocking(move || writer.finish()).await.ok();
    }
    Ok(match exit? {
        WrapExit::Clean => ExitCode::SUCCESS,
        WrapExit::UpstreamFailedOnShutdown(status) => {
            tracing::warn!("upstream exited with {status} after the client left");
            ExitCode::FAILURE
        }
        WrapExit::UpstreamDied(status) => {
            tracing::error!("exiting: the upstream server exited ({status}) while the client was connected");
            ExitCode::from(2)
        }
    })
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("warden"))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
