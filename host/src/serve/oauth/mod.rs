//! The OAuth 2.1 resource server role of the MCP authorization spec: bearer
//! JWT access tokens from an identity provider, checked here.
//!
//! - Keys come from the provider's JWKS: found by OpenID discovery
//!   (`<issuer>/.well-known/openid-configuration` → `jwks_uri`), or given as
//!   `jwks-url` or `jwks-file`. They are fetched at start, again on a token
//!   whose `kid` is unknown (at most every [`REFETCH_GAP`]) and once they are
//!   [`STALE_AFTER`] old, so a rotated key works without a restart.
//! - Accepted: RS256, PS256, ES256, EdDSA, by the key the token names; never
//!   `none`, never an HMAC algorithm (a public key is no shared secret).
//!   `exp` and `nbf` with [`LEEWAY`], `iss`, and `aud` must hold the resource
//!   (RFC 8707): the endpoint's URL, or the configured `audience`.
//! - Scopes (`scope`, space-separated, or `scp`, a list) must include every
//!   one the endpoint requires.
//! - A verified token is kept by digest until it expires ([`verified`]).
//!
//! The signature checks are jsonwebtoken's (ring); nothing here is
//! hand-written cryptography. A token is never logged or passed upstream.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

pub use crate::config::gateway::{JwksSource, OAuthConfig};

mod verified;
use verified::{Cache, Verified};

/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// Least time between two fetches for an unknown `kid`.
pub const REFETCH_GAP: Duration = Duration::from_secs(3);

/// Keys older than this are fetched again before the next check.
pub const STALE_AFTER: Duration = Duration::from_secs(900);

/// Largest discovery document or JWKS read.
const MAX_DOCUMENT: usize = 1 << 20;

/// How long a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Who a valid token names.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `sub` (or, without one, `client_id`).
    pub subject: String,
    /// Every claim, as JSON object text.
    pub claims: String,
}

/// Why a request is not let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No bearer token: `401`.
    Missing,
    /// A token that is not valid here: `401` with `error="invalid_token"`.
    Invalid(String),
    /// A valid token without a required scope: `403` with `error="insufficient_scope"`.
    Scope(String),
    /// The keys cannot be had: `503`, never an open door.
    Unavailable(String),
}

struct Keys {
    set: JwkSet,
    fetched: Instant,
    tried: Option<Instant>,
}

/// The resource server: its config and the provider's keys.
pub struct ResourceServer {
    config: OAuthConfig,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    jwks: tokio::sync::Mutex<Option<JwksSource>>,
    keys: Mutex<Option<Keys>>,
    verified: Cache,
}

impl std::fmt::Debug for ResourceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceServer").field("issuer", &self.config.issuer).finish()
    }
}

const ACCEPTED: [Algorithm; 4] = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA];

impl ResourceServer {
    /// A resource server for `config`; its keys are fetched on first use
    /// (and [`ResourceServer::warm`] fetches them at start).
    pub fn new(config: OAuthConfig) -> ResourceServer {
        let https =
            hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots().https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        let jwks = tokio::sync::Mutex::new(config.jwks.clone());
        ResourceServer { config, client, jwks, keys: Mutex::new(None), verified: Cache::default() }
    }

    /// Its config.
    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// Fetches the keys now; says why not (Warden starts anyway and answers `503` until it can).
    pub async fn warm(&self) -> Result<(), String> {
        self.refresh(true).await
    }

    /// Checks a bearer token for `resource`, which requires `scopes`.
    pub async fn check(&self, token: Option<&str>, resource: &str, scopes: &[String]) -> Result<Identity, Refusal> {
        let token = token.filter(|t| !t.is_empty()).ok_or(Refusal::Missing)?;
        let verified = match self.verified.get(token, resource) {
            Some(verified) => verified,
            None => {
                let (verified, exp) = self.verify(token, resource).await?;
                self.verified.keep(token, resource, verified.clone(), exp);
                verified
            }
        };
        if scopes.iter().any(|s| !verified.scopes.contains(s)) {
            return Err(Refusal::Scope(scopes.join(" ")));
        }
        Ok(verified.identity)
    }

