//! The plugin chain: loading components, sandboxing them and running their hooks.
//!
//! - [`runtime`]: one wasmtime `Engine` (pooling allocator, epoch ticker) and the
//!   on-disk cache of precompiled components.
//! - [`chain`]: an immutable, ordered snapshot of loaded plugins.
//! - [`instances`]: one owner's live instances of a chain and the hook calls.
//! - [`host`]: what a plugin may call back into (log, audit, state).
//! - [`reload`]: the plugins folder watched, the chain in force swapped whole.
//! - [`versions`]: every released WIT version, served at once.

pub mod cache;
pub mod chain;
pub mod host;
pub mod instances;
pub mod reload;
pub mod runtime;
pub mod state;
pub mod versions;

pub use chain::{Chain, Plugin};
pub use instances::{ChainOutcome, Fault, FaultKind, Instances, MessageContext};
pub use reload::Plugins;
pub use runtime::{LoadError, Runtime, RuntimeError, RuntimeOptions};

/// Host bindings generated from `wit/` (documented there).
#[allow(missing_docs)]
pub mod bindings {
    wasmtime::component::bindgen!({
        world: "interceptor",
        path: "../wit",
        exports: { default: async },
    });
}
