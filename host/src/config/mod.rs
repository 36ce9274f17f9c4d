//! Configuration: what users write, checked once into what the code uses.
//!
//! A plugin is `NAME.wasm` with an optional `NAME.toml` beside it. The TOML is
//! parsed strictly ([`RawManifest`], unknown keys are errors that name the
//! file) and validated into a [`Manifest`].

pub mod gateway;
pub mod operations;
mod secret;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Defaults of the sandbox, documented in the README.
pub mod defaults {
    /// Wall-clock budget of one hook call.
    pub const DEADLINE_MS: u64 = 100;
    /// Linear memory cap of one plugin instance.
    pub const MEMORY_MIB: u64 = 64;
    /// Largest JSON-RPC message accepted on any stream.
    pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;
}

/// What happens to a message when a plugin fails on it (trap, timeout, memory cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// The message is rejected with an error naming the plugin.
    #[default]
    Closed,
    /// The message passes on as if the plugin had forwarded it; the failure is logged.
    Open,
}

/// `NAME.toml` as the user writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawManifest {
    /// Position in the chain; plugins without one sort by file name after those with one.
    pub order: Option<i64>,
    /// `closed` (default) or `open`.
    pub failure: Option<FailureMode>,
    /// Sandbox limits.
    #[serde(default)]
    pub limits: RawLimits,
    /// WASI capabilities granted to the plugin; none by default.
    #[serde(default)]
    pub grant: RawGrant,
    /// The plugin's own configuration, handed to its `init` as JSON.
    pub config: Option<toml::Table>,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLimits {
    /// Budget of one hook call in milliseconds.
    pub deadline_ms: Option<u64>,
    /// Memory cap of one instance in MiB.
    pub memory_mib: Option<u64>,
}

/// `[grant]`: WASI capabilities. Everything absent is denied.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawGrant {
    /// Names of environment variables the plugin may read (values from Warden's environment).
    #[serde(default)]
    pub env: Vec<String>,
    /// Host directories the plugin may read, mounted read-only at the same path.
    #[serde(default)]
    pub read_dirs: Vec<PathBuf>,
}

/// A validated plugin manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Sort key in the chain.
    pub order: Option<i64>,
    /// See [`FailureMode`].
    pub failure: FailureMode,
    /// Budget of one hook call.
    pub deadline: Duration,
    /// Memory cap in bytes.
    pub memory_bytes: usize,
    /// Environment variables passed in, as name/value pairs.
    pub env: Vec<(String, String)>,
    /// Directories mounted read-only.
    pub read_dirs: Vec<PathBuf>,
    /// The plugin's configuration as JSON text.
    pub config_json: String,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
    /// The TOML did not parse or had unknown keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the key.
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            order: None,
            failure: FailureMode::Closed,
            deadline: Duration::from_millis(defaults::DEADLINE_MS),
            memory_bytes: (defaults::MEMORY_MIB * 1024 * 1024) as usize,
            env: Vec::new(),
            read_dirs: Vec::new(),
            config_json: "{}".to_owned(),
        }
    }
}

impl Manifest {
    /// Reads `path` if it exists; a missing file means all defaults. A
    /// symbolic link is refused, not followed: a manifest linked to another
    /// file would have that file read (and quoted in errors) as config.
    pub fn load(path: &Path) -> Result<Manifest, ConfigError> {
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            let message = "is a symbolic link; manifests are read only from regular files".to_owned();
            return Err(ConfigError::Invalid { path: path.to_owned(), message });
        }
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::default()),
            Err(error) => return Err(ConfigError::Read { path: path.to_owned(), error }),
        };
        Manifest::parse(&text, path)
    }

    /// Parses and validates manifest text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ConfigError> {
        // The parser's message and where, never the offending text itself:
        // errors reach the log, and the file's content stays out of it.
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let message = match line {
                Some(line) => format!("line {line}: {}", e.message()),
                None => e.message().to_owned(),
            };
            ConfigError::Parse { path: path.to_owned(), message }
        })?;
        let invalid = |message: String| ConfigError::Invalid { path: path.to_owned(), message };

        let deadline_ms = raw.limits.deadline_ms.unwrap_or(defaults::DEADLINE_MS);
        if !(1..=60_000).contains(&deadline_ms) {
            return Err(invalid(format!("limits.deadline-ms must be 1..=60000, got {deadline_ms}")));
        }
        let memory_mib = raw.limits.memory_mib.unwrap_or(defaults::MEMORY_MIB);
        if !(1..=4096).contains(&memory_mib) {
            return Err(invalid(format!("limits.memory-mib must be 1..=4096, got {memory_mib}")));
        }
        // Only the granted variables are read, and only if Warden has them.
        let env = raw.grant.env.iter().filter_map(|name| std::env::var(name).ok().map(|v| (name.clone(), v))).collect();
        for dir in &raw.grant.read_dirs {
            if !dir.is_absolute() {
                return Err(invalid(format!("grant.read-dirs: {} must be an absolute path", dir.display())));
            }
            // `/`, `//`, `/.`, `/..`: the whole file system is no grant a sandbox makes.
            let whole = dir.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::RootDir | std::path::Component::CurDir | std::path::Component::ParentDir
                )
            });
            if whole {
                return Err(invalid(format!(
                    "grant.read-dirs: {} grants the whole file system; name a folder",
                    dir.display()
                )));
            }
        }
        let config_json = match raw.config {
            Some(table) => serde_json::to_string(&table).map_err(|e| invalid(format!("config: {e}")))?,
            None => "{}".to_owned(),
        };
        Ok(Manifest {
            order: raw.order,
            failure: raw.failure.unwrap_or_default(),
            deadline: Duration::from_millis(deadline_ms),
            memory_bytes: (memory_mib * 1024 * 1024) as usize,
            env,
            read_dirs: raw.grant.read_dirs,
            config_json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_empty() {
        let m = Manifest::parse("", Path::new("x.toml")).unwrap();
        assert_eq!(m, Manifest::default());
    }

    #[test]
    fn reads_every_key() {
        let m = Manifest::parse(
            "order = 5\nfailure = \"open\"\n[limits]\ndeadline-ms = 20\nmemory-mib = 8\n[config]\ndeny = [\"a*\"]\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(m.order, Some(5));
        assert_eq!(m.failure, FailureMode::Open);
        assert_eq!(m.deadline, Duration::from_millis(20));
        assert_eq!(m.memory_bytes, 8 << 20);
        assert_eq!(m.config_json, r#"{"deny":["a*"]}"#);
    }

    #[test]
    fn unknown_keys_name_the_file() {
        let e = Manifest::parse("fialure = \"open\"", Path::new("p/10-x.toml")).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("p/10-x.toml") && text.contains("fialure"), "{text}");
    }

    #[test]
    fn every_sample_config_in_the_repository_loads() {
        let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
        let mut seen = 0;
        for entry in std::fs::read_dir(plugins).unwrap() {
            let sample = entry.unwrap().path().join("sample.toml");
            if sample.exists() {
                Manifest::load(&sample).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(seen >= 3);
    }

    #[test]
    fn limits_are_checked() {
        assert!(Manifest::parse("[limits]\ndeadline-ms = 0", Path::new("x")).is_err());
        assert!(Manifest::parse("[limits]\nmemory-mib = 100000", Path::new("x")).is_err());
    }
}
