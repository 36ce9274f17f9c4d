//! `warden serve`: a Streamable HTTP endpoint in front of a stdio MCP server.
//!
//! Each legacy session (opened by `initialize`) gets its own child process,
//! its own plugin instances and its own relay. HTTP requests feed the relay as
//! client frames; what the relay sends to the client is routed back to the
//! HTTP request it answers, or to the session's GET stream.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub mod auth;
pub mod callers;
pub mod http;
mod http_auth;
pub mod http_batch;
pub mod http_guard;
mod http_response;
mod http_session;
pub mod http_sse;
pub mod listener;
mod modern;
pub mod oauth;
pub mod streams;
pub mod tls;

pub use http_sse::{MESSAGES_PATH, SSE_PATH};

use http_session::route;
pub use http_session::HttpSession;
use modern::Modern;
pub use modern::ModernReply;

use streams::Streams;

use crate::audit::AuditSink;
use crate::era;
use crate::jsonrpc;
use crate::plugin::instances::{Caller, SessionFacts, Transport};
use crate::plugin::{Instances, Plugins, Runtime, RuntimeOptions};
use crate::relay::Relay;
use crate::session;
use crate::start::StartError;
use crate::telemetry::metrics::SessionGauge;
use crate::transport::framing::Frame;
use crate::transport::QUEUE;
use crate::upstream::exchange::SubjectToken;
use crate::upstream::{Forwarded, Opening, Target};
use callers::Callers;

/// Everything `warden serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on (127.0.0.1 unless told otherwise).
    pub listen: SocketAddr,
    /// The MCP endpoint's path.
    pub path: String,
    /// The plugins folder; `None` runs with an empty chain.
    pub plugins: Option<PathBuf>,
    /// The server it fronts.
    pub upstream: Target,
    /// The upstream's name in plugin contexts and audit records.
    pub upstream_name: Option<String>,
    /// Largest JSON-RPC message accepted from the upstream.
    pub max_message_bytes: usize,
    /// Largest HTTP request body accepted.
    pub max_body_bytes: usize,
    /// Origins allowed besides loopback ones; `*` allows any.
    pub allowed_origins: Vec<String>,
    /// `Host` values allowed besides loopback names (see [`http_guard`]).
    pub allowed_hosts: Vec<String>,
    /// Sessions idle this long are closed and their upstream stopped.
    pub session_idle: Duration,
    /// Most sessions open at once.
    pub max_sessions: usize,
    /// Most sessions one caller (or, without tokens, one address) holds.
    pub max_sessions_per_caller: usize,
    /// Most 2026-07-28 backings (upstream sessions per capability set) one caller holds.
    pub max_backings_per_caller: usize,
    /// Precompiled-component cache.
    pub cache_dir: Option<PathBuf>,
    /// Audit events sink.
    pub audit: AuditSink,
    /// Reload the plugins folder when it changes (SIGHUP reloads either way).
    pub watch: bool,
    /// The callers allowed in, by bearer token; `None` lets anyone in.
    pub clients: Option<Arc<auth::Clients>>,
    /// Connection cap, timeouts and the shutdown drain.
    pub limits: listener::ConnectionLimits,
    /// HTTPS on the listener, when set.
    pub tls: Option<tls::Tls>,
    /// JWT access tokens from an identity provider admit callers too.
    pub oauth: Option<Arc<oauth::ResourceServer>>,
    /// The main endpoint's path, in a virtual endpoint's gateway (whose `path` is its own).
    pub main_path: Option<String>,
}

/// The shared state of the gateway.
pub struct Gateway {
    plugins: Arc<Plugins>,
    options: ServeOptions,
    upstream_name: Arc<str>,
    sessions: Mutex<HashMap<String, Arc<HttpSession>>>,
    modern: Arc<Modern>,
    /// The gateway's virtual endpoints served so far, by path: each its own
    /// sessions and 2026-07-28 lane, so a session never crosses endpoints.
    endpoints: Mutex<HashMap<String, Arc<Gateway>>>,
    /// What the latest request of each caller key gave (shared by a gateway
    /// and its virtual endpoints; see [`callers`]).
    callers: Arc<Callers>,
}

