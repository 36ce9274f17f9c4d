//! Requests to upstreams: a *leg* per upstream per client request, sent at
//! once or when the upstream has room, timed out, and settled into the answer
//! owed (with each upstream's circuit breaker kept on the way).

use super::*;

impl Router {
    /// Records a client request owed an answer from `legs` lanes.
    pub(super) fn owe(&mut self, m: &Message, client_id: String, legs: usize) -> u64 {
        let slot = self.next();
        if let Some(key) = &m.head.id {
            self.by_client.insert(key.clone(), slot);
        }
        let method = m.head.method.clone().unwrap_or_default();
        self.owed.insert(
            slot,
            Owed {
                client_id,
                method,
                open: legs,
                answers: Vec::new(),
                cursor: None,
                generation: self.lists.generation(),
            },
        );
        slot
    }

    /// Sends `raw` to `lane` under a new router id, as a leg of `slot`:
    /// at once, or when the upstream has room under its `max-concurrency`.
    pub(super) async fn leg(&mut self, slot: u64, lane: usize, raw: &Bytes) {
        let method = self.owed.get(&slot).map(|o| o.method.clone()).unwrap_or_default();
        if self.upstreams[lane].lane.is_none() {
            // Woken, it could not be started (it is started again after its backoff).
            return self.settle(slot, lane, Err("is not running".into())).await;
        }
        let intro = method == INTRODUCE || method == jsonrpc::method::INITIALIZE;
        if method == jsonrpc::method::TOOLS_CALL {
            if let Some(until) = self.upstreams[lane].open_until {
                let now = Instant::now();
                let u = &mut self.upstreams[lane];
                if now < until || u.probing {
                    let wait = humantime::format_duration(Duration::from_secs(
                        until.saturating_duration_since(now).as_secs().max(1),
                    ));
                    let why =
                        format!("is unavailable: its circuit breaker is open after failed calls (next try in {wait})");
                    return self.settle(slot, lane, Err(why)).await;
                }
                // Half open: this call tries; the others are refused until it is answered.
                u.probing = true;
            }
        }
        let id = self.next();
        let Some(sent) = rewrite::with_id_spliced(raw, &id.to_string()) else {
            return self.settle(slot, lane, Err("the request could not be passed on".into())).await;
        };
        let progress = jsonrpc::progress_token(raw);
        if let Some(token) = &progress {
            self.progress.insert(token.clone(), lane);
        }
        self.legs.insert(id, Leg { slot, lane, progress, sent: false });
        if intro {
            // Its `initialize` goes first, whatever waits: the rest waits for its answer.
            self.upstreams[lane].intro_pending = true;
            self.upstreams[lane].waiting.push_front((id, sent));
            self.send_next(lane).await;
            return;
        }
        self.upstreams[lane].waiting.push_back((id, sent));
        self.dispatch(lane).await;
    }

    /// Sends waiting legs to `lane` while it has room, once it is introduced.
    pub(super) async fn dispatch(&mut self, lane: usize) {
        let limit = self.upstreams[lane].config.max_concurrency.unwrap_or(usize::MAX);
        while self.upstreams[lane].in_flight < limit && self.upstreams[lane].introduced.is_some() {
            if !self.send_next(lane).await {
                return;
            }
        }
    }

    /// Sends the first waiting leg of `lane`; `false` when none waits.
    pub(super) async fn send_next(&mut self, lane: usize) -> bool {
        {
            let Some((id, sent)) = self.upstreams[lane].waiting.pop_front() else { return false };
            // A leg cancelled or timed out while it waited is gone.
            let Some(leg) = self.legs.get_mut(&id) else { return true };
            leg.sent = true;
            // The upstream's `timeout` runs from when it has the call; an
            // `initialize` gets at most INIT_TIMEOUT, so that an upstream that
            // never answers it is left out instead of holding the session up.
            let slot = leg.slot;
            let introducing =
                self.owed.get(&slot).is_some_and(|o| o.method == INTRODUCE || o.method == jsonrpc::method::INITIALIZE);
            let mut timeout = self.upstreams[lane].config.timeout;
            if introducing {
                timeout = timeout.min(INIT_TIMEOUT);
            }
            self.deadlines.push(Reverse((Instant::now() + timeout, id)));
            self.upstreams[lane].in_flight += 1;
            let delivered = match &self.upstreams[lane].lane {
                Some(l) => l.send(sent),
                None => false,
            };
            if !delivered {
                if let Some(leg) = self.take_leg(id) {
                    let why = format!("is not reading its input ({} messages wait for it)", lane::MAX_QUEUED);
                    Box::pin(self.settle(leg.slot, lane, Err(why))).await;
                }
            }
        }
        true
    }

