//! Who a request is from, as the serve side keeps it: a caller **key** that
//! binds the subject to the claims it was admitted with.
//!
//! A key is `SUBJECT`, a NUL, and a tag: `s` for a `--client-tokens` line, or
//! `o` and 16 hex digits of the sha256 of the token's claims without the ones
//! every fresh token changes (`exp`, `iat`, `nbf`, `jti`, `auth_time`). Sessions
//! and 2026-07-28 backings belong to a key, so a caller whose groups or scopes
//! change gets new sessions judged by the new claims (an old session presented
//! with the new token does not exist for it), while a refreshed token with the
//! same claims keeps its sessions. Plugins and audit records see the subject.
//!
//! What each key's latest request gave (its claims, and the access token for
//! upstreams that exchange it) is kept here; entries no session holds are
//! let go of when there are many.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::upstream::exchange::TokenCell;

/// Between the subject and the tag.
const SEPARATOR: char = '\u{0}';

/// Claims a fresh token of the same caller changes.
const VOLATILE: [&str; 5] = ["exp", "iat", "nbf", "jti", "auth_time"];

/// Keys kept before those no session holds are let go of.
const MANY: usize = 10_000;

/// The subject a key names.
pub fn subject_of(key: &str) -> &str {
    key.split(SEPARATOR).next().unwrap_or(key)
}

/// The key of a `--client-tokens` caller.
pub fn static_key(subject: &str) -> Arc<str> {
    Arc::from(format!("{subject}{SEPARATOR}s"))
}

/// The key of a caller admitted by a token with these claims (JSON object text).
pub fn token_key(subject: &str, claims: &str) -> Arc<str> {
    let mut stable: Value = serde_json::from_str(claims).unwrap_or(Value::Null);
    if let Some(map) = stable.as_object_mut() {
        for volatile in VOLATILE {
            map.remove(volatile);
        }
    }
    // serde_json's maps are ordered: the same claims give the same text.
    let digest = Sha256::digest(stable.to_string().as_bytes());
    Arc::from(format!("{subject}{SEPARATOR}o{}", &hex::encode(digest)[..16]))
}

/// What the latest request of a key gave.
#[derive(Debug)]
pub struct Known {
    /// Its claims, as JSON object text.
    pub claims: Arc<str>,
    /// Its access token, for upstreams that exchange it (none for static callers).
    pub token: Arc<TokenCell>,
}

/// Every key seen, by key.
#[derive(Debug, Default)]
pub struct Callers(Mutex<HashMap<Arc<str>, Arc<Known>>>);

impl Callers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Known>>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes what a request of `key` gave.
    pub fn note(&self, key: &Arc<str>, claims: &str, token: Option<&str>) {
        let mut known = self.lock();
        if let Some(k) = known.get(key) {
            if let Some(token) = token {
                k.token.set(token);
            }
            if &*k.claims == claims {
                return;
            }
        }
        if known.len() >= MANY && !known.contains_key(key) {
            // Let go of the keys no session holds (their token cell is held by none).
            known.retain(|_, k| Arc::strong_count(&k.token) > 1);
        }
        let cell = known.get(key).map(|k| k.token.clone()).unwrap_or_default();
        if let Some(token) = token {
            cell.set(token);
        }
        known.insert(key.clone(), Arc::new(Known { claims: Arc::from(claims), token: cell }));
    }

    /// What the latest request of `key` gave.
    pub fn get(&self, key: &str) -> Option<Arc<Known>> {
        self.lock().get(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_binds_the_subject_to_its_lasting_claims() {
        let a = token_key("ada", r#"{"groups":["infra"],"exp":1,"jti":"x"}"#);
        let refreshed = token_key("ada", r#"{"jti":"y","groups":["infra"],"exp":2,"iat":5}"#);
        let demoted = token_key("ada", r#"{"groups":["dev"],"exp":2}"#);
        assert_eq!(a, refreshed, "a fresh token of the same claims");
        assert_ne!(a, demoted, "other groups");
        assert_ne!(a, static_key("ada"), "a static line is another caller");
        assert_eq!(subject_of(&a), "ada");
        assert_eq!(subject_of(&static_key("bob")), "bob");
    }

    #[test]
    fn the_latest_token_of_a_key_is_what_its_sessions_exchange() {
        let callers = Callers::default();
        let key = token_key("ada", "{}");
        callers.note(&key, "{}", Some("t1"));
        let held = callers.get(&key).map(|k| k.token.clone());
        callers.note(&key, "{}", Some("t2"));
        assert_eq!(held.and_then(|c| c.get()).as_deref(), Some("t2"));
    }
}
