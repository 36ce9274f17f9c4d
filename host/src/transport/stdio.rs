//! Warden's own stdin and stdout as async streams.
//!
//! When they are pipes (as when an MCP client launches Warden) they are driven
//! by the reactor directly: no blocking thread per read, and nothing left
//! blocked in a read when Warden wants to exit. Anything else (a terminal, a
//! file) falls back to tokio's blocking-thread stdio.
//!
//! Every pipe Warden reads or writes is widened to [`PIPE_BYTES`]: a large
//! message then crosses in a few big copies instead of sixteen 64 KiB
//! hand-offs, each of which would wait on the other side to wake up.

use std::os::fd::AsFd;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// How large Warden asks its pipes to be (Linux's default ceiling for
/// unprivileged processes, `/proc/sys/fs/pipe-max-size`).
pub const PIPE_BYTES: usize = 1 << 20;

/// Widens a pipe's kernel buffer to [`PIPE_BYTES`]. Anything that is not a
/// pipe, or a system that refuses, keeps its buffer: this is only a speed-up.
pub fn widen(fd: impl AsFd) {
    if let Err(e) = rustix::pipe::fcntl_setpipe_size(fd, PIPE_BYTES) {
        tracing::debug!("pipe buffer left as it is: {e}");
    }
}

/// Warden's stdin.
pub fn stdin() -> Pin<Box<dyn AsyncRead + Send>> {
    widen(std::io::stdin());
    let pipe = std::io::stdin().as_fd().try_clone_to_owned().and_then(tokio::net::unix::pipe::Receiver::from_owned_fd);
    match pipe {
        Ok(pipe) => Box::pin(pipe),
        Err(_) => Box::pin(tokio::io::stdin()),
    }
}

/// Warden's stdout: the protocol stream, and nothing else.
pub fn stdout() -> Pin<Box<dyn AsyncWrite + Send>> {
    widen(std::io::stdout());
    let pipe = std::io::stdout().as_fd().try_clone_to_owned().and_then(tokio::net::unix::pipe::Sender::from_owned_fd);
    match pipe {
        Ok(pipe) => Box::pin(pipe),
        Err(_) => Box::pin(tokio::io::stdout()),
    }
}
