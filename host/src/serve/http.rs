//! The Streamable HTTP listener (legacy era, 2025-03-26 to 2025-11-25), on hyper.
//!
//! Checks come first and in this order: the target, `Host` and `Origin`
//! ([`http_guard`]: 400/403), method and path
//! (405/404), body size (413), content type (415), `Accept` (406),
//! `MCP-Protocol-Version` (400), the session (400/404). Only then does a
//! message reach its session.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE, HOST, ORIGIN};
use hyper::{Method, Request, Response, StatusCode};

use super::http_guard::{self, Refusal};
use super::http_response::{empty, error, final_answer, json, plain, refused_call, sse, sse_stream, Body};
use super::listener::{stopped, Held};
use super::{http_batch, http_sse};
use super::{Gateway, ModernReply, SessionError};
use crate::era;
use crate::jsonrpc::{self, code, method, Kind, Message};
use crate::plugin::instances::Transport;

/// The session header (names are case-insensitive).
pub const SESSION_HEADER: &str = "mcp-session-id";
/// The protocol-version header.
pub const VERSION_HEADER: &str = "mcp-protocol-version";
/// The header naming the last SSE event a client saw.
pub const LAST_EVENT_ID: &str = "last-event-id";

/// Serves one TCP connection until the client closes it, its headers are
/// too slow, or `stop` asks it to finish (then the call it carries completes
/// first). `_held` counts it among the open connections while it lives.
pub async fn serve_connection(
    stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    peer: SocketAddr,
    gateway: Arc<Gateway>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    _held: Held,
) {
    let io = hyper_util::rt::TokioIo::new(stream);
    let header_timeout = gateway.options().limits.header_timeout;
    let service = hyper::service::service_fn(move |request| {
        let gateway = gateway.clone();
        async move { Ok::<_, Infallible>(handle(&gateway, request, peer).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}

async fn handle(gateway: &Arc<Gateway>, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let headers = request.headers();
    match http_guard::check(request.uri(), headers, gateway.options()) {
        Ok(()) => {}
        Err(Refusal::Malformed(why)) => {
            tracing::warn!(host = ?headers.get(HOST), "request refused: {why}");
            return error(StatusCode::BAD_REQUEST, code::INVALID_REQUEST, why);
        }
        Err(Refusal::ForeignHost) => {
            tracing::warn!(host = ?headers.get(HOST), "request for a foreign host refused");
            return error(StatusCode::FORBIDDEN, code::INVALID_REQUEST, "host not allowed");
        }
        Err(Refusal::ForeignOrigin) => {
            tracing::warn!(origin = ?headers.get(ORIGIN), "request from a foreign origin refused");
            return error(StatusCode::FORBIDDEN, code::INVALID_REQUEST, "origin not allowed");
        }
    }
    if request.method() == Method::GET {
        if let Some(document) = super::http_auth::metadata(gateway, request.uri().path()) {
            return document;
        }
    }
    let caller = match super::http_auth::admit(gateway, request.uri().path(), headers).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    // Whose quota a session or backing counts against: the token's subject,
    // or without tokens the peer's address.
    let owner: Arc<str> = match &caller {
        Some(subject) => subject.clone(),
        None => Arc::from(format!("peer {}", peer.ip())),
    };
    let Some(endpoint) = gateway.for_path(request.uri().path()) else {
        return match (request.method(), request.uri().path()) {
            (&Method::GET, http_sse::SSE_PATH) => http_sse::open(gateway, request.headers(), caller, owner),
            (&Method::POST, http_sse::MESSAGES_PATH) => http_sse::message(gateway, request, caller.as_deref()).await,
            _ => plain(StatusCode::NOT_FOUND, "not found"),
        };
    };
    let gateway = &endpoint;
    match *request.method() {
        Method::POST => post(gateway, request, caller, owner).await,
        Method::GET => get(gateway, request.headers(), caller.as_deref()),
        Method::DELETE => delete(gateway, request.headers(), caller.as_deref()),
        _ => plain(StatusCode::METHOD_NOT_ALLOWED, "use POST, GET or DELETE"),
    }
}

/// The most of a too-large body read before it is refused (see [`read_body`]).
const DRAIN_BYTES: u64 = 1 << 20;

/// Reads a request body up to the configured limit (413 past it, or at once
/// when its `Content-Length` says so) within the body timeout (408 past it).
pub(super) async fn read_body(gateway: &Gateway, body: Incoming) -> Result<Bytes, Response<Body>> {
    use hyper::body::Body as _;
    let limit = gateway.options().max_body_bytes;
    let timeout = gateway.options().limits.body_timeout;
    let announced = body.size_hint().lower();
    if announced > limit as u64 {
        // A modest excess is read (and dropped) first, so that a client still
        // writing it reads the 413 rather than a broken pipe; a huge one is
        // refused at once.
        if announced <= DRAIN_BYTES {
            let _ = tokio::time::timeout(timeout, body.collect()).await;
        }
        let text = format!("request body exceeds the {limit}-byte limit");
        return Err(error(StatusCode::PAYLOAD_TOO_LARGE, code::MESSAGE_TOO_LARGE, &text));
    }
    let Ok(collected) = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await else {
        let text = format!("request body not received within {timeout:?}");
        return Err(error(StatusCode::REQUEST_TIMEOUT, code::INVALID_REQUEST, &text));
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            let text = format!("request body exceeds the {limit}-byte limit");
            Err(error(StatusCode::PAYLOAD_TOO_LARGE, code::MESSAGE_TOO_LARGE, &text))
        }
        Err(e) => Err(error(StatusCode::BAD_REQUEST, code::INVALID_REQUEST, &format!("unreadable body: {e}"))),
    }
}

/// A request whose HTTP `traceparent` header (W3C trace context) its body
/// does not carry gets it in `params._meta.traceparent`, where the relay
/// reads a request's parent span and passes it on.
fn with_trace_context(headers: &HeaderMap, message: Message) -> Message {
    let mut given = headers.get_all("traceparent").iter();
    let (Some(value), None) = (given.next(), given.next()) else { return message };
    let Some(value) = value.to_str().ok().filter(|v| crate::telemetry::traces::is_traceparent(v)) else {
        return message;
    };
    if message.head.kind != Kind::Request || jsonrpc::rewrite::traceparent(&message.raw).is_some() {
        return message;
    }
    jsonrpc::rewrite::with_traceparent(&message.raw, value).and_then(|raw| Message::parse(raw).ok()).unwrap_or(message)
}

async fn post(
    gateway: &Gateway,
    request: Request<Incoming>,
    caller: Option<Arc<str>>,
    owner: Arc<str>,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = match read_body(gateway, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let headers = &parts.headers;
    if !header_has(headers, CONTENT_TYPE, "application/json") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::INVALID_REQUEST,
            "Content-Type must be application/json",
        );
    }
    let accepts_json = accepts(headers, "application/json");
    let accepts_sse = accepts(headers, "text/event-stream");
    if !accepts_json && !accepts_sse {
        return error(
            StatusCode::NOT_ACCEPTABLE,
            code::INVALID_REQUEST,
            "Accept must list application/json and text/event-stream",
        );
    }
    if let Some(response) = check_version(headers) {
        return response;
    }
    if jsonrpc::is_batch(&body) {
        if version_header(headers).is_some_and(era::is_modern) {
            return error(StatusCode::BAD_REQUEST, code::INVALID_REQUEST, "2026-07-28 has no JSON-RPC batches");
        }
        let accepts = http_batch::Accepts { json: accepts_json, sse: accepts_sse };
        return http_batch::post(gateway, headers, body, accepts, caller.as_deref()).await;
    }
    let message = match Message::parse(body) {
        Ok(message) => with_trace_context(headers, message),
        Err(e) => {
            let body = jsonrpc::error_response(e.id(), e.code(), &e.to_string(), None);
            return json(StatusCode::BAD_REQUEST, body);
        }
    };
    if version_header(headers).is_some_and(era::is_modern) {
        return modern(gateway, headers, message, accepts_json, caller, owner).await;
    }
    let is_initialize = message.head.method.as_deref() == Some(method::INITIALIZE);
    let session = match headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
        Some(id) => match gateway.session(id, caller.as_deref()) {
            Some(session) => session,
            None => return error(StatusCode::NOT_FOUND, code::INVALID_REQUEST, "unknown or expired session"),
        },
        None if is_initialize => {
            match gateway.open_session(Transport::StreamableHttp, caller, owner, gateway.forwarded(headers)) {
                Ok(session) => session,
                Err(e @ (SessionError::Full(_) | SessionError::CallerFull(_))) => {
                    return error(StatusCode::SERVICE_UNAVAILABLE, code::UPSTREAM_FAILED, &e.to_string())
                }
                Err(e) => return error(StatusCode::BAD_GATEWAY, code::UPSTREAM_FAILED, &e.to_string()),
            }
        }
        None if era::facts(&message.raw).and_then(|f| f.version).is_some_and(|v| era::is_modern(&v)) => {
            let why = "a 2026-07-28 request needs the MCP-Protocol-Version header";
            return error(StatusCode::BAD_REQUEST, era::code::HEADER_MISMATCH, why);
        }
        None => return error(StatusCode::BAD_REQUEST, code::INVALID_REQUEST, "missing Mcp-Session-Id header"),
    };

    let Some(id) = message.head.id.clone().filter(|_| message.head.kind == Kind::Request) else {
        // Notifications and responses: accepted once the session has them.
        if message.head.method.as_deref() == Some(method::CANCELLED) {
            if let Some(id) = jsonrpc::cancelled_request(&message.raw) {
                session.forget(&id);
            }
        }
        return match session.submit(message.raw).await {
            Ok(()) => empty(StatusCode::ACCEPTED),
            Err(e) => error(StatusCode::NOT_FOUND, code::INVALID_REQUEST, &e.to_string()),
        };
    };
    let (stream, mut rx) = match session.call(id, message.raw).await {
        Ok(opened) => opened,
        Err(e) => return refused_call(e),
    };
    let Some(first) = rx.recv().await else {
        return ended_unanswered(&session);
    };
    let mut response = if first.last && accepts_json {
        // Only the answer: plain JSON.
        json(StatusCode::OK, first.message)
    } else if accepts_sse {
        sse(session.streamed(stream), first, rx)
    } else {
        // A JSON-only client: wait for the answer; other messages go to the GET stream next time.
        match final_answer(first, &mut rx).await {
            Some(answer) => json(StatusCode::OK, answer),
            None => return ended_unanswered(&session),
        }
    };
    if is_initialize {
        if let Ok(value) = HeaderValue::from_str(&session.id) {
            response.headers_mut().insert(SESSION_HEADER, value);
        }
    }
    response
}

/// A call's stream ended without its answer: the session ended, or (while it
/// lives) the client cancelled the call, which is then owed no answer.
fn ended_unanswered(session: &crate::serve::HttpSession) -> Response<Body> {
    if session.ended() {
        error(StatusCode::BAD_GATEWAY, code::UPSTREAM_FAILED, "the session ended before answering")
    } else {
        error(StatusCode::CONFLICT, code::INVALID_REQUEST, "the request was cancelled before it was answered")
    }
}

/// A 2026-07-28 request: no session; its mirrored headers must agree with
/// its body, its `_meta` must say what the era requires.
async fn modern(
    gateway: &Gateway,
    headers: &HeaderMap,
    message: Message,
    accepts_json: bool,
    caller: Option<Arc<str>>,
    owner: Arc<str>,
) -> Response<Body> {
    let id = message.head.raw_id.as_deref();
    let refuse = |code: i32, why: &str| json(StatusCode::BAD_REQUEST, jsonrpc::error_response(id, code, why, None));
    if !message.head.kind.is_call() {
        return refuse(code::INVALID_REQUEST, "a 2026-07-28 client sends no responses");
    }
    let Some(facts) = era::facts(&message.raw) else {
        return refuse(code::INVALID_REQUEST, "unreadable request");
    };
    if message.head.kind == Kind::Request {
        let mirrored = |name: &str| headers.get(name).map(|v| era::decode_header_value(v.as_bytes()));
        match mirrored(era::header::METHOD) {
            None => return refuse(era::code::HEADER_MISMATCH, "missing Mcp-Method header"),
            Some(None) => return refuse(era::code::HEADER_MISMATCH, "malformed Mcp-Method header"),
            Some(Some(method)) if method != facts.method => {
                return refuse(era::code::HEADER_MISMATCH, "Mcp-Method header does not match the body's method")
            }
            Some(Some(_)) => {}
        }
        if era::named_param(&facts.method).is_some() {
            match mirrored(era::header::NAME) {
                None => return refuse(era::code::HEADER_MISMATCH, "missing Mcp-Name header"),
                Some(name) if name != facts.name => {
                    return refuse(era::code::HEADER_MISMATCH, "Mcp-Name header does not match the body")
                }
                Some(_) => {}
            }
        }
        let version = version_header(headers);
        match facts.version.as_deref() {
            None => return refuse(code::INVALID_PARAMS, "missing _meta io.modelcontextprotocol/protocolVersion"),
            Some(v) if Some(v) != version => {
                return refuse(era::code::HEADER_MISMATCH, "MCP-Protocol-Version header does not match _meta")
            }
            Some(_) => {}
        }
        if facts.capabilities.is_none() {
            return refuse(code::INVALID_PARAMS, "missing _meta io.modelcontextprotocol/clientCapabilities");
        }
    }
    let forwarded = gateway.forwarded(headers);
    let mut events = match gateway.serve_modern(&message.head, &message.raw, facts, caller, owner, forwarded).await {
        ModernReply::Refused(status, body) => return json(status, body),
        ModernReply::Accepted => return empty(StatusCode::ACCEPTED),
        ModernReply::Events(events) => events,
    };
    let Some(first) = events.recv().await else {
        return error(StatusCode::BAD_GATEWAY, code::UPSTREAM_FAILED, "the upstream ended before answering");
    };
    if first.last && accepts_json {
        // An unknown method is a 404 in this era; the body tells it from an unknown endpoint.
        let unknown = jsonrpc::parse_head(&first.message).is_ok_and(|h| h.kind == Kind::Error)
            && jsonrpc::error_code(&first.message) == Some(code::METHOD_NOT_FOUND.into());
        let status = if unknown { StatusCode::NOT_FOUND } else { StatusCode::OK };
        return json(status, first.message);
    }
    sse(None, first, events)
}

fn get(gateway: &Gateway, headers: &HeaderMap, caller: Option<&str>) -> Response<Body> {
    if !accepts(headers, "text/event-stream") {
        return error(StatusCode::NOT_ACCEPTABLE, code::INVALID_REQUEST, "Accept must list text/event-stream");
    }
    if let Some(response) = check_version(headers) {
        return response;
    }
    let Some(id) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
        return error(StatusCode::BAD_REQUEST, code::INVALID_REQUEST, "missing Mcp-Session-Id header");
    };
    let Some(session) = gateway.session(id, caller) else {
        return error(StatusCode::NOT_FOUND, code::INVALID_REQUEST, "unknown or expired session");
    };
    let last_event = headers.get(LAST_EVENT_ID).and_then(|v| v.to_str().ok());
    match session.listen(last_event) {
        Ok(rx) => sse_stream(rx),
        Err(e) => error(StatusCode::NOT_FOUND, code::INVALID_REQUEST, &e.to_string()),
    }
}

