//! What comes back from the server: event streams read to their answer, and
//! messages handed to the relay as a child's stdout would.

use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::Method;
use http_body_util::BodyExt;

use super::{
    answers, content_type, lock, one_line, sse, Shared, UpstreamError, BACKOFF, CONNECT_ATTEMPTS, DRAIN_AFTER_ANSWER,
    LAST_EVENT_ID, MAX_RETRY_DELAY,
};
use crate::jsonrpc::{self, code};
use crate::transport::framing::Frame;

impl Shared {
    /// Feeds the events of a POST's stream to the relay; whether the answer to `id` came.
    /// A stream that ends or breaks before the answer is resumed (GET with
    /// `Last-Event-ID`) if its events carried ids, after the `retry` delay the
    /// server asked for.
    pub(super) async fn events(
        &self,
        response: http::Response<hyper::body::Incoming>,
        id: Option<&str>,
        init: bool,
    ) -> bool {
        let mut parser = sse::Parser::new(self.max_message_bytes);
        let mut response = Some(response);
        let mut resumed = 0;
        loop {
            if let Some(response) = response.take() {
                if self.read_events(&mut parser, response, id, init).await {
                    return true;
                }
            }
            let Some(last_event) = parser.last_event_id().and_then(|e| HeaderValue::from_str(e).ok()) else {
                return false;
            };
            if id.is_none() || resumed == CONNECT_ATTEMPTS {
                return false;
            }
            resumed += 1;
            parser.interrupted();
            let delay = parser.retry().map_or(BACKOFF * 2u32.pow(resumed), Duration::from_millis);
            tokio::time::sleep(delay.min(MAX_RETRY_DELAY)).await;
            let mut request = self.request(Method::GET, None);
            request.headers_mut().insert(LAST_EVENT_ID, last_event);
            response = match self.client.request(request).await {
                Ok(r) if r.status().is_success() && content_type(&r) == "text/event-stream" => Some(r),
                Ok(r) => {
                    tracing::warn!(status = %r.status(), "upstream refused to resume a broken event stream");
                    return false;
                }
                Err(e) => {
                    tracing::debug!("resuming an upstream event stream: {e}");
                    continue;
                }
            };
            tracing::debug!(attempt = resumed, "upstream event stream resumed");
        }
    }

    /// Reads one response's events until the answer to `id` or the end.
    pub(super) async fn read_events(
        &self,
        parser: &mut sse::Parser,
        response: http::Response<hyper::body::Incoming>,
        id: Option<&str>,
        init: bool,
    ) -> bool {
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    tracing::warn!("upstream event stream broke: {e}");
                    return false;
                }
            };
            let Some(chunk) = frame.data_ref() else { continue };
            let events = match parser.push(chunk) {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!("upstream event stream: {e}");
                    return false;
                }
            };
            let mut answered = false;
            for event in events.into_iter().filter(|e| e.kind == "message" && !e.data.is_empty()) {
                answered |= id.is_some_and(|id| answers(&event.data, id));
                self.deliver(event.data, init).await;
            }
            if answered {
                // The answer is the last thing a POST stream carries, and the server
                // closes the stream after it. Reading to that end keeps the connection
                // for the next request (a body dropped half-read closes it); a server
                // that keeps the stream open is not waited for long.
                let rest = async { while let Some(Ok(_)) = body.frame().await {} };
                let _ = tokio::time::timeout(DRAIN_AFTER_ANSWER, rest).await;
                return true;
            }
        }
        false
    }

    /// Hands one message from the server to the relay, as one line.
    pub(super) async fn deliver(&self, message: Bytes, initialize: bool) {
        let message = one_line(message);
        if message.is_empty() {
            return;
        }
        if initialize {
            self.note_version(&message);
        }
        // A tools/list answer: its x-mcp-header annotations learned, invalid tools left out.
        let message = self.params.learn(&message).unwrap_or(message);
        let _ = self.output.send(Ok(Frame::Line(message))).await;
    }

    /// Answers the request `id` (if any) with an error the relay passes to the client.
    pub(super) async fn fail(&self, id: Option<&str>, why: &UpstreamError) {
        tracing::warn!(upstream = %self.options.url, kind = why.kind(), "{why}");
        if let Some(id) = id {
            let data = serde_json::json!({ "reason": why.kind() }).to_string();
            let reply = jsonrpc::error_response(Some(id), code::UPSTREAM_FAILED, &why.to_string(), Some(&data));
            let _ = self.output.send(Ok(Frame::Line(reply))).await;
        }
    }

    pub(super) fn note_version(&self, message: &[u8]) {
        if let Some(v) = jsonrpc::negotiated_version(message).and_then(|v| HeaderValue::from_str(&v).ok()) {
            *lock(&self.version) = Some(v);
        }
    }
}
