//! A virtual endpoint's subset: what its globs match is listed and served,
//! the rest is as unknown as what no upstream has (refused on call, not only
//! hidden in lists). At the main endpoint everything is served.

use super::*;
use crate::config::gateway::Endpoint;

/// What kind of item a name or URI is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Item {
    Tool,
    Prompt,
    Resource,
}

impl Router {
    /// Whether this session's endpoint serves `name` (a prefixed tool or
    /// prompt name, or a resource URI). An endpoint the config no longer has,
    /// or whose chain changed since the session opened, serves nothing: its
    /// sessions end up empty rather than less guarded.
    pub(super) fn serves(&self, item: Item, name: &str) -> bool {
        let Some(path) = &self.endpoint else { return true };
        let shared = self.shared.borrow();
        let Some(endpoint) = shared.config.endpoint(path) else { return false };
        // Globs may change under a live session (its client hears `list_changed`); its chain may not.
        if endpoint.plugins != self.endpoint_chain {
            return false;
        }
        let globs = match item {
            Item::Tool => &endpoint.tools,
            Item::Prompt => &endpoint.prompts,
            Item::Resource => &endpoint.resources,
        };
        globs.matches(name)
    }

    /// Leaves out of an upstream's list page what this endpoint does not
    /// serve, and an unprefixed upstream's names that read as another's.
    pub(super) fn keep_served(&self, lane: usize, method: &str, page: &mut Page) {
        page.bare = !self.upstreams[lane].config.prefix;
        if page.bare && matches!(method, "tools/list" | "prompts/list") {
            let before = page.items.len();
            page.items.retain(|entry| rewrite::string(entry, "name").is_some_and(|n| !self.shadowed(&n)));
            if page.items.len() < before {
                tracing::warn!(upstream = %page.upstream, "items are left out: their names read as another upstream's prefixed names");
            }
        }
        if self.endpoint.is_none() {
            return;
        }
        let (item, field) = match method {
            "tools/list" => (Item::Tool, "name"),
            "prompts/list" => (Item::Prompt, "name"),
            "resources/list" => (Item::Resource, "uri"),
            "resources/templates/list" => (Item::Resource, "uriTemplate"),
            _ => return,
        };
        page.items.retain(|entry| {
            let Some(value) = rewrite::string(entry, field) else { return false };
            let name = match item {
                Item::Resource => value,
                Item::Tool | Item::Prompt => self.listed(lane, &value),
            };
            self.serves(item, &name)
        });
    }

    /// The shape of the endpoint at `path` (its globs and chain folder) as
    /// text, to tell when a reload changed it; `None` at the main endpoint
    /// or one the config does not have.
    pub(super) fn endpoint_print(config: &Gateway, path: Option<&str>) -> Option<String> {
        config.endpoint(path?).map(print)
    }
}

fn print(endpoint: &Endpoint) -> String {
    format!(
        "{:?}",
        (&endpoint.tools.patterns, &endpoint.prompts.patterns, &endpoint.resources.patterns, &endpoint.plugins)
    )
}
