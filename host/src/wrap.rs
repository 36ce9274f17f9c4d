//! `warden wrap`: Warden as a stdio MCP server in front of a stdio MCP server.
//!
//! The client speaks to Warden's stdin/stdout; Warden starts the real server as
//! its child and speaks to the child's stdin/stdout. stdout carries protocol
//! messages only: logs go to stderr.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;

use crate::audit::AuditSink;
use crate::plugin::instances::{Caller, SessionFacts, Transport};
use crate::plugin::{Instances, Plugins, Runtime, RuntimeOptions};
use crate::relay::Relay;
use crate::session::{self, SessionEnd};
use crate::start::StartError;
use crate::transport::framing::{self, LineCodec};
use crate::transport::stdio;
use crate::transport::QUEUE;
use crate::upstream::{Opening, Target};

/// Everything `warden wrap` needs.
#[derive(Debug, Clone)]
pub struct WrapOptions {
    /// The plugins folder; `None` runs with an empty chain.
    pub plugins: Option<PathBuf>,
    /// The server it fronts.
    pub upstream: Target,
    /// The upstream's name in plugin contexts and audit records.
    pub upstream_name: Option<String>,
    /// Largest message accepted either way.
    pub max_message_bytes: usize,
    /// Precompiled-component cache.
    pub cache_dir: Option<PathBuf>,
    /// Audit events sink.
    pub audit: AuditSink,
    /// Reload the plugins folder when it changes (SIGHUP reloads either way).
    pub watch: bool,
    /// How long the server has to exit once the client is gone (or a signal
    /// came) before it is killed.
    pub exit_grace: std::time::Duration,
    /// Who the client is, as plugins see it (`--caller`, `--caller-claims`).
    pub caller: Option<Caller>,
}

/// Runs `warden wrap` on this process's stdin/stdout until the client leaves,
/// the upstream dies or `shutdown` resolves.
pub async fn run(options: WrapOptions, shutdown: impl Future<Output = ()>) -> Result<SessionEnd, StartError> {
    let runtime = Runtime::new(RuntimeOptions { cache_dir: options.cache_dir.clone(), audit: options.audit.clone() })?;
    let (upstream, _gateway_watches) = crate::gateway::prepare(
        options.upstream.clone(),
        &runtime,
        &options.audit,
        Transport::Stdio,
        options.max_message_bytes,
        options.watch,
    )
    .await?;
    let plugins = Plugins::load(runtime, options.plugins.clone()).await?;
    tracing::info!(plugins = plugins.current().plugins().len(), "chain ready");
    crate::telemetry::health::HEALTH.plugins_loaded();
    let _watching = plugins.watch(options.watch)?;
    let options = WrapOptions { upstream, ..options };
    run_with(plugins, options, stdio::stdin(), stdio::stdout(), shutdown).await
}

/// [`run`] over any client streams, with the plugins loaded.
pub async fn run_with<R, W>(
    plugins: Arc<Plugins>,
    options: WrapOptions,
    client_in: R,
    client_out: W,
    shutdown: impl Future<Output = ()>,
) -> Result<SessionEnd, StartError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let upstream_name = options.upstream.name(options.upstream_name.as_deref());
    let opening = Opening {
        caller: options.caller.as_ref().map(|c| Arc::from(c.subject.as_str())),
        claims: options.caller.as_ref().map(|c| Arc::from(c.claims.as_str())),
        ..Opening::default()
    };
    let (upstream, to_upstream) = options.upstream.start(upstream_name.clone(), &opening, options.max_message_bytes)?;
    let (to_client, client_rx) = mpsc::channel(QUEUE);
    let client_writer = tokio::spawn(framing::write_lines(client_rx, client_out));

    let session = SessionFacts {
        id: None,
        upstream: upstream_name,
        caller: options.caller.clone(),
        protocol_version: None,
        transport: Transport::Stdio,
    };
    let instances = Instances::new(plugins.runtime().clone(), plugins.current(), session);
    let relay = Relay::new(instances, to_client, to_upstream, options.audit.clone(), options.max_message_bytes)
        .follow(plugins.subscribe())
        .stream_to_client(true)
        .stream_to_upstream(upstream.takes_pieces());
    let relay = if matches!(options.upstream, Target::Virtual(_)) { relay.in_gateway(true) } else { relay };
    let _gauge = crate::telemetry::metrics::SessionGauge::open("stdio", "handshake");
    let codec = LineCodec::streaming(options.max_message_bytes, crate::transport::STREAM_FROM);
    let from_client = FramedRead::with_capacity(client_in, codec, crate::transport::READ_BUFFER);
    let exit = session::drive(relay, upstream, from_client, shutdown, options.exit_grace).await;

    // The relay is gone, so the client queue is closed: the writer flushes and finishes.
    match client_writer.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("client writer: {e}"),
        Err(e) => tracing::error!("client writer: {e}"),
    }
    Ok(exit)
}
