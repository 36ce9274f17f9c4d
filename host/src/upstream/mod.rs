//! How Warden reaches the server it fronts.
//!
//! - [`child`]: a stdio server started as a child process.
//! - [`http`]: a remote server over Streamable HTTP.

pub mod child;
pub mod http;
