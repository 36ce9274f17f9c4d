//! Streamable HTTP: one POST per message (its answer a JSON body or an event
//! stream), the GET stream for what the server sends on its own, a session the
//! server forgot renewed once, and DELETE when the client leaves.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};

use super::old_sse::post_old;
use super::{
    answers, content_type, lock, read_limited, sse, Shared, UpstreamError, BACKOFF, CONNECT_ATTEMPTS, ERROR_BODY_LIMIT,
    LAST_EVENT_ID, MCP_METHOD, MCP_NAME, PROTOCOL_VERSION, SESSION_ID,
};
use crate::era;

/// Posts one message and feeds its answer (and anything streamed before it) to the relay.
pub(super) async fn post(
    shared: Arc<Shared>,
    message: Bytes,
    id: Option<String>,
    initialize: bool,
    modern: Option<Mirrored>,
) {
    if initialize {
        *lock(&shared.initialize) = Some(message.clone());
    }
    if let Some(endpoint) = shared.old_endpoint.get() {
        return post_old(&shared, endpoint.clone(), message, id.as_deref()).await;
    }
    let mut renewed = false;
    let response = loop {
        let session = lock(&shared.session).clone();
        let response = match send(&shared, Method::POST, Some(message.clone()), modern.as_ref()).await {
            Ok(response) => response,
            Err(why) => return shared.fail(id.as_deref(), &why).await,
        };
        // In the modern era a 404 is an unknown method, not a forgotten session.
        let forgotten =
            response.status() == StatusCode::NOT_FOUND && session.is_some() && !initialize && modern.is_none();
        if !forgotten || renewed {
            break response;
        }
        if let Err(why) = shared.renew(session).await {
            return shared.fail(id.as_deref(), &UpstreamError::RenewalFailed(Box::new(why))).await;
        }
        renewed = true;
    };
    let status = response.status();
    if initialize && status.is_success() {
        if let Some(session) = response.headers().get(SESSION_ID) {
            *lock(&shared.session) = Some(session.clone());
        }
    }
    if status == StatusCode::NOT_FOUND && lock(&shared.session).is_some() && modern.is_none() {
        return shared.fail(id.as_deref(), &UpstreamError::SessionExpired).await;
    }
    if !status.is_success() {
        let json_body = content_type(&response) == "application/json";
        let body = read_limited(response, ERROR_BODY_LIMIT).await.unwrap_or_default();
        if json_body && id.as_deref().is_some_and(|id| answers(&body, id)) {
            // A JSON-RPC error answering the request (e.g. 404 + -32601, 400 + -32020): pass it on.
            return shared.deliver(shared.scrubbed_answer(body), false).await;
        }
        let refused =
            matches!(status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED);
        if initialize && refused && !is_modern_error(&body) {
            // Not Streamable HTTP: perhaps the HTTP+SSE transport of 2024-11-05 (its back-compat probe).
            match shared.open_old_sse().await {
                Ok(endpoint) => return post_old(&shared, endpoint, message, id.as_deref()).await,
                Err(why) => tracing::debug!("no HTTP+SSE transport there either: {why}"),
            }
        }
        return shared.fail(id.as_deref(), &UpstreamError::Status { status, body: shared.snippet(&body) }).await;
    }
    let answered = match content_type(&response).as_str() {
        "text/event-stream" => shared.events(response, id.as_deref(), initialize).await,
        "application/json" => match read_limited(response, shared.max_message_bytes).await {
            Ok(body) => {
                let answers = id.as_deref().is_some_and(|id| answers(&body, id));
                shared.deliver(body, initialize).await;
                answers
            }
            Err(why) => return shared.fail(id.as_deref(), &why).await,
        },
        // 202 Accepted for notifications and responses: nothing comes back.
        _ => id.is_none(),
    };
    if !answered {
        if let Some(id) = id {
            shared.fail(Some(&id), &UpstreamError::EndedEarly).await;
        }
    }
}

