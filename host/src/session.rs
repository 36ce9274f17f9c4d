//! One client session in front of one stdio upstream: the loop that feeds the relay.
//!
//! The same loop serves `warden wrap` (the client is Warden's stdin) and each
//! session of `warden serve` (the client is a queue fed by HTTP requests).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

use crate::relay::Relay;
use crate::transport::framing::{self, Frame, LineCodec, Outgoing};
use crate::upstream::child::{self, SpawnError};

/// Queue length between the relay and each writer.
pub const QUEUE: usize = 1024;

/// Read buffer of each stream.
pub const READ_BUFFER: usize = 64 * 1024;

/// A line still unfinished at this many bytes is handed to the relay in pieces,
/// so that a message no plugin wants is passed on while it arrives.
pub const STREAM_FROM: usize = 64 * 1024;

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// The client left and the upstream exited cleanly.
    Clean,
    /// The client left; the upstream then exited with this failure.
    UpstreamFailedOnShutdown(String),
    /// The upstream went away while the client was still there.
    UpstreamDied(String),
}

/// What the upstream sends, as frames.
pub type Output = Pin<Box<dyn futures::Stream<Item = std::io::Result<Frame>> + Send>>;

/// A started upstream: its output as frames, and what must be waited for once it ends.
pub struct Upstream {
    name: Arc<str>,
    output: Output,
    kind: Kind,
    /// Whether a layer between it and the relay wants whole messages.
    layered: bool,
}

enum Kind {
    /// A child process and the task writing its stdin.
    Child { process: Child, writer: JoinHandle<std::io::Result<()>> },
    /// A remote server, and the task that talks to it.
    Remote { pump: JoinHandle<()> },
}

impl Upstream {
    /// Starts `command`; returns the upstream and the queue that feeds its stdin.
    pub fn start(
        name: Arc<str>,
        command: &[String],
        max_message_bytes: usize,
    ) -> Result<(Upstream, mpsc::Sender<Outgoing>), SpawnError> {
        let server = child::spawn(command)?;
        tracing::info!(upstream = %name, pid = server.process.id(), "upstream started");
        let (to_upstream, upstream_rx) = mpsc::channel(QUEUE);
        let writer = tokio::spawn(framing::write_lines(upstream_rx, server.stdin));
        let output =
            FramedRead::with_capacity(server.stdout, LineCodec::streaming(max_message_bytes, STREAM_FROM), READ_BUFFER);
        let kind = Kind::Child { process: server.process, writer };
        Ok((Upstream { name, output: Box::pin(output), kind, layered: false }, to_upstream))
    }

    /// A remote upstream whose `pump` task turns what the relay sends into
    /// requests and their answers into `output`.
    pub fn remote(name: Arc<str>, output: Output, pump: JoinHandle<()>) -> Upstream {
        Upstream { name, output, kind: Kind::Remote { pump }, layered: false }
    }

    /// Puts a layer between it and the relay: `layer` takes its output and
    /// gives what the relay reads instead (see [`crate::upstream::bridge`]).
    pub fn map_output(mut self, layer: impl FnOnce(Output) -> Output) -> Upstream {
        let output = std::mem::replace(&mut self.output, Box::pin(futures::stream::empty()));
        self.output = layer(output);
        self.layered = true;
        self
    }

    /// Whether messages to it may be written in pieces as they arrive.
    pub fn takes_pieces(&self) -> bool {
        matches!(self.kind, Kind::Child { .. }) && !self.layered
    }
}

/// Feeds the relay from `client` and the upstream until the upstream's output
/// ends. The client ending (or `shutdown`) closes the upstream's input; the
/// upstream then drains and exits. If the upstream dies first, every request
/// it still owed is answered with an error.
///
/// Once the client is gone, the upstream has `grace` to finish: a server that
/// keeps its output open past it is killed, so Warden always exits.
pub async fn drive<S>(
    mut relay: Relay,
    mut upstream: Upstream,
    mut client: S,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> SessionEnd
where
    S: Stream<Item = std::io::Result<Frame>> + Unpin,
{
    let mut client_open = true;
    let mut shutdown = std::pin::pin!(shutdown);
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    let finish_by = tokio::time::sleep_until(far);
    let mut finish_by = std::pin::pin!(finish_by);
    let mut out_of_time = false;
    loop {
        if !client_open && finish_by.deadline() == far {
            finish_by.as_mut().reset(tokio::time::Instant::now() + grace);
        }
        let client_ready = relay.client_ready();
        tokio::select! {
            () = relay.until_ready(), if !client_ready => {}
            frame = client.next(), if client_open && client_ready => match frame {
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
            frame = upstream.output.next(), if relay.upstream_ready() => match frame {
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
            () = &mut finish_by, if !client_open => {
                tracing::warn!(upstream = %upstream.name, "upstream still open {grace:?} after its input closed; stopping it");
                out_of_time = true;
                break;
            }
        }
    }

    // The upstream's output has ended: it exited or is about to.
    let (clean, status_text) = match &mut upstream.kind {
        Kind::Child { process, .. } => {
            match child::reap(process, if out_of_time { Duration::ZERO } else { grace }).await {
                Ok(s) => (s.success(), s.to_string()),
                Err(e) => (false, format!("could not be waited for ({e})")),
            }
        }
        Kind::Remote { .. } => (true, "stopped answering".to_owned()),
    };
    let end = if client_open {
        let pending = relay.pending_upstream();
        relay.upstream_gone(&format!("exited ({status_text})")).await;
        tracing::error!(upstream = %upstream.name, "upstream exited ({status_text}) while the client was connected; {pending} pending request(s) answered with errors");
        SessionEnd::UpstreamDied(status_text)
    } else if clean || out_of_time {
        // Killed for outliving its grace: said above; the client's leaving was clean.
        SessionEnd::Clean
    } else {
        SessionEnd::UpstreamFailedOnShutdown(status_text)
    };
    // Dropping the relay closes its queues; the upstream writer finishes.
    drop(relay);
    match upstream.kind {
        Kind::Child { writer, .. } => match writer.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("upstream writer: {e}"),
            Err(e) => tracing::error!("upstream writer: {e}"),
        },
        Kind::Remote { pump } => {
            if let Err(e) = pump.await {
                tracing::error!("upstream connection: {e}");
            }
        }
    }
    end
}