fn delete(gateway: &Gateway, headers: &HeaderMap, caller: Option<&str>) -> Response<Body> {
    let Some(id) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
        return error(StatusCode::BAD_REQUEST, code::INVALID_REQUEST, "missing Mcp-Session-Id header");
    };
    if gateway.close_session(id, caller) {
        tracing::info!(session = %id, "session deleted by the client");
        empty(StatusCode::OK)
    } else {
        error(StatusCode::NOT_FOUND, code::INVALID_REQUEST, "unknown or expired session")
    }
}

fn version_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok())
}

/// A version header, when present, must name a version this listener serves.
fn check_version(headers: &HeaderMap) -> Option<Response<Body>> {
    let version = headers.get(VERSION_HEADER)?;
    let text = version.to_str().unwrap_or_default();
    let known = era::Version::parse(text).is_some();
    (!known).then(|| {
        let supported: Vec<&str> = era::LEGACY_VERSIONS.iter().chain(era::MODERN_VERSIONS).copied().collect();
        let why = format!("unsupported MCP-Protocol-Version {text:?}");
        let data = serde_json::json!({"supported": supported, "requested": text}).to_string();
        let body = jsonrpc::error_response(None, era::code::UNSUPPORTED_VERSION, &why, Some(&data));
        json(StatusCode::BAD_REQUEST, body)
    })
}

