//! `share = true`: one child of a stateless server for every session of the
//! gateway. Each session's lane keeps its own relay and chain (its plugins
//! see their own session and caller); only the upstream under them is one
//! process, reached through a [`Shared`] that tells the lanes apart:
//!
//! - requests get ids of the share's own, and their answers go back to the
//!   lane that asked under its id as it wrote it; progress tokens the same;
//!   `notifications/cancelled` names the share's id;
//! - the first lane's `initialize` initializes the child; every later one is
//!   answered with that answer, and `notifications/initialized` goes once;
//! - what the child announces (`list_changed`, log lines, resource updates)
//!   reaches every lane; a request it makes of a client (sampling,
//!   elicitation, roots) has no one client to go to and is refused;
//! - when the child ends, every lane's upstream ends with it (each session
//!   restarts its lane as after any crash) and the next `initialize` starts
//!   a new child.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::rewrite;
use crate::jsonrpc::{self, code, Kind, Message};
use crate::transport::framing::{Frame, Outgoing};
use crate::transport::QUEUE;
use crate::upstream::child::SpawnError;
use crate::upstream::{handle, Upstream};

/// What a lane's upstream end sends the share.
enum Command {
    Open { lane: u64, output: mpsc::Sender<std::io::Result<Frame>> },
    Message { lane: u64, bytes: Bytes },
    Close { lane: u64 },
}

/// A request of a lane's in flight at the child.
struct Asked {
    lane: u64,
    method: String,
    /// The lane's id, as it wrote it.
    id: String,
    /// Its progress token: the share's (by value, as [`jsonrpc::progress_token`]
    /// gives it), and the lane's as it wrote it.
    token: Option<(String, Box<RawValue>)>,
}

/// Starts the child the share runs.
pub type Start = Box<dyn Fn() -> Result<(Upstream, mpsc::Sender<Outgoing>), SpawnError> + Send + Sync>;

/// One shared child and the lanes on it.
pub struct Shared {
    commands: mpsc::UnboundedSender<Command>,
    next_lane: Mutex<u64>,
}

impl Shared {
    /// A share that starts its child with `start` when a lane first needs it.
    pub fn new(name: Arc<str>, start: Start) -> Arc<Shared> {
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(name, start, rx));
        Arc::new(Shared { commands, next_lane: Mutex::new(0) })
    }

    /// A lane's upstream: what the lane's relay sends goes to the share, what
    /// the child says to this lane comes out.
    pub fn attach(self: &Arc<Self>, name: Arc<str>) -> (Upstream, mpsc::Sender<Outgoing>) {
        let lane = {
            let mut next = self.next_lane.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *next += 1;
            *next
        };
        let (to_lane, mut from_share) = mpsc::channel(QUEUE);
        let _ = self.commands.send(Command::Open { lane, output: to_lane });
        let (to_share, mut from_relay) = mpsc::channel::<Outgoing>(QUEUE);
        let commands = self.commands.clone();
        let pump = tokio::spawn(async move {
            while let Some(Outgoing::Message(bytes) | Outgoing::Part(bytes)) = from_relay.recv().await {
                if commands.send(Command::Message { lane, bytes }).is_err() {
                    break;
                }
            }
            let _ = commands.send(Command::Close { lane });
        });
        let output: handle::Output = Box::pin(futures::stream::poll_fn(move |cx| from_share.poll_recv(cx)));
        (Upstream::remote(name, output, pump), to_share)
    }
}

/// The share's state while its task runs.
struct State {
    name: Arc<str>,
    child: Option<mpsc::Sender<Outgoing>>,
    lanes: HashMap<u64, mpsc::Sender<std::io::Result<Frame>>>,
    asked: HashMap<u64, Asked>,
    /// The child's `initialize` answer's result, once it gave one.
    introduced: Option<Box<RawValue>>,
    /// Lanes waiting for it: (lane, its id).
    waiting: Vec<(u64, String)>,
    initialized: bool,
    next: u64,
    /// Tasks (2025-11-25) by the child's id: the lane whose call made each.
    tasks: HashMap<String, u64>,
}

