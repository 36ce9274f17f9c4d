//! `warden.toml`: the gateway's upstreams, chains and listener, read once
//! into checked types.
//!
//! What users write ([`RawGateway`] and the `Raw*` types under it) is parsed
//! strictly (unknown keys are errors) and validated into a [`Gateway`]:
//! relative paths resolved against the file's folder, secrets read from the
//! environment or their files, names and headers checked. Every error names
//! the file, the line, the key and the fix; none quotes a value.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::operations::{self, Problem};
pub use super::operations::{AdminSettings, AuditSettings, AuditSync, RawAdmin, RawAudit};
use super::secret::read_credential;
pub use super::secret::{Credential, RawSecret, Secret};

/// The separator between an upstream's name and its tools' and prompts' names.
pub const DEFAULT_SEPARATOR: &str = "__";

/// How long a call to an upstream may take unless its `timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Headers no `forward-headers` list may name: credentials of the client
/// are never passed on (no token passthrough).
const NEVER_FORWARDED: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// Headers the transport itself sets (framing, the MCP session and era):
/// passing the client's on would break or hijack the upstream's exchange.
const TRANSPORT_HEADERS: [&str; 12] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "accept",
    "last-event-id",
    "origin",
];

/// How long after failing an upstream is first started again, unless its
/// `restart-delay` says otherwise.
pub const DEFAULT_RESTART_DELAY: Duration = Duration::from_secs(1);

/// The longest wait between restarts of an upstream that keeps failing.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

/// The largest limit a `limits` field takes (2^40: a TiB of MiB, 35k years of CPU).
const MAX_LIMIT: u64 = 1 << 40;

/// Environment variables every child gets from Warden's own environment
/// (besides its `env`), unless `inherit-env` gives it all of it.
pub const CHILD_BASE_ENV: [&str; 3] = ["PATH", "HOME", "LANG"];

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawGateway {
    /// The chain every upstream's traffic passes.
    pub plugins: Option<Spanned<String>>,
    /// Between an upstream's name and its items' names.
    pub separator: Option<Spanned<String>>,
    /// `[audit]`.
    pub audit: Option<RawAudit>,
    /// `[serve]`.
    pub serve: Option<RawServe>,
    /// `[admin]`: the operators' listener.
    pub admin: Option<RawAdmin>,
    /// `[upstreams.NAME]`.
    #[serde(default)]
    pub upstreams: BTreeMap<String, Spanned<RawUpstream>>,
    /// `[endpoints."/PATH"]`.
    #[serde(default)]
    pub endpoints: BTreeMap<String, Spanned<RawEndpoint>>,
    /// `[auth]`: the OAuth resource server.
    pub auth: Option<Spanned<RawAuth>>,
}

/// `[auth]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawAuth {
    /// The identity provider (`iss`), found by OpenID discovery.
    pub issuer: String,
    /// The main endpoint's resource URI (default: its own URL).
    pub audience: Option<String>,
    /// The JWKS, instead of discovery.
    pub jwks_url: Option<String>,
    /// The JWKS as a file, instead of discovery.
    pub jwks_file: Option<String>,
    /// Scopes every token must carry.
    #[serde(default)]
    pub required_scopes: Vec<String>,
}

/// `[endpoints."/mcp/readonly"]`: a subset of the gateway at its own path.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawEndpoint {
    /// Globs over prefixed tool names (`fs__read_*`); none listed, none shown.
    pub tools: Option<Vec<String>>,
    /// Globs over prefixed prompt names.
    pub prompts: Option<Vec<String>>,
    /// Globs over resource URIs (and templates' URI templates).
    pub resources: Option<Vec<String>>,
    /// This endpoint's own chain, between the shared one and each upstream's.
    pub plugins: Option<String>,
    /// Scopes its tokens must carry, instead of `[auth]`'s.
    pub required_scopes: Option<Vec<String>>,
}

/// `[serve]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawServe {
    /// The listener's address.
    pub listen: Option<Spanned<String>>,
    /// A PEM certificate chain for HTTPS.
    pub tls_cert: Option<Spanned<String>>,
    /// Its PEM private key.
    pub tls_key: Option<Spanned<String>>,
}

