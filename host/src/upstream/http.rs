//! A remote MCP server over Streamable HTTP (the 2025-03-26 to 2025-11-25
//! transport), over plain HTTP or TLS (rustls, Mozilla's roots).
//!
//! The relay sends whole messages into a queue, as it does to a child's stdin;
//! a pump task turns each into a POST and feeds what comes back, a JSON body or
//! an event stream with the server's own requests and notifications before the
//! answer, into the upstream's output, as a child's stdout would. Requests are
//! posted concurrently (pipelining survives; at most 64 at once), except `initialize`, which is
//! answered before anything else goes so that the session id the server mints
//! is on every later request. Once the session exists a GET stream carries what
//! the server sends on its own. When the client leaves, the session is ended
//! with DELETE.
//!
//! A server that forgets the session (`404`, e.g. after a restart) gets the
//! client's `initialize` again, once, and the request is retried on the new
//! session; the client never notices. Other failures become JSON-RPC errors to
//! the request concerned (`-31052`): a server that cannot be reached (retried
//! with backoff first), an HTTP error status, a stream that ends before its
//! answer. Header values given for the upstream (credentials) are never logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use crate::era;
use crate::jsonrpc::{self, code, method, Kind};
use super::Upstream;
use crate::transport::QUEUE;
use crate::transport::framing::{Frame, Outgoing};
use super::sse;

const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
/// Connection attempts per request before it is answered with an error.
const CONNECT_ATTEMPTS: u32 = 4;
/// First pause between attempts; it doubles each time.
const BACKOFF: Duration = Duration::from_millis(100);
/// Error bodies are quoted up to this many bytes.
const ERROR_BODY_BYTES: usize = 512;
/// Error bodies are read up to this many bytes.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// How long an HTTP+SSE server may take to name its endpoint.
const OLD_SSE_ENDPOINT_WAIT: Duration = Duration::from_secs(10);
/// How long the rest of a POST's event stream is read after its answer.
const DRAIN_AFTER_ANSWER: Duration = Duration::from_millis(250);
/// The longest `retry` delay honoured before resuming a broken stream.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);
/// POSTs in flight per session; more wait (and the relay's queue fills behind them).
const IN_FLIGHT: usize = 64;

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Where the remote server is and what to send it besides the MCP headers.
#[derive(Clone)]
pub struct RemoteOptions {
    /// The MCP endpoint, `http://` or `https://`.
    pub url: Uri,
    /// Extra headers (credentials among them), marked sensitive.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for RemoteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header names only: values may be credentials.
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("RemoteOptions").field("url", &self.url).field("headers", &names).finish()
    }
}

impl RemoteOptions {
    /// Parses `--url` and the `NAME: VALUE` header lines.
    pub fn new(url: &str, headers: &[String]) -> anyhow::Result<RemoteOptions> {
        let url: Uri = url.parse().map_err(|e| anyhow::anyhow!("upstream URL {url:?}: {e}"))?;
        match url.scheme_str() {
            Some("http" | "https") => {}
            _ => anyhow::bail!("upstream URL {url}: only http:// and https:// are supported"),
        }
        let mut parsed = Vec::new();
        for line in headers {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("upstream header must be `Name: value` (got no colon)"))?;
            let name: HeaderName =
                name.trim().parse().map_err(|e| anyhow::anyhow!("upstream header name {:?}: {e}", name.trim()))?;
            let mut value: HeaderValue = value
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("upstream header {name}: the value is not a valid header value"))?;
            value.set_sensitive(true);
            parsed.push((name, value));
        }
        Ok(RemoteOptions { url, headers: parsed })
    }
}

/// What the pump and its request tasks share.
struct Shared {
    client: HttpClient,
    options: RemoteOptions,
    /// The session id the server minted at `initialize`.
    session: Mutex<Option<HeaderValue>>,
    /// The protocol version it answered `initialize` with.
    version: Mutex<Option<HeaderValue>>,
    /// The client's `initialize`, replayed when the server forgets the session.
    initialize: Mutex<Option<Bytes>>,
    /// Held while a new session is being made, so that only one is.
    renewing: tokio::sync::Mutex<()>,
    /// Where to POST, once the server turned out to speak HTTP+SSE (2024-11-05).
    old_endpoint: std::sync::OnceLock<Uri>,
    /// The task reading that server's event stream.
    old_reader: Mutex<Option<tokio::task::JoinHandle<()>>>,
    output: mpsc::Sender<std::io::Result<Frame>>,
    max_message_bytes: usize,
}