/// Most tasks a share remembers the owners of.
const MAX_TASKS: usize = 10_000;

/// A progress token no session can guess (one session's call cannot report
/// progress on another's by naming its token to the shared child).
fn share_token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: a token from the clock, still never another call's.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        return format!("warden-share-t{}", now.as_nanos());
    }
    format!("warden-share-{}", hex::encode(bytes))
}

/// The share's id for its own `initialize`.
const INIT_ID: &str = "\"warden-share-init\"";

async fn run(name: Arc<str>, start: Start, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut state = State {
        name,
        child: None,
        lanes: HashMap::new(),
        asked: HashMap::new(),
        introduced: None,
        waiting: Vec::new(),
        initialized: false,
        next: 0,
        tasks: HashMap::new(),
    };
    let mut upstream: Option<Upstream> = None;
    // A long line the child sends in pieces, gathered.
    let mut long = bytes::BytesMut::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => break,
                Some(Command::Open { lane, output }) => {
                    state.lanes.insert(lane, output);
                }
                Some(Command::Close { lane }) => {
                    state.lanes.remove(&lane);
                    state.asked.retain(|_, a| a.lane != lane);
                    state.tasks.retain(|_, owner| *owner != lane);
                }
                Some(Command::Message { lane, bytes }) => {
                    if upstream.is_none() {
                        match start() {
                            Ok((started, input)) => {
                                upstream = Some(started);
                                state.child = Some(input);
                            }
                            Err(e) => {
                                tracing::error!(upstream = %state.name, "shared upstream could not be started: {e}");
                                // The lane's upstream ends: its session restarts it after its backoff.
                                state.lanes.remove(&lane);
                                continue;
                            }
                        }
                    }
                    state.lane_said(lane, bytes).await;
                }
            },
            frame = async { upstream.as_mut()?.next().await }, if upstream.is_some() => match frame {
                Some(Ok(Frame::Line(bytes))) => state.child_said(bytes).await,
                Some(Ok(Frame::Start(bytes))) => {
                    long.clear();
                    long.extend_from_slice(&bytes);
                }
                Some(Ok(Frame::More(bytes))) => long.extend_from_slice(&bytes),
                Some(Ok(Frame::End(bytes))) => {
                    long.extend_from_slice(&bytes);
                    let whole = long.split().freeze();
                    state.child_said(whole).await;
                }
                Some(Ok(Frame::TooLarge { id, .. })) => state.too_large(id).await,
                Some(Err(_)) | None => {
                    tracing::warn!(upstream = %state.name, "shared upstream ended; its lanes end with it");
                    upstream = None;
                    state.ended();
                }
            },
        }
    }
}

impl State {
    async fn lane_said(&mut self, lane: u64, bytes: Bytes) {
        let Ok(m) = Message::parse(bytes) else { return };
        let method = m.head.method.as_deref().unwrap_or_default();
        match m.head.kind {
            Kind::Request if method == jsonrpc::method::INITIALIZE => {
                let id = m.head.raw_id.clone().unwrap_or_else(|| "null".into());
                if let Some(result) = &self.introduced {
                    let answer = jsonrpc::result_response(&id, result);
                    return self.tell_lane(lane, answer).await;
                }
                let first = self.waiting.is_empty();
                self.waiting.push((lane, id));
                if first {
                    self.tell_child(m.with_raw_id(INIT_ID)).await;
                }
            }
            Kind::Request if matches!(method, "tasks/get" | "tasks/result" | "tasks/cancel") => {
                // A task is its creator's: another session's is unknown here.
                let task = rewrite::fields(&m.raw)
                    .and_then(|f| rewrite::nested(&f, "params"))
                    .and_then(|p| rewrite::string(&p, "taskId"));
                if task.as_ref().and_then(|t| self.tasks.get(t)) != Some(&lane) {
                    let id = m.head.raw_id.clone().unwrap_or_else(|| "null".into());
                    let answer = jsonrpc::error_response(Some(&id), code::INVALID_PARAMS, "unknown task", None);
                    return self.tell_lane(lane, answer).await;
                }
                self.ask(lane, m).await;
            }
            Kind::Request => self.ask(lane, m).await,
            Kind::Notification if method == jsonrpc::method::INITIALIZED => {
                if !std::mem::replace(&mut self.initialized, true) {
                    self.tell_child(m.raw).await;
                }
            }
            Kind::Notification if method == jsonrpc::method::CANCELLED => {
                let theirs = jsonrpc::cancelled_request(&m.raw);
                let ours = self
                    .asked
                    .iter()
                    .find(|(_, a)| a.lane == lane && theirs.is_some() && jsonrpc::id_key(&a.id) == theirs)
                    .map(|(k, _)| *k);
                if let Some(ours) = ours {
                    let sent = rewrite::fields(&m.raw).map(|mut f| {
                        let mut params = rewrite::nested(&f, "params").unwrap_or_default();
                        rewrite::set(&mut params, "requestId", &ours);
                        rewrite::set_object(&mut f, "params", &params);
                        rewrite::to_bytes(&f)
                    });
                    if let Some(sent) = sent {
                        self.tell_child(sent).await;
                    }
                }
            }
            // Every other notification of a client (roots changed …) is one
            // session's, not the shared server's: not passed on.
            Kind::Notification => {}
            // Answers to requests the child made: none reaches a lane (see from_child).
            Kind::Response | Kind::Error => {}
        }
    }

