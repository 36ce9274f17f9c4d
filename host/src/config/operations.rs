//! `[audit]` and `[admin]` of `warden.toml`: how the trail is kept and where
//! operators reach Warden, checked as they are read.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// What is wrong with a key, and where (its byte offset in the file).
#[derive(Debug)]
pub struct Problem {
    /// Where in the file.
    pub offset: Option<usize>,
    /// The key.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// How to put it right.
    pub fix: Option<String>,
}

impl Problem {
    fn at(offset: Option<usize>, key: &str, message: String, fix: Option<String>) -> Problem {
        Problem { offset, key: key.to_owned(), message, fix }
    }
}

/// `[audit]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawAudit {
    /// The audit file (JSON lines).
    pub file: Option<Spanned<String>>,
    /// The Ed25519 key that signs checkpoints (`warden audit keygen`).
    pub key: Option<String>,
    /// A checkpoint after this many records.
    pub checkpoint_every: Option<u64>,
    /// A checkpoint once this long passed with records unsigned (`"10s"`).
    pub checkpoint_interval: Option<String>,
    /// A new file once the current one is this large, in bytes.
    pub max_bytes: Option<u64>,
    /// A new file once the current one is this old (`"1d"`).
    pub max_age: Option<String>,
    /// `"batch"` (the default) or `"always"`: an answer waits until its record is on disk.
    pub sync: Option<AuditSync>,
    /// Refuse calls while the trail cannot be written.
    #[serde(default)]
    pub required: bool,
    /// Put the arguments themselves in records (after the chain's redaction).
    #[serde(default)]
    pub include_arguments: bool,
}

/// When audit records reach the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditSync {
    /// Written within 10 ms, in batches.
    #[default]
    Batch,
    /// Written and synced before the answer is released.
    Always,
}

/// How the audit trail is kept, as `[audit]` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditSettings {
    /// The file.
    pub file: Option<PathBuf>,
    /// The signing key's file.
    pub key: Option<PathBuf>,
    /// Records between checkpoints.
    pub checkpoint_every: Option<u64>,
    /// Time between checkpoints while records wait.
    pub checkpoint_interval: Option<Duration>,
    /// Rotation by size.
    pub max_bytes: Option<u64>,
    /// Rotation by age.
    pub max_age: Option<Duration>,
    /// See [`AuditSync`].
    pub sync: AuditSync,
    /// Calls are refused while the trail cannot be written.
    pub required: bool,
    /// Records carry the arguments (after redaction).
    pub include_arguments: bool,
}

/// `[admin]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawAdmin {
    /// Its address (loopback by default).
    pub listen: Option<Spanned<String>>,
    /// The file holding the admin token.
    pub token_file: Option<Spanned<String>>,
}

/// `[admin]`, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminSettings {
    /// The admin listener's address.
    pub listen: Option<SocketAddr>,
    /// The admin token's file.
    pub token_file: Option<PathBuf>,
}

/// `[audit]`, checked; relative paths through `resolve`.
pub fn audit(raw: Option<&RawAudit>, resolve: &dyn Fn(&str) -> PathBuf) -> Result<AuditSettings, Problem> {
    Ok(match raw {
        None => AuditSettings::default(),
        Some(a) => {
            let line = a.file.as_ref().map(|f| f.span().start);
            let duration = |value: &Option<String>, name: &str| -> Result<Option<Duration>, Problem> {
                value
                    .as_deref()
                    .map(|t| {
                        humantime::parse_duration(t).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
                            let fix = "write a duration such as \"10s\", \"1h\" or \"1d\"".to_owned();
                            Problem::at(line, &format!("audit.{name}"), "is not a duration".into(), Some(fix))
                        })
                    })
                    .transpose()
            };
            for (name, value) in [("checkpoint-every", a.checkpoint_every), ("max-bytes", a.max_bytes)] {
                if value == Some(0) {
                    return Err(Problem::at(
                        line,
                        &format!("audit.{name}"),
                        "is 0".into(),
                        Some("give at least 1".into()),
                    ));
                }
            }
            let key = a.key.as_deref().map(resolve);
            if let Some(key) = key.as_ref().filter(|k| !k.is_file()) {
                let fix = "make one with `warden audit keygen DIR`, or correct the path".to_owned();
                let message = format!("key file {} does not exist", key.display());
                return Err(Problem::at(line, "audit.key", message, Some(fix)));
            }
            AuditSettings {
                file: a.file.as_ref().map(|f| resolve(f.get_ref())),
                key,
                checkpoint_every: a.checkpoint_every,
                checkpoint_interval: duration(&a.checkpoint_interval, "checkpoint-interval")?,
                max_bytes: a.max_bytes,
                max_age: duration(&a.max_age, "max-age")?,
                sync: a.sync.unwrap_or_default(),
                required: a.required,
                include_arguments: a.include_arguments,
            }
        }
    })
}

