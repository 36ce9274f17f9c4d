//! Every released version of the WIT contract, served at once.
//!
//! `wit/` is the current version; each released one is frozen in
//! `wit/frozen/v<version>/`. A component is matched against the current
//! version first, then the older ones; a plugin built against an older version
//! gets the same host imports and sees the context as that version shaped it.
//!
//! | WIT package | what changed |
//! |---|---|
//! | `warden:interceptor@0.3.0` | `registration` says per hook the directions and whether the body is read (`interest`); `context.outcome` |
//! | `warden:interceptor@0.2.0` | `context.transport` |
//! | `warden:interceptor@0.1.0` | first release |

use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::Store;

use super::bindings::warden::interceptor::types as wit;
use super::bindings::{Interceptor, InterceptorPre};
use super::host::HostState;

/// The current version's package version.
pub const CURRENT: &str = "0.3.0";
/// Every version served, newest first.
pub const SERVED: &[&str] = &[CURRENT, "0.2.0", "0.1.0"];

/// The frozen 0.2.0 contract.
#[allow(missing_docs)]
pub mod v0_2 {
    wasmtime::component::bindgen!({
        world: "interceptor",
        path: "../wit/frozen/v0.2.0",
        exports: { default: async },
    });
}

/// The frozen 0.1.0 contract.
#[allow(missing_docs)]
pub mod v0_1 {
    wasmtime::component::bindgen!({
        world: "interceptor",
        path: "../wit/frozen/v0.1.0",
        exports: { default: async },
    });
}

use v0_1::warden::interceptor::types as wit0_1;
use v0_2::warden::interceptor::types as wit0_2;

/// A component linked and checked against one version of the contract.
pub enum Pre {
    /// The current version.
    Current(InterceptorPre<HostState>),
    /// 0.2.0.
    V0_2(v0_2::InterceptorPre<HostState>),
    /// 0.1.0.
    V0_1(v0_1::InterceptorPre<HostState>),
}

/// One instance's exports, in its version.
pub enum Bindings {
    /// The current version.
    Current(Interceptor),
    /// 0.2.0.
    V0_2(v0_2::Interceptor),
    /// 0.1.0.
    V0_1(v0_1::Interceptor),
}

/// Puts every version's host imports in the linker.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    Interceptor::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    v0_2::Interceptor::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    v0_1::Interceptor::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}

impl Pre {
    /// Matches a linked component to the newest version it implements.
    pub fn new(instance_pre: InstancePre<HostState>) -> wasmtime::Result<Pre> {
        let current = match InterceptorPre::new(instance_pre.clone()) {
            Ok(pre) => return Ok(Pre::Current(pre)),
            Err(current) => current,
        };
        if let Ok(pre) = v0_2::InterceptorPre::new(instance_pre.clone()) {
            return Ok(Pre::V0_2(pre));
        }
        match v0_1::InterceptorPre::new(instance_pre) {
            Ok(pre) => Ok(Pre::V0_1(pre)),
            // None: the error against the current version says most.
            Err(_) => Err(current),
        }
    }

