//! The admin listener (`--admin-listen`, `[admin] listen`): operators' own
//! door, never the MCP endpoint. `/metrics` (Prometheus text), `/healthz`
//! (alive) and `/readyz` (plugins loaded, upstreams answering).
//!
//! On a loopback address those three need no credential, and only loopback
//! `Host` names are answered (a web page cannot rebind a name onto it); on any
//! other address every request must carry the admin token
//! (`Authorization: Bearer …`, `[admin] token-file`), compared in constant
//! time. Whatever changes state here will always need the token.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::serve::http_guard::names_loopback;
use crate::serve::listener::{accept_until, stopped, ConnectionLimits, Gauge, Held};
use crate::telemetry::health::HEALTH;
use crate::telemetry::metrics::{self, METRICS};

/// Shortest admin token accepted.
const MIN_TOKEN: usize = 16;

/// Most admin connections open at once.
const MAX_CONNECTIONS: usize = 256;

/// How long a connection may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a connection may stay, however it is used (one that never
/// reads its answers is let go too).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// How the admin listener is set up.
#[derive(Debug, Clone)]
pub struct AdminOptions {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The file holding the admin token (required off loopback).
    pub token_file: Option<PathBuf>,
}

/// Why the admin listener did not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Off loopback without a token.
    #[error("--admin-listen {0} is not a loopback address: give the admin token with --admin-token-file (or [admin] token-file)")]
    Exposed(SocketAddr),
    /// The token file could not be read or is too short.
    #[error("admin token file {path}: {why}")]
    Token {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The address could not be bound.
    #[error("admin listener {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// The admin token, kept as its digest (compared in constant time).
#[derive(Clone)]
pub struct AdminToken([u8; 32]);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// Reads the token from `path` (its first line; at least 16 characters).
    pub fn load(path: &Path) -> Result<AdminToken, AdminError> {
        let bad = |why: String| AdminError::Token { path: path.to_owned(), why };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt as _;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(file = %path.display(), "the admin token file is readable by others: chmod 600 it");
            }
        }
        let token = text.lines().next().unwrap_or_default().trim();
        if token.len() < MIN_TOKEN {
            return Err(bad(format!("the token must be at least {MIN_TOKEN} characters")));
        }
        Ok(AdminToken(Sha256::digest(token.as_bytes()).into()))
    }

    /// Whether `authorization` is `Bearer <the token>` (the scheme in any case, RFC 9110).
    pub fn admits(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(value) = authorization.map(HeaderValue::as_bytes) else { return false };
        let Some((scheme, presented)) = value.split_at_checked(7) else { return false };
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        let digest: [u8; 32] = Sha256::digest(presented).into();
        digest.ct_eq(&self.0).into()
    }
}

/// A running admin listener; dropping it stops it.
#[derive(Debug)]
pub struct Admin {
    /// The address bound (a port of 0 is a real one now).
    pub address: SocketAddr,
    _stop: watch::Sender<bool>,
}

struct Door {
    loopback: bool,
    token: Option<AdminToken>,
}

/// Binds the admin listener and serves it in the background; counting starts.
pub async fn start(options: &AdminOptions) -> Result<Admin, AdminError> {
    let loopback = options.listen.ip().to_canonical().is_loopback();
    let token = options.token_file.as_deref().map(AdminToken::load).transpose()?;
    if !loopback && token.is_none() {
        return Err(AdminError::Exposed(options.listen));
    }
    let listener = TcpListener::bind(options.listen).await.map_err(|e| AdminError::Bind(options.listen, e))?;
    let address = listener.local_addr().map_err(|e| AdminError::Bind(options.listen, e))?;
    metrics::enable();
    let door = Arc::new(Door { loopback, token });
    let (stop, stopping) = watch::channel(false);
    // Probes and scrapes are quick: a connection that sends no request soon is let go.
    let limits = ConnectionLimits {
        max_connections: MAX_CONNECTIONS,
        header_timeout: HEADER_TIMEOUT,
        body_timeout: HEADER_TIMEOUT,
        drain: Duration::ZERO,
    };
    tokio::spawn(async move {
        let serve = move |stream, peer, stop, held| serve_connection(stream, peer, door.clone(), stop, held);
        accept_until(listener, &limits, Arc::new(Gauge::default()), stopping, serve).await;
    });
    tracing::info!("admin listener on http://{address} (/metrics, /healthz, /readyz)");
    Ok(Admin { address, _stop: stop })
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    door: Arc<Door>,
    mut stop: watch::Receiver<bool>,
    _held: Held,
) {
    let io = hyper_util::rt::TokioIo::new(stream);
    let service = hyper::service::service_fn(move |request| {
        let door = door.clone();
        async move { Ok::<_, Infallible>(handle(&door, &request)) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => Some(ended),
        () = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            Some(connection.await)
        }
        () = tokio::time::sleep(CONNECTION_LIFETIME) => None,
    };
    match ended {
        Some(Err(e)) => tracing::debug!(%peer, "admin connection ended: {e}"),
        None => tracing::debug!(%peer, "admin connection closed: open too long"),
        Some(Ok(())) => {}
    }
}

fn handle(door: &Door, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let headers = request.headers();
    if request.uri().authority().is_some() || request.uri().scheme().is_some() {
        return text(StatusCode::BAD_REQUEST, "absolute-form request target\n");
    }
    let mut hosts = headers.get_all(HOST).iter();
    let (host, again) = (hosts.next(), hosts.next());
    if again.is_some() {
        return text(StatusCode::BAD_REQUEST, "Host given twice\n");
    }
    if host.is_none() {
        return text(StatusCode::BAD_REQUEST, "no Host header\n");
    }
    if door.loopback && host.is_some_and(|h| !h.to_str().is_ok_and(names_loopback)) {
        return text(StatusCode::FORBIDDEN, "host not allowed\n");
    }
    let admitted = door.token.as_ref().is_some_and(|t| t.admits(headers.get(AUTHORIZATION)));
    if !door.loopback && !admitted {
        let mut response = text(StatusCode::UNAUTHORIZED, "the admin token is required\n");
        response.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer"));
        return response;
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        response.headers_mut().insert("allow", HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(METRICS.render())));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            response
        }
        "/healthz" => json(StatusCode::OK, &serde_json::json!({"alive": true})),
        "/readyz" => {
            let (ready, body) = HEALTH.ready();
            json(if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &body)
        }
        _ => text(StatusCode::NOT_FOUND, "not found: /metrics, /healthz, /readyz\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_compared_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        std::fs::write(&path, "short\n").unwrap();
        assert!(AdminToken::load(&path).is_err());
        std::fs::write(&path, "0123456789abcdef-admin\n").unwrap();
        let token = AdminToken::load(&path).unwrap();
        assert!(token.admits(Some(&HeaderValue::from_static("Bearer 0123456789abcdef-admin"))));
        assert!(token.admits(Some(&HeaderValue::from_static("bearer 0123456789abcdef-admin"))));
        assert!(!token.admits(Some(&HeaderValue::from_static("Basic 0123456789abcdef-admin"))));
        assert!(!token.admits(Some(&HeaderValue::from_static("Bearer 0123456789abcdef-admin "))));
        assert!(!token.admits(Some(&HeaderValue::from_static("Bearer 0123456789abcdef"))));
        assert!(!token.admits(Some(&HeaderValue::from_static("0123456789abcdef-admin"))));
        assert!(!token.admits(None));
    }
}
