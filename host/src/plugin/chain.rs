//! An ordered, immutable snapshot of loaded plugins.
//!
//! A `Chain` never changes once built; a reload builds a new one. Each owner
//! (a session) runs it through its own [`super::Instances`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::state::KvStore;
use super::versions::Pre;
use crate::config::Manifest;

/// A loaded plugin: compiled, linked and checked, ready to instantiate.
pub struct Plugin {
    /// The file stem, e.g. `10-tool-policy`.
    pub name: Arc<str>,
    /// Its validated manifest.
    pub manifest: Manifest,
    pub(super) pre: Pre,
    /// Which requests and notifications it is called for.
    pub requests: Interests,
    /// Which responses it is called for (by the method of the request answered).
    pub responses: Interests,
    /// What it registered for, as it said it: requests, then responses.
    pub registered: (Vec<String>, Vec<String>),
    pub(super) kv: Arc<KvStore>,
    /// sha256 of the component.
    pub digest: String,
}

impl Plugin {
    /// The WIT contract version it was built against.
    pub fn wit_version(&self) -> &'static str {
        self.pre.version()
    }
}

/// Numbers chains as they are built, so a session can tell them apart.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// The plugins of a chain, in order.
#[derive(Default)]
pub struct Chain {
    plugins: Vec<Arc<Plugin>>,
    /// Unique per chain built (0: the empty default).
    generation: u64,
}

impl Chain {
    /// A chain of these plugins, in this order.
    pub fn new(plugins: Vec<Arc<Plugin>>) -> Chain {
        Chain { plugins, generation: GENERATIONS.fetch_add(1, Ordering::Relaxed) }
    }

    /// Which chain this is: a reload builds one with a new generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The plugins, front to back.
    pub fn plugins(&self) -> &[Arc<Plugin>] {
        &self.plugins
    }

    /// Whether any plugin wants to see a request or notification of `method`.
    /// Lets the relay skip all work for messages nobody is interested in.
    pub fn wants_request(&self, method: &str) -> bool {
        self.plugins.iter().any(|p| p.requests.matches(method))
    }

    /// Whether any plugin wants to see a response to a `method` request.
    pub fn wants_response(&self, method: &str) -> bool {
        self.plugins.iter().any(|p| p.responses.matches(method))
    }
}

/// The methods a plugin registered for: exact names, `prefix*`, or `*`.
#[derive(Debug, Default, Clone)]
pub struct Interests {
    all: bool,
    exact: HashSet<String>,
    prefixes: Vec<String>,
}

impl Interests {
    /// Parses the registration's method list.
    pub fn new(methods: &[String]) -> Interests {
        let mut interests = Interests::default();
        for m in methods {
            if m == "*" {
                interests.all = true;
            } else if let Some(prefix) = m.strip_suffix('*') {
                interests.prefixes.push(prefix.to_owned());
            } else {
                interests.exact.insert(m.clone());
            }
        }
        interests
    }

    /// Whether `method` is one of them.
    pub fn matches(&self, method: &str) -> bool {
        self.all || self.exact.contains(method) || self.prefixes.iter().any(|p| method.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interests_match_exact_prefix_and_all() {
        let i = Interests::new(&["tools/call".into(), "notifications/*".into()]);
        assert!(i.matches("tools/call"));
        assert!(i.matches("notifications/progress"));
        assert!(!i.matches("tools/list"));
        assert!(Interests::new(&["*".into()]).matches("anything"));
        assert!(!Interests::new(&[]).matches("tools/call"));
    }
}