    /// Sends a lane's request to the child under an id, and progress token,
    /// of the share's.
    async fn ask(&mut self, lane: u64, m: Message) {
        self.next += 1;
        let ours = self.next;
        let mut sent = m.with_raw_id(&ours.to_string());
        let theirs = rewrite::fields(&m.raw)
            .and_then(|f| rewrite::nested(&f, "params"))
            .and_then(|p| rewrite::nested(&p, "_meta"))
            .and_then(|mut meta| meta.remove("progressToken"));
        let mine = share_token();
        if theirs.is_some() {
            if let Some(with_token) = rewrite::with_param(&sent, None, &["_meta", "progressToken"], &mine) {
                sent = with_token;
            }
        }
        let key = jsonrpc::id_key(&serde_json::Value::from(mine).to_string());
        let token = theirs.and_then(|theirs| Some((key?, theirs)));
        let id = m.head.raw_id.clone().unwrap_or_else(|| "null".into());
        let method = m.head.method.clone().unwrap_or_default();
        self.asked.insert(ours, Asked { lane, method, id, token });
        self.tell_child(sent).await;
    }

    /// Learns the owner of a task an answer creates, and keeps a `tasks/list`
    /// answer to the asking lane's own tasks.
    fn own_tasks(&mut self, asked: &Asked, answer: Bytes) -> Bytes {
        if memchr::memmem::find(&answer, b"taskId").is_none() {
            return answer;
        }
        let Some(mut f) = rewrite::fields(&answer) else { return answer };
        let Some(mut result) = rewrite::nested(&f, "result") else { return answer };
        if asked.method == "tasks/list" {
            let listed: Vec<Box<RawValue>> =
                result.get("tasks").and_then(|t| serde_json::from_str(t.get()).ok()).unwrap_or_default();
            let mine: Vec<Box<RawValue>> = listed
                .into_iter()
                .filter(|t| {
                    let id = rewrite::fields(t.get().as_bytes()).and_then(|t| rewrite::string(&t, "taskId"));
                    id.and_then(|id| self.tasks.get(&id).copied()) == Some(asked.lane)
                })
                .collect();
            rewrite::set(&mut result, "tasks", &mine);
            rewrite::set_object(&mut f, "result", &result);
            return rewrite::to_bytes(&f);
        }
        let created = rewrite::nested(&result, "task").and_then(|t| rewrite::string(&t, "taskId"));
        if let Some(task) = created {
            if self.tasks.len() < MAX_TASKS && !self.tasks.contains_key(&task) {
                self.tasks.insert(task, asked.lane);
            }
        }
        answer
    }

