//! How Warden reaches the server it fronts.
//!
//! - [`child`]: a stdio server started as a child process.

pub mod child;