/// Connects the relay to a remote server. Returns the upstream (for
/// [`crate::session::drive`]) and the queue the relay sends into.
pub fn connect(name: Arc<str>, options: RemoteOptions, max_message_bytes: usize) -> (Upstream, mpsc::Sender<Outgoing>) {
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots().https_or_http().enable_http1().build();
    let client = Client::builder(TokioExecutor::new()).build(https);
    let (to_upstream, input) = mpsc::channel(QUEUE);
    let (output_tx, mut output_rx) = mpsc::channel(QUEUE);
    tracing::info!(upstream = %name, url = %options.url, "upstream is remote (Streamable HTTP)");
    let shared = Arc::new(Shared {
        client,
        options,
        session: Mutex::new(None),
        version: Mutex::new(None),
        initialize: Mutex::new(None),
        renewing: tokio::sync::Mutex::new(()),
        old_endpoint: std::sync::OnceLock::new(),
        old_reader: Mutex::new(None),
        output: output_tx,
        max_message_bytes,
    });
    let pump = tokio::spawn(pump(shared, input));
    let output = futures::stream::poll_fn(move |cx| output_rx.poll_recv(cx));
    (Upstream::remote(name, Box::pin(output), pump), to_upstream)
}

/// Posts what the relay sends until it is done, then ends the session.
async fn pump(shared: Arc<Shared>, mut input: mpsc::Receiver<Outgoing>) {
    let mut posts = JoinSet::new();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    // Modern requests in flight: closing a request's stream is how it is cancelled.
    let modern_posts: Arc<Mutex<HashMap<String, AbortHandle>>> = Arc::default();
    let mut listener = None;
    let mut pieces = BytesMut::new();
    while let Some(item) = input.recv().await {
        let message = match item {
            // The relay gathers for HTTP upstreams, but pieces would still make a message.
            Outgoing::Part(part) => {
                pieces.extend_from_slice(&part);
                continue;
            }
            Outgoing::Message(last) if pieces.is_empty() => last,
            Outgoing::Message(last) => {
                pieces.extend_from_slice(&last);
                pieces.split().freeze()
            }
        };
        let head = jsonrpc::parse_head(&message).ok();
        let initialize = head.as_ref().and_then(|h| h.method.as_deref()) == Some(method::INITIALIZE);
        if head.as_ref().and_then(|h| h.method.as_deref()) == Some(method::CANCELLED) {
            if let Some(post) = jsonrpc::cancelled_request(&message).and_then(|id| lock(&modern_posts).remove(&id)) {
                // The modern era has no cancel message over HTTP: the stream is closed instead.
                post.abort();
                continue;
            }
        }
        let request_id = head.filter(|h| h.kind == Kind::Request).and_then(|h| h.id);
        let modern = request_id.as_ref().and_then(|_| mirrored(&message));
        if initialize {
            // Everything after it needs the session id it brings.
            post(shared.clone(), message, request_id, true, None).await;
            if listener.is_none() && lock(&shared.session).is_some() {
                listener = Some(tokio::spawn(listen(shared.clone())));
            }
        } else {
            let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
            let shared = shared.clone();
            let tracked = modern.as_ref().and(request_id.clone());
            let done = tracked.clone().map(|id| (id, modern_posts.clone()));
            // Held across the spawn so the task cannot finish (and forget itself) before it is noted.
            let mut modern_posts = lock(&modern_posts);
            let task = posts.spawn(async move {
                post(shared, message, request_id, false, modern).await;
                if let Some((id, modern_posts)) = done {
                    lock(&modern_posts).remove(&id);
                }
                drop(permit);
            });
            if let Some(id) = tracked {
                modern_posts.insert(id, task);
            }
        }
        while posts.try_join_next().is_some() {}
    }
    // The client is gone: let answers in flight arrive, then end the session.
    while posts.join_next().await.is_some() {}
    if let Some(listener) = listener {
        listener.abort();
    }
    if let Some(reader) = lock(&shared.old_reader).take() {
        reader.abort();
    }
    end_session(&shared).await;
}

