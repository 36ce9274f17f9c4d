//! Who may use the gateway: bearer tokens, each naming a caller.
//!
//! `--client-tokens FILE` lists one caller a line, `SUBJECT TOKEN`, optionally
//! followed by the caller's claims as one JSON object (`{"groups": ["infra"]}`,
//! what plugins read as `caller.claims`). A request
//! must then carry `Authorization: Bearer TOKEN`; the subject it names is the
//! caller plugins see in their context (`caller.subject`), and a session stays
//! its opener's: another caller presenting its id is told it does not exist.
//!
//! Tokens are kept only as SHA-256 digests and compared in constant time,
//! every one of them on each request, so neither timing nor a log line can
//! give one away. The client's `Authorization` header never goes upstream.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Tokens shorter than this are refused: too easy to guess.
pub const MIN_TOKEN_CHARS: usize = 16;

/// The callers a gateway accepts.
pub struct Clients {
    callers: Vec<Known>,
}

struct Known {
    subject: Arc<str>,
    digest: [u8; 32],
    /// Its claims, as JSON object text.
    claims: Arc<str>,
}

/// Why a tokens file was refused. Never holds a token.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// A line is not `SUBJECT TOKEN [CLAIMS]`.
    #[error("{path}:{line}: expected `SUBJECT TOKEN` and, optionally, the caller's claims as one JSON object")]
    Malformed {
        /// The file.
        path: String,
        /// The line number.
        line: usize,
    },
    /// A token is too short to be a secret.
    #[error("{path}:{line}: the token of {subject:?} is shorter than {MIN_TOKEN_CHARS} characters")]
    Weak {
        /// The file.
        path: String,
        /// The line number.
        line: usize,
        /// Whose token.
        subject: String,
    },
    /// Two callers share a token (the subject would be ambiguous).
    #[error("{path}:{line}: the token of {subject:?} is already another caller's")]
    Shared {
        /// The file.
        path: String,
        /// The line number.
        line: usize,
        /// Whose token.
        subject: String,
    },
    /// No caller is listed: nobody could get in.
    #[error("{path}: no callers listed")]
    Empty {
        /// The file.
        path: String,
    },
}

impl Clients {
    /// Reads a tokens file: `SUBJECT TOKEN` a line; blank lines and `#` comments skipped.
    pub fn load(path: &Path) -> Result<Clients, TokensError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| TokensError::Read { path: name.clone(), error })?;
        warn_if_readable_by_others(path);
        Clients::parse(&text, &name)
    }

    fn parse(text: &str, path: &str) -> Result<Clients, TokensError> {
        let mut callers: Vec<Known> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_number = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let malformed = || TokensError::Malformed { path: path.to_owned(), line: line_number };
            let (subject, rest) = line.split_once(char::is_whitespace).ok_or_else(malformed)?;
            let rest = rest.trim_start();
            let (token, claims) = match rest.split_once(char::is_whitespace) {
                Some((token, claims)) => (token, claims.trim()),
                None => (rest, ""),
            };
            let claims: Arc<str> = if claims.is_empty() {
                Arc::from("{}")
            } else {
                // One object, read strictly (no duplicate keys): what every plugin will read.
                match crate::jsonrpc::strict_object(claims) {
                    Some(text) => Arc::from(text),
                    None => return Err(malformed()),
                }
            };
            if token.chars().count() < MIN_TOKEN_CHARS {
                let subject = subject.to_owned();
                return Err(TokensError::Weak { path: path.to_owned(), line: line_number, subject });
            }
            let digest = digest(token);
            if callers.iter().any(|c| bool::from(c.digest.ct_eq(&digest))) {
                let subject = subject.to_owned();
                return Err(TokensError::Shared { path: path.to_owned(), line: line_number, subject });
            }
            callers.push(Known { subject: Arc::from(subject), digest, claims });
        }
        if callers.is_empty() {
            return Err(TokensError::Empty { path: path.to_owned() });
        }
        Ok(Clients { callers })
    }

    /// The caller an `Authorization` header value names, if it holds a known bearer token.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Option<Arc<str>> {
        let value = std::str::from_utf8(authorization?).ok()?;
        let (scheme, token) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let presented = digest(token.trim());
        // Every token is compared, whichever matches: the time taken says nothing.
        let mut found = None;
        for caller in &self.callers {
            if bool::from(caller.digest.ct_eq(&presented)) {
                found = Some(caller.subject.clone());
            }
        }
        found
    }

    /// The claims of the caller `subject` (`{}` when the file gives none).
    pub fn claims(&self, subject: &str) -> Arc<str> {
        self.callers.iter().find(|c| &*c.subject == subject).map_or_else(|| Arc::from("{}"), |c| c.claims.clone())
    }

    /// How many callers are listed.
    pub fn len(&self) -> usize {
        self.callers.len()
    }

    /// Whether none are (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.callers.is_empty()
    }
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let subjects: Vec<&str> = self.callers.iter().map(|c| &*c.subject).collect();
        f.debug_struct("Clients").field("subjects", &subjects).finish_non_exhaustive()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %path.display(), "the client tokens file is readable by other users; chmod 600 it");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# who may call\nalice aaaaaaaaaaaaaaaaaaaa\n\nbob   bbbbbbbbbbbbbbbbbbbb\n";

    #[test]
    fn a_known_bearer_token_names_its_caller() {
        let clients = Clients::parse(FILE, "tokens").unwrap();
        assert_eq!(clients.len(), 2);
        let who = |header: &str| clients.authenticate(Some(header.as_bytes())).map(|s| s.to_string());
        assert_eq!(who("Bearer aaaaaaaaaaaaaaaaaaaa").as_deref(), Some("alice"));
        assert_eq!(who("bearer  bbbbbbbbbbbbbbbbbbbb ").as_deref(), Some("bob"));
        assert_eq!(who("Bearer aaaaaaaaaaaaaaaaaaab"), None);
        assert_eq!(who("Basic aaaaaaaaaaaaaaaaaaaa"), None);
        assert_eq!(who("aaaaaaaaaaaaaaaaaaaa"), None);
        assert_eq!(clients.authenticate(None), None);
        assert!(!format!("{clients:?}").contains("aaaa"), "no token in Debug output");
    }

    #[test]
    fn weak_shared_or_malformed_tokens_are_refused_without_echoing_them() {
        let refused = |text: &str| Clients::parse(text, "tokens").unwrap_err().to_string();
        let weak = refused("alice short-token\n");
        assert!(weak.contains("tokens:1") && weak.contains("alice") && !weak.contains("short-token"), "{weak}");
        let shared = refused("alice aaaaaaaaaaaaaaaaaaaa\nbob aaaaaaaaaaaaaaaaaaaa\n");
        assert!(shared.contains("tokens:2") && !shared.contains("aaaa"), "{shared}");
        assert!(refused("alice\n").contains("expected `SUBJECT TOKEN`"));
        assert!(refused("alice a b\n").contains("tokens:1"));
        assert!(refused("# nobody\n").contains("no callers"));
    }
}
