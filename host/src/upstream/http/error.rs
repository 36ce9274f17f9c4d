//! How a remote upstream can fail a request, by kind: each is answered to the
//! request concerned with `-31052` and `data.reason`, and logged with its kind.

use http::StatusCode;

/// Why a remote upstream did not answer a request.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made (after the retries with backoff).
    #[error("upstream {url} unreachable ({why})")]
    Unreachable {
        /// The upstream's URL, without its query (which may carry a token).
        url: String,
        /// What the connection attempt said.
        why: String,
    },
    /// An HTTP error status with no JSON-RPC answer in its body.
    #[error("upstream answered HTTP {status}: {body}")]
    Status {
        /// The status.
        status: StatusCode,
        /// The start of the body, for the log and the client.
        body: String,
    },
    /// The server forgot the session (and it was renewed once already).
    #[error("the upstream session has expired (HTTP 404)")]
    SessionExpired,
    /// The server forgot the session and a new one could not be made.
    #[error("the upstream session expired and could not be renewed: {0}")]
    RenewalFailed(Box<UpstreamError>),
    /// The response ended before the request's answer.
    #[error("the upstream's answer ended before it answered this request")]
    EndedEarly,
    /// What the server sent breaks the transport's rules (an unreadable or
    /// oversized body, an endpoint off its origin, no `initialize` to replay).
    #[error("{0}")]
    Protocol(String),
    /// No credential for the request could be had (a token exchange failed).
    #[error("{0}")]
    Credential(String),
}

impl UpstreamError {
    /// The kind, as `data.reason` and in the log.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Unreachable { .. } => "unreachable",
            UpstreamError::Status { .. } => "http-status",
            UpstreamError::SessionExpired => "session-expired",
            UpstreamError::RenewalFailed(_) => "session-renewal-failed",
            UpstreamError::EndedEarly => "ended-early",
            UpstreamError::Protocol(_) => "protocol-violation",
            UpstreamError::Credential(_) => "no-credential",
        }
    }
}
