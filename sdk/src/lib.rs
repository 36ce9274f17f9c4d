//! Write [Warden](https://github.com/) plugins in Rust.
//!
//! A plugin is a type that implements [`Plugin`]; every hook defaults to
//! "forward", so a plugin only writes the hooks it needs. [`export_plugin!`]
//! turns it into a `warden:interceptor@0.3.0` component.
//!
//! ```no_run
//! use warden_sdk::{export_plugin, mcp, Config, Context, Interest, Plugin, Verdict};
//!
//! /// Refuses every call to the `shell` tool.
//! struct NoShell;
//!
//! impl Plugin for NoShell {
//!     fn init(_config: Config) -> Result<Self, String> {
//!         Ok(NoShell)
//!     }
//!
//!     // Calls from the client, decided on the tool name alone: Warden
//!     // hands this hook the context and no message text.
//!     fn requests(&self) -> Interest {
//!         Interest::new(vec!["tools/call".into()]).from_client().context_only()
//!     }
//!
//!     // It only decides on calls: Warden need not show it the answers.
//!     fn responses(&self) -> Interest {
//!         Interest::new(Vec::new())
//!     }
//!
//!     fn on_request(&mut self, ctx: &Context, _message: &str) -> Verdict {
//!         match ctx.tool.as_deref() {
//!             Some("shell") => mcp::deny("the shell tool is not allowed here"),
//!             _ => Verdict::Forward,
//!         }
//!     }
//! }
//!
//! export_plugin!(NoShell);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` (crate type
//! `cdylib`) and drop the `.wasm` into Warden's plugins folder.

#![deny(missing_docs)]

// The generated bindings name this crate by its public path, also from inside it.
extern crate self as warden_sdk;

pub mod mcp;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "interceptor",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_interceptor",
        default_bindings_module: "warden_sdk::bindings",
        runtime_path: "warden_sdk::__private::wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}

pub use bindings::warden::interceptor::types::{
    Body, Caller, Context, Direction, Directions, ErrorFacts, Interest, MessageKind, Outcome, Registration, RpcError,
    Verdict,
};

impl Interest {
    /// These methods, both ways, whole bodies.
    pub fn new(methods: Vec<String>) -> Interest {
        Interest { methods, directions: Directions::all(), body: Body::Whole }
    }

    /// Only messages travelling from the client towards the server.
    pub fn from_client(self) -> Interest {
        Interest { directions: Directions::CLIENT_TO_SERVER, ..self }
    }

    /// Only messages travelling from the server towards the client.
    pub fn from_server(self) -> Interest {
        Interest { directions: Directions::SERVER_TO_CLIENT, ..self }
    }

    /// The hook decides on the context alone: it is handed an empty message,
    /// and large messages pass it without being copied in.
    pub fn context_only(self) -> Interest {
        Interest { body: Body::ContextOnly, ..self }
    }
}

/// A plugin's configuration: the `[config]` table of its `.toml`, as JSON.
#[derive(Debug, Clone, Default)]
pub struct Config(pub serde_json::Value);

impl Config {
    /// Deserializes the configuration into the plugin's own type, with an error
    /// message Warden shows when it refuses the plugin.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_value(self.0.clone()).map_err(|e| format!("invalid config: {e}"))
    }

    #[doc(hidden)]
    pub fn from_text(text: &str) -> Result<Config, String> {
        serde_json::from_str(text).map(Config).map_err(|e| format!("config is not JSON: {e}"))
    }
}

