//! The session's upstreams coming and going: started, introduced with the
//! client's `initialize`, restarted with backoff, added and removed by a
//! reload; what they send the client.

use super::*;
use crate::telemetry::health::HEALTH;
use crate::telemetry::metrics;

impl Router {
    /// Closes every lane's input (no restarts follow).
    pub(super) fn close_lanes(&mut self) {
        self.restarts.clear();
        for u in &mut self.upstreams {
            u.lane = None;
            u.waiting.clear();
        }
    }

    /// Starts upstream `index`'s lane.
    pub(super) fn start_lane(&mut self, index: usize) {
        let u = &mut self.upstreams[index];
        if u.removed || u.lane.is_some() {
            return;
        }
        match Lane::start_here(index, &u.config, u.chain.clone(), &self.setup, &self.opening) {
            Ok((lane, output, running)) => {
                u.lane = Some(lane);
                u.started_at = Some(Instant::now());
                self.live += 1;
                self.outputs.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).push(output);
                self.running.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).push(running);
            }
            Err(e @ SpawnError::NoCredential { .. }) => {
                tracing::warn!(upstream = %u.name, "{e}");
                u.refused = Some(e.to_string());
            }
            Err(e) => {
                tracing::error!(upstream = %u.name, "upstream could not be started: {e}");
                HEALTH.upstream(&u.name, Some(format!("could not be started: {e}")));
                self.schedule_restart(index);
            }
        }
    }

    /// An upstream that did not initialize: its lane closes (what waits for
    /// it is answered when it ends) and it is started again after its backoff.
    pub(super) async fn restart_later(&mut self, lane: usize) {
        self.upstreams[lane].waking = false;
        self.upstreams[lane].lane = None;
        self.upstreams[lane].introduced = None;
        let waiting: Vec<u64> = self.upstreams[lane].waiting.drain(..).map(|(id, _)| id).collect();
        for id in waiting {
            if let Some(leg) = self.take_leg(id) {
                let why = self.upstreams[lane].failure.as_ref().map(|f| format!(": {f}")).unwrap_or_default();
                Box::pin(self.settle(leg.slot, lane, Err(format!("did not initialize{why}")))).await;
            }
        }
        self.schedule_restart(lane);
    }

    /// Starts upstream `index` again after its backoff: its restart delay,
    /// doubled for each failure in a row, at most [`MAX_RESTART_DELAY`].
    pub(super) fn schedule_restart(&mut self, index: usize) {
        let u = &mut self.upstreams[index];
        if u.removed {
            return;
        }
        let delay = u.config.restart_delay.saturating_mul(1 << u.failures.min(16)).min(MAX_RESTART_DELAY);
        if metrics::enabled() {
            let labels = metrics::UpstreamLabels { upstream: std::sync::Arc::from(u.name.as_str()) };
            metrics::METRICS.upstream_restarts.get_or_create(&labels).inc();
        }
        u.failures = u.failures.saturating_add(1);
        tracing::info!(upstream = %u.name, "starting it again in {}", humantime::format_duration(delay));
        self.restarts.push(Reverse((Instant::now() + delay, index)));
    }

    /// Upstreams whose backoff is over: started and introduced again.
    pub(super) async fn restart_due(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, index))) = self.restarts.peek().copied() {
            if at > now {
                break;
            }
            self.restarts.pop();
            if self.upstreams[index].removed || self.upstreams[index].lane.is_some() {
                continue;
            }
            self.start_lane(index);
            self.introduce(index).await;
        }
    }

    /// Asks an upstream that joined a session under way `initialize`, with the
    /// client's params; its items join the lists when it answers.
    pub(super) async fn introduce(&mut self, index: usize) {
        let Some(init) = self.init.clone() else { return };
        if self.upstreams[index].lane.is_none() {
            return;
        }
        let slot = self.next();
        let owed = Owed {
            client_id: String::new(),
            method: INTRODUCE.into(),
            open: 1,
            answers: Vec::new(),
            cursor: None,
            generation: 0,
        };
        self.owed.insert(slot, owed);
        self.leg(slot, index, &init).await;
    }

    /// Takes a reloaded config: upstreams gone (or changed) leave the session,
    /// their items the lists; new ones (and changed ones, anew) join it,
    /// introduced with the client's `initialize`. The client hears
    /// `list_changed` either way.
    pub(super) async fn reconfigure(&mut self, now: &Shared) {
        self.setup = now.setup.clone();
        self.lists.forget(None);
        let renamed = self.separator != now.config.separator;
        self.separator = now.config.separator.clone();
        for index in 0..self.upstreams.len() {
            let u = &self.upstreams[index];
            if u.removed || now.config.upstreams.contains(&u.config) {
                continue;
            }
            tracing::info!(upstream = %u.name, "upstream leaves the session (config reloaded)");
            self.by_name.remove(&u.name);
            let u = &mut self.upstreams[index];
            u.removed = true;
            // Its lane finishes what it has; what it still owes is settled when it ends.
            u.lane = None;
            u.waiting.clear();
            let intro = u.introduced.take();
            self.resources.retain(|_, l| *l != index);
            self.templates.retain(|_, l| *l != index);
            if let Some(intro) = intro {
                self.list_changed(&intro).await;
            }
        }
        for (config, chain) in now.config.upstreams.iter().zip(now.chains_at(self.endpoint.as_deref())) {
            if self.by_name.contains_key(&config.name) {
                continue;
            }
            let index = self.upstreams.len();
            self.upstreams.push(Upstream::new(config, chain.clone()));
            self.by_name.insert(config.name.clone(), index);
            tracing::info!(upstream = %config.name, "upstream joins the session (config reloaded)");
            if self.started {
                self.start_lane(index);
                self.introduce(index).await;
            }
        }
        let shape = Router::endpoint_print(&now.config, self.endpoint.as_deref());
        let reshaped = self.endpoint_seen != shape;
        self.endpoint_seen = shape;
        if reshaped && self.initialized {
            for list in ["tools", "prompts", "resources"] {
                let note = json!({"jsonrpc": "2.0", "method": format!("notifications/{list}/list_changed")});
                self.send_client(Bytes::from(note.to_string())).await;
            }
        }
        if renamed && self.initialized {
            for list in ["tools", "prompts"] {
                let note = json!({"jsonrpc": "2.0", "method": format!("notifications/{list}/list_changed")});
                self.send_client(Bytes::from(note.to_string())).await;
            }
        }
    }

    /// Tells the client the lists an upstream with these capabilities is in have changed.
    pub(super) async fn list_changed(&self, intro: &Introduced) {
        for list in ["tools", "prompts", "resources"] {
            if intro.has(list) {
                self.lists.forget(Some(list));
            }
        }
        if !self.initialized {
            return;
        }
        for list in ["tools", "prompts", "resources"] {
            if intro.has(list) {
                let note = json!({"jsonrpc": "2.0", "method": format!("notifications/{list}/list_changed")});
                self.send_client(Bytes::from(note.to_string())).await;
            }
        }
    }

    pub(super) async fn lane_event(&mut self, lane: usize, event: LaneEvent) {
        match event {
            LaneEvent::Message(bytes) => {
                let Ok(m) = Message::parse(bytes) else { return };
                match m.head.kind {
                    Kind::Response | Kind::Error => {
                        let leg = m.head.id.as_deref().and_then(|k| k.parse::<u64>().ok());
                        match leg.and_then(|id| self.take_leg(id)) {
                            Some(leg) => {
                                self.settle(leg.slot, lane, Ok(m.raw)).await;
                                self.dispatch(lane).await;
                            }
                            None => tracing::debug!(upstream = %self.upstreams[lane].name, "answer to no leg dropped"),
                        }
                    }
                    Kind::Request => {
                        let Some(upstream_id) = m.head.raw_id.clone() else { return };
                        if self.asks.len() >= MAX_ASKS {
                            // One upstream cannot pile requests up at the client without end.
                            let text = "too many requests to the client are waiting for answers";
                            let refusal =
                                jsonrpc::error_response(Some(&upstream_id), code::INVALID_REQUEST, text, None);
                            if let Some(l) = &self.upstreams[lane].lane {
                                l.send(refusal);
                            }
                            return;
                        }
                        let id = self.next();
                        if let Some(sent) = rewrite::with_id_spliced(&m.raw, &id.to_string()) {
                            self.asks.insert(id, (lane, upstream_id));
                            self.send_client(sent).await;
                        }
                    }
                    Kind::Notification => self.lane_notification(lane, m).await,
                }
            }
            LaneEvent::Ended(end) => {
                self.live = self.live.saturating_sub(1);
                // An upstream that ended while its session still wanted it is down.
                if !matches!(end, crate::session::SessionEnd::Clean) && self.upstreams[lane].lane.is_some() {
                    HEALTH.upstream(&self.upstreams[lane].name, Some(format!("ended: {end:?}")));
                }
                self.lane_ended(lane, &format!("{end:?}")).await
            }
        }
    }

    pub(super) async fn lane_notification(&mut self, lane: usize, m: Message) {
        let method = m.head.method.as_deref().unwrap_or_default();
        let name = self.upstreams[lane].name.clone();
        let sent = match method {
            // Log lines say which upstream wrote them.
            "notifications/message" => rewrite::fields(&m.raw)
                .and_then(|mut f| {
                    let mut params = rewrite::nested(&f, "params")?;
                    let logger = match rewrite::string(&params, "logger") {
                        Some(own) => format!("{name}/{own}"),
                        None => name.clone(),
                    };
                    rewrite::set(&mut params, "logger", &logger);
                    rewrite::set_object(&mut f, "params", &params);
                    Some(rewrite::to_bytes(&f))
                })
                // No params to name it in: passed as it is, as any other notification.
                .or_else(|| Some(m.raw.clone())),
            // An upstream cancelling its own request: under the id the client knows.
            jsonrpc::method::CANCELLED => {
                let theirs = jsonrpc::cancelled_request(&m.raw);
                let ours = self
                    .asks
                    .iter()
                    .find(|(_, (l, id))| *l == lane && theirs.is_some() && jsonrpc::id_key(id) == theirs)
                    .map(|(k, _)| *k);
                ours.and_then(|ours| {
                    self.asks.remove(&ours);
                    let mut f = rewrite::fields(&m.raw)?;
                    let mut params = rewrite::nested(&f, "params")?;
                    rewrite::set(&mut params, "requestId", &ours);
                    rewrite::set_object(&mut f, "params", &params);
                    Some(rewrite::to_bytes(&f))
                })
            }
            // Progress only for a call this upstream has, under its token: one
            // upstream cannot report progress on another's call.
            "notifications/progress" => {
                let ours = jsonrpc::progress_token(&m.raw).is_some_and(|t| self.progress.get(&t) == Some(&lane));
                if !ours {
                    tracing::debug!(upstream = %name, "progress for no call of this upstream dropped");
                }
                ours.then(|| m.raw.clone())
            }
            // A task's state under the id the client knows it by.
            "notifications/tasks/status" => self.task_status_out(lane, &m.raw),
            changed if changed.ends_with("/list_changed") => {
                self.heard_list_changed(changed);
                Some(m.raw.clone())
            }
            _ => Some(m.raw.clone()),
        };
        if let Some(sent) = sent {
            self.send_client(sent).await;
        }
    }

    /// An upstream is gone: what it owed is answered, its items leave the lists.
    pub(super) async fn lane_ended(&mut self, lane: usize, why: &str) {
        let name = self.upstreams[lane].name.clone();
        tracing::warn!(upstream = %name, "upstream ended: {why}");
        let had = self.upstreams[lane].lane.take().is_some();
        let introduced = self.upstreams[lane].introduced.take();
        self.asks.retain(|_, (l, _)| *l != lane);
        self.resources.retain(|_, l| *l != lane);
        self.templates.retain(|_, l| *l != lane);
        self.upstreams[lane].waiting.clear();
        let legs: Vec<u64> = self.legs.iter().filter(|(_, leg)| leg.lane == lane).map(|(id, _)| *id).collect();
        for id in legs {
            if let Some(leg) = self.take_leg(id) {
                self.settle(leg.slot, lane, Err("failed before answering".into())).await;
            }
        }
        if let (true, Some(intro)) = (had, &introduced) {
            self.list_changed(intro).await;
        }
        self.upstreams[lane].intro_pending = false;
        // A lane that stayed up a while starts its backoff afresh; one that
        // keeps dying right after it starts waits longer each time.
        if self.upstreams[lane].started_at.is_some_and(|at| at.elapsed() > STABLE_AFTER) {
            self.upstreams[lane].failures = 0;
        }
        if had && self.started {
            self.schedule_restart(lane);
        }
    }

    /// Running upstreams that announced `capability`, in config order.
    pub(super) fn lanes_with(&self, capability: &str) -> Vec<usize> {
        (0..self.upstreams.len())
            .filter(|&i| {
                let u = &self.upstreams[i];
                let running = u.lane.is_some() && u.introduced.as_ref().is_some_and(|intro| intro.has(capability));
                let sleeping = u.dormant && !u.removed && u.probed.as_ref().is_some_and(|intro| intro.has(capability));
                (running || sleeping) && self.serves_upstream(i, capability)
            })
            .collect()
    }

    /// Starts upstream `index` if it has not run in this session yet (a
    /// message needs it), introduced with the client's `initialize`; what is
    /// sent to it meanwhile waits for that answer.
    pub(super) async fn wake(&mut self, index: usize) {
        let u = &mut self.upstreams[index];
        if !u.dormant || u.removed {
            return;
        }
        u.dormant = false;
        u.waking = true;
        self.start_lane(index);
        self.introduce(index).await;
    }
}
