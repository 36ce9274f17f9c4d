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
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::Uri;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use super::exchange::HeaderSource;
use super::sse;
use super::Upstream;
use crate::jsonrpc::{self, method, Kind};
use crate::transport::framing::{Frame, Outgoing};
use crate::transport::QUEUE;

mod error;
mod events;
mod old_sse;
mod params;
mod streamable;

pub use error::UpstreamError;

use streamable::{end_session, listen, mirrored, post};

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
    /// A header made ready before each POST (an exchanged token).
    pub dynamic: Option<Arc<dyn HeaderSource>>,
}

impl std::fmt::Debug for RemoteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header names only: values may be credentials.
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("RemoteOptions")
            .field("url", &self.url)
            .field("headers", &names)
            .field("dynamic", &self.dynamic.is_some())
            .finish()
    }
}

impl RemoteOptions {
    /// Parses `--url` and the `NAME: VALUE` header lines.
    pub fn new(url: &str, headers: &[String]) -> Result<RemoteOptions, RemoteError> {
        let bad_url = |why: String| RemoteError::Url { url: url.to_owned(), why };
        let parsed_url: Uri = url.parse().map_err(|e: http::uri::InvalidUri| bad_url(e.to_string()))?;
        if !matches!(parsed_url.scheme_str(), Some("http" | "https")) {
            return Err(bad_url("only http:// and https:// are supported".into()));
        }
        let mut parsed = Vec::new();
        for line in headers {
            let (name, value) = line.split_once(':').ok_or(RemoteError::NoColon)?;
            let name: HeaderName = name.trim().parse().map_err(|_| RemoteError::BadName(name.trim().to_owned()))?;
            let mut value: HeaderValue = value.trim().parse().map_err(|_| RemoteError::BadValue(name.to_string()))?;
            value.set_sensitive(true);
            parsed.push((name, value));
        }
        Ok(RemoteOptions { url: parsed_url, headers: parsed, dynamic: None })
    }

    /// The options for `url` (if any) with headers gathered from the command
    /// line (`Name: value`), the environment (`NAME=VAR`) and files
    /// (`NAME=PATH`, one trailing newline dropped). Values are never printed.
    pub fn gather(
        url: Option<&str>,
        lines: &[String],
        from_env: &[String],
        from_file: &[String],
    ) -> Result<Option<RemoteOptions>, RemoteError> {
        let Some(url) = url else {
            if lines.len() + from_env.len() + from_file.len() > 0 {
                return Err(RemoteError::NoRemote);
            }
            return Ok(None);
        };
        let mut all = lines.to_vec();
        for spec in from_env {
            let (name, var) = spec.split_once('=').ok_or(RemoteError::Spec("--header-from-env", "NAME=VAR"))?;
            let value =
                std::env::var(var).map_err(|_| RemoteError::EnvUnset { name: name.to_owned(), var: var.to_owned() })?;
            all.push(format!("{name}: {value}"));
        }
        for spec in from_file {
            let (name, path) = spec.split_once('=').ok_or(RemoteError::Spec("--header-from-file", "NAME=PATH"))?;
            let value = std::fs::read_to_string(path).map_err(|source| RemoteError::File {
                name: name.to_owned(),
                path: path.to_owned(),
                source,
            })?;
            all.push(format!("{name}: {}", value.trim_end_matches(['\r', '\n'])));
        }
        RemoteOptions::new(url, &all).map(Some)
    }
}

/// Why a remote upstream's options were refused. Never quotes a header's value.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The URL does not parse, or is not http(s).
    #[error("upstream URL {url:?}: {why}")]
    Url {
        /// As given.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// A header line without a colon.
    #[error("upstream header must be `Name: value` (got no colon)")]
    NoColon,
    /// Not a header name.
    #[error("upstream header name {0:?} is not a valid header name")]
    BadName(String),
    /// Not a header value.
    #[error("upstream header {0}: the value is not a valid header value")]
    BadValue(String),
    /// A `--header-from-…` argument without its `=`.
    #[error("{0} takes {1}")]
    Spec(&'static str, &'static str),
    /// The variable a header comes from is unset.
    #[error("--header-from-env {name}: ${var} is not set")]
    EnvUnset {
        /// The header.
        name: String,
        /// The variable.
        var: String,
    },
    /// The file a header comes from cannot be read.
    #[error("--header-from-file {name}: {path}: {source}")]
    File {
        /// The header.
        name: String,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Headers, but no remote upstream to send them to.
    #[error("--header options need a remote upstream (--url / --upstream-url)")]
    NoRemote,
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
    /// What `tools/call` mirrors into `Mcp-Param-*` headers, per tool.
    params: params::ParamHeaders,
}

/// Connects the relay to a remote server. Returns the upstream (for
/// [`crate::session::drive`]) and the queue the relay sends into.
pub fn connect(name: Arc<str>, options: RemoteOptions, max_message_bytes: usize) -> (Upstream, mpsc::Sender<Outgoing>) {
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots().https_or_http().enable_http1().build();
    let client = Client::builder(TokioExecutor::new()).build(https);
    let (to_upstream, input) = mpsc::channel(QUEUE);
    let (output_tx, mut output_rx) = mpsc::channel(QUEUE);
    let shown = crate::config::gateway::shown_url(&options.url.to_string());
    tracing::info!(upstream = %name, url = %shown, "upstream is remote (Streamable HTTP)");
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
        params: params::ParamHeaders::default(),
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
        let modern = request_id.as_ref().and_then(|_| mirrored(&message, &shared.params));
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

async fn read_limited(response: http::Response<hyper::body::Incoming>, max: usize) -> Result<Bytes, UpstreamError> {
    let limited = http_body_util::Limited::new(response.into_body(), max);
    match limited.collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) => Err(UpstreamError::Protocol(format!("upstream answer unreadable or over the {max}-byte limit: {e}"))),
    }
}