/// Why a message could not be handed to a session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The session has ended (upstream gone, deleted or expired).
    #[error("session has ended")]
    Ended,
    /// The upstream could not be started.
    #[error(transparent)]
    Spawn(#[from] crate::upstream::child::SpawnError),
    /// Too many sessions are open, none of them idle.
    #[error("too many sessions (limit {0})")]
    Full(usize),
    /// This caller has as many sessions as it may, none of them idle.
    #[error("too many sessions for this caller (limit {0})")]
    CallerFull(usize),
    /// No session id could be minted.
    #[error("no OS random source for a session id: {0}")]
    Random(String),
    /// The client sent a request with the id of one still in flight.
    #[error("a request with id {0} is already in flight in this session")]
    IdInFlight(String),
}

/// Runs the gateway until `shutdown` resolves.
pub async fn run(options: ServeOptions, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let listener = TcpListener::bind(options.listen).await?;
    run_on(listener, options, shutdown).await
}

/// The metrics' name of a transport.
fn transport_label(transport: Transport) -> &'static str {
    match transport {
        Transport::Stdio => "stdio",
        Transport::StreamableHttp => "streamable-http",
        Transport::HttpSse => "http-sse",
    }
}

/// [`run`] on a listener already bound (tests bind port 0 and pass it in).
pub async fn run_on(
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let runtime = Runtime::new(RuntimeOptions { cache_dir: options.cache_dir.clone(), audit: options.audit.clone() })?;
    let (upstream, _gateway_watches) = crate::gateway::prepare(
        options.upstream.clone(),
        &runtime,
        &options.audit,
        Transport::StreamableHttp,
        options.max_message_bytes,
        options.watch,
    )
    .await?;
    if let Target::Virtual(v) = &upstream {
        if v.endpoint(&options.path).is_some() {
            return Err(StartError::EndpointAtMain(options.path.clone()));
        }
    }
    let options = ServeOptions { upstream, ..options };
    let plugins = Plugins::load(runtime, options.plugins.clone()).await?;
    tracing::info!(plugins = plugins.current().plugins().len(), "chain ready");
    crate::telemetry::health::HEALTH.plugins_loaded();
    let _watching = plugins.watch(options.watch)?;
    let address = listener.local_addr()?;
    // The address bound (a port of 0 is a real one now): endpoint URLs are made from it.
    let options = ServeOptions { listen: address, ..options };
    match &options.clients {
        Some(clients) => tracing::info!(callers = clients.len(), "clients must present a bearer token"),
        None if !address.ip().to_canonical().is_loopback() => {
            tracing::warn!("listening beyond loopback with no client authentication (see --client-tokens)")
        }
        None => {}
    }
    let scheme = if options.tls.is_some() { "https" } else { "http" };
    tracing::info!("listening on {scheme}://{address}{}", options.path);
    let limits = options.limits.clone();
    let tls = options.tls.clone();
    let gateway = Gateway::new(plugins, options);
    let reaper = tokio::spawn(reap_idle(gateway.clone()));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let connections = Arc::new(listener::Gauge::default());
    let accepting =
        listener::accept_until(listener, &limits, connections.clone(), stopping, |stream, peer, stop, held| {
            let (gateway, tls, patience) = (gateway.clone(), tls.clone(), limits.header_timeout);
            async move {
                match tls {
                    None => http::serve_connection(stream, peer, gateway, stop, held).await,
                    Some(tls) => match tls.accept(stream, patience).await {
                        Ok(stream) => http::serve_connection(stream, peer, gateway, stop, held).await,
                        Err(why) => tracing::debug!(%peer, "connection closed: {why}"),
                    },
                }
            }
        });
    tokio::select! {
        () = accepting => {}
        () = shutdown => {}
    }
    // Drain: no new connections; each open one finishes the call it carries
    // and closes (hyper's graceful shutdown); GET streams, which never end by
    // themselves, are ended now.
    let _ = stop.send(true);
    gateway.close_listeners();
    let open = connections.open();
    tracing::info!(connections = open, "shutting down: letting calls in flight finish (at most {:?})", limits.drain);
    if tokio::time::timeout(limits.drain, connections.until_zero()).await.is_err() {
        tracing::warn!(
            connections = connections.open(),
            "drain time is up: the calls still in flight are answered with an error"
        );
        gateway
            .answer_in_flight(jsonrpc::code::SHUTTING_DOWN, "Warden is shutting down; the call did not finish in time");
    }
    reaper.abort();
    // Closing a session answers what its upstream still owed with an error.
    gateway.close_all();
    let _ = tokio::time::timeout(Duration::from_secs(1), connections.until_zero()).await;
    Ok(())
}

