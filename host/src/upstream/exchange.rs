//! OAuth 2.0 Token Exchange (RFC 8693) for remote upstreams: the caller's
//! access token is exchanged at the identity provider for one scoped to the
//! upstream (its `audience` and `scope`), and that one is sent. The caller's
//! own token goes only to the provider, never to an upstream.
//!
//! - [`TokenCell`]: a caller's latest access token, kept by the serve side
//!   per caller key; a session's [`SubjectToken`] reads its caller's.
//! - [`Exchanger`]: one per upstream config; exchanged tokens are kept by the
//!   digest of the token they came from until [`EARLY`] before they expire.
//! - [`SessionExchange`]: what a session's HTTP upstream asks before each
//!   POST (exchanging when needed) and reads for its GETs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use crate::config::gateway::TokenExchange;
use crate::expiring::Kept;

/// An exchanged token is exchanged again this long before it expires.
pub const EARLY: Duration = Duration::from_secs(30);

/// How long an exchanged token is kept when the provider says nothing of its expiry.
const UNSAID_LIFETIME: Duration = Duration::from_secs(60);

/// The longest an exchanged token is kept, whatever the provider says.
const LONGEST: Duration = Duration::from_secs(3600);

/// Most exchanged tokens one upstream keeps.
const MAX_KEPT: usize = 10_000;

/// How long the provider may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer read from the provider.
const MAX_ANSWER: usize = 64 * 1024;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A caller's latest access token, updated by each of its requests.
#[derive(Debug, Default)]
pub struct TokenCell(Mutex<Option<Arc<str>>>);

impl TokenCell {
    /// Notes the token a request carried.
    pub fn set(&self, token: &str) {
        let mut cell = lock(&self.0);
        if cell.as_deref() != Some(token) {
            *cell = Some(Arc::from(token));
        }
    }

    /// The latest one.
    pub fn get(&self) -> Option<Arc<str>> {
        lock(&self.0).clone()
    }
}

/// A session's view of its caller's latest token.
#[derive(Clone)]
pub struct SubjectToken {
    /// The caller's cell (the serve side updates it).
    pub cell: Arc<TokenCell>,
    /// The caller.
    pub subject: Arc<str>,
}

impl SubjectToken {
    fn current(&self) -> Option<Arc<str>> {
        self.cell.get()
    }
}

impl std::fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectToken").field("subject", &self.subject).finish_non_exhaustive()
    }
}

impl PartialEq for SubjectToken {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.cell, &other.cell)
    }
}

impl Eq for SubjectToken {}

impl std::hash::Hash for SubjectToken {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.subject.hash(state);
    }
}

/// Exchanges tokens for one upstream, keeping what it got.
pub struct Exchanger {
    config: TokenExchange,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    kept: Kept<Arc<str>>,
}

impl Exchanger {
    /// An exchanger for one upstream's `token-exchange`.
    pub fn new(config: TokenExchange) -> Exchanger {
        let https =
            hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots().https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        Exchanger { config, client, kept: Kept::new(MAX_KEPT) }
    }

    /// The token `subject_token` is exchanged for: kept, or asked for now.
    pub async fn exchange(&self, subject_token: &str) -> Result<Arc<str>, String> {
        let key = digest(subject_token);
        if let Some(token) = self.kept.get(&key) {
            return Ok(token);
        }
        let (token, lifetime) = self.ask(subject_token).await?;
        self.kept.keep(key, token.clone(), Instant::now() + lifetime.min(LONGEST).saturating_sub(EARLY));
        Ok(token)
    }

    /// The exchange request's form body.
    fn form(&self, subject_token: &str) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", GRANT)
            .append_pair("subject_token", subject_token)
            .append_pair("subject_token_type", ACCESS_TOKEN)
            .append_pair("requested_token_type", ACCESS_TOKEN);
        if let Some(audience) = &self.config.audience {
            form.append_pair("audience", audience);
        }
        if let Some(scope) = &self.config.scope {
            form.append_pair("scope", scope);
        }
        form.finish()
    }

    /// One exchange at the provider's token endpoint (client_secret_basic).
    async fn ask(&self, subject_token: &str) -> Result<(Arc<str>, Duration), String> {
        let c = &self.config;
        let shown = crate::config::gateway::shown_url(&c.token_endpoint);
        let body = self.form(subject_token);
        let basic = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let credentials = format!("{}:{}", basic(&c.client_id), basic(c.client_secret.expose()));
        use base64::Engine as _;
        let mut authorization =
            HeaderValue::from_str(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials)))
                .map_err(|_| "the client credentials are not usable in a header".to_owned())?;
        authorization.set_sensitive(true);
        let uri: http::Uri = c.token_endpoint.parse().map_err(|_| format!("{shown}: not a URL"))?;
        let request = http::Request::post(uri)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(AUTHORIZATION, authorization)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| format!("{shown}: no answer within {TIMEOUT:?}"))?
            .map_err(|e| format!("{shown}: {e}"))?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("{shown}: {e}"))?
            .to_bytes();
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            // The provider's error code only, when it is one (RFC 6749: a short
            // ASCII name): its description may quote what it was sent, the token.
            let error = answer
                .get("error")
                .and_then(Value::as_str)
                .filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                .unwrap_or("no error code");
            return Err(format!("{shown}: HTTP {status}: {error}"));
        }
        let token = answer
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && HeaderValue::from_str(&format!("Bearer {t}")).is_ok())
            .ok_or_else(|| format!("{shown}: the answer holds no usable access_token"))?;
        let lifetime = answer.get("expires_in").and_then(Value::as_u64).map_or(UNSAID_LIFETIME, Duration::from_secs);
        Ok((Arc::from(token), lifetime))
    }
}

/// A value for one header of every request, made ready before each POST.
pub trait HeaderSource: Send + Sync {
    /// Makes sure a current value is there (exchanging a token if needed).
    fn ready(&self) -> BoxFuture<'_, Result<(), String>>;
    /// The value to send now, once [`HeaderSource::ready`] made one.
    fn current(&self) -> Option<(HeaderName, HeaderValue)>;
}

/// A session's exchanged token for one upstream, as `Authorization: Bearer …`
/// (or the header the config names).
pub struct SessionExchange {
    exchanger: Arc<Exchanger>,
    caller: SubjectToken,
    header: HeaderName,
    /// The value the last exchange gave.
    last: Mutex<Option<HeaderValue>>,
}

impl SessionExchange {
    /// `caller`'s exchanges at `exchanger`, sent in `header`.
    pub fn new(exchanger: Arc<Exchanger>, caller: SubjectToken, header: HeaderName) -> SessionExchange {
        SessionExchange { exchanger, caller, header, last: Mutex::new(None) }
    }
}

impl HeaderSource for SessionExchange {
    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let token = self.caller.current().ok_or("the caller presented no OAuth access token to exchange")?;
            let exchanged = self.exchanger.exchange(&token).await.map_err(|e| format!("token exchange failed: {e}"))?;
            let mut value =
                HeaderValue::from_str(&format!("Bearer {exchanged}")).map_err(|_| "an unusable exchanged token")?;
            value.set_sensitive(true);
            *lock(&self.last) = Some(value);
            Ok(())
        })
    }

    fn current(&self) -> Option<(HeaderName, HeaderValue)> {
        lock(&self.last).clone().map(|v| (self.header.clone(), v))
    }
}
