//! The routing table of resource URIs: every URI the client got points at the
//! upstream that gave it (the first, when two do).

use super::*;

impl Router {
    /// The upstream a URI came from: as listed or linked, by a template's
    /// fixed start, or the only upstream with resources.
    pub(super) fn lane_for_uri(&self, uri: &str) -> Option<usize> {
        if let Some(&lane) = self.resources.get(uri) {
            return Some(lane);
        }
        // By the templates whose fixed start it has: only when they are all one
        // upstream's (one upstream's template cannot capture another's URIs).
        let mut by_template = self
            .templates
            .iter()
            .filter(|(start, _)| !start.is_empty() && uri.starts_with(start.as_str()))
            .map(|(_, lane)| *lane);
        if let Some(first) = by_template.next() {
            return by_template.all(|lane| lane == first).then_some(first);
        }
        match self.lanes_with("resources").as_slice() {
            [only] => Some(*only),
            _ => None,
        }
    }

    /// Routes `uri` to `lane`, unless another upstream gave it first: an
    /// upstream cannot take over a URI the client got from another one (by
    /// listing or linking it too); the first keeps it, and the clash is logged.
    pub(super) fn bind(&mut self, uri: String, lane: usize) {
        match self.resources.get(&uri) {
            Some(&first) if first != lane && !self.upstreams[first].removed => {
                let (first, second) = (&self.upstreams[first].name, &self.upstreams[lane].name);
                tracing::warn!(first = %first, second = %second, "two upstreams give the same resource URI; it stays with the first");
            }
            Some(_) => {}
            None if self.resources.len() < MAX_ROUTES => {
                self.resources.insert(uri, lane);
            }
            None => tracing::warn!("the resource routing table is full; a URI is not routed"),
        }
    }

    pub(super) fn learn_resources(&mut self, lane: usize, method: &str, items: &[rewrite::Fields]) {
        for item in items {
            match method {
                "resources/list" => {
                    if let Some(uri) = rewrite::string(item, "uri") {
                        self.bind(uri, lane);
                    }
                }
                "resources/templates/list" => {
                    if let Some(template) = rewrite::string(item, "uriTemplate") {
                        let start = template.split('{').next().unwrap_or_default().to_owned();
                        // The first upstream to give a fixed start keeps it.
                        if self.templates.len() < MAX_ROUTES {
                            self.templates.entry(start).or_insert(lane);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Resource links and embedded resources in a tool's result: their URIs
    /// can be read through the gateway.
    pub(super) fn learn_links(&mut self, lane: usize, answer: &[u8]) {
        if memchr::memmem::find(answer, b"\"uri\"").is_none() {
            return;
        }
        let Some(result) = result_of(answer) else { return };
        let Some(content) = result.get("content").and_then(Value::as_array) else { return };
        for item in content {
            let uri = match item.get("type").and_then(Value::as_str) {
                Some("resource_link") => item.get("uri"),
                Some("resource") => item.get("resource").and_then(|r| r.get("uri")),
                _ => None,
            };
            if let Some(uri) = uri.and_then(Value::as_str) {
                self.bind(uri.to_owned(), lane);
            }
        }
    }
}
