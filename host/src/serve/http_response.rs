//! The HTTP answers the front door sends: JSON bodies, event streams (with
//! priming, keep-alives and the answer last), and the plain refusals.

use std::convert::Infallible;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame as BodyFrame;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::streams::{Event, EventId, Receiver};
use super::SessionError;
use crate::jsonrpc::{self, code};

/// How long an SSE stream may stay quiet before a keep-alive comment.
pub(super) const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// What a priming event tells a client to wait before reconnecting a broken stream.
pub(super) const RETRY_FIELD: &[u8] = b"retry: 1000\n";

pub(super) type Body = BoxBody<Bytes, Infallible>;

/// An SSE response: a priming event (an id, no data) if the stream has one,
/// then `first` and what follows, up to the answer.
pub(super) fn sse(priming: Option<EventId>, first: Event, rx: Receiver) -> Response<Body> {
    let priming = priming.map(|id| Event { id: Some(id), message: Bytes::new(), last: false });
    sse_body(futures::stream::iter(priming).chain(until_answer(first, rx)))
}

/// Waits for a call's answer; what the server says meanwhile is not carried by a JSON reply.
pub(super) async fn final_answer(mut event: Event, rx: &mut Receiver) -> Option<Bytes> {
    while !event.last {
        event = rx.recv().await?;
    }
    Some(event.message)
}

/// A call's events: `first`, then what comes on `rx` up to its answer.
pub(super) fn until_answer(first: Event, rx: Receiver) -> impl futures::Stream<Item = Event> + Send + Sync + 'static {
    let done = first.last;
    let rest = futures::stream::unfold((rx, done), |(mut rx, done)| async move {
        if done {
            return None;
        }
        let event = rx.recv().await?;
        let done = event.last;
        Some((event, (rx, done)))
    });
    futures::stream::iter([first]).chain(rest)
}

/// An SSE response carrying everything sent on `rx` until it closes.
pub(super) fn sse_stream(rx: Receiver) -> Response<Body> {
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    sse_body(stream)
}

pub(super) fn sse_body(stream: impl futures::Stream<Item = Event> + Send + Sync + 'static) -> Response<Body> {
    let frames =
        keep_alive(stream.map(|event| encode_event(&event))).map(|bytes| Ok::<_, Infallible>(BodyFrame::data(bytes)));
    event_stream(frames)
}

/// A `text/event-stream` response with these frames, not to be cached or buffered on the way.
pub(super) fn event_stream(
    frames: impl futures::Stream<Item = Result<BodyFrame<Bytes>, Infallible>> + Send + Sync + 'static,
) -> Response<Body> {
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// An SSE stream with a comment every [`KEEP_ALIVE`] it is quiet, so that
/// intermediaries do not close a long wait (a GET stream, a subscription, a
/// slow call); clients ignore comments. Ends with `stream`.
pub(super) fn keep_alive(
    stream: impl futures::Stream<Item = Bytes> + Send + Sync + 'static,
) -> impl futures::Stream<Item = Bytes> + Send + Sync + 'static {
    let tick = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    futures::stream::unfold((Box::pin(stream), tick), |(mut stream, mut tick)| async move {
        let next = tokio::select! {
            item = stream.next() => item?,
            _ = tick.tick() => Bytes::from_static(b": keep-alive\n\n"),
        };
        tick.reset();
        Some((next, (stream, tick)))
    })
}

/// One SSE event. A priming event (no message) also says how long to wait
/// before reconnecting.
pub(super) fn encode_event(event: &Event) -> Bytes {
    let mut out = Vec::with_capacity(event.message.len() + 48);
    if let Some(id) = &event.id {
        out.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    if event.message.is_empty() {
        out.extend_from_slice(RETRY_FIELD);
        out.extend_from_slice(b"data: \n\n");
    } else {
        out.extend_from_slice(b"event: message\ndata: ");
        out.extend_from_slice(&event.message);
        out.extend_from_slice(b"\n\n");
    }
    Bytes::from(out)
}

pub(super) fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A request the session did not take: a reused id is the client's mistake
/// (400, answered under that id); otherwise the session is gone (404).
pub(super) fn refused_call(e: SessionError) -> Response<Body> {
    match &e {
        SessionError::IdInFlight(id) => json(
            StatusCode::BAD_REQUEST,
            jsonrpc::error_response(Some(id), code::INVALID_REQUEST, &e.to_string(), None),
        ),
        _ => error(StatusCode::NOT_FOUND, code::INVALID_REQUEST, &e.to_string()),
    }
}

/// An HTTP error whose body is an id-less JSON-RPC error.
pub(super) fn error(status: StatusCode, code: i32, message: &str) -> Response<Body> {
    json(status, jsonrpc::error_response(None, code, message, None))
}

pub(super) fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    *response.status_mut() = status;
    response
}

pub(super) fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()).boxed());
    *response.status_mut() = status;
    response
}
