//! A stdio MCP server run as Warden's child process.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub use crate::config::gateway::Limits;

/// How long a child may take to exit after its stdin is closed before it is
/// killed, unless told otherwise (`--exit-grace-ms`).
pub const EXIT_GRACE: Duration = Duration::from_secs(5);

/// Why the child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// No command was given.
    #[error("no upstream command given (put it after `--`)")]
    Empty,
    /// The OS refused.
    #[error("upstream {program:?}: spawn failed: {error}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        error: std::io::Error,
    },
    /// A gateway upstream whose credential is chosen per caller has none
    /// for this caller.
    #[error("upstream \"{upstream}\": no credential for this caller ({what} is chosen by a claim, and neither a value nor a default fits)")]
    NoCredential {
        /// The upstream's name.
        upstream: String,
        /// The header or variable (`headers.Authorization`), never its value.
        what: String,
    },
}

/// A running child: its protocol pipes and the process.
pub struct ChildServer {
    /// The process.
    pub process: Child,
    /// Its stdin: where requests go.
    pub stdin: ChildStdin,
    /// Its stdout: where answers come from.
    pub stdout: ChildStdout,
}

/// What a child gets besides its command: a clean environment unless it
/// inherits Warden's, and its working directory.
#[derive(Clone, Default)]
pub struct ChildEnv {
    /// Variables set for it (values may be secrets: never logged).
    pub vars: Vec<(String, String)>,
    /// Variables copied from Warden's own environment, when set there.
    pub pass: Vec<String>,
    /// Whether it gets Warden's whole environment (then `pass` is moot).
    pub inherit: bool,
    /// Its working directory.
    pub cwd: Option<std::path::PathBuf>,
    /// Its rlimits; with an environment, a child also runs with `no_new_privs`.
    pub limits: Limits,
}

impl std::fmt::Debug for ChildEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values may be credentials.
        let names: Vec<&str> = self.vars.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ChildEnv")
            .field("vars", &names)
            .field("inherit", &self.inherit)
            .field("cwd", &self.cwd)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Starts `command` with piped stdin/stdout; its stderr is Warden's stderr.
pub fn spawn(command: &[String]) -> Result<ChildServer, SpawnError> {
    spawn_with(command, None)
}

/// [`spawn`] with `env` (without it, the child inherits Warden's environment).
pub fn spawn_with(command: &[String], env: Option<&ChildEnv>) -> Result<ChildServer, SpawnError> {
    let (program, args) = command.split_first().ok_or(SpawnError::Empty)?;
    let mut builder = Command::new(program);
    if let Some(env) = env {
        if !env.inherit {
            builder.env_clear();
            for name in &env.pass {
                if let Some(value) = std::env::var_os(name) {
                    builder.env(name, value);
                }
            }
        }
        builder.envs(env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(dir) = &env.cwd {
            builder.current_dir(dir);
        }
        confine(&mut builder, env.limits);
    }
    let mut process = builder
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| SpawnError::Spawn { program: program.clone(), error })?;
    let (Some(stdin), Some(stdout)) = (process.stdin.take(), process.stdout.take()) else {
        return Err(SpawnError::Spawn {
            program: program.clone(),
            error: std::io::Error::other("pipes were not created"),
        });
    };
    crate::transport::stdio::widen(&stdin);
    crate::transport::stdio::widen(&stdout);
    Ok(ChildServer { process, stdin, stdout })
}

/// Sets `limits` and `no_new_privs` in the child between fork and exec, so
/// neither the server nor anything it runs can raise them or gain privileges
/// (setuid programs run without them). A limit the kernel refuses fails the
/// spawn: a child is never run with less confinement than configured.
fn confine(builder: &mut Command, limits: Limits) {
    use rustix::process::{setrlimit, Resource, Rlimit};
    let set: Vec<(Resource, u64)> = [
        (Resource::Data, limits.memory_mib.map(|m| m.saturating_mul(1 << 20))),
        (Resource::Cpu, limits.cpu_secs),
        (Resource::Nofile, limits.open_files),
    ]
    .into_iter()
    .filter_map(|(resource, value)| Some((resource, value?)))
    .collect();
    let in_child = move || -> std::io::Result<()> {
        // Only raw system calls here: after fork, before exec, nothing may
        // allocate or lock (the Vec above was built in the parent).
        for (resource, value) in &set {
            setrlimit(*resource, Rlimit { current: Some(*value), maximum: Some(*value) })?;
        }
        rustix::thread::set_no_new_privs(true)?;
        Ok(())
    };
    // SAFETY: `in_child` runs in the forked child before exec and calls only
    // setrlimit(2) and prctl(2) through rustix (direct system calls, async-
    // signal-safe); it allocates nothing and touches no lock. The third of
    // Warden's `unsafe` uses.
    #[allow(unsafe_code)]
    unsafe {
        builder.pre_exec(in_child);
    }
}

/// Waits for the child to exit, killing it if it outlives `grace`.
pub async fn reap(process: &mut Child, grace: Duration) -> std::io::Result<ExitStatus> {
    match tokio::time::timeout(grace, process.wait()).await {
        Ok(status) => status,
        Err(_) => {
            if !grace.is_zero() {
                tracing::warn!("upstream did not exit within {grace:?} of its stdin closing; killing it");
            }
            process.kill().await?;
            process.wait().await
        }
    }
}