/// `[upstreams.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawUpstream {
    /// A stdio server: the program and its arguments.
    pub command: Option<Vec<String>>,
    /// A remote server's MCP endpoint.
    pub url: Option<String>,
    /// The child's environment (besides PATH, HOME, LANG).
    #[serde(default)]
    pub env: BTreeMap<String, RawSecret>,
    /// Give the child Warden's whole environment.
    #[serde(default)]
    pub inherit_env: bool,
    /// The child's working directory.
    pub cwd: Option<String>,
    /// The child's resource limits.
    pub limits: Option<Limits>,
    /// Headers sent to a remote server.
    #[serde(default)]
    pub headers: BTreeMap<String, RawSecret>,
    /// Client headers passed on to this upstream (never credentials).
    #[serde(default)]
    pub forward_headers: Vec<String>,
    /// This upstream's own chain, after the shared one.
    pub plugins: Option<String>,
    /// How long one call may take (`"30s"`, `"5m"`).
    pub timeout: Option<String>,
    /// Most calls in flight at once.
    pub max_concurrency: Option<usize>,
    /// How long after it fails before it is started again (doubling up to
    /// [`MAX_RESTART_DELAY`] while it keeps failing).
    pub restart_delay: Option<String>,
    /// When calls to it are refused at once after failing in a row.
    pub circuit_breaker: Option<RawBreaker>,
    /// What happens when one of its tools changes its definition after it was pinned.
    pub pin: Option<PinPolicy>,
    /// `false`: its tools and prompts keep the names it gives (one upstream at most).
    pub prefix: Option<bool>,
    /// One child for every session (a stateless server).
    #[serde(default)]
    pub share: bool,
    /// The caller's token exchanged for one scoped to this remote upstream.
    pub token_exchange: Option<RawTokenExchange>,
}

/// `[upstreams.NAME.token-exchange]` (RFC 8693).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTokenExchange {
    /// The provider's token endpoint.
    pub token_endpoint: String,
    /// Warden's client id at the provider.
    pub client_id: String,
    /// Its secret (a secret value).
    pub client_secret: RawSecret,
    /// The audience asked for (the upstream's resource).
    pub audience: Option<String>,
    /// The scope asked for.
    pub scope: Option<String>,
    /// The header the exchanged token is sent in, as `Bearer …` (default `Authorization`).
    pub header: Option<String>,
}

/// How the caller's token is exchanged for an upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenExchange {
    /// The provider's token endpoint.
    pub token_endpoint: String,
    /// Warden's client id.
    pub client_id: String,
    /// Its secret.
    pub client_secret: Secret,
    /// The audience asked for.
    pub audience: Option<String>,
    /// The scope asked for.
    pub scope: Option<String>,
    /// The header it goes in (lowercase).
    pub header: String,
}

/// What happens when an upstream's tool changes its definition after it was
/// pinned (see `gateway::pins`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinPolicy {
    /// Logged and audited; the tool stays.
    #[default]
    Warn,
    /// Left out of lists; calls to it refused.
    Hide,
    /// Listed; calls to it refused.
    Refuse,
}

/// `limits = { memory-mib = 512, cpu-secs = 600, open-files = 256 }`: a
/// child's rlimits, set between fork and exec (every child of the gateway
/// also runs with `no_new_privs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    /// Its data memory in MiB (`RLIMIT_DATA`: heap and private writable
    /// mappings; address-space limits break runtimes that reserve large
    /// ranges, such as Node's and Go's).
    pub memory_mib: Option<u64>,
    /// CPU seconds it may use in all (`RLIMIT_CPU`).
    pub cpu_secs: Option<u64>,
    /// Files it may hold open at once (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
}

/// `circuit-breaker = { failures = 5, cool-down = "30s" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawBreaker {
    /// Failed calls in a row that open it.
    pub failures: Option<u32>,
    /// How long it stays open before one call may try again.
    pub cool_down: Option<String>,
}

/// A circuit breaker: after `failures` failed calls in a row (timeouts, the
/// upstream gone), calls are refused at once for `cool_down`; then one call
/// may try, and closes it by succeeding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    /// See above.
    pub failures: u32,
    /// See above.
    pub cool_down: Duration,
}

impl Default for Breaker {
    fn default() -> Breaker {
        Breaker { failures: 5, cool_down: Duration::from_secs(30) }
    }
}

/// What the resource server checks tokens against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    /// The provider (`iss`); its discovery document names the JWKS.
    pub issuer: String,
    /// The main endpoint's resource URI, when not its own URL.
    pub audience: Option<String>,
    /// Where the keys are, when not found by discovery.
    pub jwks: Option<JwksSource>,
    /// Scopes every token must carry.
    pub required_scopes: Vec<String>,
}

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// Fetched from this URL.
    Url(String),
    /// Read from this file.
    File(PathBuf),
}

