//! The gateway's front door: accepting connections without being worn down.
//!
//! - At most `max_connections` at once; one more is told `503` and closed.
//! - A client must send a request's headers within `header_timeout` (also
//!   the time an idle keep-alive connection is kept: hyper starts the same
//!   timer while it waits for the next request), and its body within
//!   `body_timeout`.
//! - An accept that fails (out of file descriptors, say) is retried after a
//!   growing pause, and said in the log at most once a second, so a full
//!   descriptor table neither spins the loop nor floods stderr.
//! - On shutdown, accepting stops and every connection is asked to finish
//!   gracefully: calls in flight run to their answer, idle connections close.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

/// Connection limits and timeouts (see the module docs).
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time to send a request's headers, and to start the next one.
    pub header_timeout: Duration,
    /// Time to send a request's body.
    pub body_timeout: Duration,
    /// How long shutdown waits for calls in flight.
    pub drain: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            drain: Duration::from_secs(10),
        }
    }
}

/// Counts what is open, and wakes whoever waits for it to reach zero.
#[derive(Debug, Default)]
pub struct Gauge {
    open: AtomicUsize,
    zero: Notify,
}

/// One unit held open on a [`Gauge`]; dropping it lets go.
#[derive(Debug)]
pub struct Held(Arc<Gauge>);

impl Gauge {
    /// Holds one more, unless `limit` are held already.
    pub fn hold(self: &Arc<Self>, limit: usize) -> Option<Held> {
        let mut now = self.open.load(Ordering::Acquire);
        loop {
            if now >= limit {
                return None;
            }
            match self.open.compare_exchange_weak(now, now + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(Held(self.clone())),
                Err(seen) => now = seen,
            }
        }
    }

    /// How many are held.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Resolves once none is held.
    pub async fn until_zero(&self) {
        loop {
            let woken = self.zero.notified();
            if self.open() == 0 {
                return;
            }
            woken.await;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.zero.notify_waiters();
        }
    }
}

/// Accepts connections until `stop` turns true, handing each to `serve`
/// with the signal it should finish on.
pub async fn accept_until<F, Fut>(
    listener: TcpListener,
    limits: &ConnectionLimits,
    connections: Arc<Gauge>,
    mut stop: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr, watch::Receiver<bool>, Held) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut failures = AcceptFailures::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stop) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                failures.reset();
                match connections.hold(limits.max_connections) {
                    Some(held) => {
                        tokio::spawn(serve(stream, peer, stop.clone(), held));
                    }
                    None => {
                        tracing::warn!(%peer, limit = limits.max_connections, "connection refused: too many open");
                        tokio::spawn(refuse(stream));
                    }
                }
            }
            Err(e) => {
                let pause = failures.failed(&e);
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = stopped(&mut stop) => return,
                }
            }
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// A connection over the cap: a short `503` and close, never a hang.
async fn refuse(mut stream: TcpStream) {
    let body = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-31052,"message":"too many connections","data":{"warden":"too-many-connections"}}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// Backoff and a rate-limited log line for failing accepts.
#[derive(Debug, Default)]
struct AcceptFailures {
    streak: u32,
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl AcceptFailures {
    /// Records a failure; returns how long to pause before the next accept.
    fn failed(&mut self, e: &std::io::Error) -> Duration {
        self.streak = self.streak.saturating_add(1);
        self.unlogged += 1;
        let due = self.logged_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if due {
            tracing::warn!(failures = self.unlogged, "accept failed: {e} (retrying with backoff)");
            self.unlogged = 0;
            self.logged_at = Some(Instant::now());
        }
        // 5 ms, doubling, at most 1 s.
        Duration::from_millis(5u64 << self.streak.min(8).saturating_sub(1)).min(Duration::from_secs(1))
    }

    fn reset(&mut self) {
        self.streak = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_holds_up_to_its_limit() {
        let gauge = Arc::new(Gauge::default());
        let a = gauge.hold(2).expect("one");
        let _b = gauge.hold(2).expect("two");
        assert!(gauge.hold(2).is_none());
        drop(a);
        assert_eq!(gauge.open(), 1);
        assert!(gauge.hold(2).is_some());
    }

    #[test]
    fn failing_accepts_back_off_and_log_rarely() {
        let mut failures = AcceptFailures::default();
        let e = std::io::Error::from_raw_os_error(24);
        let pauses: Vec<_> = (0..12).map(|_| failures.failed(&e)).collect();
        assert_eq!(pauses[0], Duration::from_millis(5));
        assert!(pauses.windows(2).all(|w| w[1] >= w[0]));
        assert!(*pauses.last().unwrap() <= Duration::from_secs(1));
        assert_eq!(failures.unlogged, 11, "one line for the first, the rest counted");
        failures.reset();
        assert_eq!(failures.failed(&e), Duration::from_millis(5));
    }
}