    /// The contract version it was built against.
    pub fn version(&self) -> &'static str {
        match self {
            Pre::Current(_) => CURRENT,
            Pre::V0_2(_) => "0.2.0",
            Pre::V0_1(_) => "0.1.0",
        }
    }

    /// A new instance.
    pub async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Bindings> {
        Ok(match self {
            Pre::Current(pre) => Bindings::Current(pre.instantiate_async(store).await?),
            Pre::V0_2(pre) => Bindings::V0_2(pre.instantiate_async(store).await?),
            Pre::V0_1(pre) => Bindings::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

impl Bindings {
    /// `init`: the registration, or why the config is refused.
    pub async fn call_init(
        &self,
        store: &mut Store<HostState>,
        config: &str,
    ) -> wasmtime::Result<Result<wit::Registration, String>> {
        Ok(match self {
            Bindings::Current(b) => b.call_init(store, config).await?,
            Bindings::V0_2(b) => b.call_init(store, config).await?.map(|r| methods_only(r.requests, r.responses)),
            Bindings::V0_1(b) => b.call_init(store, config).await?.map(|r| methods_only(r.requests, r.responses)),
        })
    }

    /// `on-response` when `response`, else `on-request`.
    pub async fn call_hook(
        &self,
        store: &mut Store<HostState>,
        response: bool,
        context: &wit::Context,
        message: &str,
    ) -> wasmtime::Result<wit::Verdict> {
        Ok(match (self, response) {
            (Bindings::Current(b), false) => b.call_on_request(store, context, message).await?,
            (Bindings::Current(b), true) => b.call_on_response(store, context, message).await?,
            (Bindings::V0_2(b), false) => verdict_0_2(b.call_on_request(store, &context_0_2(context), message).await?),
            (Bindings::V0_2(b), true) => verdict_0_2(b.call_on_response(store, &context_0_2(context), message).await?),
            (Bindings::V0_1(b), false) => verdict(b.call_on_request(store, &context_0_1(context), message).await?),
            (Bindings::V0_1(b), true) => verdict(b.call_on_response(store, &context_0_1(context), message).await?),
        })
    }
}

/// A registration of 0.2.0 or older: methods only, so both ways and whole bodies.
fn methods_only(requests: Vec<String>, responses: Vec<String>) -> wit::Registration {
    let interest = |methods| wit::Interest { methods, directions: wit::Directions::all(), body: wit::Body::Whole };
    wit::Registration { requests: interest(requests), responses: interest(responses) }
}

/// The context as 0.2.0 shaped it (no outcome).
fn context_0_2(cx: &wit::Context) -> wit0_2::Context {
    wit0_2::Context {
        direction: match cx.direction {
            wit::Direction::ClientToServer => wit0_2::Direction::ClientToServer,
            wit::Direction::ServerToClient => wit0_2::Direction::ServerToClient,
        },
        kind: match cx.kind {
            wit::MessageKind::Request => wit0_2::MessageKind::Request,
            wit::MessageKind::Notification => wit0_2::MessageKind::Notification,
            wit::MessageKind::Response => wit0_2::MessageKind::Response,
            wit::MessageKind::Error => wit0_2::MessageKind::Error,
        },
        id: cx.id.clone(),
        method: cx.method.clone(),
        tool: cx.tool.clone(),
        session_id: cx.session_id.clone(),
        upstream: cx.upstream.clone(),
        caller: cx.caller.as_ref().map(|c| wit0_2::Caller { subject: c.subject.clone(), claims: c.claims.clone() }),
        protocol_version: cx.protocol_version.clone(),
        transport: match cx.transport {
            wit::Transport::Stdio => wit0_2::Transport::Stdio,
            wit::Transport::StreamableHttp => wit0_2::Transport::StreamableHttp,
            wit::Transport::HttpSse => wit0_2::Transport::HttpSse,
        },
    }
}

/// The context as 0.1.0 shaped it (no transport).
fn context_0_1(cx: &wit::Context) -> wit0_1::Context {
    wit0_1::Context {
        direction: match cx.direction {
            wit::Direction::ClientToServer => wit0_1::Direction::ClientToServer,
            wit::Direction::ServerToClient => wit0_1::Direction::ServerToClient,
        },
        kind: match cx.kind {
            wit::MessageKind::Request => wit0_1::MessageKind::Request,
            wit::MessageKind::Notification => wit0_1::MessageKind::Notification,
            wit::MessageKind::Response => wit0_1::MessageKind::Response,
            wit::MessageKind::Error => wit0_1::MessageKind::Error,
        },
        id: cx.id.clone(),
        method: cx.method.clone(),
        tool: cx.tool.clone(),
        session_id: cx.session_id.clone(),
        upstream: cx.upstream.clone(),
        caller: cx.caller.as_ref().map(|c| wit0_1::Caller { subject: c.subject.clone(), claims: c.claims.clone() }),
        protocol_version: cx.protocol_version.clone(),
    }
}

/// A verdict of an older version, as the current one: the variant is unchanged.
macro_rules! verdict_from {
    ($name:ident, $old:ident) => {
        fn $name(v: $old::Verdict) -> wit::Verdict {
            match v {
                $old::Verdict::Forward => wit::Verdict::Forward,
                $old::Verdict::Modify(text) => wit::Verdict::Modify(text),
                $old::Verdict::Reject(e) => {
                    wit::Verdict::Reject(wit::RpcError { code: e.code, message: e.message, data: e.data })
                }
                $old::Verdict::Respond(text) => wit::Verdict::Respond(text),
                $old::Verdict::RequireApproval(prompt) => wit::Verdict::RequireApproval(prompt),
            }
        }
    };
}

verdict_from!(verdict, wit0_1);
verdict_from!(verdict_0_2, wit0_2);

/// An older version's host imports: the current ones (their shapes did not change).
macro_rules! imports_of {
    ($v:ident) => {
        impl $v::warden::interceptor::log::Host for HostState {
            fn write(&mut self, level: $v::warden::interceptor::log::Level, message: String) {
                use super::bindings::warden::interceptor::log;
                use $v::warden::interceptor::log::Level;
                let level = match level {
                    Level::Trace => log::Level::Trace,
                    Level::Debug => log::Level::Debug,
                    Level::Info => log::Level::Info,
                    Level::Warn => log::Level::Warn,
                    Level::Error => log::Level::Error,
                };
                log::Host::write(self, level, message);
            }
        }

        impl $v::warden::interceptor::audit::Host for HostState {
            fn emit(&mut self, event: String) {
                super::bindings::warden::interceptor::audit::Host::emit(self, event);
            }
        }

        impl $v::warden::interceptor::state::Host for HostState {
            fn get(&mut self, key: String) -> Option<String> {
                super::bindings::warden::interceptor::state::Host::get(self, key)
            }

            fn set(&mut self, key: String, value: String, ttl_ms: Option<u64>) {
                super::bindings::warden::interceptor::state::Host::set(self, key, value, ttl_ms);
            }

            fn remove(&mut self, key: String) {
                super::bindings::warden::interceptor::state::Host::remove(self, key);
            }

            fn increment(&mut self, key: String, delta: i64, ttl_ms: Option<u64>) -> i64 {
                super::bindings::warden::interceptor::state::Host::increment(self, key, delta, ttl_ms)
            }
        }

        impl $v::warden::interceptor::types::Host for HostState {}
    };
}

imports_of!(v0_1);
imports_of!(v0_2);