/// Whether every name is a scope (RFC 6749: no spaces, no quotes).
fn scopes_ok(scopes: &[String]) -> bool {
    scopes.iter().all(|s| !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\'))
}

/// The checked gateway configuration.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// The file it was read from.
    pub file: PathBuf,
    /// The shared chain's folder.
    pub plugins: Option<PathBuf>,
    /// See [`DEFAULT_SEPARATOR`].
    pub separator: String,
    /// The audit file.
    pub audit: AuditSettings,
    /// The listener of `warden serve --config`, unless the command line gives one.
    pub listen: Option<SocketAddr>,
    /// `[admin]`.
    pub admin: AdminSettings,
    /// HTTPS on the listener: certificate chain and key (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The upstreams, by name (sorted).
    pub upstreams: Vec<UpstreamConfig>,
    /// The virtual endpoints, by path (sorted).
    pub endpoints: Vec<Endpoint>,
    /// `[auth]`: JWT access tokens from an identity provider.
    pub auth: Option<OAuthConfig>,
}

impl Gateway {
    /// The virtual endpoint at `path`.
    pub fn endpoint(&self, path: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.path == path)
    }
}

/// A virtual endpoint: the items its globs match, at its own path. What it
/// does not list it does not show or serve (deny by default).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Its path (`/mcp/readonly`).
    pub path: String,
    /// Prefixed tool names it serves.
    pub tools: Globs,
    /// Prefixed prompt names it serves.
    pub prompts: Globs,
    /// Resource URIs (and URI templates) it serves.
    pub resources: Globs,
    /// Its own chain's folder.
    pub plugins: Option<PathBuf>,
    /// Scopes its tokens must carry, when not `[auth]`'s.
    pub required_scopes: Option<Vec<String>>,
}

/// Glob patterns (`*`, `?`, `[…]`, `{a,b}`), matched against whole names.
#[derive(Debug, Clone)]
pub struct Globs {
    /// As written.
    pub patterns: Vec<String>,
    set: globset::GlobSet,
}

impl Globs {
    /// Whether any pattern matches `name`.
    pub fn matches(&self, name: &str) -> bool {
        self.set.is_match(name)
    }
}

/// The longest virtual endpoint path.
const MAX_ENDPOINT_PATH: usize = 256;

/// Paths Warden itself serves (the HTTP+SSE transport's).
const RESERVED_PATHS: [&str; 2] = ["/sse", "/messages"];

/// One upstream, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// `[A-Za-z0-9-]+`, without the separator.
    pub name: String,
    /// How it is reached.
    pub reach: Reach,
    /// Its own chain's folder.
    pub plugins: Option<PathBuf>,
    /// Client headers passed on (lowercase names).
    pub forward_headers: Vec<String>,
    /// See [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// Most calls in flight at once, if limited.
    pub max_concurrency: Option<usize>,
    /// See [`DEFAULT_RESTART_DELAY`].
    pub restart_delay: Duration,
    /// See [`Breaker`].
    pub breaker: Breaker,
    /// See [`PinPolicy`].
    pub pin: PinPolicy,
    /// Whether its tools and prompts appear as `<name><separator><tool>`
    /// (`prefix = false`: as the upstream names them; one upstream at most).
    pub prefix: bool,
    /// Whether every session uses one child of it (`share = true`, see `gateway::shared`).
    pub share: bool,
}

/// How an upstream is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Reach {
    /// A child process Warden starts.
    Command {
        /// Program and arguments.
        command: Vec<String>,
        /// Its environment besides [`CHILD_BASE_ENV`].
        env: Vec<(String, Credential)>,
        /// Whether it gets Warden's whole environment.
        inherit_env: bool,
        /// Its working directory.
        cwd: Option<PathBuf>,
        /// Its rlimits.
        limits: Limits,
    },
    /// A remote MCP endpoint.
    Remote {
        /// `http://` or `https://`.
        url: String,
        /// Headers sent with every request.
        headers: Vec<(String, Credential)>,
        /// The caller's token exchanged for the upstream's, sent in a header.
        exchange: Option<TokenExchange>,
    },
}

/// A config file Warden will not run with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{}{}: {key}: {message}{}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), fix.as_ref().map(|f| format!(" (fix: {f})")).unwrap_or_default())]
pub struct GatewayError {
    /// The file.
    pub file: PathBuf,
    /// Its line, where known.
    pub line: Option<usize>,
    /// The key, dotted (`upstreams.fs.command`).
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub fix: Option<String>,
}