/// Posts one message and feeds its answer (and anything streamed before it) to the relay.
async fn post(shared: Arc<Shared>, message: Bytes, id: Option<String>, initialize: bool, modern: Option<Mirrored>) {
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
            return shared
                .fail(id.as_deref(), &format!("the upstream session expired and could not be renewed: {why}"))
                .await;
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
        return shared.fail(id.as_deref(), "the upstream session has expired (HTTP 404)").await;
    }
    if !status.is_success() {
        let json_body = content_type(&response) == "application/json";
        let body = read_limited(response, ERROR_BODY_LIMIT).await.unwrap_or_default();
        if json_body && id.as_deref().is_some_and(|id| answers(&body, id)) {
            // A JSON-RPC error answering the request (e.g. 404 + -32601, 400 + -32020): pass it on.
            return shared.deliver(body, false).await;
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
        let text = snippet(&body);
        return shared.fail(id.as_deref(), &format!("upstream answered HTTP {status}: {text}")).await;
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
            shared.fail(Some(&id), "the upstream's answer ended before it answered this request").await;
        }
    }
}

/// Posts a message to an HTTP+SSE (2024-11-05) server's endpoint; the answer comes on its event stream.
async fn post_old(shared: &Shared, endpoint: Uri, message: Bytes, id: Option<&str>) {
    let mut request = shared.request(Method::POST, Some(message));
    *request.uri_mut() = endpoint;
    match shared.client.request(request).await {
        Ok(response) if response.status().is_success() => drop(read_limited(response, ERROR_BODY_LIMIT).await),
        Ok(response) => {
            let status = response.status();
            let body = read_limited(response, ERROR_BODY_LIMIT).await.unwrap_or_default();
            let text = snippet(&body);
            shared.fail(id, &format!("upstream answered HTTP {status}: {text}")).await;
        }
        Err(e) => shared.fail(id, &format!("upstream {} unreachable ({e})", shared.options.url)).await,
    }
}

/// Whether an HTTP error body is a 2026-07-28 server's JSON-RPC error (then
/// the server is modern, and no older transport is tried).
fn is_modern_error(body: &[u8]) -> bool {
    let code = serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| v["error"]["code"].as_i64());
    code.is_some_and(|c| (-32022..=-32020).contains(&c))
}

/// The stream the server opens for what it sends on its own (GET). A server
/// that offers none answers 405; a dropped stream is reopened from its last event.
async fn listen(shared: Arc<Shared>) {
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
async fn end_session(shared: &Shared) {
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
async fn send(
    shared: &Shared,
    method: Method,
    body: Option<Bytes>,
    modern: Option<&Mirrored>,
) -> Result<http::Response<hyper::body::Incoming>, String> {
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
                return Err(format!("upstream {} unreachable ({e}{source})", shared.options.url));
            }
        }
    }
}