/// Whether a `Content-Type` names this media type (parameters aside; the
/// type is compared whole, never searched for).
fn header_has(headers: &HeaderMap, name: hyper::header::HeaderName, media: &str) -> bool {
    headers.get(name).and_then(|v| v.to_str().ok()).is_some_and(|v| media_type(v).eq_ignore_ascii_case(media))
}

/// The `type/subtype` of one media range, without parameters.
pub(super) fn media_type(range: &str) -> &str {
    range.split(';').next().unwrap_or_default().trim()
}

/// Whether `Accept` admits `media`: listed, or covered by `*/*` or `type/*`,
/// and not with `q=0`. No `Accept` at all admits anything.
pub(super) fn accepts(headers: &HeaderMap, media: &str) -> bool {
    let Some(accept) = headers.get(ACCEPT) else { return true };
    let Ok(accept) = accept.to_str() else { return false };
    let kind = media.split('/').next().unwrap_or_default();
    accept.split(',').any(|range| {
        let name = media_type(range);
        let covers = name.eq_ignore_ascii_case(media)
            || name == "*/*"
            || name.strip_suffix("/*").is_some_and(|t| t.eq_ignore_ascii_case(kind));
        let refused = range.split(';').skip(1).any(|p| {
            let p = p.trim();
            p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")).is_some_and(|q| q.trim().parse::<f32>() == Ok(0.0))
        });
        covers && !refused
    })
}
