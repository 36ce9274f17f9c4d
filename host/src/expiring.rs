//! Values kept by a digest until they expire, at most so many: what the
//! OAuth resource server keeps of verified tokens, and what a token exchange
//! got. The digest stands for a secret (a token) that is itself never kept.
//! When full, the expired go, and if none had, all do.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// See the module.
pub struct Kept<V> {
    map: Mutex<HashMap<[u8; 32], (V, Instant)>>,
    most: usize,
}

impl<V: Clone> Kept<V> {
    /// An empty one that keeps at most `most` values.
    pub fn new(most: usize) -> Kept<V> {
        Kept { map: Mutex::new(HashMap::new()), most }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (V, Instant)>> {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The value kept under `key`, until it expires.
    pub fn get(&self, key: &[u8; 32]) -> Option<V> {
        let mut map = self.lock();
        match map.get(key) {
            Some((value, until)) if Instant::now() < *until => Some(value.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `value` under `key` until `until` (not at all if that has passed).
    pub fn keep(&self, key: [u8; 32], value: V, until: Instant) {
        let now = Instant::now();
        if until <= now {
            return;
        }
        let mut map = self.lock();
        if map.len() >= self.most {
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= self.most {
                map.clear();
            }
        }
        map.insert(key, (value, until));
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn values_last_until_they_expire_and_a_full_one_makes_room() {
        let kept = Kept::new(3);
        let later = Instant::now() + Duration::from_secs(60);
        kept.keep([1; 32], "a", later);
        kept.keep([2; 32], "b", Instant::now());
        assert_eq!(kept.get(&[1; 32]), Some("a"));
        assert_eq!(kept.get(&[2; 32]), None, "expired as it was kept");
        for i in 3..10u8 {
            kept.keep([i; 32], "x", later);
        }
        assert!(kept.lock().len() <= 3 && kept.get(&[9; 32]) == Some("x"), "the newest is kept");
        kept.clear();
        assert!(kept.get(&[9; 32]).is_none());
    }
}
