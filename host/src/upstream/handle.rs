//! A started upstream, whatever it is: its output as frames, and what must be
//! waited for once it ends (a child process and its stdin writer, or the task
//! that talks to a remote server).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

use super::child::{self, SpawnError};
use crate::transport::framing::{self, Frame, LineCodec, Outgoing};
use crate::transport::{QUEUE, READ_BUFFER, STREAM_FROM};

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
        Upstream::start_with(name, command, None, max_message_bytes)
    }

    /// [`Upstream::start`] with the child's environment and folder.
    pub fn start_with(
        name: Arc<str>,
        command: &[String],
        env: Option<&child::ChildEnv>,
        max_message_bytes: usize,
    ) -> Result<(Upstream, mpsc::Sender<Outgoing>), SpawnError> {
        let server = child::spawn_with(command, env)?;
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
    /// gives what the relay reads instead (see [`super::bridge`]).
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

    /// Its name in logs and plugin contexts.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The next frame it sent; `None` once its output has ended.
    pub async fn next(&mut self) -> Option<std::io::Result<Frame>> {
        self.output.next().await
    }

    /// Once its output has ended: waits up to `grace` for a child to exit
    /// (killing it after), and says whether it ended cleanly and how.
    pub async fn exit_status(&mut self, grace: Duration) -> (bool, String) {
        match &mut self.kind {
            Kind::Child { process, .. } => match child::reap(process, grace).await {
                Ok(s) => (s.success(), s.to_string()),
                Err(e) => (false, format!("could not be waited for ({e})")),
            },
            Kind::Remote { .. } => (true, "stopped answering".to_owned()),
        }
    }

    /// Waits for the task that fed it to finish (its input queue closed first).
    pub async fn finish(self) {
        match self.kind {
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
    }
}
