//! The wasmtime engine Warden runs every plugin on, and plugin loading.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use super::cache::{self, Cache};
use super::chain::{Chain, Interest, Plugin};
use super::host::{init_deadline, ticks, HostState, TICK};
use super::state::KvStore;
use super::versions::{self, Pre};
use crate::audit::AuditSink;
use crate::config::{ConfigError, Manifest};

/// Largest memory any plugin may be granted; the pooling allocator reserves slots of this size.
pub(crate) const MAX_PLUGIN_MEMORY: usize = 4096 << 20;
/// Concurrent instances the pooling allocator has room for.
const POOL_INSTANCES: u32 = 1000;

/// How the runtime is set up.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Where precompiled components are kept; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Where audit events go.
    pub audit: AuditSink,
}

/// Why the plugin runtime could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The engine (its configuration, or the machine's memory limits).
    #[error("the WebAssembly engine could not be built: {0:#}")]
    Engine(wasmtime::Error),
    /// The host imports (WASI and every WIT version served).
    #[error("the host imports could not be linked: {0:#}")]
    Link(wasmtime::Error),
    /// The thread that advances the epoch.
    #[error("the epoch ticker could not start: {0}")]
    Ticker(std::io::Error),
}

/// Why a plugin could not be loaded. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The plugins folder or a file could not be read.
    #[error("{path}: {error}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
    /// Its `.toml` is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Not a component, or not one of the `interceptor` world.
    #[error("{path}: not a warden:interceptor component: {message}")]
    Component {
        /// The file.
        path: PathBuf,
        /// wasmtime's explanation.
        message: String,
    },
    /// Its `init` refused the configuration or failed.
    #[error("{path}: init failed: {message}")]
    Init {
        /// The file.
        path: PathBuf,
        /// The plugin's or wasmtime's explanation.
        message: String,
    },
}

/// The engine, the linker with the host imports, and the compile cache.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<Cache>,
    audit: AuditSink,
    ticker: Arc<AtomicBool>,
}

