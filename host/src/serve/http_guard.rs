//! Who may talk to the listener at all: the `Host` and `Origin` checks that
//! defend a local gateway against DNS rebinding and foreign web pages.
//!
//! Both headers are parsed strictly, the way a browser or resolver would read
//! them, never by splitting on the first `:`: `127.0.0.1:80@evil.example` is
//! not a loopback host but a malformed one. A request with the header twice,
//! a malformed one, or an absolute-form target (whose authority would name a
//! second host beside `Host`) is refused with 400 before anything else.

use hyper::header::{HeaderMap, HOST, ORIGIN};
use hyper::Uri;

use super::ServeOptions;

/// Why a request is refused before it is read.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the request names its host or origin ambiguously.
    Malformed(&'static str),
    /// 403: a host this listener does not answer to.
    ForeignHost,
    /// 403: a web page from an origin that is not allowed.
    ForeignOrigin,
}

/// Checks the request target, `Host` and `Origin`.
pub fn check(uri: &Uri, headers: &HeaderMap, options: &ServeOptions) -> Result<(), Refusal> {
    if uri.authority().is_some() || uri.scheme().is_some() {
        return Err(Refusal::Malformed("absolute-form request target"));
    }
    let mut hosts = headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::Malformed("Host given twice"));
    }
    if let Some(host) = host {
        let text = host.to_str().map_err(|_| Refusal::Malformed("malformed Host"))?;
        let name = authority_host(text).ok_or(Refusal::Malformed("malformed Host"))?;
        if !host_allowed(text, name, options) {
            return Err(Refusal::ForeignHost);
        }
    }
    let mut origins = headers.get_all(ORIGIN).iter();
    let origin = origins.next();
    if origins.next().is_some() {
        return Err(Refusal::Malformed("Origin given twice"));
    }
    if let Some(origin) = origin {
        let text = origin.to_str().map_err(|_| Refusal::ForeignOrigin)?;
        if !origin_allowed(text, &options.allowed_origins) {
            return Err(Refusal::ForeignOrigin);
        }
    }
    Ok(())
}

/// DNS rebinding defence: a listener on a loopback address answers only to
/// loopback host names (and those listed); elsewhere, to those listed, or any.
/// A request without `Host` (HTTP/1.0) names no foreign host.
fn host_allowed(text: &str, name: &str, options: &ServeOptions) -> bool {
    // A listed host matches with its port or, listed without one, on any port.
    if options.allowed_hosts.iter().any(|a| a == "*" || a.eq_ignore_ascii_case(text) || a.eq_ignore_ascii_case(name)) {
        return true;
    }
    if is_loopback_name(name) {
        return true;
    }
    options.allowed_hosts.is_empty() && !options.listen.ip().to_canonical().is_loopback()
}

/// Loopback origins are always allowed (a local client); others only when listed.
fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    if allowed.iter().any(|a| a == "*" || a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let Some(rest) = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) else {
        return false;
    };
    authority_host(rest).is_some_and(is_loopback_name)
}

/// Whether a `Host` header's value names a loopback host (any port).
pub fn names_loopback(host: &str) -> bool {
    authority_host(host).is_some_and(is_loopback_name)
}