/// Whether an HTTP error body is a 2026-07-28 server's JSON-RPC error (then
/// the server is modern, and no older transport is tried).
pub(super) fn is_modern_error(body: &[u8]) -> bool {
    let code = serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| v["error"]["code"].as_i64());
    code.is_some_and(|c| (-32022..=-32020).contains(&c))
}

/// The stream the server opens for what it sends on its own (GET). A server
/// that offers none answers 405; a dropped stream is reopened from its last event.
pub(super) async fn listen(shared: Arc<Shared>) {
    let mut last_event: Option<String> = None;
    let mut failures = 0u32;
    while failures < CONNECT_ATTEMPTS {
        let mut request = shared.request(Method::GET, None);
        if let Some(id) = last_event.as_deref().and_then(|id| HeaderValue::from_str(id).ok()) {
            request.headers_mut().insert(LAST_EVENT_ID, id);
        }
        let response = match shared.client.request(request).await {
            Ok(response) => response,
            Err(e) => {
                tracing::debug!("upstream GET stream: {e}");
                failures += 1;
                tokio::time::sleep(BACKOFF * 2u32.pow(failures)).await;
                continue;
            }
        };
        if response.status() == StatusCode::NOT_FOUND {
            // The session is being renewed (or gone): try again on whatever is current.
            failures += 1;
            tokio::time::sleep(BACKOFF * 2u32.pow(failures)).await;
            continue;
        }
        if !response.status().is_success() || content_type(&response) != "text/event-stream" {
            tracing::debug!(status = %response.status(), "upstream offers no GET stream");
            return;
        }
        failures = 0;
        let mut parser = sse::Parser::new(shared.max_message_bytes);
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            let Some(chunk) = frame.data_ref() else { continue };
            let Ok(events) = parser.push(chunk) else {
                tracing::warn!("upstream GET stream sent an event over the size limit; reopening");
                break;
            };
            for event in events.into_iter().filter(|e| e.kind == "message" && !e.data.is_empty()) {
                shared.deliver(event.data, false).await;
            }
        }
        last_event = parser.last_event_id().map(str::to_owned).or(last_event);
        failures += 1;
        tokio::time::sleep(BACKOFF).await;
    }
}

/// Ends the session on the server (best effort).
pub(super) async fn end_session(shared: &Shared) {
    if lock(&shared.session).is_none() {
        return;
    }
    match shared.client.request(shared.request(Method::DELETE, None)).await {
        Ok(response) => tracing::debug!(status = %response.status(), "upstream session ended"),
        Err(e) => tracing::debug!("upstream session could not be ended: {e}"),
    }
}

/// Sends a request, retrying with backoff while the server cannot be reached.
/// Once a connection was made the request is not repeated: it may have had effects.
pub(super) async fn send(
    shared: &Shared,
    method: Method,
    body: Option<Bytes>,
    modern: Option<&Mirrored>,
) -> Result<http::Response<hyper::body::Incoming>, UpstreamError> {
    if let Some(source) = &shared.options.dynamic {
        source.ready().await.map_err(UpstreamError::Credential)?;
    }
    let mut attempt = 0;
    loop {
        let mut request = shared.request(method.clone(), body.clone());
        if let Some(modern) = modern {
            modern.apply(request.headers_mut());
        }
        match shared.client.request(request).await {
            Ok(response) => return Ok(response),
            Err(e) if e.is_connect() && attempt + 1 < CONNECT_ATTEMPTS => {
                tracing::debug!("upstream unreachable (attempt {}): {e}", attempt + 1);
                tokio::time::sleep(BACKOFF * 2u32.pow(attempt)).await;
                attempt += 1;
            }
            Err(e) => {
                let source = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
                return Err(UpstreamError::Unreachable {
                    url: crate::config::gateway::shown_url(&shared.options.url.to_string()),
                    why: format!("{e}{source}"),
                });
            }
        }
    }
}

