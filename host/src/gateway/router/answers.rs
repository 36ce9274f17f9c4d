//! Client requests for one upstream or many, and the answers owed them once
//! every leg is in: merged lists (pins held), the union `initialize`, one
//! upstream's answer under the client's id.

use super::*;
use crate::telemetry::health::HEALTH;

impl Router {
    /// A request for one upstream; `sent` is the message as it receives it
    /// (`None`: it could not be rewritten, refused).
    pub(super) async fn one(&mut self, lane: usize, m: &Message, client_id: String, sent: Option<Bytes>) {
        let Some(sent) = sent else {
            return self.refuse(&client_id, code::INVALID_PARAMS, "params could not be read").await;
        };
        self.wake(lane).await;
        let u = &self.upstreams[lane];
        if let Some(why) = u.refused.clone() {
            return self.refuse(&client_id, code::UPSTREAM_FAILED, &why).await;
        }
        if u.lane.is_none() || (u.introduced.is_none() && !u.intro_pending) {
            let why = u.failure.as_ref().map(|f| format!(" (its initialize failed: {f})")).unwrap_or_default();
            let text = format!("upstream \"{}\" is not running{why}", u.name);
            return self.refuse(&client_id, code::UPSTREAM_FAILED, &text).await;
        }
        let slot = self.owe(m, client_id, 1);
        self.leg(slot, lane, &sent).await;
    }

    /// A request for every running upstream with `capability`.
    pub(super) async fn fan(&mut self, m: &Message, client_id: String, capability: &str) {
        let lanes = self.lanes_with(capability);
        if lanes.is_empty() {
            return self.reply(&client_id, &json!({})).await;
        }
        for &lane in &lanes {
            self.wake(lane).await;
        }
        let slot = self.owe(m, client_id, lanes.len());
        for lane in lanes {
            self.leg(slot, lane, &m.raw).await;
        }
    }

    /// A list: every upstream with the capability, or those a cursor names.
    pub(super) async fn list(&mut self, m: Message, client_id: String) {
        let method = m.head.method.clone().unwrap_or_default();
        let capability = merge::capability_of(&method).unwrap_or("tools");
        let cursor = match params_value(&m.raw, "cursor") {
            None => None,
            Some(Value::String(cursor)) => Some(cursor),
            Some(_) => return self.refuse(&client_id, code::INVALID_PARAMS, "params.cursor must be a string").await,
        };
        let legs: Vec<(usize, Option<Bytes>)> = match cursor {
            None => self.lanes_with(capability).into_iter().map(|l| (l, Some(m.raw.clone()))).collect(),
            Some(cursor) => {
                // Only a cursor the gateway gave: each upstream it names known, and one at least.
                let cursors = merge::decode_cursor(&cursor)
                    .filter(|c| !c.is_empty() && c.keys().all(|name| self.by_name.contains_key(name)));
                let Some(cursors) = cursors else {
                    return self.refuse(&client_id, code::INVALID_PARAMS, "invalid cursor").await;
                };
                cursors
                    .iter()
                    .filter_map(|(name, c)| self.by_name.get(name).map(|&l| (l, c)))
                    .filter(|(l, _)| self.upstreams[*l].lane.is_some())
                    .map(|(l, c)| (l, rewrite::with_param(&m.raw, None, &["cursor"], c)))
                    .collect()
            }
        };
        if legs.is_empty() {
            let key = merge::list_key(&method).unwrap_or("tools");
            return self.reply(&client_id, &json!({ key: [] })).await;
        }
        let cursor = params_value(&m.raw, "cursor").and_then(|c| c.as_str().map(str::to_owned));
        if let Some(page) = self.lists.get(&method, cursor.as_deref()) {
            return self.reply(&client_id, &page).await;
        }
        for (lane, _) in &legs {
            self.wake(*lane).await;
        }
        let slot = self.owe(&m, client_id, legs.len());
        if let Some(owed) = self.owed.get_mut(&slot) {
            owed.cursor = cursor;
        }
        for (lane, sent) in legs {
            match sent {
                Some(sent) => self.leg(slot, lane, &sent).await,
                None => self.settle(slot, lane, Err("the cursor could not be passed on".into())).await,
            }
        }
    }

