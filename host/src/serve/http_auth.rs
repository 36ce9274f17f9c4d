//! Who a request is from: a static token of `--client-tokens`, or a JWT
//! access token the OAuth resource server checks (`[auth]`); either admits.
//! And the RFC 9728 metadata that tells a client where to get a token.

use std::sync::Arc;

use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};

use super::http_response::{error, json, Body};
use super::oauth::Refusal;
use super::Gateway;
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
            return Ok(Some(subject));
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
    let resource = resource(gateway, path, headers);
    let metadata = format!("{}{METADATA_PATH}{path}", origin(gateway, headers));
    let challenge = |extra: &str| {
        HeaderValue::from_str(&format!("Bearer resource_metadata=\"{metadata}\"{extra}"))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    };
    match server.check(token, &resource, &gateway.required_scopes(path)).await {
        Ok(identity) => {
            let subject: Arc<str> = Arc::from(identity.subject);
            gateway.note_token(&subject, token.unwrap_or_default(), &identity.claims);
            Ok(Some(subject))
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
pub(super) fn metadata(gateway: &Arc<Gateway>, path: &str, headers: &HeaderMap) -> Option<Response<Body>> {
    let rest = path.strip_prefix(METADATA_PATH)?;
    let server = gateway.options().oauth.as_ref()?;
    let endpoint = if rest.is_empty() { gateway.options().path.clone() } else { rest.to_owned() };
    let served = gateway.for_path(&endpoint)?;
    let document = server.metadata(&resource(&served, &endpoint, headers), &gateway.required_scopes(&endpoint));
    Some(json(StatusCode::OK, bytes::Bytes::from(document.to_string())))
}

/// The resource an endpoint is: the configured `audience` for the main one,
/// otherwise its own URL.
fn resource(gateway: &Gateway, path: &str, headers: &HeaderMap) -> String {
    let configured = gateway.options().oauth.as_ref().and_then(|s| s.config().audience.clone());
    match configured {
        // A virtual endpoint is always a resource of its own, whatever `audience` says.
        Some(audience) if gateway.is_main_path(path) => audience,
        _ => format!("{}{path}", origin(gateway, headers)),
    }
}

/// `scheme://host` as the client reached Warden (the `Host` header was checked already).
fn origin(gateway: &Gateway, headers: &HeaderMap) -> String {
    let scheme = if gateway.options().tls.is_some() { "https" } else { "http" };
    let host = headers.get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("{scheme}://{host}")
}
