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
        self.judge_by_endpoint(|endpoint| match item {
            Item::Tool => endpoint.tools.matches(name),
            Item::Prompt => endpoint.prompts.matches(name),
            // A URI that could name something else once its server resolves it is never served.
            Item::Resource => plain_uri(name) && endpoint.resources.matches(name),
        })
    }

    /// `judge` applied to this session's endpoint as the config has it now:
    /// `true` at the main endpoint, `false` (nothing served) when the config
    /// no longer has the endpoint or gave it another chain. Globs may change
    /// under a live session (its client hears `list_changed`); its chain may not.
    fn judge_by_endpoint(&self, judge: impl FnOnce(&Endpoint) -> bool) -> bool {
        let Some(path) = &self.endpoint else { return true };
        let shared = self.shared.borrow();
        match shared.config.endpoint(path) {
            Some(endpoint) if endpoint.plugins == self.endpoint_chain => judge(endpoint),
            _ => false,
        }
    }

    /// Whether this endpoint serves anything of `capability` from upstream
    /// `lane`, judged by its globs: a tool or prompt glob that could match the
    /// upstream's prefix, any resource glob for resources. Lists, fan-outs,
    /// tasks and the `initialize` answer leave the others out (they are not
    /// started, and their capabilities and instructions are not shown).
    pub(super) fn serves_upstream(&self, lane: usize, capability: &str) -> bool {
        self.judge_by_endpoint(|endpoint| self.upstream_in(endpoint, lane, capability))
    }

    fn upstream_in(&self, endpoint: &Endpoint, lane: usize, capability: &str) -> bool {
        let u = &self.upstreams[lane];
        let own = format!("{}{}", u.name, self.separator);
        let named = |patterns: &[String]| {
            patterns.iter().any(|p| {
                let literal = p.split(['*', '?', '[', '{', '\\']).next().unwrap_or_default();
                !u.config.prefix || own.starts_with(literal) || literal.starts_with(&own)
            })
        };
        let resources = !endpoint.resources.patterns.is_empty();
        match capability {
            "tools" | "tasks" => named(&endpoint.tools.patterns),
            "prompts" => named(&endpoint.prompts.patterns),
            "resources" => resources,
            "completions" => named(&endpoint.prompts.patterns) || resources,
            _ => named(&endpoint.tools.patterns) || named(&endpoint.prompts.patterns) || resources,
        }
    }

    /// Whether upstream `lane` is part of this endpoint at all.
    pub(super) fn shows(&self, lane: usize) -> bool {
        ["tools", "prompts", "resources"].iter().any(|c| {
            self.serves_upstream(lane, c)
                && self.upstreams[lane]
                    .introduced
                    .as_ref()
                    .or(self.upstreams[lane].probed.as_ref())
                    .is_none_or(|intro| intro.has(c))
        })
    }

    /// What the `initialize` answer is made of: the upstreams this endpoint
    /// shows, with the instructions only of those it introduces.
    pub(super) fn shown_intros<'a>(
        &self,
        intros: impl Iterator<Item = (usize, Option<&'a Introduced>)>,
    ) -> Vec<(String, Introduced)> {
        intros
            .filter(|(lane, _)| self.shows(*lane))
            .filter_map(|(lane, intro)| {
                let mut intro = intro?.clone();
                if !self.introduces(lane) {
                    intro.instructions = None;
                }
                Some((self.upstreams[lane].name.clone(), intro))
            })
            .collect()
    }

    /// Whether upstream `lane`'s instructions are shown: it serves a tool or
    /// prompt here (resource globs name no upstream).
    pub(super) fn introduces(&self, lane: usize) -> bool {
        self.serves_upstream(lane, "tools") || self.serves_upstream(lane, "prompts")
    }

    /// Takes out of an `initialize` result what this endpoint does not serve.
    pub(super) fn endpoint_capabilities(&self, result: &mut Value) {
        let Some(path) = &self.endpoint else { return };
        let (tools, prompts, resources) = {
            let shared = self.shared.borrow();
            match shared.config.endpoint(path) {
                Some(e) => {
                    (!e.tools.patterns.is_empty(), !e.prompts.patterns.is_empty(), !e.resources.patterns.is_empty())
                }
                None => (false, false, false),
            }
        };
        let Some(capabilities) = result.get_mut("capabilities").and_then(Value::as_object_mut) else { return };
        for (key, kept) in [
            ("tools", tools),
            ("tasks", tools),
            ("prompts", prompts),
            ("resources", resources),
            ("completions", prompts || resources),
        ] {
            if !kept {
                capabilities.remove(key);
            }
        }
    }

    /// Whether the config took this session's endpoint away or gave it
    /// another chain: its sessions end (a client opens a new one).
    pub(super) fn endpoint_retired(&self) -> bool {
        let Some(path) = &self.endpoint else { return false };
        let shared = self.shared.borrow();
        shared.config.endpoint(path).is_none_or(|e| e.plugins != self.endpoint_chain)
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

/// A URI without what a server could resolve into another one: no `.` or
/// `..` segment, no empty segment after the authority, no escaped `/`, `\\`,
/// `.` or `%`, no backslash.
fn plain_uri(uri: &str) -> bool {
    let lower = uri.to_ascii_lowercase();
    if ["%2f", "%5c", "%2e", "%25", "\\"].iter().any(|bad| lower.contains(bad)) {
        return false;
    }
    let path = match uri.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, path)| path),
        None => uri.split_once(':').map_or(uri, |(_, rest)| rest),
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    segments.iter().enumerate().all(|(i, s)| *s != "." && *s != ".." && (!s.is_empty() || i == last || i == 0))
}

#[cfg(test)]
mod tests {
    use super::plain_uri;

    #[test]
    fn uris_that_resolve_elsewhere_are_not_plain() {
        for ok in
            ["file:///srv/public/a.txt", "mem://config", "https://h/a/b?x=../y", "urn:isbn:123", "file:///srv/public/"]
        {
            assert!(plain_uri(ok), "{ok}");
        }
        for bad in [
            "file:///srv/public/../secret",
            "file:///srv/public/%2e%2e/secret",
            "file:///srv/public/..%2fsecret",
            "file:///srv/public//etc/passwd",
            "file:///srv/public/./x",
            "file:///srv/public/..",
            "file:///srv/public\\..\\x",
            "file:///srv/public/%252e%252e/x",
        ] {
            assert!(!plain_uri(bad), "{bad}");
        }
    }
}
