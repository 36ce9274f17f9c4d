//! Who a request is from: a static token of `--client-tokens`, or a JWT
//! access token the OAuth resource server checks (`[auth]`); either admits.
//! And the RFC 9728 metadata that tells a client where to get a token.
//!
//! What a caller is, is a key of [`super::callers`]: its subject bound to its
//! claims. The resource a token must be for is the endpoint's URL as the
//! config has it: under the origin of `audience` (or, without one, of the
//! address Warden listens on), never the `Host` the client sent.

use std::sync::Arc;

use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};

use super::http_response::{error, json, Body};
use super::oauth::Refusal;
use super::{callers, Gateway};
use crate::jsonrpc::code;

/// Where RFC 9728 metadata lives, before the endpoint's path.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The caller a request is from (`None` when Warden admits anyone), or the refusal.
pub(super) async fn admit(
    gateway: &Gateway,
    path: &str,
    headers: &HeaderMap,
) -> Result<Option<Arc<str>>, Response<Body>> {
    let options = gateway.options();
    if options.clients.is_none() && options.oauth.is_none() {
        return Ok(None);
    }
    let presented = headers.get(AUTHORIZATION).map(HeaderValue::as_bytes);
    if let Some(clients) = &options.clients {
        if let Some(subject) = clients.authenticate(presented) {
            let key = callers::static_key(&subject);
            gateway.note_caller(&key, &clients.claims(&subject), None);
            return Ok(Some(key));
        }
    }
    let Some(server) = &options.oauth else {
        tracing::warn!(path, "request without a valid bearer token refused");
        let mut response = error(StatusCode::UNAUTHORIZED, code::INVALID_REQUEST, "missing or unknown bearer token");
        response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"warden\""));
        return Err(response);
    };
    let token = presented.and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    let resource = resource(gateway, path);
    let shown_path = if is_old_transport(path) { gateway.options().path.as_str() } else { path };
    let metadata = format!("{}{METADATA_PATH}{shown_path}", origin(gateway));
    let challenge = |extra: &str| {
        HeaderValue::from_str(&format!("Bearer resource_metadata=\"{metadata}\"{extra}"))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    };
    match server.check(token, &resource, &gateway.required_scopes(path)).await {
        Ok(identity) => {
            let key = callers::token_key(&identity.subject, &identity.claims);
            gateway.note_caller(&key, &identity.claims, token);
            Ok(Some(key))
        }
        Err(Refusal::Missing) => {
            let mut response = error(StatusCode::UNAUTHORIZED, code::INVALID_REQUEST, "a bearer token is required");
            response.headers_mut().insert(WWW_AUTHENTICATE, challenge(""));
            Err(response)
        }
        Err(Refusal::Invalid(why)) => {
            tracing::warn!(path, "request with an invalid token refused: {why}");
            let mut response = error(StatusCode::UNAUTHORIZED, code::INVALID_REQUEST, &why);
            let extra = format!(", error=\"invalid_token\", error_description=\"{why}\"");
            response.headers_mut().insert(WWW_AUTHENTICATE, challenge(&extra));
            Err(response)
        }
        Err(Refusal::Scope(scope)) => {
            tracing::warn!(path, "request without a required scope refused");
            let mut response = error(StatusCode::FORBIDDEN, code::INVALID_REQUEST, "the token lacks a required scope");
            let extra = format!(", error=\"insufficient_scope\", scope=\"{scope}\"");
            response.headers_mut().insert(WWW_AUTHENTICATE, challenge(&extra));
            Err(response)
        }
        Err(Refusal::Unavailable(why)) => {
            tracing::error!(path, "tokens cannot be checked: {why}");
            let text = "tokens cannot be checked now: the identity provider's keys are not available";
            Err(error(StatusCode::SERVICE_UNAVAILABLE, code::UPSTREAM_FAILED, text))
        }
    }
}

/// The metadata document for `/.well-known/oauth-protected-resource[/PATH]`,
/// when the gateway checks tokens and serves that path.
pub(super) fn metadata(gateway: &Arc<Gateway>, path: &str) -> Option<Response<Body>> {
    let rest = path.strip_prefix(METADATA_PATH)?;
    let server = gateway.options().oauth.as_ref()?;
    let endpoint = if rest.is_empty() { gateway.options().path.clone() } else { rest.to_owned() };
    let served = gateway.for_path(&endpoint)?;
    let document = server.metadata(&resource(&served, &endpoint), &gateway.required_scopes(&endpoint));
    Some(json(StatusCode::OK, bytes::Bytes::from(document.to_string())))
}

/// Whether `path` is the HTTP+SSE transport's (`/sse`, `/messages`): the main endpoint's resource.
fn is_old_transport(path: &str) -> bool {
    path == super::SSE_PATH || path == super::MESSAGES_PATH
}

/// The resource an endpoint is: the configured `audience` for the main one
/// (and the HTTP+SSE paths, which serve it too), otherwise its own URL.
fn resource(gateway: &Gateway, path: &str) -> String {
    let path = if is_old_transport(path) {
        gateway.options().main_path.as_deref().unwrap_or(&gateway.options().path)
    } else {
        path
    };
    let configured = gateway.options().oauth.as_ref().and_then(|s| s.config().audience.clone());
    match configured {
        // A virtual endpoint is always a resource of its own, whatever `audience` says.
        Some(audience) if gateway.is_main_path(path) => audience,
        _ => format!("{}{path}", origin(gateway)),
    }
}

/// `scheme://authority` of Warden's endpoints as the config says: that of
/// `audience`, or of the address it listens on. Never the client's `Host`:
/// a token for another host must not pass for one for Warden.
fn origin(gateway: &Gateway) -> String {
    let options = gateway.options();
    let configured = options.oauth.as_ref().and_then(|s| s.config().audience.as_deref()).and_then(|a| {
        let uri: http::Uri = a.parse().ok()?;
        Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?))
    });
    configured.unwrap_or_else(|| {
        let scheme = if options.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", options.listen)
    })
}