    /// Answers a client request whose legs are all in.
    pub(super) async fn answer(&mut self, owed: Owed) {
        let id = owed.client_id.as_str();
        match owed.method.as_str() {
            INTRODUCE => {
                let Some((lane, answer)) = owed.answers.into_iter().next() else { return };
                self.upstreams[lane].intro_pending = false;
                let Some(result) = result_of(&answer) else {
                    tracing::warn!(upstream = %self.upstreams[lane].name, "upstream did not initialize; starting it again later");
                    self.upstreams[lane].failure = error_message(&answer);
                    HEALTH.upstream(&self.upstreams[lane].name, Some("did not initialize".into()));
                    return self.restart_later(lane).await;
                };
                self.upstreams[lane].failure = None;
                HEALTH.upstream(&self.upstreams[lane].name, None);
                let intro = Introduced::read(&result);
                if self.initialized {
                    let note = json!({"jsonrpc": "2.0", "method": jsonrpc::method::INITIALIZED});
                    if let Some(l) = &self.upstreams[lane].lane {
                        l.send(Bytes::from(note.to_string()));
                    }
                }
                // Woken by a message, its items were in no list: nothing changed for the client.
                if !std::mem::take(&mut self.upstreams[lane].waking) {
                    self.list_changed(&intro).await;
                }
                self.upstreams[lane].introduced = Some(intro);
                self.dispatch(lane).await;
            }
            jsonrpc::method::INITIALIZE => {
                let mut introduced = Vec::new();
                let mut failed = Vec::new();
                for (lane, answer) in &owed.answers {
                    self.upstreams[*lane].intro_pending = false;
                    match result_of(answer) {
                        Some(result) => {
                            let intro = Introduced::read(&result);
                            self.upstreams[*lane].failure = None;
                            HEALTH.upstream(&self.upstreams[*lane].name, None);
                            self.upstreams[*lane].introduced = Some(intro);
                            introduced.push(*lane);
                        }
                        None => {
                            tracing::warn!(upstream = %self.upstreams[*lane].name, "upstream did not initialize; starting it again later");
                            self.upstreams[*lane].failure = error_message(answer);
                            HEALTH.upstream(&self.upstreams[*lane].name, Some("did not initialize".into()));
                            failed.push(*lane);
                        }
                    }
                }
                for lane in failed {
                    self.restart_later(lane).await;
                }
                introduced.sort_unstable();
                if introduced.is_empty() {
                    self.refuse(id, code::UPSTREAM_FAILED, "no upstream of the gateway initialized").await;
                    return self.release_held().await;
                }
                let requested = self.init.as_deref().and_then(|raw| params_string(raw, &["protocolVersion"]));
                let shown = self.shown_intros(introduced.iter().map(|&l| (l, self.upstreams[l].introduced.as_ref())));
                let parts: Vec<(&str, &Introduced)> = shown.iter().map(|(n, i)| (n.as_str(), i)).collect();
                let mut result = merge::initialize_result(&parts, requested.as_deref());
                self.endpoint_capabilities(&mut result);
                self.reply(id, &result).await;
                self.release_held().await;
            }
            method if merge::list_key(method).is_some() => {
                let key = merge::list_key(method).unwrap_or("tools");
                let mut answers = owed.answers.clone();
                answers.sort_by_key(|(lane, _)| *lane);
                let mut pages = Vec::new();
                let mut first_error = None;
                for (lane, answer) in &answers {
                    let name = &self.upstreams[*lane].name;
                    match raw_result(answer).and_then(|r| Page::read(name, key, r.as_bytes())) {
                        Some(page) => pages.push((*lane, page)),
                        None => {
                            tracing::warn!(upstream = %name, "{method} failed; its items are left out");
                            first_error.get_or_insert_with(|| answer.clone());
                        }
                    }
                }
                if pages.is_empty() {
                    if let Some(error) = first_error {
                        return self.forward_answer(id, &error).await;
                    }
                }
                for (lane, page) in &mut pages {
                    if method == "tasks/list" {
                        self.tasks_listed(*lane, &mut page.items);
                    }
                    self.keep_served(*lane, method, page);
                    self.learn_resources(*lane, method, &page.items);
                    if method == "tools/list" {
                        self.check_pins(*lane, page);
                    }
                }
                let separator = self.separator.clone();
                let lanes: Vec<usize> = pages.iter().map(|(lane, _)| *lane).collect();
                let whole = first_error.is_none() && self.keepable(method, &lanes);
                let result = merge::merge_pages(method, key, &separator, pages.into_iter().map(|(_, p)| p).collect());
                if whole {
                    self.lists.keep(method, owed.cursor.clone(), &result, owed.generation);
                }
                self.reply(id, &result).await;
            }
            "logging/setLevel" => {
                // Set if any upstream took it; refused if every one refused it.
                let took = owed.answers.iter().any(|(_, a)| raw_result(a).is_some());
                match owed.answers.first() {
                    Some((_, error)) if !took => self.forward_answer(id, &error.clone()).await,
                    _ => self.reply(id, &json!({})).await,
                }
            }
            _ => {
                let Some((lane, answer)) = owed.answers.into_iter().next() else { return };
                if owed.method == jsonrpc::method::TOOLS_CALL {
                    self.learn_links(lane, &answer);
                }
                let tasks =
                    matches!(owed.method.as_str(), "tools/call" | "tasks/get" | "tasks/result" | "tasks/cancel");
                let renamed = if tasks { self.tasks_out(lane, &answer) } else { None };
                self.forward_answer(id, renamed.as_ref().unwrap_or(&answer)).await;
            }
        }
    }