impl Gateway {
    /// A gateway serving `chain` with these options.
    pub fn new(plugins: Arc<Plugins>, options: ServeOptions) -> Arc<Gateway> {
        Gateway::sharing(plugins, options, Arc::default())
    }

    /// A gateway that keeps what tokens gave in `callers` (a virtual endpoint shares its main one's).
    fn sharing(plugins: Arc<Plugins>, options: ServeOptions, callers: Arc<Callers>) -> Arc<Gateway> {
        let upstream_name = options.upstream.name(options.upstream_name.as_deref());
        let sessions = Mutex::new(HashMap::new());
        let endpoints = Mutex::default();
        Arc::new(Gateway { plugins, options, upstream_name, sessions, modern: Arc::default(), endpoints, callers })
    }

    /// Notes what a request of caller `key` gave: its claims and, for
    /// upstreams that exchange it, its access token.
    pub(crate) fn note_caller(&self, key: &Arc<str>, claims: &str, token: Option<&str>) {
        self.callers.note(key, claims, token);
    }

    /// Whether `path` is the main endpoint's.
    pub(crate) fn is_main_path(&self, path: &str) -> bool {
        self.options.main_path.as_deref().unwrap_or(&self.options.path) == path
    }

    /// What serves `path`: this gateway at its own path, a virtual endpoint
    /// of the config at its path, or nothing. An endpoint a reload removed
    /// is closed here, its sessions with it.
    pub fn for_path(self: &Arc<Self>, path: &str) -> Option<Arc<Gateway>> {
        if path == self.options.path {
            return Some(self.clone());
        }
        let Target::Virtual(upstream) = &self.options.upstream else { return None };
        let Some(view) = upstream.endpoint(path) else {
            let gone = lock(&self.endpoints).remove(path);
            if let Some(gone) = gone {
                tracing::info!(path, "virtual endpoint removed by the config; its sessions are closed");
                gone.close_all();
            }
            return None;
        };
        let mut endpoints = lock(&self.endpoints);
        let endpoint = endpoints.entry(path.to_owned()).or_insert_with(|| {
            let options = ServeOptions {
                path: path.to_owned(),
                upstream: Target::Virtual(view),
                main_path: Some(self.options.path.clone()),
                ..self.options.clone()
            };
            Gateway::sharing(self.plugins.clone(), options, self.callers.clone())
        });
        Some(endpoint.clone())
    }

    /// The scopes a token must carry at `path`: a virtual endpoint's own, or `[auth]`'s.
    pub fn required_scopes(&self, path: &str) -> Vec<String> {
        let main = self.options.oauth.as_ref().map(|s| s.config().required_scopes.clone()).unwrap_or_default();
        match &self.options.upstream {
            Target::Virtual(upstream) if path != self.options.path => upstream.required_scopes(path).unwrap_or(main),
            _ => main,
        }
    }

    /// The headers of a client's request that the gateway's upstreams may be
    /// given (`forward-headers`); none for a single upstream.
    pub fn forwarded(&self, headers: &hyper::HeaderMap) -> Forwarded {
        let Target::Virtual(upstream) = &self.options.upstream else { return Forwarded::default() };
        let mut taken = Vec::new();
        for name in upstream.forwards() {
            let values: Vec<&str> = headers.get_all(name.as_str()).iter().filter_map(|v| v.to_str().ok()).collect();
            if !values.is_empty() {
                taken.push((name, values.join(", ")));
            }
        }
        Forwarded(taken)
    }

    /// This gateway and its virtual endpoints.
    fn every(self: &Arc<Self>) -> Vec<Arc<Gateway>> {
        let mut all = vec![self.clone()];
        all.extend(lock(&self.endpoints).values().cloned());
        all
    }

    /// The options it runs with.
    pub fn options(&self) -> &ServeOptions {
        &self.options
    }

    /// Serves a 2026-07-28 message from `caller`, which belongs to no session.
    pub async fn serve_modern(
        &self,
        head: &jsonrpc::Head,
        raw: &Bytes,
        facts: era::Facts,
        caller: Option<Arc<str>>,
        owner: Arc<str>,
        forwarded: Forwarded,
    ) -> ModernReply {
        self.modern.clone().serve(self, head, raw, facts, (caller, owner, forwarded)).await
    }

