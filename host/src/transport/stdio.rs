//! Warden's own stdin and stdout as async streams.
//!
//! When they are pipes (as when an MCP client launches Warden) they are driven
//! by the reactor directly: no blocking thread per read, and nothing left
//! blocked in a read when Warden wants to exit. Anything else (a terminal, a
//! file) falls back to tokio's blocking-thread stdio.

use std::os::fd::AsFd;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// Warden's stdin.
pub fn stdin() -> Pin<Box<dyn AsyncRead + Send>> {
    let pipe = std::io::stdin().as_fd().try_clone_to_owned().and_then(tokio::net::unix::pipe::Receiver::from_owned_fd);
    match pipe {
        Ok(pipe) => Box::pin(pipe),
        Err(_) => Box::pin(tokio::io::stdin()),
    }
}

/// Warden's stdout: the protocol stream, and nothing else.
pub fn stdout() -> Pin<Box<dyn AsyncWrite + Send>> {
    let pipe = std::io::stdout().as_fd().try_clone_to_owned().and_then(tokio::net::unix::pipe::Sender::from_owned_fd);
    match pipe {
        Ok(pipe) => Box::pin(pipe),
        Err(_) => Box::pin(tokio::io::stdout()),
    }
}
