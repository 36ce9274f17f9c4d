//! One client session in front of one stdio upstream: the loop that feeds the relay.
//!
//! The same loop serves `warden wrap` (the client is Warden's stdin) and each
//! session of `warden serve` (the client is a queue fed by HTTP requests).

use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt};

use crate::relay::Relay;
use crate::transport::framing::Frame;
use crate::upstream::Upstream;

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
            frame = upstream.next(), if relay.upstream_ready() => match frame {
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
                tracing::warn!(upstream = %upstream.name(), "upstream still open {grace:?} after its input closed; stopping it");
                out_of_time = true;
                break;
            }
        }
    }

    // The upstream's output has ended: it exited or is about to.
    let (clean, status_text) = upstream.exit_status(if out_of_time { Duration::ZERO } else { grace }).await;
    let end = if client_open {
        let pending = relay.pending_upstream();
        relay.upstream_gone(&format!("exited ({status_text})")).await;
        tracing::error!(upstream = %upstream.name(), "upstream exited ({status_text}) while the client was connected; {pending} pending request(s) answered with errors");
        SessionEnd::UpstreamDied(status_text)
    } else if clean || out_of_time {
        // Killed for outliving its grace: said above; the client's leaving was clean.
        SessionEnd::Clean
    } else {
        SessionEnd::UpstreamFailedOnShutdown(status_text)
    };
    // Dropping the relay closes its queues; the upstream writer finishes.
    drop(relay);
    upstream.finish().await;
    end
}