impl Shared {
    /// The start of an error body, with Warden's own credentials for this
    /// upstream taken out: a server may echo the request it refused.
    pub(super) fn snippet(&self, body: &[u8]) -> String {
        // Taken out of the whole body first: a cut could leave most of a secret behind.
        let text = scrubbed(String::from_utf8_lossy(body).into_owned(), &self.secrets());
        snippet(text.as_bytes())
    }

    /// A JSON-RPC answer in an HTTP error's body, with Warden's own
    /// credentials for this upstream taken out (inside its strings).
    pub(super) fn scrubbed_answer(&self, body: Bytes) -> Bytes {
        let secrets = self.secrets();
        if !secrets.iter().any(|s| memchr::memmem::find(&body, s.as_bytes()).is_some()) {
            return body;
        }
        Bytes::from(scrubbed(String::from_utf8_lossy(&body).into_owned(), &secrets))
    }

    /// The credentials Warden sends this upstream, as an echo may write them.
    fn secrets(&self) -> Vec<String> {
        let dynamic = self.options.dynamic.as_ref().and_then(|d| d.current());
        let values = self.options.headers.iter().chain(dynamic.as_ref()).map(|(_, v)| v);
        echoes(values)
    }
}

/// Each value (whole, or after a scheme such as `Bearer `) as an echo may
/// write it: as is, JSON-escaped (`\/`), percent-encoded. At least 8 bytes.
fn echoes<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Vec<String> {
    let mut out = Vec::new();
    for value in values {
        let Ok(value) = value.to_str() else { continue };
        let bare = value.split_once(' ').map_or(value, |(_, rest)| rest);
        for secret in [value, bare] {
            let percent: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            for form in [secret.to_owned(), secret.replace('/', "\\/"), percent.replace('+', "%20")] {
                if form.len() >= 8 && !out.contains(&form) {
                    out.push(form);
                }
            }
        }
    }
    // The longest first: a whole value goes before the part after its scheme.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

/// `text` without any of `secrets`.
fn scrubbed(mut text: String, secrets: &[String]) -> String {
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "[redacted]");
        }
    }
    text
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
    fn an_echoed_credential_is_taken_out_of_an_error_body() {
        let values = [HeaderValue::from_static("Bearer sek-remote/token+123="), HeaderValue::from_static("short")];
        let secrets = echoes(values.iter());
        let body = "401: you sent authorization: Bearer sek-remote/token+123= and x: sek-remote/token+123=, short, \
                    as JSON Bearer sek-remote\\/token+123=, in a URL Bearer%20sek-remote%2Ftoken%2B123%3D"
            .to_owned();
        let text = scrubbed(body, &secrets);
        assert!(!text.contains("sek-remote"), "{text}");
        assert!(text.contains("[redacted]") && text.contains("short"), "{text}");
        // Past the cut a snippet makes: still taken out first.
        let long = format!("{}Bearer sek-remote/token+123=", "x".repeat(ERROR_BODY_BYTES - 20));
        assert!(!snippet(scrubbed(long, &secrets).as_bytes()).contains("sek-remote/tok"));
    }

    #[test]
    fn bodies_become_single_lines() {
        assert_eq!(one_line(Bytes::from_static(b"{\"id\":1}\n")), Bytes::from_static(b"{\"id\":1}"));
        let pretty = Bytes::from_static(b"{\n  \"id\": 1,\r\n  \"result\": {}\n}");
        assert_eq!(one_line(pretty), Bytes::from_static(b"{\"id\":1,\"result\":{}}"));
        assert!(one_line(Bytes::from_static(b" \n")).is_empty());
    }
}