/// Reads, parses and checks a gateway config file.
pub fn load(file: &Path) -> Result<Gateway, GatewayError> {
    let text = std::fs::read_to_string(file).map_err(|e| GatewayError {
        file: file.to_owned(),
        line: None,
        key: "(file)".into(),
        message: format!("cannot be read: {e}"),
        fix: Some("give the path of a readable warden.toml".into()),
    })?;
    parse(&text, file, &|name| std::env::var(name).ok())
}

/// Parses and checks config text; `file` places relative paths and names
/// the file in errors; `env` looks up environment variables.
pub fn parse(text: &str, file: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Gateway, GatewayError> {
    let at = Place { text, file };
    let raw: RawGateway = toml::from_str(text).map_err(|e| {
        // The parser's message names the key; its first line is enough (the
        // rest quotes the file, which may hold secrets).
        let mut message = unquoted(e.message().lines().next().unwrap_or("unreadable TOML"));
        let mut fix = message.starts_with("unknown field").then(|| "remove the key or correct its spelling".to_owned());
        if fix.is_none() {
            fix = Some("correct it as the README's Gateway section shows".into());
        }
        if message.contains("RawSecret") {
            message = "is not a secret value".into();
            fix = Some(
                "write a string, { from-env = \"VAR\" } or { from-file = \"PATH\" }, optionally with prefix, \
                 or { claim = \"groups\", values = { … }, default = … } to choose by caller"
                    .into(),
            );
        }
        at.error(e.span().map(|s| s.start), "(syntax)", message, fix)
    })?;
    let base = file.parent().map(Path::to_owned).unwrap_or_default();
    let resolve = |p: &str| if Path::new(p).is_absolute() { PathBuf::from(p) } else { base.join(p) };
    // A plugins folder, relative to the file, that must exist.
    let plugins_folder = |value: &str, line: Option<usize>, key: &str| -> Result<PathBuf, GatewayError> {
        let path = resolve(value);
        if !path.is_dir() {
            let message = format!("plugins folder {} does not exist", path.display());
            return Err(at.error(line, key, message, Some("create it or correct the path".into())));
        }
        Ok(path)
    };
    let folder = |value: &Spanned<String>, key: &str| plugins_folder(value.get_ref(), Some(value.span().start), key);

    let separator = match &raw.separator {
        Some(s) => {
            let ok = !s.get_ref().is_empty() && s.get_ref().bytes().all(tool_name_byte);
            if !ok {
                let fix = "use characters of tool names: A-Z a-z 0-9 _ . -".to_owned();
                return Err(at.error(Some(s.span().start), "separator", "is not a valid separator".into(), Some(fix)));
            }
            s.get_ref().clone()
        }
        None => DEFAULT_SEPARATOR.to_owned(),
    };
    let plugins = raw.plugins.as_ref().map(|p| folder(p, "plugins")).transpose()?;
    let locate = |p: Problem| at.error(p.offset, &p.key, p.message, p.fix);
    let audit = operations::audit(raw.audit.as_ref(), &resolve).map_err(locate)?;
    let admin = operations::admin(raw.admin.as_ref(), &resolve).map_err(locate)?;
    let (listen, tls) = match &raw.serve {
        None => (None, None),
        Some(serve) => {
            let listen = match &serve.listen {
                Some(l) => Some(l.get_ref().parse::<SocketAddr>().map_err(|_| {
                    let fix = "write an address and port, such as \"127.0.0.1:8080\"".to_owned();
                    at.error(Some(l.span().start), "serve.listen", "is not an address".into(), Some(fix))
                })?),
                None => None,
            };
            let tls = match (&serve.tls_cert, &serve.tls_key) {
                (None, None) => None,
                (Some(cert), Some(key)) => {
                    let file = |value: &Spanned<String>, name: &str| {
                        let path = resolve(value.get_ref());
                        if !path.is_file() {
                            let message = format!("file {} does not exist", path.display());
                            let fix = "give a PEM file, relative to this one or absolute".to_owned();
                            return Err(at.error(
                                Some(value.span().start),
                                &format!("serve.{name}"),
                                message,
                                Some(fix),
                            ));
                        }
                        Ok(path)
                    };
                    Some((file(cert, "tls-cert")?, file(key, "tls-key")?))
                }
                (Some(s), None) | (None, Some(s)) => {
                    let fix = "give both tls-cert and tls-key, or neither".to_owned();
                    return Err(at.error(Some(s.span().start), "serve", "only half of TLS is set".into(), Some(fix)));
                }
            };
            (listen, tls)
        }
    };

    let mut upstreams = Vec::new();
    for (name, spanned) in &raw.upstreams {
        let line = Some(spanned.span().start);
        let key = |k: &str| format!("upstreams.{name}.{k}");
        let valid_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        // `<name><separator>` must split at its end, not earlier (a name ending in
        // `-` with `--` between would read as another name).
        let splits_right = format!("{name}{separator}").find(separator.as_str()) == Some(name.len());
        if !valid_name || name.contains(separator.as_str()) || !splits_right {
            let message = format!("upstream name {name:?} is not usable");
            let fix = format!("name it with A-Z a-z 0-9 and -, without the separator {separator:?}");
            return Err(at.error(line, &format!("upstreams.{name}"), message, Some(fix)));
        }
        let u = spanned.get_ref();
        let secret = |key: String, value: &RawSecret| -> Result<Credential, GatewayError> {
            read_credential(value, &resolve, env).map_err(|(message, fix)| at.error(line, &key, message, Some(fix)))
        };
        let reach = match (&u.command, &u.url) {
            (Some(command), None) => {
                if command.is_empty() || command.first().is_some_and(String::is_empty) {
                    let fix = "give the program and its arguments, such as [\"npx\", \"-y\", \"server\"]".to_owned();
                    return Err(at.error(line, &key("command"), "is empty".into(), Some(fix)));
                }
                if !u.headers.is_empty() {
                    let fix = "headers are sent to remote servers; a child gets env".to_owned();
                    return Err(at.error(line, &key("headers"), "is set for a command".into(), Some(fix)));
                }
                if u.token_exchange.is_some() {
                    let fix = "exchanged tokens are sent to remote servers; remove it".to_owned();
                    return Err(at.error(line, &key("token-exchange"), "is set for a command".into(), Some(fix)));
                }
                if let Some(bad) = u.env.keys().find(|k| k.is_empty() || k.contains(['=', '\0'])) {
                    let fix = "name variables without = or NUL".to_owned();
                    let key = key(&format!("env.{}", bad.replace(['=', '\0'], "?")));
                    return Err(at.error(line, &key, "is not an environment variable name".into(), Some(fix)));
                }
                let env = u
                    .env
                    .iter()
                    .map(|(var, value)| Ok((var.clone(), secret(key(&format!("env.{var}")), value)?)))
                    .collect::<Result<Vec<_>, GatewayError>>()?;
                let cwd = u.cwd.as_deref().map(resolve);
                if let Some(dir) = cwd.as_ref().filter(|d| !d.is_dir()) {
                    let message = format!("folder {} does not exist", dir.display());
                    return Err(at.error(line, &key("cwd"), message, Some("create it or correct the path".into())));
                }
                let limits = u.limits.unwrap_or_default();
                let zero = [
                    ("memory-mib", limits.memory_mib),
                    ("cpu-secs", limits.cpu_secs),
                    ("open-files", limits.open_files),
                ]
                .into_iter()
                .find(|(_, v)| *v == Some(0) || v.is_some_and(|v| v > MAX_LIMIT));
                if let Some((field, _)) = zero {
                    let fix = "give a whole number from 1 up, or leave the limit out".to_owned();
                    return Err(at.error(line, &key(&format!("limits.{field}")), "is out of range".into(), Some(fix)));
                }
                Reach::Command { command: command.clone(), env, inherit_env: u.inherit_env, cwd, limits }
            }
            (None, Some(url)) => {
                let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
                let parsed = url.parse::<http::Uri>().ok().filter(|_| scheme_ok);
                let Some(parsed) = parsed else {
                    let fix = "write an http:// or https:// URL".to_owned();
                    return Err(at.error(line, &key("url"), "is not a URL Warden can reach".into(), Some(fix)));
                };
                if parsed.authority().is_some_and(|a| a.as_str().contains('@')) {
                    let fix = "put the credential in headers (from-env or from-file), not in the URL".to_owned();
                    let message = "carries user info (a credential) in the URL".to_owned();
                    return Err(at.error(line, &key("url"), message, Some(fix)));
                }
                let child_only = [
                    ("env", !u.env.is_empty()),
                    ("cwd", u.cwd.is_some()),
                    ("inherit-env", u.inherit_env),
                    ("limits", u.limits.is_some()),
                    ("share", u.share),
                ];
                for field in child_only {
                    if field.1 {
                        let fix = "only a command's child has an environment; remove it".to_owned();
                        return Err(at.error(line, &key(field.0), "is set for a remote server".into(), Some(fix)));
                    }
                }
                let mut headers = Vec::new();
                for (header, value) in &u.headers {
                    if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                        let fix = "use a valid HTTP header name".to_owned();
                        return Err(at.error(line, &key(&format!("headers.{header}")), "bad name".into(), Some(fix)));
                    }
                    let value = secret(key(&format!("headers.{header}")), value)?;
                    if value.every().iter().any(|v| http::HeaderValue::from_str(v.expose()).is_err()) {
                        let fix = "the value (after its prefix) must be visible ASCII".to_owned();
                        let message = "is not a valid header value".to_owned();
                        return Err(at.error(line, &key(&format!("headers.{header}")), message, Some(fix)));
                    }
                    headers.push((header.clone(), value));
                }
                let exchange = match &u.token_exchange {
                    None => None,
                    Some(x) => {
                        let key = |k: &str| key(&format!("token-exchange.{k}"));
                        let url_ok = |u: &str| u.starts_with("https://") || u.starts_with("http://");
                        if !url_ok(&x.token_endpoint) || x.token_endpoint.parse::<http::Uri>().is_err() {
                            let fix =
                                "write the provider's token endpoint, such as \"https://login.example.com/token\"";
                            return Err(at.error(
                                line,
                                &key("token-endpoint"),
                                "is not an http(s) URL".into(),
                                Some(fix.into()),
                            ));
                        }
                        if x.client_id.is_empty() {
                            let fix = "write the client id Warden has at the provider".to_owned();
                            return Err(at.error(line, &key("client-id"), "is empty".into(), Some(fix)));
                        }
                        let client_secret = match secret(key("client-secret"), &x.client_secret)? {
                            Credential::Fixed(s) => s,
                            Credential::ByCaller { .. } => {
                                let fix = "give one secret: Warden is one client at the provider".to_owned();
                                return Err(at.error(
                                    line,
                                    &key("client-secret"),
                                    "is chosen per caller".into(),
                                    Some(fix),
                                ));
                            }
                        };
                        let header = x.header.clone().unwrap_or_else(|| "authorization".into()).to_ascii_lowercase();
                        if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                            let fix = "use a valid HTTP header name".to_owned();
                            return Err(at.error(line, &key("header"), "bad name".into(), Some(fix)));
                        }
                        if headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(&header)) {
                            let fix = format!("remove headers.{header}: the exchanged token goes there");
                            return Err(at.error(line, &key("header"), "is set in headers too".into(), Some(fix)));
                        }
                        Some(TokenExchange {
                            token_endpoint: x.token_endpoint.clone(),
                            client_id: x.client_id.clone(),
                            client_secret,
                            audience: x.audience.clone(),
                            scope: x.scope.clone(),
                            header,
                        })
                    }
                };
                Reach::Remote { url: url.clone(), headers, exchange }
            }
            (Some(_), Some(_)) => {
                let fix = "keep one: command for a stdio server, url for a remote one".to_owned();
                return Err(at.error(line, &format!("upstreams.{name}"), "has both command and url".into(), Some(fix)));
            }
            (None, None) => {
                let fix = "add command = [\"program\", …] or url = \"https://…\"".to_owned();
                return Err(at.error(
                    line,
                    &format!("upstreams.{name}"),
                    "has neither command nor url".into(),
                    Some(fix),
                ));
            }
        };
        let mut forward_headers = Vec::new();
        for header in &u.forward_headers {
            let lower = header.to_ascii_lowercase();
            if NEVER_FORWARDED.contains(&lower.as_str()) {
                let message = format!("lists {header}: a client's credentials are never passed on");
                let fix = "remove it; give the upstream its own credential in headers or env".to_owned();
                return Err(at.error(line, &key("forward-headers"), message, Some(fix)));
            }
            if TRANSPORT_HEADERS.contains(&lower.as_str()) || lower.starts_with("mcp-") {
                let message = format!("lists {header}, which the transport to the upstream sets itself");
                let fix = "remove it; forward only headers of your own, such as X-Request-Id".to_owned();
                return Err(at.error(line, &key("forward-headers"), message, Some(fix)));
            }
            if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
                let fix = "use valid HTTP header names".to_owned();
                return Err(at.error(line, &key("forward-headers"), "has a bad header name".into(), Some(fix)));
            }
            forward_headers.push(lower);
        }
        let plugins = u.plugins.as_deref().map(|p| plugins_folder(p, line, &key("plugins"))).transpose()?;
        // A duration a key gives (not zero), or its default.
        let duration = |value: &Option<String>, name: &str, default: Duration| match value {
            Some(t) => humantime::parse_duration(t).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
                let fix = "write a duration such as \"30s\", \"5m\" or \"500ms\"".to_owned();
                at.error(line, &key(name), "is not a duration".into(), Some(fix))
            }),
            None => Ok(default),
        };
        let timeout = duration(&u.timeout, "timeout", DEFAULT_TIMEOUT)?;
        let restart_delay = duration(&u.restart_delay, "restart-delay", DEFAULT_RESTART_DELAY)?;
        let breaker = match &u.circuit_breaker {
            None => Breaker::default(),
            Some(b) => {
                let failures = b.failures.unwrap_or(Breaker::default().failures);
                if failures == 0 {
                    let fix = "give at least 1".to_owned();
                    return Err(at.error(line, &key("circuit-breaker.failures"), "is 0".into(), Some(fix)));
                }
                let cool_down = duration(&b.cool_down, "circuit-breaker.cool-down", Breaker::default().cool_down)?;
                Breaker { failures, cool_down }
            }
        };
        if u.max_concurrency == Some(0) {
            let fix = "give at least 1, or leave it out for no limit".to_owned();
            return Err(at.error(line, &key("max-concurrency"), "is 0".into(), Some(fix)));
        }
        let per_caller = match &reach {
            Reach::Command { env, .. } => env.iter().any(|(_, c)| c.per_caller()),
            Reach::Remote { headers, exchange, .. } => {
                exchange.is_some() || headers.iter().any(|(_, c)| c.per_caller())
            }
        };
        if u.share && per_caller {
            let fix = "remove share = true, or give every caller the same credential".to_owned();
            let message = "is true with a credential chosen per caller: one child would serve every caller with one caller's secret".to_owned();
            return Err(at.error(line, &key("share"), message, Some(fix)));
        }
        upstreams.push(UpstreamConfig {
            name: name.clone(),
            reach,
            plugins,
            forward_headers,
            timeout,
            max_concurrency: u.max_concurrency,
            restart_delay,
            breaker,
            pin: u.pin.unwrap_or_default(),
            prefix: u.prefix.unwrap_or(true),
            share: u.share,
        });
        if !u.prefix.unwrap_or(true) && upstreams.iter().filter(|u| !u.prefix).count() > 1 {
            let fix = "leave prefix = false on one upstream only: two unprefixed upstreams could give the same name"
                .to_owned();
            return Err(at.error(line, &key("prefix"), "is false on a second upstream".into(), Some(fix)));
        }
    }
    if upstreams.is_empty() {
        let fix = "add an [upstreams.NAME] table with command or url".to_owned();
        return Err(at.error(None, "upstreams", "no upstream is configured".into(), Some(fix)));
    }
    let mut endpoints = Vec::new();
    for (path, spanned) in &raw.endpoints {
        let line = Some(spanned.span().start);
        let key = |k: &str| format!("endpoints.\"{}\".{k}", path.escape_debug());
        let path_ok = path.starts_with('/')
            && path.len() > 1
            && path.len() <= MAX_ENDPOINT_PATH
            && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
            && !path.split('/').any(|s| s == "." || s == "..")
            && !path.ends_with('/')
            && !path.contains("//")
            && !RESERVED_PATHS.contains(&path.as_str());
        if !path_ok {
            let fix = "write a path such as \"/mcp/readonly\": A-Z a-z 0-9 - _ . ~ between single slashes, not /sse or /messages";
            let message = "is not a usable endpoint path".to_owned();
            return Err(at.error(line, &format!("endpoints.\"{}\"", path.escape_debug()), message, Some(fix.into())));
        }
        let e = spanned.get_ref();
        let globs = |field: &str, patterns: &Option<Vec<String>>| -> Result<Globs, GatewayError> {
            let patterns = patterns.clone().unwrap_or_default();
            let mut set = globset::GlobSetBuilder::new();
            // In URIs `*` stays within a path segment (`**` crosses them); names have no `/`.
            let in_uris = field == "resources";
            for pattern in &patterns {
                let glob = globset::GlobBuilder::new(pattern).literal_separator(in_uris).build().map_err(|_| {
                    let fix = "write globs with * ? [..] {a,b}, such as \"fs__read_*\"".to_owned();
                    at.error(line, &key(field), "holds a pattern that is not a glob".into(), Some(fix))
                })?;
                set.add(glob);
            }
            let set = set.build().map_err(|_| {
                at.error(line, &key(field), "cannot be compiled".into(), Some("simplify the patterns".into()))
            })?;
            Ok(Globs { patterns, set })
        };
        let plugins = e.plugins.as_deref().map(|p| plugins_folder(p, line, &key("plugins"))).transpose()?;
        if let Some(scopes) = &e.required_scopes {
            if raw.auth.is_none() {
                let fix =
                    "add an [auth] table (tokens from an identity provider), or remove required-scopes".to_owned();
                return Err(at.error(line, &key("required-scopes"), "needs [auth]".into(), Some(fix)));
            }
            if !scopes_ok(scopes) {
                let fix = "write scope names without spaces or quotes".to_owned();
                return Err(at.error(line, &key("required-scopes"), "holds a name that is no scope".into(), Some(fix)));
            }
        }
        endpoints.push(Endpoint {
            path: path.clone(),
            tools: globs("tools", &e.tools)?,
            prompts: globs("prompts", &e.prompts)?,
            resources: globs("resources", &e.resources)?,
            plugins,
            required_scopes: e.required_scopes.clone(),
        });
    }
    let auth = match &raw.auth {
        None => None,
        Some(spanned) => {
            let line = Some(spanned.span().start);
            let a = spanned.get_ref();
            let url_ok = |u: &str| u.starts_with("https://") || u.starts_with("http://");
            if !url_ok(&a.issuer) {
                let fix =
                    "write the provider's issuer URL, such as \"https://login.example.com/realms/team\"".to_owned();
                return Err(at.error(line, "auth.issuer", "is not an http(s) URL".into(), Some(fix)));
            }
            let jwks = match (&a.jwks_url, &a.jwks_file) {
                (Some(_), Some(_)) => {
                    let fix = "keep one of jwks-url and jwks-file (or neither: discovery)".to_owned();
                    return Err(at.error(line, "auth", "has both jwks-url and jwks-file".into(), Some(fix)));
                }
                (Some(url), None) if !url_ok(url) => {
                    let fix = "write an http(s) URL".to_owned();
                    return Err(at.error(line, "auth.jwks-url", "is not an http(s) URL".into(), Some(fix)));
                }
                (Some(url), None) => Some(JwksSource::Url(url.clone())),
                (None, Some(path)) => {
                    let path = resolve(path);
                    if !path.is_file() {
                        let message = format!("file {} does not exist", path.display());
                        return Err(at.error(
                            line,
                            "auth.jwks-file",
                            message,
                            Some("give the JWKS file's path".into()),
                        ));
                    }
                    Some(JwksSource::File(path))
                }
                (None, None) => None,
            };
            if a.audience.as_deref().is_some_and(|u| !url_ok(u)) {
                let fix = "write the endpoint's URL, such as \"https://mcp.example.com/mcp\"".to_owned();
                return Err(at.error(line, "auth.audience", "is not an http(s) URL".into(), Some(fix)));
            }
            if !scopes_ok(&a.required_scopes) {
                let fix = "write scope names without spaces or quotes".to_owned();
                return Err(at.error(line, "auth.required-scopes", "holds a name that is no scope".into(), Some(fix)));
            }
            Some(OAuthConfig {
                issuer: a.issuer.clone(),
                audience: a.audience.clone(),
                jwks,
                required_scopes: a.required_scopes.clone(),
            })
        }
    };
    Ok(Gateway { file: file.to_owned(), plugins, separator, audit, listen, admin, tls, upstreams, endpoints, auth })
}

