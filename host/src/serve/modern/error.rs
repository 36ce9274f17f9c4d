//! How the 2026-07-28 lane can fail a request before its upstream answers,
//! by kind: each is answered with `-31052` (502) and logged with its kind.

use super::{MAX_BACKINGS, MAX_LEASED};
use crate::serve::SessionError;

/// Why the lane could not carry a request.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    /// Every leased backing of these client capabilities is busy.
    #[error("all {MAX_LEASED} upstream sessions for these client capabilities are busy")]
    PoolBusy,
    /// The caller's quota of upstream sessions is used up by busy ones.
    #[error("this caller holds {0} upstream sessions, all busy (--max-backings-per-caller)")]
    CallerQuota(usize),
    /// The lane's own limit is reached.
    #[error("the 2026-07-28 lane has {0} upstream sessions in use (--max-sessions)")]
    LaneFull(usize),
    /// Too many distinct callers and capability sets, all busy.
    #[error("too many distinct callers and client capability sets (limit {MAX_BACKINGS}), all busy")]
    TooManyKeys,
    /// The upstream session could not be started or fed.
    #[error("{0}")]
    Session(#[from] SessionError),
    /// A legacy upstream did not answer Warden's own `initialize`.
    #[error("the upstream did not answer Warden's initialize")]
    NoInitialize,
}

impl LaneError {
    /// The kind, for the log.
    pub fn kind(&self) -> &'static str {
        match self {
            LaneError::PoolBusy => "pool-busy",
            LaneError::CallerQuota(_) => "caller-quota",
            LaneError::LaneFull(_) => "lane-full",
            LaneError::TooManyKeys => "too-many-keys",
            LaneError::Session(_) => "session",
            LaneError::NoInitialize => "no-initialize",
        }
    }
}