    /// Forgets leg `id`, freeing its room at its upstream.
    pub(super) fn take_leg(&mut self, id: u64) -> Option<Leg> {
        let leg = self.legs.remove(&id)?;
        if let Some(token) = &leg.progress {
            self.progress.remove(token);
        }
        if leg.sent {
            let u = &mut self.upstreams[leg.lane];
            u.in_flight = u.in_flight.saturating_sub(1);
        }
        Some(leg)
    }

    /// Legs past their upstream's `timeout`: the upstream is told to stop
    /// (`notifications/cancelled`) and the client answered.
    pub(super) async fn expire(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, id))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(leg) = self.take_leg(id) else { continue };
            let lane = leg.lane;
            if leg.sent {
                let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id, "reason": "timed out at the gateway"}});
                if let Some(l) = &self.upstreams[lane].lane {
                    l.send(Bytes::from(cancel.to_string()));
                }
            }
            let timeout = humantime::format_duration(self.upstreams[lane].config.timeout);
            self.settle(leg.slot, lane, Err(format!("did not answer within its timeout of {timeout}"))).await;
            self.dispatch(lane).await;
        }
    }

    /// Counts a call's outcome towards upstream `lane`'s circuit breaker.
    pub(super) fn judge(&mut self, lane: usize, failed: bool) {
        let u = &mut self.upstreams[lane];
        let probe = std::mem::take(&mut u.probing);
        if !failed {
            u.failed_calls = 0;
            u.open_until = None;
            return;
        }
        if probe {
            // The try after the cool-down failed: open again.
            u.failed_calls = u.config.breaker.failures;
        }
        u.failed_calls = u.failed_calls.saturating_add(1);
        let breaker = u.config.breaker;
        if u.failed_calls >= breaker.failures {
            tracing::warn!(upstream = %u.name, failed = u.failed_calls, "circuit breaker open for {}", humantime::format_duration(breaker.cool_down));
            u.open_until = Some(Instant::now() + breaker.cool_down);
            // The next try after the cool-down opens it again if it fails too.
            u.failed_calls = breaker.failures.saturating_sub(1);
        }
    }

    /// A leg of `slot` is done: with the lane's answer, or why the upstream
    /// gave none.
    pub(super) async fn settle(&mut self, slot: u64, lane: usize, answer: Result<Bytes, String>) {
        // Only tool calls count towards the breaker (a list or an initialize
        // answered says nothing about whether calls work).
        let is_call = self.owed.get(&slot).is_some_and(|o| o.method == jsonrpc::method::TOOLS_CALL);
        let refused_by_breaker = matches!(&answer, Err(why) if why.contains("circuit breaker is open"));
        if is_call && !refused_by_breaker {
            let failed = match &answer {
                Ok(raw) => jsonrpc::error_code(raw) == Some(i64::from(code::UPSTREAM_FAILED)),
                Err(_) => true,
            };
            self.judge(lane, failed);
        }
        let name = self.upstreams[lane].name.clone();
        let Some(owed) = self.owed.get_mut(&slot) else { return };
        let answer = answer.unwrap_or_else(|why| {
            let text = format!("upstream \"{name}\" {why} ({})", owed.method);
            jsonrpc::error_response(Some("null"), code::UPSTREAM_FAILED, &text, None)
        });
        owed.answers.push((lane, answer));
        owed.open = owed.open.saturating_sub(1);
        if owed.open > 0 {
            return;
        }
        let Some(owed) = self.owed.remove(&slot) else { return };
        self.by_client.retain(|_, s| *s != slot);
        self.answer(owed).await;
    }
}
