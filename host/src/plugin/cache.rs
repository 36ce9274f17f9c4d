//! The on-disk cache of precompiled components.
//!
//! Compiling a component takes from milliseconds (a small Rust plugin) to
//! seconds (a JavaScript or Python one). The native code is kept under a key
//! made of the component's sha256 and the engine's compatibility hash, so a
//! restart, or another Warden with the same settings, loads it instead.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// A directory of `<sha256>-<engine>.cwasm` files.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    engine_key: String,
}

/// How a component was obtained, for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Loaded from the cache.
    Cached,
    /// Compiled now (and stored, if a cache is configured).
    Compiled,
}

/// Where compiled plugins are cached unless told otherwise:
/// `$XDG_CACHE_HOME/warden`, else `~/.cache/warden`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("warden"))
}

/// The sha256 of a component's bytes, as lowercase hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Cache {
    /// A cache in `dir` for components compiled by `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> Cache {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Cache { dir, engine_key: format!("{:016x}", hasher.finish()) }
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// Loads the precompiled form of the component with this digest, if present and usable.
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path(digest);
        if !path.exists() {
            return None;
        }
        match deserialize(engine, &path) {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(file = %path.display(), "cache: unusable entry, recompiling: {e:#}");
                None
            }
        }
    }

    /// Stores a compiled component. Written to a temporary file and renamed, so a
    /// reader never sees half an entry; failures only cost a recompile later.
    pub fn store(&self, digest: &str, component: &Component) {
        let result = (|| -> Result<(), Box<dyn std::error::Error>> {
            std::fs::create_dir_all(&self.dir)?;
            let bytes = component.serialize()?;
            let tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            std::fs::write(tmp.path(), bytes)?;
            tmp.persist(self.path(digest))?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), "cache: could not store compiled plugin: {e:#}");
        }
    }
}

/// One of Warden's three `unsafe` uses (the others skip a second UTF-8 check
/// of a message, `Message::text`, and confine a child between fork and exec,
/// `child::confine`): loading native code from the cache.
///
/// Safety: `Component::deserialize_file` trusts the file to be the output of
/// `Component::serialize` from a compatible engine; wasmtime checks the header
/// and the engine settings, and the cache directory belongs to the user running
/// Warden (the same trust as the `warden` binary itself). The file is only
/// read, never modified, while mapped.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    unsafe { Component::deserialize_file(engine, path) }
}