/// `localhost` (with or without the root's trailing dot) or a loopback
/// address, IPv4-mapped ones (`::ffff:127.0.0.1`) included.
fn is_loopback_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The host of `host [":" port]` (RFC 3986 §3.2.2, without user info), or
/// `None` when it is anything else: an IPv6 literal must parse, a name holds
/// only letters, digits, `.`, `-` and `_`, a port only digits (at most 65535).
fn authority_host(authority: &str) -> Option<&str> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']')?;
            v6.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')?),
            };
            (v6, port)
        }
        None => match authority.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (authority, None),
        },
    };
    if !authority.starts_with('[')
        && (host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')))
    {
        return None;
    }
    if let Some(port) = port {
        if port.is_empty()
            || port.len() > 5
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u32>().ok()? > 65535
        {
            return None;
        }
    }
    Some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn options(listen: &str, hosts: &[&str], origins: &[&str]) -> ServeOptions {
        ServeOptions {
            listen: listen.parse().unwrap(),
            allowed_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            ..crate::serve::tests::options()
        }
    }

    fn with(pairs: &[(hyper::header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn host(value: &str, o: &ServeOptions) -> Result<(), Refusal> {
        check(&Uri::from_static("/mcp"), &with(&[(HOST, value)]), o)
    }

    fn origin(value: &str, allowed: &[&str]) -> Result<(), Refusal> {
        check(&Uri::from_static("/mcp"), &with(&[(ORIGIN, value)]), &options("127.0.0.1:8080", &[], allowed))
    }

    #[test]
    fn loopback_origins_pass_and_foreign_ones_do_not() {
        for ok in ["http://localhost:3000", "http://127.0.0.1", "http://[::1]:8080", "https://LOCALHOST"] {
            assert_eq!(origin(ok, &[]), Ok(()), "{ok}");
        }
        for bad in [
            "http://evil.example",
            "http://localhost.evil.example",
            "null",
            "http://127.0.0.1:80@evil.example",
            "http://localhost@evil.example",
            "http://127.0.0.1/evil",
            "http://[::1]evil.example",
            "http://127.0.0.1:8o",
            "file://localhost",
        ] {
            assert_eq!(origin(bad, &[]), Err(Refusal::ForeignOrigin), "{bad}");
        }
        assert_eq!(origin("https://app.example.com", &["https://app.example.com"]), Ok(()));
    }

    #[test]
    fn a_loopback_listener_answers_only_to_loopback_hosts() {
        let local = options("127.0.0.1:8080", &[], &[]);
        for ok in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost",
            "LOCALHOST:1",
            "[::1]",
            "localhost.:8080",
            "[::ffff:127.0.0.1]:8080",
        ] {
            assert_eq!(host(ok, &local), Ok(()), "{ok}");
        }
        for foreign in ["evil.example", "evil.example:8080", "localhost.evil.example:8080", "10.0.0.1:8080"] {
            assert_eq!(host(foreign, &local), Err(Refusal::ForeignHost), "{foreign}");
        }
        assert_eq!(host("mcp.internal:8080", &options("127.0.0.1:8080", &["mcp.internal:8080"], &[])), Ok(()));
        assert_eq!(host("mcp.internal:8443", &options("127.0.0.1:8080", &["mcp.internal"], &[])), Ok(()));
        let mapped = options("[::ffff:127.0.0.1]:8080", &[], &[]);
        assert_eq!(host("evil.example", &mapped), Err(Refusal::ForeignHost), "a mapped loopback listener is loopback");
        assert_eq!(host("anything.example", &options("0.0.0.0:8080", &[], &[])), Ok(()));
        assert_eq!(
            host("anything.example", &options("0.0.0.0:8080", &["mcp.example.com"], &[])),
            Err(Refusal::ForeignHost)
        );
    }

    #[test]
    fn an_ambiguous_host_is_malformed_not_loopback() {
        let local = options("127.0.0.1:8080", &[], &[]);
        for bad in [
            "127.0.0.1:80@evil.example",
            "localhost@evil.example",
            "127.0.0.1:8080:9090",
            "[::1]evil.example",
            "[::1]:80@evil.example",
            "[evil.example]",
            "localhost:",
            "localhost:99999",
            "localhost:+80",
            "local host",
            "",
            "127.0.0.1/evil",
        ] {
            assert_eq!(host(bad, &local), Err(Refusal::Malformed("malformed Host")), "{bad:?}");
        }
        // Even where every host is allowed, a malformed one is not a host.
        assert!(matches!(host("a@b", &options("0.0.0.0:8080", &[], &[])), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn twice_given_headers_and_absolute_targets_are_refused() {
        let local = options("127.0.0.1:8080", &[], &[]);
        let twice = with(&[(HOST, "localhost"), (HOST, "evil.example")]);
        assert_eq!(check(&Uri::from_static("/mcp"), &twice, &local), Err(Refusal::Malformed("Host given twice")));
        let twice = with(&[(HOST, "localhost"), (ORIGIN, "http://localhost"), (ORIGIN, "http://evil.example")]);
        assert_eq!(check(&Uri::from_static("/mcp"), &twice, &local), Err(Refusal::Malformed("Origin given twice")));
        let absolute = Uri::from_static("http://evil.example/mcp");
        assert_eq!(
            check(&absolute, &with(&[(HOST, "localhost")]), &local),
            Err(Refusal::Malformed("absolute-form request target"))
        );
    }
}