impl Runtime {
    /// Builds the engine (pooling allocator where the machine allows it) and starts the epoch ticker.
    pub fn new(options: RuntimeOptions) -> Result<Arc<Runtime>, RuntimeError> {
        let engine = match Engine::new(&engine_config(true)) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!("pooling allocator unavailable, allocating on demand: {e:#}");
                Engine::new(&engine_config(false)).map_err(RuntimeError::Engine)?
            }
        };
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(RuntimeError::Link)?;
        versions::add_to_linker(&mut linker).map_err(RuntimeError::Link)?;
        let cache = options.cache_dir.map(|dir| Cache::new(dir, &engine));
        let ticker = Arc::new(AtomicBool::new(true));
        spawn_ticker(engine.clone(), ticker.clone()).map_err(RuntimeError::Ticker)?;
        Ok(Arc::new(Runtime { engine, linker, cache, audit: options.audit, ticker }))
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The audit sink plugin instances write to.
    pub fn audit(&self) -> &AuditSink {
        &self.audit
    }

    /// Loads every `*.wasm` in `dir` (with its optional `.toml`) into a chain,
    /// ordered by `order` and then by file name. Any bad file refuses the whole
    /// chain. A plugin of `previous` whose component and manifest are unchanged
    /// is reused as it is (no compile, no `init`; its state lives on).
    pub async fn load_dir(self: &Arc<Self>, dir: &Path, previous: &Chain) -> Result<Chain, LoadError> {
        let io = |error| LoadError::Io { path: dir.to_owned(), error };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "wasm") {
                continue;
            }
            let kind = entry.file_type().map_err(|error| LoadError::Io { path: path.clone(), error })?;
            if kind.is_symlink() {
                // Refused, not followed: what is loaded is what sits in the folder.
                let error = std::io::Error::other("is a symbolic link; plugins are loaded only from regular files");
                return Err(LoadError::Io { path, error });
            }
            if kind.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut plugins = Vec::with_capacity(files.len());
        for path in files {
            let manifest = Manifest::load(&path.with_extension("toml"))?;
            let bytes = tokio::fs::read(&path).await.map_err(|error| LoadError::Io { path: path.clone(), error })?;
            let digest = cache::digest(&bytes);
            let name = plugin_name(&path);
            let same = |p: &&Arc<Plugin>| p.name == name && p.digest == digest && p.manifest == manifest;
            let plugin = match previous.plugins().iter().find(same) {
                Some(unchanged) => unchanged.clone(),
                None => Arc::new(self.load_bytes(&path, manifest, bytes, digest).await?),
            };
            plugins.push(plugin);
        }
        plugins.sort_by_key(|p| (p.manifest.order.is_none(), p.manifest.order));
        Ok(Chain::new(plugins))
    }

    /// Loads one plugin: compile (or read from the cache), link, and run its
    /// `init` once to check the configuration and learn which methods it wants.
    pub async fn load_plugin(self: &Arc<Self>, wasm: &Path) -> Result<Plugin, LoadError> {
        let manifest = Manifest::load(&wasm.with_extension("toml"))?;
        self.load_with(wasm, manifest).await
    }

    /// Loads one plugin with a manifest given apart from it.
    pub async fn load_with(self: &Arc<Self>, wasm: &Path, manifest: Manifest) -> Result<Plugin, LoadError> {
        let bytes = tokio::fs::read(wasm).await.map_err(|error| LoadError::Io { path: wasm.to_owned(), error })?;
        let digest = cache::digest(&bytes);
        self.load_bytes(wasm, manifest, bytes, digest).await
    }

    /// What a component file imports and exports, by name (compiled, or read from the cache).
    pub fn surface(&self, wasm: &Path) -> Result<(Vec<String>, Vec<String>), LoadError> {
        let component_err = |message: String| LoadError::Component { path: wasm.to_owned(), message };
        let bytes = std::fs::read(wasm).map_err(|error| LoadError::Io { path: wasm.to_owned(), error })?;
        let (component, _) = self.compile(&bytes, &cache::digest(&bytes)).map_err(component_err)?;
        let ty = component.component_type();
        let imports = ty.imports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let exports = ty.exports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        Ok((imports, exports))
    }

    async fn load_bytes(
        self: &Arc<Self>,
        wasm: &Path,
        manifest: Manifest,
        bytes: Vec<u8>,
        digest: String,
    ) -> Result<Plugin, LoadError> {
        let name = plugin_name(wasm);

        let started = Instant::now();
        let this = self.clone();
        let digest2 = digest.clone();
        // Compiling is CPU work for milliseconds to seconds: keep it off the async workers.
        let compiled = tokio::task::spawn_blocking(move || this.compile(&bytes, &digest2)).await;
        let (component, source) = match compiled {
            Ok(result) => result,
            Err(join) => Err(join.to_string()),
        }
        .map_err(|message| LoadError::Component { path: wasm.to_owned(), message })?;

        let component_err =
            |e: wasmtime::Error| LoadError::Component { path: wasm.to_owned(), message: format!("{e:#}") };
        let instance_pre = self.linker.instantiate_pre(&component).map_err(component_err)?;
        let pre = Pre::new(instance_pre).map_err(component_err)?;

        let kv = Arc::new(KvStore::default());
        let registration = {
            let state = HostState::new(name.clone(), &manifest, None, None, None, kv.clone(), self.audit.clone());
            let mut store = Store::new(&self.engine, state);
            store.limiter(|s| s.limiter());
            store.set_epoch_deadline(ticks(init_deadline(manifest.deadline)));
            let init_err = |message: String| LoadError::Init { path: wasm.to_owned(), message };
            let bindings = pre.instantiate(&mut store).await.map_err(|e| init_err(format!("{e:#}")))?;
            store.set_epoch_deadline(ticks(init_deadline(manifest.deadline)));
            bindings
                .call_init(&mut store, &manifest.config_json)
                .await
                .map_err(|e| init_err(format!("{e:#}")))?
                .map_err(init_err)?
        };
        let requests = Interest::new(registration.requests);
        let responses = Interest::new(registration.responses);
        tracing::info!(
            plugin = %name,
            digest = &digest[..12],
            requests = requests.describe(),
            responses = responses.describe(),
            cached = source == cache::Source::Cached,
            "loaded in {:?}",
            started.elapsed()
        );
        Ok(Plugin { name, manifest, pre, requests, responses, kv, digest })
    }

    fn compile(&self, bytes: &[u8], digest: &str) -> Result<(Component, cache::Source), String> {
        if let Some(component) = self.cache.as_ref().and_then(|c| c.load(&self.engine, digest)) {
            return Ok((component, cache::Source::Cached));
        }
        // wasmtime's messages may span lines (e.g. a byte dump); a log line is one line.
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| format!("{e:#}").split_whitespace().collect::<Vec<_>>().join(" "))?;
        if let Some(cache) = &self.cache {
            cache.store(digest, &component);
        }
        Ok((component, cache::Source::Compiled))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.store(false, Ordering::Relaxed);
    }
}

/// A plugin's name: its file's stem.
fn plugin_name(wasm: &Path) -> Arc<str> {
    wasm.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default().into()
}

fn engine_config(pooling: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 4)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 4)
            .total_stacks(POOL_INSTANCES)
            .max_memory_size(MAX_PLUGIN_MEMORY)
            // Every hook call runs on a pooled fiber stack; keeping its hot top
            // resident saves an madvise and fresh page faults on each call.
            .async_stack_keep_resident(256 * 1024);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Advances the engine's epoch every [`TICK`] until the runtime is dropped.
fn spawn_ticker(engine: Engine, running: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new().name("warden-epoch".into()).spawn(move || {
        while running.load(Ordering::Relaxed) {
            std::thread::sleep(TICK);
            engine.increment_epoch();
        }
    })?;
    Ok(())
}
