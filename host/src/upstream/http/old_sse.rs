//! The 2024-11-05 fallback (HTTP+SSE): a server that refuses Streamable HTTP
//! is reached through its event stream and the endpoint it names there.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT};
use http::{Method, Uri};
use http_body_util::BodyExt;

use super::{content_type, lock, read_limited, sse, Shared, UpstreamError, ERROR_BODY_LIMIT, OLD_SSE_ENDPOINT_WAIT};

/// Posts a message to an HTTP+SSE (2024-11-05) server's endpoint; the answer comes on its event stream.
pub(super) async fn post_old(shared: &Shared, endpoint: Uri, message: Bytes, id: Option<&str>) {
    if let Some(source) = &shared.options.dynamic {
        if let Err(why) = source.ready().await {
            return shared.fail(id, &UpstreamError::Credential(why)).await;
        }
    }
    let mut request = shared.request(Method::POST, Some(message));
    *request.uri_mut() = endpoint;
    match shared.client.request(request).await {
        Ok(response) if response.status().is_success() => drop(read_limited(response, ERROR_BODY_LIMIT).await),
        Ok(response) => {
            let status = response.status();
            let body = read_limited(response, ERROR_BODY_LIMIT).await.unwrap_or_default();
            shared.fail(id, &UpstreamError::Status { status, body: shared.snippet(&body) }).await;
        }
        Err(e) => {
            let why = UpstreamError::Unreachable {
                url: crate::config::gateway::shown_url(&shared.options.url.to_string()),
                why: e.to_string(),
            };
            shared.fail(id, &why).await
        }
    }
}

impl Shared {
    /// Opens an HTTP+SSE (2024-11-05) server's event stream and waits for the
    /// `endpoint` event; a task then feeds the stream's messages to the relay.
    pub(super) async fn open_old_sse(self: &Arc<Self>) -> Result<Uri, String> {
        let _one = self.renewing.lock().await;
        if let Some(endpoint) = self.old_endpoint.get() {
            return Ok(endpoint.clone());
        }
        let mut request = self.request(Method::GET, None);
        request.headers_mut().insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        let response = self.client.request(request).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() || content_type(&response) != "text/event-stream" {
            return Err(format!("GET answered HTTP {}", response.status()));
        }
        let mut parser = sse::Parser::new(self.max_message_bytes);
        let mut body = response.into_body();
        let endpoint = loop {
            let frame = tokio::time::timeout(OLD_SSE_ENDPOINT_WAIT, body.frame()).await;
            let Ok(Some(Ok(frame))) = frame else { return Err("no endpoint event".to_owned()) };
            let Some(chunk) = frame.data_ref() else { continue };
            let events = parser.push(chunk).map_err(|e| e.to_string())?;
            if let Some(event) = events.iter().find(|e| e.kind == "endpoint") {
                break self.endpoint(&event.data)?;
            }
        };
        // Only set here, under `renewing`.
        let _ = self.old_endpoint.set(endpoint.clone());
        tracing::info!(upstream = %self.options.url, "the upstream speaks HTTP+SSE (2024-11-05)");
        let shared = self.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(frame)) = body.frame().await {
                let Some(chunk) = frame.data_ref() else { continue };
                let Ok(events) = parser.push(chunk) else { break };
                for event in events.into_iter().filter(|e| e.kind == "message" && !e.data.is_empty()) {
                    shared.deliver(event.data, true).await;
                }
            }
            tracing::warn!(upstream = %shared.options.url, "the upstream's HTTP+SSE stream ended");
        });
        *lock(&self.old_reader) = Some(reader);
        Ok(endpoint)
    }

    /// Where an `endpoint` event says to POST: on the same origin as the stream, nowhere else.
    pub(super) fn endpoint(&self, data: &[u8]) -> Result<Uri, String> {
        let text = std::str::from_utf8(data).map_err(|_| "endpoint is not UTF-8")?.trim();
        let base = &self.options.url;
        let uri: Uri = if text.starts_with('/') {
            let authority = base.authority().ok_or("upstream URL has no authority")?;
            format!("{}://{authority}{text}", base.scheme_str().unwrap_or("http")).parse()
        } else {
            text.parse()
        }
        .map_err(|e| format!("endpoint {text:?}: {e}"))?;
        if uri.scheme() != base.scheme() || uri.authority() != base.authority() {
            return Err(format!("endpoint {text:?} is not on the upstream's origin; refused"));
        }
        Ok(uri)
    }
}