impl Shared {
    /// Opens an HTTP+SSE (2024-11-05) server's event stream and waits for the
    /// `endpoint` event; a task then feeds the stream's messages to the relay.
    async fn open_old_sse(self: &Arc<Self>) -> Result<Uri, String> {
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
    fn endpoint(&self, data: &[u8]) -> Result<Uri, String> {
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

    /// Makes a new session after the server forgot `failed`: the client's
    /// `initialize` again (its answer is not passed on), then `initialized`.
    async fn renew(&self, failed: Option<HeaderValue>) -> Result<(), String> {
        let _renewing = self.renewing.lock().await;
        if *lock(&self.session) != failed {
            return Ok(()); // Another request renewed it meanwhile.
        }
        let initialize = lock(&self.initialize).clone().ok_or("no initialize to replay")?;
        *lock(&self.session) = None;
        let response = send(self, Method::POST, Some(initialize), None).await?;
        if !response.status().is_success() {
            return Err(format!("initialize answered HTTP {}", response.status()));
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

    fn request(&self, method: Method, body: Option<Bytes>) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body.clone().unwrap_or_default()));
        *request.method_mut() = method;
        *request.uri_mut() = self.options.url.clone();
        let headers = request.headers_mut();
        for (name, value) in &self.options.headers {
            headers.append(name.clone(), value.clone());
        }
        headers.insert(ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        if body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(session) = lock(&self.session).clone() {
            headers.insert(SESSION_ID, session);
        }
        if let Some(version) = lock(&self.version).clone() {
            headers.insert(PROTOCOL_VERSION, version);
        }
        request
    }

    /// Feeds the events of a POST's stream to the relay; whether the answer to `id` came.
    /// A stream that ends or breaks before the answer is resumed (GET with
    /// `Last-Event-ID`) if its events carried ids, after the `retry` delay the
    /// server asked for.
    async fn events(&self, response: http::Response<hyper::body::Incoming>, id: Option<&str>, init: bool) -> bool {
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
    async fn read_events(
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
    async fn deliver(&self, message: Bytes, initialize: bool) {
        let message = one_line(message);
        if message.is_empty() {
            return;
        }
        if initialize {
            self.note_version(&message);
        }
        let _ = self.output.send(Ok(Frame::Line(message))).await;
    }

    /// Answers the request `id` (if any) with an error the relay passes to the client.
    async fn fail(&self, id: Option<&str>, why: &str) {
        tracing::warn!(upstream = %self.options.url, "{why}");
        if let Some(id) = id {
            let reply = jsonrpc::error_response(Some(id), code::UPSTREAM_FAILED, why, None);
            let _ = self.output.send(Ok(Frame::Line(reply))).await;
        }
    }

    fn note_version(&self, message: &[u8]) {
        if let Some(v) = jsonrpc::negotiated_version(message).and_then(|v| HeaderValue::from_str(&v).ok()) {
            *lock(&self.version) = Some(v);
        }
    }
}

/// The headers a 2026-07-28 request mirrors from its body, computed from the
/// body as it leaves (after any plugin changed it).
struct Mirrored {
    version: HeaderValue,
    method: HeaderValue,
    name: Option<HeaderValue>,
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
    }
}

/// The mirrored headers of a request, if its `_meta` names a modern version.
fn mirrored(message: &[u8]) -> Option<Mirrored> {
    memchr::memmem::find(message, era::meta::PROTOCOL_VERSION.as_bytes())?;
    let facts = era::facts(message)?;
    let version = facts.version.filter(|v| era::is_modern(v))?;
    let header = |value: &str| HeaderValue::from_str(&era::encode_header_value(value)).ok();
    Some(Mirrored {
        version: HeaderValue::from_str(&version).ok()?,
        method: header(&facts.method)?,
        name: facts.name.as_deref().and_then(header),
    })
}

/// A message as one line: HTTP bodies and event data may end with a newline or
/// be pretty-printed, and a stdio client reads one message per line.
fn one_line(message: Bytes) -> Bytes {
    let start = message.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(message.len());
    let end = message.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    let message = message.slice(start..end);
    if memchr::memchr2(b'\n', b'\r', &message).is_none() {
        return message;
    }
    // Line breaks can only sit between tokens in JSON (never inside a string): re-encode compactly.
    match serde_json::from_slice::<serde_json::Value>(&message) {
        Ok(value) => serde_json::to_vec(&value).map(Bytes::from).unwrap_or(message),
        Err(_) => message,
    }
}

/// Whether `message` is the answer to the request `id`.
fn answers(message: &[u8], id: &str) -> bool {
    jsonrpc::parse_head(message)
        .is_ok_and(|h| matches!(h.kind, Kind::Response | Kind::Error) && h.id.as_deref() == Some(id))
}

fn content_type(response: &http::Response<hyper::body::Incoming>) -> String {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .unwrap_or_default()
}

async fn read_limited(response: http::Response<hyper::body::Incoming>, max: usize) -> Result<Bytes, String> {
    let limited = http_body_util::Limited::new(response.into_body(), max);
    match limited.collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) => Err(format!("upstream answer unreadable or over the {max}-byte limit: {e}")),
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_BYTES)]).trim().to_owned();
    if text.is_empty() {
        "(no body)".to_owned()
    } else {
        text
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_become_single_lines() {
        assert_eq!(one_line(Bytes::from_static(b"{\"id\":1}\n")), Bytes::from_static(b"{\"id\":1}"));
        let pretty = Bytes::from_static(b"{\n  \"id\": 1,\r\n  \"result\": {}\n}");
        assert_eq!(one_line(pretty), Bytes::from_static(b"{\"id\":1,\"result\":{}}"));
        assert!(one_line(Bytes::from_static(b" \n")).is_empty());
    }
}
