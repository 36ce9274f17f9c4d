//! The HTTP+SSE transport of 2024-11-05, for old clients.
//!
//! `GET /sse` opens a session and its one event stream. The stream's first
//! event, `endpoint`, names where to POST messages (`/messages?session_id=…`);
//! every answer and every server message then comes on that stream, and each
//! POST is answered `202 Accepted`. Closing the stream ends the session.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use hyper::body::{Frame as BodyFrame, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio::sync::mpsc;

use super::http::read_body;
use super::http_response::{error, event_stream, keep_alive, plain, refused_call, Body};
use super::streams::{Event, Receiver};
use super::{Gateway, SessionError};
use crate::jsonrpc::{code, Kind, Message};
use crate::plugin::instances::Transport;

/// Where old clients open their event stream.
pub const SSE_PATH: &str = "/sse";
/// Where they POST messages.
pub const MESSAGES_PATH: &str = "/messages";

/// `GET /sse`: a new session, its stream starting with the `endpoint` event.
pub fn open(
    gateway: &Arc<Gateway>,
    headers: &hyper::HeaderMap,
    caller: Option<Arc<str>>,
    owner: Arc<str>,
) -> Response<Body> {
    // An event stream must be asked for by name: a page's `<img src=…/sse>`
    // (no Origin, `Accept: image/*,*/*`) must not start a server process.
    let asked = headers.get_all(hyper::header::ACCEPT).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|r| super::http::media_type(r).eq_ignore_ascii_case("text/event-stream")))
    });
    if !asked {
        return error(StatusCode::NOT_ACCEPTABLE, code::INVALID_REQUEST, "GET /sse needs Accept: text/event-stream");
    }
    let session = match gateway.open_session(Transport::HttpSse, caller, owner, gateway.forwarded(headers)) {
        Ok(session) => session,
        Err(e @ (SessionError::Full(_) | SessionError::CallerFull(_))) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, code::UPSTREAM_FAILED, &e.to_string())
        }
        Err(e) => return error(StatusCode::BAD_GATEWAY, code::UPSTREAM_FAILED, &e.to_string()),
    };
    let (tx, rx) = mpsc::unbounded_channel::<Event>();
    session.attach_sse(tx.clone());
    match session.listen(None) {
        Ok(listener) => {
            tokio::spawn(forward(listener, tx));
        }
        Err(e) => return error(StatusCode::BAD_GATEWAY, code::UPSTREAM_FAILED, &e.to_string()),
    }
    tracing::info!(session = %session.id, "HTTP+SSE (2024-11-05) session opened");
    let endpoint = format!("event: endpoint\ndata: {MESSAGES_PATH}?session_id={}\n\n", session.id);
    // Ends the session when the client closes the stream (the body is dropped).
    let guard = CloseOnDrop { gateway: gateway.clone(), id: session.id.clone() };
    let events = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        let event = rx.recv().await?;
        let mut frame = Vec::with_capacity(event.message.len() + 24);
        frame.extend_from_slice(b"event: message\ndata: ");
        frame.extend_from_slice(&event.message);
        frame.extend_from_slice(b"\n\n");
        Some((Bytes::from(frame), (rx, guard)))
    });
    let frames = keep_alive(futures::stream::iter([Bytes::from(endpoint)]).chain(events))
        .map(|bytes| Ok::<_, std::convert::Infallible>(BodyFrame::data(bytes)));
    event_stream(frames)
}

/// `POST /messages?session_id=…`: one message for the session; what it brings comes on the stream.
pub async fn message(gateway: &Gateway, request: Request<Incoming>, caller: Option<&str>) -> Response<Body> {
    let id = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("session_id=")))
        .map(str::to_owned);
    let Some(session) = id.as_deref().and_then(|id| gateway.session(id, caller)) else {
        return error(StatusCode::NOT_FOUND, code::INVALID_REQUEST, "unknown or expired session");
    };
    let body = match read_body(gateway, request.into_body()).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let message = match Message::parse(body) {
        Ok(message) => message,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.code(), &e.to_string()),
    };
    let outcome = match message.head.id.clone().filter(|_| message.head.kind == Kind::Request) {
        Some(id) => match session.call(id, message.raw).await {
            Ok((_, answer)) => {
                if let Some(tx) = session.sse() {
                    tokio::spawn(forward(answer, tx));
                }
                Ok(())
            }
            Err(e) => Err(e),
        },
        None => session.submit(message.raw).await,
    };
    match outcome {
        Ok(()) => plain(StatusCode::ACCEPTED, "Accepted"),
        Err(e) => refused_call(e),
    }
}

/// Passes a stream's events onto the session's one SSE stream.
async fn forward(mut from: Receiver, to: mpsc::UnboundedSender<Event>) {
    while let Some(event) = from.recv().await {
        if to.send(event).is_err() {
            return;
        }
    }
}

struct CloseOnDrop {
    gateway: Arc<Gateway>,
    id: String,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if self.gateway.end_session(&self.id) {
            tracing::info!(session = %self.id, "HTTP+SSE stream closed; session ended");
        }
    }
}