/// The headers a 2026-07-28 request mirrors from its body, computed from the
/// body as it leaves (after any plugin changed it).
pub(super) struct Mirrored {
    pub(super) version: HeaderValue,
    pub(super) method: HeaderValue,
    pub(super) name: Option<HeaderValue>,
    /// `Mcp-Param-*` for a tool whose schema annotates its arguments.
    pub(super) params: Vec<(http::header::HeaderName, HeaderValue)>,
}

impl Mirrored {
    /// Sets them, and drops what belongs to the legacy era.
    fn apply(&self, headers: &mut http::HeaderMap) {
        headers.remove(SESSION_ID);
        headers.insert(PROTOCOL_VERSION, self.version.clone());
        headers.insert(MCP_METHOD, self.method.clone());
        if let Some(name) = &self.name {
            headers.insert(MCP_NAME, name.clone());
        }
        for (name, value) in &self.params {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// The mirrored headers of a request, if its `_meta` names a modern version.
pub(super) fn mirrored(message: &[u8], params: &super::params::ParamHeaders) -> Option<Mirrored> {
    memchr::memmem::find(message, era::meta::PROTOCOL_VERSION.as_bytes())?;
    let facts = era::facts(message)?;
    let version = facts.version.filter(|v| era::is_modern(v))?;
    let header = |value: &str| HeaderValue::from_str(&era::encode_header_value(value)).ok();
    Some(Mirrored {
        version: HeaderValue::from_str(&version).ok()?,
        method: header(&facts.method)?,
        name: facts.name.as_deref().and_then(header),
        params: if facts.method == "tools/call" { params.headers_for(message) } else { Vec::new() },
    })
}

impl Shared {
    /// Makes a new session after the server forgot `failed`: the client's
    /// `initialize` again (its answer is not passed on), then `initialized`.
    pub(super) async fn renew(&self, failed: Option<HeaderValue>) -> Result<(), UpstreamError> {
        let _renewing = self.renewing.lock().await;
        if *lock(&self.session) != failed {
            return Ok(()); // Another request renewed it meanwhile.
        }
        let initialize =
            lock(&self.initialize).clone().ok_or_else(|| UpstreamError::Protocol("no initialize to replay".into()))?;
        *lock(&self.session) = None;
        let response = send(self, Method::POST, Some(initialize), None).await?;
        if !response.status().is_success() {
            return Err(UpstreamError::Status {
                status: response.status(),
                body: "(to the replayed initialize)".into(),
            });
        }
        let session = response.headers().get(SESSION_ID).cloned();
        // Read the answer to the end so the connection is reusable; it is not passed on.
        drop(read_limited(response, self.max_message_bytes).await);
        *lock(&self.session) = session;
        let initialized = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        let response = send(self, Method::POST, Some(initialized), None).await?;
        drop(read_limited(response, self.max_message_bytes).await);
        tracing::info!(upstream = %self.options.url, "the upstream forgot the session; a new one was made");
        Ok(())
    }

    pub(super) fn request(&self, method: Method, body: Option<Bytes>) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body.clone().unwrap_or_default()));
        *request.method_mut() = method;
        *request.uri_mut() = self.options.url.clone();
        let headers = request.headers_mut();
        for (name, value) in &self.options.headers {
            headers.append(name.clone(), value.clone());
        }
        if let Some((name, value)) = self.options.dynamic.as_ref().and_then(|d| d.current()) {
            headers.insert(name, value);
        }
        headers.insert(ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        if let Some(body) = &body {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            // The trace context the message carries goes in the header too (W3C trace context).
            let traceparent = crate::jsonrpc::rewrite::traceparent(body)
                .filter(|t| crate::telemetry::traces::is_traceparent(t))
                .and_then(|t| HeaderValue::from_str(&t).ok());
            if let Some(value) = traceparent {
                headers.insert("traceparent", value);
            }
        }
        if let Some(session) = lock(&self.session).clone() {
            headers.insert(SESSION_ID, session);
        }
        if let Some(version) = lock(&self.version).clone() {
            headers.insert(PROTOCOL_VERSION, version);
        }
        request
    }
}
