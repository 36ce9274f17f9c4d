//! `warden wrap`: Warden as a stdio MCP server in front of a stdio MCP server.
//!
//! The client speaks to Warden's stdin/stdout; Warden starts the real server as
//! its child and speaks to the child's stdin/stdout. stdout carries protocol
//! messages only: logs go to stderr.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;

use crate::audit::AuditSink;
use crate::plugin::instances::Session;
use crate::plugin::{Chain, Instances, Runtime, RuntimeOptions};
use crate::relay::{self, Relay};
use crate::transport::framing::{self, LineCodec};
use crate::transport::stdio;
use crate::upstream::child;

/// Queue length between the relay and each writer.
const QUEUE: usize = 1024;

/// Everything `warden wrap` needs.
#[derive(Debug, Clone)]
pub struct WrapOptions {
    /// The plugins folder; `None` runs with an empty chain.
    pub plugins: Option<PathBuf>,
    /// The upstream server command and its arguments.
    pub command: Vec<String>,
    /// The upstream's name in plugin contexts and audit records.
    pub upstream_name: Option<String>,
    /// Largest message accepted either way.
    pub max_message_bytes: usize,
    /// Precompiled-component cache.
    pub cache_dir: Option<PathBuf>,
    /// Audit events sink.
    pub audit: AuditSink,
}

/// How a `wrap` run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum WrapExit {
    /// The client closed its input and the upstream exited cleanly.
    Clean,
    /// The client closed its input; the upstream then exited with this failure.
    UpstreamFailedOnShutdown(String),
    /// The upstream went away while the client was still connected.
    UpstreamDied(String),
}

/// Runs `warden wrap` on this process's stdin/stdout until the client leaves,
/// the upstream dies or `shutdown` resolves.
pub async fn run(options: WrapOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<WrapExit> {
    let runtime = Runtime::new(RuntimeOptions { cache_dir: options.cache_dir.clone(), audit: options.audit.clone() })?;
    let chain = match &options.plugins {
        Some(dir) => runtime.load_dir(dir).await?,
        None => Chain::default(),
    };
    tracing::info!(plugins = chain.plugins().len(), "chain ready");
    run_with(runtime, Arc::new(chain), options, stdio::stdin(), stdio::stdout(), shutdown).await
}

/// [`run`] over any client streams, with a loaded chain.
pub async fn run_with<R, W>(
    runtime: Arc<Runtime>,
    chain: Arc<Chain>,
    options: WrapOptions,
    client_in: R,
    client_out: W,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<WrapExit>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let upstream_name = match &options.upstream_name {
        Some(name) => Arc::from(name.as_str()),
        None => relay::default_upstream_name(&options.command),
    };
    let mut server = child::spawn(&options.command)?;
    tracing::info!(upstream = %upstream_name, pid = server.process.id(), "upstream started");

    let (to_client, client_rx) = mpsc::channel(QUEUE);
    let (to_upstream, upstream_rx) = mpsc::channel(QUEUE);
    let client_writer = tokio::spawn(framing::write_lines(client_rx, client_out));
    let upstream_writer = tokio::spawn(framing::write_lines(upstream_rx, server.stdin));

    let session = Session { id: None, upstream: upstream_name.clone(), caller: None, protocol_version: None };
    let instances = Instances::new(runtime, chain, session);
    let mut relay = Relay::new(instances, to_client, to_upstream, options.audit.clone(), options.max_message_bytes);

    let mut from_client = FramedRead::new(client_in, LineCodec::new(options.max_message_bytes));
    let mut from_upstream = FramedRead::new(server.stdout, LineCodec::new(options.max_message_bytes));
    let mut client_open = true;
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        tokio::select! {
            frame = from_client.next(), if client_open => match frame {
                Some(Ok(frame)) => relay.from_client(frame).await,
                Some(Err(e)) => {
                    tracing::warn!("client input failed: {e}; closing upstream input");
                    client_open = false;
                    relay.close_upstream();
                }
                None => {
                    tracing::info!("client closed its input; closing upstream input");
                    client_open = false;
                    relay.close_upstream();
                }
            },
            frame = from_upstream.next() => match frame {
                Some(Ok(frame)) => relay.from_upstream(frame).await,
                Some(Err(e)) => {
                    tracing::warn!("upstream output failed: {e}");
                    break;
                }
                None => break,
            },
            () = &mut shutdown, if client_open => {
                tracing::info!("shutting down; closing upstream input");
                client_open = false;
                relay.close_upstream();
            }
        }
    }

    // The upstream's output has ended: it exited or is about to.
    let status = child::reap(&mut server.process).await;
    let status_text = match &status {
        Ok(s) => s.to_string(),
        Err(e) => format!("could not be waited for ({e})"),
    };
    let exit = if client_open {
        let pending = relay.pending_upstream();
        relay.upstream_gone(&format!("exited ({status_text})")).await;
        tracing::error!(upstream = %upstream_name, "upstream exited ({status_text}) while the client was connected; {pending} pending request(s) answered with errors");
        WrapExit::UpstreamDied(status_text)
    } else if matches!(&status, Ok(s) if s.success()) {
        WrapExit::Clean
    } else {
        WrapExit::UpstreamFailedOnShutdown(status_text)
    };

    // Dropping the relay closes both queues; the writers flush and finish.
    drop(relay);
    for (name, writer) in [("client", client_writer), ("upstream", upstream_writer)] {
        match writer.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("{name} writer: {e}"),
            Err(e) => tracing::error!("{name} writer: {e}"),
        }
    }
    Ok(exit)
}
