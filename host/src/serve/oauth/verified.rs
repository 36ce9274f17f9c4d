//! Tokens already verified, kept by digest until they expire: a client that
//! sends the same bearer token on every request pays for one signature check.
//!
//! - Keyed by sha256 of the token and the resource it was checked for: the
//!   token itself is never kept.
//! - An entry lasts until the token's `exp`, and at most [`KEEP_AT_MOST`], so
//!   a key the provider withdrew stops admitting its tokens soon after; every
//!   fetch of new keys empties the cache.
//! - At most [`MAX_ENTRIES`] (see [`crate::expiring`]).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::Identity;
use crate::expiring::Kept;

/// The longest an entry is kept, whatever its `exp` says.
pub const KEEP_AT_MOST: Duration = Duration::from_secs(300);

/// Most tokens kept.
pub const MAX_ENTRIES: usize = 10_000;

/// What a verified token gave.
#[derive(Clone)]
pub struct Verified {
    pub identity: Identity,
    /// The scopes it grants.
    pub scopes: Vec<String>,
}

/// Verified tokens by digest.
pub struct Cache(Kept<Verified>);

impl Default for Cache {
    fn default() -> Cache {
        Cache(Kept::new(MAX_ENTRIES))
    }
}

fn digest(token: &str, resource: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(token.as_bytes());
    hash.update([0]);
    hash.update(resource.as_bytes());
    hash.finalize().into()
}

impl Cache {
    /// What `token` gave when it was verified for `resource`, while it holds.
    pub fn get(&self, token: &str, resource: &str) -> Option<Verified> {
        self.0.get(&digest(token, resource))
    }

    /// Keeps what `token` gave, until `exp` (seconds since the epoch).
    pub fn keep(&self, token: &str, resource: &str, verified: Verified, exp: u64) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let left = Duration::from_secs(exp.saturating_sub(now)).min(KEEP_AT_MOST);
        self.0.keep(digest(token, resource), verified, Instant::now() + left);
    }

    /// Forgets every token (new keys were fetched).
    pub fn clear(&self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(subject: &str) -> Verified {
        Verified { identity: Identity { subject: subject.into(), claims: "{}".into() }, scopes: vec![] }
    }

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    #[test]
    fn a_token_is_kept_for_its_resource_until_it_expires() {
        let cache = Cache::default();
        cache.keep("tok", "https://a/mcp", verified("ada"), now() + 60);
        assert_eq!(cache.get("tok", "https://a/mcp").map(|v| v.identity.subject), Some("ada".into()));
        assert!(cache.get("tok", "https://b/mcp").is_none(), "another resource");
        assert!(cache.get("tok2", "https://a/mcp").is_none());
        // Expired already, or expiring now: not kept.
        cache.keep("old", "r", verified("x"), now().saturating_sub(1));
        cache.keep("now", "r", verified("x"), now());
        assert!(cache.get("old", "r").is_none() && cache.get("now", "r").is_none());
        cache.clear();
        assert!(cache.get("tok", "https://a/mcp").is_none());
    }
}