/// `[admin]`, checked; relative paths through `resolve`.
pub fn admin(raw: Option<&RawAdmin>, resolve: &dyn Fn(&str) -> PathBuf) -> Result<AdminSettings, Problem> {
    Ok(match raw {
        None => AdminSettings::default(),
        Some(a) => {
            let listen = match &a.listen {
                Some(l) => Some(l.get_ref().parse::<SocketAddr>().map_err(|_| {
                    let fix = "write an address and port, such as \"127.0.0.1:9090\"".to_owned();
                    Problem::at(Some(l.span().start), "admin.listen", "is not an address".into(), Some(fix))
                })?),
                None => None,
            };
            let token_file = match &a.token_file {
                Some(t) => {
                    let path = resolve(t.get_ref());
                    if !path.is_file() {
                        let message = format!("file {} does not exist", path.display());
                        let fix = "give a file holding the token (one line, at least 16 characters)".to_owned();
                        return Err(Problem::at(Some(t.span().start), "admin.token-file", message, Some(fix)));
                    }
                    Some(path)
                }
                None => None,
            };
            if let (Some(address), None, Some(l)) = (listen, &token_file, &a.listen) {
                if !address.ip().to_canonical().is_loopback() {
                    let fix =
                        "add token-file = \"admin.token\" (one line, at least 16 characters), or listen on loopback"
                            .to_owned();
                    let message = "is not a loopback address, and no token-file guards it".to_owned();
                    return Err(Problem::at(Some(l.span().start), "admin.listen", message, Some(fix)));
                }
            }
            AdminSettings { listen, token_file }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin_of(text: &str) -> Result<AdminSettings, Problem> {
        #[derive(Deserialize)]
        struct File {
            admin: RawAdmin,
        }
        let file: File = toml::from_str(text).expect("toml");
        admin(Some(&file.admin), &|p| PathBuf::from("/nowhere").join(p))
    }

    #[test]
    fn an_admin_listener_off_loopback_needs_a_token_file() {
        let problem = admin_of("[admin]\nlisten = \"0.0.0.0:9090\"\n").expect_err("refused");
        assert_eq!(problem.key, "admin.listen");
        assert!(problem.fix.unwrap_or_default().contains("token-file"));
        assert!(admin_of("[admin]\nlisten = \"127.0.0.1:9090\"\n").is_ok());
        assert_eq!(admin_of("[admin]\nlisten = \"here\"\n").expect_err("refused").key, "admin.listen");
        let missing = admin_of("[admin]\nlisten = \"0.0.0.0:9090\"\ntoken-file = \"t\"\n").expect_err("refused");
        assert_eq!(missing.key, "admin.token-file");
    }

    #[test]
    fn audit_durability_is_read() {
        #[derive(Deserialize)]
        struct File {
            audit: RawAudit,
        }
        let file: File =
            toml::from_str("[audit]\nsync = \"always\"\nrequired = true\ninclude-arguments = true\n").unwrap();
        let settings = audit(Some(&file.audit), &|p| PathBuf::from(p)).expect("valid");
        assert_eq!(settings.sync, AuditSync::Always);
        assert!(settings.required && settings.include_arguments);
        assert!(toml::from_str::<File>("[audit]\nsync = \"sometimes\"\n").is_err());
    }
}