    /// Checks a token's signature and claims for `resource`, without the
    /// cache: what it gives, and when it expires.
    pub async fn verify(&self, token: &str, resource: &str) -> Result<(Verified, u64), Refusal> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| Refusal::Invalid("the token is not a JWT".into()))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(Refusal::Invalid(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let stale = self.lock().as_ref().is_none_or(|k| k.fetched.elapsed() > STALE_AFTER);
        if stale {
            if let Err(why) = self.refresh(false).await {
                if self.lock().is_none() {
                    return Err(Refusal::Unavailable(why));
                }
                tracing::warn!(
                    "the identity provider's keys could not be fetched again; the ones held are used: {why}"
                );
            }
        }
        let key = match self.key(&header) {
            Some(key) => key,
            None => {
                // Perhaps rotated: fetch again (rate-limited), then look once more.
                let _ = self.refresh(false).await;
                self.key(&header).ok_or_else(|| Refusal::Invalid("the token's signing key is unknown".into()))?
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[self.config.issuer.as_str()]);
        validation.set_audience(&[resource]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let why = match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet",
                ErrorKind::InvalidIssuer => "the token is from another issuer",
                ErrorKind::InvalidAudience => "the token is for another resource",
                ErrorKind::InvalidSignature => "the token's signature does not verify",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks exp, iss or aud",
                _ => "the token is not valid",
            };
            Refusal::Invalid(why.into())
        })?;
        let claims = data.claims;
        let scopes: Vec<String> = match (claims.get("scope"), claims.get("scp")) {
            (Some(Value::String(s)), _) => s.split_whitespace().map(str::to_owned).collect(),
            (_, Some(Value::Array(list))) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        let subject = claims
            .get("sub")
            .or_else(|| claims.get("client_id"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Refusal::Invalid("the token names no subject".into()))?
            .to_owned();
        // `exp` was required and checked: a number.
        let exp = claims.get("exp").and_then(Value::as_f64).map_or(0, |e| e.max(0.0) as u64);
        Ok((Verified { identity: Identity { subject, claims: claims.to_string() }, scopes }, exp))
    }

    /// RFC 9728 protected resource metadata for `resource`, which requires `scopes`.
    pub fn metadata(&self, resource: &str, scopes: &[String]) -> Value {
        json!({
            "resource": resource,
            "authorization_servers": [self.config.issuer],
            "scopes_supported": scopes,
            "bearer_methods_supported": ["header"],
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Keys>> {
        self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key the token's header names, for its algorithm.
    fn key(&self, header: &jsonwebtoken::Header) -> Option<DecodingKey> {
        let keys = self.lock();
        let set = &keys.as_ref()?.set;
        let jwk = match &header.kid {
            Some(kid) => set.find(kid)?,
            // No kid: only when the provider has one key.
            None if set.keys.len() == 1 => set.keys.first()?,
            None => return None,
        };
        // A key made for one algorithm verifies no other (an RSA key never an HMAC).
        if let Some(alg) = jwk.common.key_algorithm {
            if format!("{alg:?}") != format!("{:?}", header.alg) {
                return None;
            }
        }
        DecodingKey::from_jwk(jwk).ok()
    }

    /// Fetches the keys again, unless `force` is false and the last try was
    /// under [`REFETCH_GAP`] ago.
    async fn refresh(&self, force: bool) -> Result<(), String> {
        {
            let mut keys = self.lock();
            if let Some(k) = keys.as_mut() {
                if !force && k.tried.is_some_and(|t| t.elapsed() < REFETCH_GAP) {
                    return Ok(());
                }
                k.tried = Some(Instant::now());
            }
        }
        let set = self.fetch_keys().await?;
        *self.lock() = Some(Keys { set, fetched: Instant::now(), tried: Some(Instant::now()) });
        // A key may have been withdrawn: its tokens are checked again.
        self.verified.clear();
        Ok(())
    }

    async fn fetch_keys(&self) -> Result<JwkSet, String> {
        let mut source = self.jwks.lock().await;
        if source.is_none() {
            let discovery = format!("{}/.well-known/openid-configuration", self.config.issuer.trim_end_matches('/'));
            let document = self.get(&discovery).await?;
            let uri =
                document.get("jwks_uri").and_then(Value::as_str).ok_or("the discovery document names no jwks_uri")?;
            *source = Some(JwksSource::Url(uri.to_owned()));
        }
        let document = match source.as_ref() {
            Some(JwksSource::Url(url)) => self.get(url).await?,
            Some(JwksSource::File(path)) => {
                let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                serde_json::from_slice(&text).map_err(|e| format!("{}: not a JWKS: {e}", path.display()))?
            }
            None => return Err("no JWKS".into()),
        };
        serde_json::from_value(document).map_err(|e| format!("not a JWKS: {e}"))
    }

    async fn get(&self, url: &str) -> Result<Value, String> {
        let shown = crate::config::gateway::shown_url(url);
        let uri: http::Uri = url.parse().map_err(|_| format!("{shown}: not a URL"))?;
        let request = http::Request::get(uri).body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(FETCH_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| format!("{shown}: no answer within {FETCH_TIMEOUT:?}"))?
            .map_err(|e| format!("{shown}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{shown}: HTTP {}", response.status()));
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_DOCUMENT)
            .collect()
            .await
            .map_err(|e| format!("{shown}: {e}"))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| format!("{shown}: not JSON: {e}"))
    }
}
