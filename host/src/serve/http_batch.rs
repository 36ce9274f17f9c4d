//! JSON-RPC batches on the Streamable HTTP listener (2025-03-26 only; 2025-06-18 removed them).
//!
//! A batch is taken apart at the door: each request becomes a call of its own
//! in the session (its own stream, the whole plugin chain, the upstream sees
//! single messages), so batching passes no policy by. The answers go back
//! together: a JSON array when every answer is ready at once and the client
//! takes JSON, otherwise one SSE stream carrying every call's events (without
//! event ids: a broken batch stream is not resumed).

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use hyper::{HeaderMap, Response, StatusCode};

use super::http::SESSION_HEADER;
use super::http_response::{empty, error, final_answer, json, sse_body, until_answer, Body};
use super::streams::{Event, Receiver};
use super::{Gateway, SessionError};
use crate::jsonrpc::{self, code, method, Kind, Message};

/// How the client said it takes answers.
pub(super) struct Accepts {
    pub json: bool,
    pub sse: bool,
}

/// A POST whose body is a JSON array.
pub(super) async fn post(
    gateway: &Gateway,
    headers: &HeaderMap,
    body: Bytes,
    accepts: Accepts,
    caller: Option<&str>,
) -> Response<Body> {
    let Some(id) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
        let why = "a JSON-RPC batch needs a session (initialize must not be batched)";
        return error(StatusCode::BAD_REQUEST, code::INVALID_REQUEST, why);
    };
    let Some(session) = gateway.session(id, caller) else {
        return error(StatusCode::NOT_FOUND, code::INVALID_REQUEST, "unknown or expired session");
    };
    let version = session.protocol_version();
    if let Some(why) = jsonrpc::batch_refused(version.as_deref().unwrap_or("(none yet)")) {
        return error(StatusCode::BAD_REQUEST, code::INVALID_REQUEST, &why);
    }
    let parts = match jsonrpc::split_batch(&body) {
        Ok(parts) => parts,
        Err(e) => return json(StatusCode::BAD_REQUEST, jsonrpc::error_response(None, e.code(), &e.to_string(), None)),
    };

    // Answers Warden gives itself, and the calls still to answer.
    let mut answers: Vec<Bytes> = Vec::new();
    let mut calls: Vec<Receiver> = Vec::new();
    for part in parts {
        let message = match Message::parse(part) {
            Ok(message) => message,
            Err(e) => {
                answers.push(jsonrpc::error_response(e.id(), e.code(), &e.to_string(), None));
                continue;
            }
        };
        let head = &message.head;
        if head.method.as_deref() == Some(method::INITIALIZE) {
            answers.push(jsonrpc::error_response(
                head.raw_id.as_deref(),
                code::INVALID_REQUEST,
                jsonrpc::BATCHED_INITIALIZE,
                None,
            ));
            continue;
        }
        let Some(id) = head.id.clone().filter(|_| head.kind == Kind::Request) else {
            if head.method.as_deref() == Some(method::CANCELLED) {
                if let Some(id) = jsonrpc::cancelled_request(&message.raw) {
                    session.forget(&id);
                }
            }
            if let Err(e) = session.submit(message.raw).await {
                return error(StatusCode::NOT_FOUND, code::INVALID_REQUEST, &e.to_string());
            }
            continue;
        };
        match session.call(id, message.raw).await {
            Ok((_, rx)) => calls.push(rx),
            Err(e @ SessionError::IdInFlight(_)) => {
                answers.push(jsonrpc::error_response(
                    head.raw_id.as_deref(),
                    code::INVALID_REQUEST,
                    &e.to_string(),
                    None,
                ));
            }
            Err(e) => return error(StatusCode::NOT_FOUND, code::INVALID_REQUEST, &e.to_string()),
        }
    }

    if calls.is_empty() {
        // Notifications and responses only: accepted; invalid members are answered.
        return if answers.is_empty() {
            empty(StatusCode::ACCEPTED)
        } else {
            json(StatusCode::OK, jsonrpc::join_batch(&answers))
        };
    }
    // The first event of every call: if each is its answer, one JSON array will do.
    // A call whose stream ends with nothing while the session lives was
    // cancelled: it is owed nothing, and the other members still are.
    let mut firsts = Vec::with_capacity(calls.len());
    let mut live = Vec::with_capacity(calls.len());
    for mut rx in calls {
        match rx.recv().await {
            Some(event) => {
                firsts.push(event);
                live.push(rx);
            }
            None if !session.ended() => {}
            None => return error(StatusCode::BAD_GATEWAY, code::UPSTREAM_FAILED, "the session ended before answering"),
        }
    }
    let mut calls = live;
    if firsts.is_empty() && answers.is_empty() {
        return empty(StatusCode::ACCEPTED);
    }
    if accepts.json && (firsts.iter().all(|e| e.last) || !accepts.sse) {
        for (first, rx) in firsts.into_iter().zip(&mut calls) {
            match final_answer(first, rx).await {
                Some(message) => answers.push(message),
                None if !session.ended() => {}
                None => {
                    let why = "the session ended before answering";
                    return error(StatusCode::BAD_GATEWAY, code::UPSTREAM_FAILED, why);
                }
            }
        }
        return json(StatusCode::OK, jsonrpc::join_batch(&answers));
    }
    let own = futures::stream::iter(answers.into_iter().map(|message| Event { id: None, message, last: false }));
    // Event ids name one stream each: a merged stream carries none.
    let calls = firsts.into_iter().zip(calls).map(|(first, rx)| {
        let events: Pin<Box<dyn Stream<Item = Event> + Send + Sync>> =
            Box::pin(until_answer(first, rx).map(|event| Event { id: None, ..event }));
        events
    });
    sse_body(own.chain(futures::stream::select_all(calls)))
}
