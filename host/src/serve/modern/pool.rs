//! Backings and their pools: one shared backing per caller and capability
//! set, or one leased per call when the server may ask the client for input;
//! per-caller quotas, idle ones reclaimed first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::error::LaneError;
use super::{Backing, Key, Lease, Modern, Pool, UpstreamEra, LEASE_WAIT, MAX_BACKINGS, MAX_IDLE, MAX_LEASED};
use crate::era::Facts;
use crate::serve::{lock, Gateway};

impl Modern {
    /// A legacy backing of its own for one call, from the pool for `key`:
    /// an idle one, or a new one while fewer than [`MAX_LEASED`] are out.
    pub(super) async fn lease(&self, gateway: &Gateway, key: Key, facts: &Facts) -> Result<Lease, LaneError> {
        let caller = key.caller.clone();
        let owner = key.owner.clone();
        let forwarded = key.forwarded.clone();
        if !lock(&self.pools).contains_key(&key) {
            self.make_room(&key.owner, gateway.options().max_backings_per_caller)?;
        }
        let pool = {
            let mut pools = lock(&self.pools);
            pools
                .entry(key)
                .or_insert_with(|| {
                    Arc::new(Pool { idle: Mutex::new(Vec::new()), permits: Arc::new(Semaphore::new(MAX_LEASED)) })
                })
                .clone()
        };
        let permit = match tokio::time::timeout(LEASE_WAIT, pool.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(LaneError::PoolBusy),
        };
        let idle = {
            let mut idle = lock(&pool.idle);
            idle.retain(|b| !b.session.ended());
            idle.pop()
        };
        let backing = match idle {
            Some(backing) => backing,
            None => {
                // Every upstream session is a process: a caller's count (leased
                // ones included, this one too) and the lane's are bounded.
                let per_owner = gateway.options().max_backings_per_caller;
                let (mine, all) = self.backing_count(&owner);
                if mine > per_owner {
                    return Err(LaneError::CallerQuota(per_owner));
                }
                if all > gateway.options().max_sessions {
                    return Err(LaneError::LaneFull(gateway.options().max_sessions));
                }
                Backing::open(gateway, UpstreamEra::Legacy, facts, caller, owner, forwarded).await?
            }
        };
        Ok(Lease { pool, backing, spoiled: AtomicBool::new(false), _permit: permit })
    }

    /// The backing for `key`, opened (and, for a legacy upstream, initialized) on first use.
    pub(super) async fn backing(
        &self,
        gateway: &Gateway,
        era: UpstreamEra,
        key: Key,
        facts: &Facts,
    ) -> Result<Arc<Backing>, LaneError> {
        let caller = key.caller.clone();
        let owner = key.owner.clone();
        let forwarded = key.forwarded.clone();
        let known = {
            let mut backings = lock(&self.backings);
            // A backing whose upstream ended is replaced.
            backings.retain(|_, cell| cell.get().is_none_or(|b| !b.session.ended()));
            backings.contains_key(&key)
        };
        if !known {
            self.make_room(&key.owner, gateway.options().max_backings_per_caller)?;
        }
        let cell = lock(&self.backings).entry(key).or_default().clone();
        let backing = cell.get_or_try_init(|| Backing::open(gateway, era, facts, caller, owner, forwarded)).await?;
        backing.session.touch();
        Ok(backing.clone())
    }

    /// Upstream sessions of the lane held by `owner` and by everyone: shared
    /// backings, and the leased ones of every pool (lent out or idle).
    pub(super) fn backing_count(&self, owner: &str) -> (usize, usize) {
        let (mut mine, mut all) = (0, 0);
        for (key, cell) in lock(&self.backings).iter() {
            if cell.get().is_some() {
                all += 1;
                mine += usize::from(&*key.owner == owner);
            }
        }
        for (key, pool) in lock(&self.pools).iter() {
            let held = MAX_LEASED - pool.permits.available_permits() + lock(&pool.idle).len();
            all += held;
            if &*key.owner == owner {
                mine += held;
            }
        }
        (mine, all)
    }

    /// Closes idle backings until `owner` may have one more (at most
    /// `per_owner`) and the lane one more (at most [`MAX_BACKINGS`]): the
    /// owner's least recently used idle one first, else anyone's. Busy ones
    /// are never taken: then the request is refused.
    pub(super) fn make_room(&self, owner: &str, per_owner: usize) -> Result<(), LaneError> {
        // Candidates: (key, idle for, is it a pool).
        let mut candidates: Vec<(Key, Duration, bool)> = Vec::new();
        for (key, cell) in lock(&self.backings).iter() {
            // Busy: a call in flight, or a client's `subscriptions/listen` on it.
            let busy = |b: &Arc<Backing>| b.session.calls_in_flight() || !lock(&b.subscribers).is_empty();
            if let Some(b) = cell.get().filter(|b| !busy(b)) {
                candidates.push((key.clone(), b.session.idle_for(), false));
            }
        }
        let (mut owned, mut total) = {
            let backings = lock(&self.backings);
            let pools = lock(&self.pools);
            let owned = backings.keys().chain(pools.keys()).filter(|k| &*k.owner == owner).count();
            (owned, backings.len() + pools.len())
        };
        for (key, pool) in lock(&self.pools).iter() {
            if pool.permits.available_permits() == MAX_LEASED {
                let idle = lock(&pool.idle).iter().map(|b| b.session.idle_for()).min().unwrap_or(Duration::MAX);
                candidates.push((key.clone(), idle, true));
            }
        }
        // Least recently used first.
        candidates.sort_by_key(|(_, idle, _)| std::cmp::Reverse(*idle));
        while owned >= per_owner || total >= MAX_BACKINGS {
            let mine = owned >= per_owner;
            let Some(at) = candidates.iter().position(|(k, _, _)| !mine || &*k.owner == owner) else {
                return Err(if mine { LaneError::CallerQuota(per_owner) } else { LaneError::TooManyKeys });
            };
            let (key, _, pool) = candidates.remove(at);
            if &*key.owner == owner {
                owned -= 1;
            }
            total -= 1;
            tracing::info!(owner = %key.owner, "idle upstream session of the 2026-07-28 lane closed to make room");
            if pool {
                if let Some(pool) = lock(&self.pools).remove(&key) {
                    for backing in lock(&pool.idle).drain(..) {
                        backing.session.close();
                    }
                }
            } else if let Some(cell) = lock(&self.backings).remove(&key) {
                if let Some(backing) = cell.get() {
                    backing.session.close();
                }
            }
        }
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut idle = lock(&self.pool.idle);
        if self.spoiled.load(Ordering::Relaxed) || self.backing.session.ended() || idle.len() >= MAX_IDLE {
            self.backing.session.close();
        } else {
            idle.push(self.backing.clone());
        }
    }
}