    /// The live session with this id, if `caller` opened it (to anyone else it does not exist).
    pub fn session(&self, id: &str, caller: Option<&str>) -> Option<Arc<HttpSession>> {
        let session = lock(&self.sessions).get(id).cloned()?;
        if session.caller.as_deref() != caller {
            tracing::warn!(session = %id, "a session was presented by a caller other than its own; refused");
            return None;
        }
        session.touch();
        Some(session)
    }

    /// Opens a legacy session for `caller`: a fresh upstream process, plugin
    /// instances and relay. `owner` (the caller, or its address) holds at
    /// most `max_sessions_per_caller`; at either limit the least recently
    /// used idle session (its own, or anyone's for the global one) makes room,
    /// so one caller cannot keep everyone else out.
    pub fn open_session(
        &self,
        transport: Transport,
        caller: Option<Arc<str>>,
        owner: Arc<str>,
        forwarded: Forwarded,
    ) -> Result<Arc<HttpSession>, SessionError> {
        self.make_room(&owner)?;
        let id = new_session_id()?;
        let session = self.start_session(id.clone(), true, transport, caller, owner, forwarded)?;
        lock(&self.sessions).insert(id, session.clone());
        tracing::info!(session = %session.id, "session opened");
        Ok(session)
    }

    /// Starts an upstream, plugin instances, a relay and the router to HTTP
    /// streams. `legacy`: a client session (its id in plugin contexts,
    /// resumable streams); otherwise one shared by modern requests.
    pub(crate) fn start_session(
        &self,
        id: String,
        legacy: bool,
        transport: Transport,
        caller: Option<Arc<str>>,
        owner: Arc<str>,
        forwarded: Forwarded,
    ) -> Result<Arc<HttpSession>, SessionError> {
        // A legacy session may meet a 2026-07-28-only upstream (bridged); the modern lane speaks for itself.
        let target = &self.options.upstream;
        // `caller` is a key (see `callers`): plugins and upstreams see its subject and claims.
        let known = caller.as_deref().and_then(|key| self.callers.get(key));
        let subject: Option<Arc<str>> = caller.as_deref().map(|key| Arc::from(callers::subject_of(key)));
        let claims = known.as_ref().map(|k| k.claims.clone());
        let opening = Opening {
            session: legacy.then(|| Arc::from(id.as_str())),
            caller: subject.clone(),
            claims: claims.clone(),
            forwarded,
            subject_token: subject
                .clone()
                .zip(known.as_ref())
                .map(|(subject, known)| SubjectToken { cell: known.token.clone(), subject }),
        };
        let (upstream, to_upstream) = if legacy {
            target.start(self.upstream_name.clone(), &opening, self.options.max_message_bytes)?
        } else {
            target.start_plain(self.upstream_name.clone(), &opening, self.options.max_message_bytes)?
        };
        let (to_client, client_rx) = mpsc::channel(QUEUE);
        let (input, mut input_rx) = mpsc::channel::<Bytes>(QUEUE);
        let facts = SessionFacts {
            id: legacy.then(|| Arc::from(id.as_str())),
            upstream: self.upstream_name.clone(),
            caller: subject.as_deref().map(|subject| Caller {
                subject: subject.to_owned(),
                claims: claims.as_deref().unwrap_or("{}").to_owned(),
            }),
            protocol_version: (!legacy).then(|| era::MODERN.to_owned()),
            transport,
        };
        let instances = Instances::new(self.plugins.runtime().clone(), self.plugins.current(), facts);
        let relay =
            Relay::new(instances, to_client, to_upstream, self.options.audit.clone(), self.options.max_message_bytes)
                .follow(self.plugins.subscribe())
                .stream_to_upstream(upstream.takes_pieces());
        let relay = if matches!(target, Target::Virtual(_)) { relay.in_gateway(true) } else { relay };
        let gauge = SessionGauge::open(transport_label(transport), if legacy { "handshake" } else { era::MODERN });
        let client = futures::stream::poll_fn(move |cx| input_rx.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::Line(b)))));
        let session = Arc::new(HttpSession {
            id: id.clone(),
            caller,
            owner,
            input: Mutex::new(Some(input)),
            streams: Mutex::new(Streams::new(legacy)),
            version: Mutex::new(None),
            old_sse: Mutex::new(None),
            last_seen: Mutex::new(Instant::now()),
        });
        let log_id = id.clone();
        tokio::spawn(async move {
            // Counted open while its relay runs.
            let _gauge = gauge;
            let end =
                session::drive(relay, upstream, client, std::future::pending(), crate::upstream::child::EXIT_GRACE)
                    .await;
            tracing::info!(session = %log_id, "session ended: {end:?}");
        });
        tokio::spawn(route(session.clone(), client_rx));
        Ok(session)
    }

    /// Ends `caller`'s session `id`: its upstream's input is closed and it is forgotten.
    pub fn close_session(&self, id: &str, caller: Option<&str>) -> bool {
        if self.session(id, caller).is_none() {
            return false;
        }
        self.end_session(id)
    }

    /// Ends session `id`, whoever opened it (Warden's own decision: expiry, a closed stream).
    /// Ends idle sessions until `owner` may open one more, or says why not.
    fn make_room(&self, owner: &str) -> Result<(), SessionError> {
        let per_caller = self.options.max_sessions_per_caller;
        let evicted = {
            let sessions = lock(&self.sessions);
            let idle_lru = |mine: bool| {
                sessions
                    .values()
                    .filter(|s| !mine || &*s.owner == owner)
                    .filter(|s| !s.has_open_streams())
                    .max_by_key(|s| s.idle_for())
                    .map(|s| s.id.clone())
            };
            let owned = sessions.values().filter(|s| &*s.owner == owner).count();
            if owned >= per_caller {
                Some(idle_lru(true).ok_or(SessionError::CallerFull(per_caller))?)
            } else if sessions.len() >= self.options.max_sessions {
                Some(idle_lru(false).ok_or(SessionError::Full(self.options.max_sessions))?)
            } else {
                None
            }
        };
        if let Some(id) = evicted {
            tracing::info!(session = %id, "idle session closed to make room for a new one");
            self.end_session(&id);
        }
        Ok(())
    }

    pub(crate) fn end_session(&self, id: &str) -> bool {
        let Some(session) = lock(&self.sessions).remove(id) else { return false };
        session.close();
        true
    }

    fn answer_in_flight(self: &Arc<Self>, code: i32, why: &str) {
        for gateway in self.every() {
            for session in lock(&gateway.sessions).values() {
                lock(&session.streams).answer_waiting(code, why);
            }
        }
    }

    fn close_listeners(self: &Arc<Self>) {
        for gateway in self.every() {
            for session in lock(&gateway.sessions).values() {
                lock(&session.streams).close_listener();
            }
        }
    }

    fn close_all(self: &Arc<Self>) {
        for gateway in self.every() {
            let sessions: Vec<_> = lock(&gateway.sessions).drain().map(|(_, s)| s).collect();
            for session in sessions {
                session.close();
            }
        }
    }
}

