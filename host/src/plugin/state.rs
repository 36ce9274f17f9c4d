//! The per-plugin key-value store behind the `state` import.
//!
//! Shared by every instance of one plugin (so a rate limit holds across
//! sessions), bounded in size, with lazy expiry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys one plugin may hold; beyond this, expired keys are swept and then new keys are refused.
const MAX_KEYS: usize = 65_536;
/// Longest key or value accepted, in bytes.
const MAX_ENTRY_BYTES: usize = 64 * 1024;

#[derive(Debug)]
struct Entry {
    value: String,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

/// One plugin's state. The lock is held only for a map operation, never across a hook call.
#[derive(Debug, Default)]
pub struct KvStore {
    map: Mutex<HashMap<String, Entry>>,
}

impl KvStore {
    /// The live value under `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).filter(|e| e.live(Instant::now())).map(|e| e.value.clone())
    }

    /// Stores `value`; returns false when the store is full or the entry too large.
    pub fn set(&self, key: String, value: String, ttl: Option<Duration>) -> bool {
        if key.len() > MAX_ENTRY_BYTES || value.len() > MAX_ENTRY_BYTES {
            return false;
        }
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if !make_room(&mut map, &key, now) {
            return false;
        }
        map.insert(key, Entry { value, expires: ttl.map(|t| now + t) });
        true
    }

    /// Removes `key`.
    pub fn remove(&self, key: &str) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// Adds `delta` to the integer under `key` and returns the sum; `None` when full.
    pub fn increment(&self, key: String, delta: i64, ttl: Option<Duration>) -> Option<i64> {
        if key.len() > MAX_ENTRY_BYTES {
            return None;
        }
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = map.get_mut(&key).filter(|e| e.live(now)) {
            let sum = entry.value.parse::<i64>().unwrap_or(0).saturating_add(delta);
            entry.value = sum.to_string();
            return Some(sum);
        }
        if !make_room(&mut map, &key, now) {
            return None;
        }
        map.insert(key, Entry { value: delta.to_string(), expires: ttl.map(|t| now + t) });
        Some(delta)
    }
}

fn make_room(map: &mut HashMap<String, Entry>, key: &str, now: Instant) -> bool {
    if map.len() < MAX_KEYS || map.contains_key(key) {
        return true;
    }
    map.retain(|_, e| e.live(now));
    map.len() < MAX_KEYS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_and_expires() {
        let kv = KvStore::default();
        assert_eq!(kv.increment("a".into(), 2, None), Some(2));
        assert_eq!(kv.increment("a".into(), 3, None), Some(5));
        assert_eq!(kv.get("a").as_deref(), Some("5"));
        kv.set("b".into(), "x".into(), Some(Duration::ZERO));
        assert_eq!(kv.get("b"), None);
        assert_eq!(kv.increment("b".into(), 1, None), Some(1));
        kv.remove("a");
        assert_eq!(kv.get("a"), None);
    }
}