    async fn child_said(&mut self, bytes: Bytes) {
        let Ok(m) = Message::parse(bytes) else { return };
        match m.head.kind {
            Kind::Response | Kind::Error if m.head.raw_id.as_deref() == Some(INIT_ID) => {
                let result = rewrite::fields(&m.raw).and_then(|mut f| f.remove("result"));
                for (lane, id) in std::mem::take(&mut self.waiting) {
                    let answer = match &result {
                        Some(result) => jsonrpc::result_response(&id, result),
                        None => m.with_raw_id(&id),
                    };
                    self.tell_lane(lane, answer).await;
                }
                self.introduced = result;
            }
            Kind::Response | Kind::Error => {
                let asked =
                    m.head.id.as_deref().and_then(|k| k.parse::<u64>().ok()).and_then(|k| self.asked.remove(&k));
                if let Some(asked) = asked {
                    let answer = self.own_tasks(&asked, m.with_raw_id(&asked.id));
                    self.tell_lane(asked.lane, answer).await;
                }
            }
            Kind::Request => {
                // No one client to ask: refused, so the server does not wait.
                let id = m.head.raw_id.clone().unwrap_or_else(|| "null".into());
                let text = "a shared upstream has no one client to ask (share = true)";
                self.tell_child(jsonrpc::error_response(Some(&id), code::METHOD_NOT_FOUND, text, None)).await;
            }
            Kind::Notification if m.head.method.as_deref() == Some("notifications/progress") => {
                let Some(token) = jsonrpc::progress_token(&m.raw) else { return };
                let owner = self.asked.values().find(|a| a.token.as_ref().is_some_and(|(ours, _)| *ours == token));
                let Some((lane, theirs)) = owner.and_then(|a| Some((a.lane, a.token.as_ref()?.1.get().to_owned())))
                else {
                    return;
                };
                // Under the token the lane gave.
                let sent = rewrite::fields(&m.raw).and_then(|mut f| {
                    let mut params = rewrite::nested(&f, "params")?;
                    rewrite::set_raw(&mut params, "progressToken", &theirs);
                    rewrite::set_object(&mut f, "params", &params);
                    Some(rewrite::to_bytes(&f))
                });
                if let Some(sent) = sent {
                    self.tell_lane(lane, sent).await;
                }
            }
            Kind::Notification if m.head.method.as_deref() == Some("notifications/tasks/status") => {
                // A task's state is its creator's to hear.
                let task = rewrite::fields(&m.raw)
                    .and_then(|f| rewrite::nested(&f, "params"))
                    .and_then(|p| rewrite::string(&p, "taskId"));
                if let Some(&lane) = task.as_ref().and_then(|t| self.tasks.get(t)) {
                    self.tell_lane(lane, m.raw.clone()).await;
                }
            }
            Kind::Notification => {
                let lanes: Vec<u64> = self.lanes.keys().copied().collect();
                for lane in lanes {
                    self.tell_lane(lane, m.raw.clone()).await;
                }
            }
        }
    }

    /// An answer over the size limit: the lane that asked gets an error instead.
    async fn too_large(&mut self, id: Option<String>) {
        let asked = id
            .and_then(|id| jsonrpc::id_key(&id))
            .and_then(|k| k.parse::<u64>().ok())
            .and_then(|k| self.asked.remove(&k));
        if let Some(asked) = asked {
            let text = "the upstream's answer is over the size limit";
            let answer = jsonrpc::error_response(Some(&asked.id), code::MESSAGE_TOO_LARGE, text, None);
            self.tell_lane(asked.lane, answer).await;
        }
    }

    /// The child is gone: every lane's upstream ends, and what they asked is theirs to answer.
    fn ended(&mut self) {
        self.child = None;
        self.tasks.clear();
        self.lanes.clear();
        self.asked.clear();
        self.waiting.clear();
        self.introduced = None;
        self.initialized = false;
    }

    async fn tell_child(&mut self, bytes: Bytes) {
        if let Some(child) = &self.child {
            let _ = child.send(Outgoing::Message(bytes)).await;
        }
    }

    async fn tell_lane(&mut self, lane: u64, bytes: Bytes) {
        if let Some(output) = self.lanes.get(&lane) {
            let _ = output.send(Ok(Frame::Line(bytes))).await;
        }
    }
}
