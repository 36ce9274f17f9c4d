//! An ordered, immutable snapshot of loaded plugins.
//!
//! A `Chain` never changes once built; a reload builds a new one. Each owner
//! (a session) runs it through its own [`super::Instances`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::bindings::warden::interceptor::types as wit;
use super::state::KvStore;
use super::versions::Pre;
use crate::config::Manifest;
use wit::Direction;

/// A loaded plugin: compiled, linked and checked, ready to instantiate.
pub struct Plugin {
    /// The file stem, e.g. `10-tool-policy`.
    pub name: Arc<str>,
    /// Its validated manifest.
    pub manifest: Manifest,
    pub(super) pre: Pre,
    /// Which requests and notifications it is called for.
    pub requests: Interest,
    /// Which responses it is called for (by the method of the request answered).
    pub responses: Interest,
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

    /// Whether any plugin wants to see a request or notification of `method`
    /// travelling `way`. Lets the relay skip all work for messages nobody is
    /// interested in.
    pub fn wants_request(&self, method: &str, way: Direction) -> bool {
        self.plugins.iter().any(|p| p.requests.matches(method, way))
    }

    /// Whether any plugin wants to see an answer travelling `way` to a `method` request.
    pub fn wants_response(&self, method: &str, way: Direction) -> bool {
        self.plugins.iter().any(|p| p.responses.matches(method, way))
    }
}

/// The other way.
pub fn opposite(way: Direction) -> Direction {
    match way {
        Direction::ClientToServer => Direction::ServerToClient,
        Direction::ServerToClient => Direction::ClientToServer,
    }
}

/// What one hook registered for: methods (exact names, `prefix*`, or `*`),
/// the ways they travel, and whether it reads their text.
#[derive(Debug, Clone)]
pub struct Interest {
    all: bool,
    exact: HashSet<String>,
    prefixes: Vec<String>,
    directions: wit::Directions,
    /// Whether the hook is handed the message text (else only its context).
    pub body: bool,
    /// The methods as the plugin listed them.
    listed: Vec<String>,
}

impl Interest {
    /// Reads one hook's registration.
    pub fn new(interest: wit::Interest) -> Interest {
        let mut parsed = Interest {
            all: false,
            exact: HashSet::new(),
            prefixes: Vec::new(),
            directions: interest.directions,
            body: interest.body == wit::Body::Whole,
            listed: Vec::new(),
        };
        for m in &interest.methods {
            if m == "*" {
                parsed.all = true;
            } else if let Some(prefix) = m.strip_suffix('*') {
                parsed.prefixes.push(prefix.to_owned());
            } else {
                parsed.exact.insert(m.clone());
            }
        }
        parsed.listed = interest.methods;
        parsed
    }

    /// Whether a message of `method` travelling `way` is one of them.
    pub fn matches(&self, method: &str, way: Direction) -> bool {
        let way = match way {
            Direction::ClientToServer => wit::Directions::CLIENT_TO_SERVER,
            Direction::ServerToClient => wit::Directions::SERVER_TO_CLIENT,
        };
        self.directions.contains(way)
            && (self.all || self.exact.contains(method) || self.prefixes.iter().any(|p| method.starts_with(p.as_str())))
    }

    /// As the plugin said it, for `warden plugin check` and the log:
    /// `["tools/call"] client-to-server, context only`.
    pub fn describe(&self) -> String {
        let ways = match (
            self.directions.contains(wit::Directions::CLIENT_TO_SERVER),
            self.directions.contains(wit::Directions::SERVER_TO_CLIENT),
        ) {
            (true, true) => "both ways",
            (true, false) => "client-to-server",
            (false, true) => "server-to-client",
            (false, false) => "no way",
        };
        let body = if self.body { "whole body" } else { "context only" };
        format!("{:?} {ways}, {body}", self.listed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interest(methods: &[&str], directions: wit::Directions) -> Interest {
        let methods = methods.iter().map(|m| m.to_string()).collect();
        Interest::new(wit::Interest { methods, directions, body: wit::Body::Whole })
    }

    #[test]
    fn interests_match_exact_prefix_and_all() {
        let both = wit::Directions::all();
        let up = Direction::ClientToServer;
        let i = interest(&["tools/call", "notifications/*"], both);
        assert!(i.matches("tools/call", up));
        assert!(i.matches("notifications/progress", up));
        assert!(!i.matches("tools/list", up));
        assert!(interest(&["*"], both).matches("anything", up));
        assert!(!interest(&[], both).matches("tools/call", up));
    }

    #[test]
    fn interests_match_only_the_ways_named() {
        let down = interest(&["*"], wit::Directions::SERVER_TO_CLIENT);
        assert!(down.matches("sampling/createMessage", Direction::ServerToClient));
        assert!(!down.matches("tools/call", Direction::ClientToServer));
        assert!(!interest(&["*"], wit::Directions::empty()).matches("tools/call", Direction::ServerToClient));
        assert_eq!(down.describe(), r#"["*"] server-to-client, whole body"#);
    }
}