/// A Warden plugin. Every hook defaults to passing the message on unchanged.
pub trait Plugin: Sized + 'static {
    /// Builds the plugin from its configuration. An error refuses the plugin.
    fn init(config: Config) -> Result<Self, String>;

    /// The methods to be called for: exact names, prefixes ending in `*`, or
    /// `"*"` for everything (the default). Narrow lists keep Warden fast.
    /// Both hooks use it unless [`Plugin::request_methods`] or
    /// [`Plugin::response_methods`] say otherwise.
    fn methods(&self) -> Vec<String> {
        vec!["*".into()]
    }

    /// The methods whose requests and notifications reach [`Plugin::on_request`]
    /// (default: [`Plugin::methods`]). Return an empty list if the plugin only
    /// looks at responses: Warden then never calls it on the way in.
    fn request_methods(&self) -> Vec<String> {
        self.methods()
    }

    /// The methods whose responses reach [`Plugin::on_response`] (default:
    /// [`Plugin::methods`]). Return an empty list if the plugin only looks at
    /// requests.
    fn response_methods(&self) -> Vec<String> {
        self.methods()
    }

    /// What reaches [`Plugin::on_request`]: by default the
    /// [`Plugin::request_methods`], both ways, whole bodies. Narrow it with
    /// [`Interest::from_client`], [`Interest::from_server`] and
    /// [`Interest::context_only`].
    fn requests(&self) -> Interest {
        Interest::new(self.request_methods())
    }

    /// What reaches [`Plugin::on_response`] (the direction is the answer's
    /// own: answers from the server travel [`Direction::ServerToClient`]).
    fn responses(&self) -> Interest {
        Interest::new(self.response_methods())
    }

    /// Sees a request or notification that [`Plugin::requests`] takes in.
    fn on_request(&mut self, ctx: &Context, message: &str) -> Verdict {
        let _ = (ctx, message);
        Verdict::Forward
    }

    /// Sees a response or error that [`Plugin::responses`] takes in.
    fn on_response(&mut self, ctx: &Context, message: &str) -> Verdict {
        let _ = (ctx, message);
        Verdict::Forward
    }
}

/// Exports a [`Plugin`] type as the component's `interceptor` world.
// rustfmt mangles the nested braces of this macro body.
#[rustfmt::skip]
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            struct WardenGuest;

            ::std::thread_local! {
                static INSTANCE: ::std::cell::RefCell<::std::option::Option<$plugin>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            fn with_plugin(f: impl FnOnce(&mut $plugin) -> $crate::Verdict) -> $crate::Verdict {
                INSTANCE.with(|cell| match cell.borrow_mut().as_mut() {
                    ::std::option::Option::Some(plugin) => f(plugin),
                    ::std::option::Option::None => $crate::Verdict::Forward,
                })
            }

            impl $crate::bindings::Guest for WardenGuest {
                fn init(
                    config: ::std::string::String,
                ) -> ::std::result::Result<$crate::Registration, ::std::string::String> {
                    let config = $crate::Config::from_text(&config)?;
                    let plugin = <$plugin as $crate::Plugin>::init(config)?;
                    let requests = $crate::Plugin::requests(&plugin);
                    let responses = $crate::Plugin::responses(&plugin);
                    INSTANCE.with(|cell| *cell.borrow_mut() = ::std::option::Option::Some(plugin));
                    ::std::result::Result::Ok($crate::Registration { requests, responses })
                }

                fn on_request(ctx: $crate::Context, message: ::std::string::String) -> $crate::Verdict {
                    with_plugin(|p| $crate::Plugin::on_request(p, &ctx, &message))
                }

                fn on_response(ctx: $crate::Context, message: ::std::string::String) -> $crate::Verdict {
                    with_plugin(|p| $crate::Plugin::on_response(p, &ctx, &message))
                }
            }

            $crate::bindings::__export_interceptor!(WardenGuest with_types_in $crate::bindings);
        };
    };
}

/// Writing to Warden's log (stderr), tagged with the plugin's name.
pub mod log {
    use crate::bindings::warden::interceptor::log::{write, Level};

    /// Logs at debug level.
    pub fn debug(message: &str) {
        write(Level::Debug, message);
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        write(Level::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        write(Level::Warn, message);
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        write(Level::Error, message);
    }
}

/// Recording audit events (written by Warden to its `--audit` file).
pub mod audit {
    /// Records one event (anything that serializes to a JSON object: a
    /// `serde_json::Value`, or a `#[derive(Serialize)]` struct, which is cheaper);
    /// Warden adds the time, the plugin and the session.
    pub fn emit<T: serde::Serialize + ?Sized>(event: &T) {
        match serde_json::to_string(event) {
            Ok(text) => crate::bindings::warden::interceptor::audit::emit(&text),
            Err(e) => crate::log::error(&format!("audit event not serializable: {e}")),
        }
    }
}

/// The plugin's key-value state, shared by its instances in every session.
pub mod state {
    pub use crate::bindings::warden::interceptor::state::{get, increment, remove, set};
}
