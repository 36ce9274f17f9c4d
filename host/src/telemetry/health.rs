//! Whether Warden is ready to serve (`/readyz`): its plugins loaded, and every
//! upstream it checks (a gateway's, probed at start and again until they
//! answer) answering. What is not ready says why.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use serde_json::{json, Value};

use super::metrics::{self, UpstreamLabels, METRICS};

/// What is known of one upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamState {
    /// Not checked yet.
    Unknown,
    /// It answered.
    Up,
    /// It failed, so.
    Down(String),
}

/// Warden's readiness.
#[derive(Debug, Default)]
pub struct Health {
    plugins: AtomicBool,
    /// The last config reload's refusal, if it was refused.
    config: Mutex<Option<String>>,
    upstreams: Mutex<BTreeMap<Arc<str>, UpstreamState>>,
}

/// The process's readiness.
pub static HEALTH: LazyLock<Health> = LazyLock::new(Health::default);

impl Health {
    /// The chain is loaded.
    pub fn plugins_loaded(&self) {
        self.plugins.store(true, Ordering::Relaxed);
    }

    /// The config's last reload was taken (`None`) or refused (why).
    pub fn config(&self, refused: Option<String>) {
        *self.config.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = refused;
    }

    /// Upstreams checked from now on: exactly these (others are forgotten).
    pub fn track(&self, names: &[String]) {
        let mut upstreams = self.upstreams.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        upstreams.retain(|name, _| names.iter().any(|n| **n == **name));
        for name in names {
            upstreams.entry(Arc::from(name.as_str())).or_insert(UpstreamState::Unknown);
        }
    }

    /// `upstream` answered (`None`) or failed (why). Only tracked upstreams count.
    pub fn upstream(&self, upstream: &str, failed: Option<String>) {
        let mut upstreams = self.upstreams.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some((name, state)) = upstreams.iter_mut().find(|(name, _)| ***name == *upstream) else { return };
        let up = failed.is_none();
        *state = match failed {
            None => UpstreamState::Up,
            Some(why) => UpstreamState::Down(why),
        };
        if metrics::enabled() {
            METRICS.upstream_up.get_or_create(&UpstreamLabels { upstream: name.clone() }).set(i64::from(up));
        }
    }

    /// Whether every check passes, and each one's state (`/readyz`'s body).
    pub fn ready(&self) -> (bool, Value) {
        let plugins = self.plugins.load(Ordering::Relaxed);
        let config = self.config.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let upstreams = self.upstreams.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut ready = plugins;
        let mut each = serde_json::Map::new();
        for (name, state) in upstreams.iter() {
            let shown = match state {
                UpstreamState::Unknown => {
                    ready = false;
                    json!({"up": false, "why": "not checked yet"})
                }
                UpstreamState::Up => json!({"up": true}),
                UpstreamState::Down(why) => {
                    ready = false;
                    json!({"up": false, "why": why})
                }
            };
            each.insert(name.to_string(), shown);
        }
        let body = json!({
            "ready": ready,
            "plugins": if plugins { "loaded" } else { "loading" },
            "config": match config { None => json!("valid"), Some(why) => json!({"last_reload_refused": why}) },
            "upstreams": each,
        });
        (ready, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_until_plugins_and_upstreams() {
        let health = Health::default();
        assert!(!health.ready().0);
        health.plugins_loaded();
        assert!(health.ready().0);
        health.track(&["fs".to_owned(), "web".to_owned()]);
        assert!(!health.ready().0);
        health.upstream("fs", None);
        health.upstream("web", Some("exited".into()));
        let (ready, body) = health.ready();
        assert!(!ready);
        assert_eq!(body["upstreams"]["web"]["why"], "exited");
        health.upstream("web", None);
        health.upstream("untracked", Some("x".into()));
        assert!(health.ready().0);
        health.track(&["fs".to_owned()]);
        assert!(health.ready().0);
    }
}