/// Closes sessions idle for longer than the configured time.
async fn reap_idle(gateway: Arc<Gateway>) {
    let idle = gateway.options.session_idle;
    let mut tick = tokio::time::interval((idle / 4).max(Duration::from_millis(100)));
    loop {
        tick.tick().await;
        for gateway in gateway.every() {
            let expired: Vec<String> = lock(&gateway.sessions)
                .values()
                .filter(|s| s.idle_for() > idle && !s.has_open_streams())
                .map(|s| s.id.clone())
                .collect();
            for id in expired {
                tracing::info!(session = %id, "session expired after {idle:?} idle");
                gateway.end_session(&id);
            }
        }
    }
}

/// 128 random bits as hex: visible ASCII, unguessable.
fn new_session_id() -> Result<String, SessionError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| SessionError::Random(e.to_string()))?;
    Ok(hex::encode(bytes))
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Options for unit tests: loopback, no plugins, no upstream.
    pub(crate) fn options() -> ServeOptions {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            path: "/mcp".to_owned(),
            plugins: None,
            upstream: Target::Command { command: Vec::new(), probe_era: false },
            upstream_name: None,
            max_message_bytes: 1 << 20,
            max_body_bytes: 1 << 20,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            session_idle: Duration::from_secs(60),
            max_sessions: 4,
            max_sessions_per_caller: 4,
            max_backings_per_caller: 4,
            cache_dir: None,
            audit: AuditSink::disabled(),
            watch: false,
            clients: None,
            limits: listener::ConnectionLimits::default(),
            tls: None,
            oauth: None,
            main_path: None,
        }
    }
}