/// A parser message with its quoted values and names blanked (`invalid
/// type: string "…"`, ``unknown variant `…` ``): a value may be a secret
/// written in the wrong place. The key and line still say where.
fn unquoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    let mut close = '"';
    // Backticks name keys in these (keep them: they say what to fix), values elsewhere.
    let names_keys = ["unknown field", "missing field", "duplicate"].iter().any(|k| message.contains(k));
    for c in message.chars() {
        match (c, quoted) {
            ('`', false) if names_keys => out.push(c),
            ('"' | '`', false) => {
                quoted = true;
                close = c;
                out.push(c);
                out.push('…');
            }
            (c, true) if c == close => {
                quoted = false;
                out.push(c);
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

/// An upstream's URL as it may be shown: scheme, host, port and path (no
/// query, which may carry a token).
pub fn shown_url(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) => format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map(|a| a.as_str()).unwrap_or_default(),
            uri.path()
        ),
        Err(_) => "(unreadable URL)".to_owned(),
    }
}

/// A byte allowed in tool names (SEP-986).
pub fn tool_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// Where errors point.
struct Place<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Place<'_> {
    fn error(&self, offset: Option<usize>, key: &str, message: String, fix: Option<String>) -> GatewayError {
        let line = offset.map(|o| self.text.get(..o).unwrap_or(self.text).matches('\n').count() + 1);
        GatewayError { file: self.file.to_owned(), line, key: key.to_owned(), message, fix }
    }
}