    /// Holds each tool of a `tools/list` page against its pin: a changed one
    /// is logged and audited and, as its upstream's `pin` says, kept or
    /// hidden (calls to it are refused by [`Router::refused_by_pin`], in
    /// every session). A name listed twice is left out: which of two
    /// definitions would the client trust?
    pub(super) fn check_pins(&mut self, lane: usize, page: &mut Page) {
        let policy = self.upstreams[lane].config.pin;
        let upstream = self.upstreams[lane].name.clone();
        let pins = self.shared.borrow().pins.clone();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let items = std::mem::take(&mut page.items);
        let named: Vec<(String, rewrite::Fields)> =
            items.into_iter().filter_map(|item| rewrite::string(&item, "name").map(|n| (n, item))).collect();
        for (name, _) in &named {
            *seen.entry(name.clone()).or_default() += 1;
        }
        let unique: Vec<(String, &rewrite::Fields)> =
            named.iter().filter(|(n, _)| seen.get(n) == Some(&1)).map(|(n, f)| (n.clone(), f)).collect();
        if unique.len() < named.len() {
            tracing::warn!(upstream = %upstream, "tools listed twice under one name are left out");
        }
        let verdicts = pins.check(&upstream, &unique);
        let mut kept = Vec::with_capacity(unique.len());
        for ((tool, item), verdict) in unique.into_iter().zip(verdicts) {
            if let Pinned::Changed { pinned, now } = verdict {
                tracing::warn!(upstream = %upstream, tool = %tool, ?policy, "a tool changed its definition since it was pinned");
                let event = json!({"event": "tool-changed", "tool": tool, "pinned": pinned, "now": now, "policy": format!("{policy:?}").to_lowercase()});
                let at = At {
                    session: self.opening.session.as_deref(),
                    upstream: Some(&upstream),
                    caller: self.opening.caller.as_deref(),
                };
                self.setup.audit.record(Source::Host, at, &event);
                if policy == PinPolicy::Hide {
                    continue;
                }
            }
            kept.push(item.clone());
        }
        page.items = kept;
    }

    /// Whether a call to `tool` of upstream `lane` is refused by its pin:
    /// its definition changed (as any session last listed it) and its `pin`
    /// is `hide` or `refuse`.
    pub(super) fn refused_by_pin(&self, lane: usize, tool: &str) -> bool {
        let u = &self.upstreams[lane];
        u.config.pin != PinPolicy::Warn && self.shared.borrow().pins.is_changed(&u.name, tool)
    }
}
