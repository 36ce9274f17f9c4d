//! The two eras of MCP: which protocol versions belong to which, what a modern
//! (2026-07-28) request carries in `_meta`, and the headers that mirror it.

use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;

/// A protocol version Warden knows, in the order they were released: what
/// a version allows is asked of it, never read off its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// The first: HTTP+SSE, sessions.
    V2024_11_05,
    /// Streamable HTTP, JSON-RPC batches.
    V2025_03_26,
    /// Batches removed.
    V2025_06_18,
    /// SSE streams primed with an event id.
    V2025_11_25,
    /// The stateless era: no `initialize`, no sessions.
    V2026_07_28,
}

impl Version {
    /// Every version, oldest first.
    pub const ALL: [Version; 5] =
        [Version::V2024_11_05, Version::V2025_03_26, Version::V2025_06_18, Version::V2025_11_25, Version::V2026_07_28];

    /// The version `text` names, if Warden knows it.
    pub fn parse(text: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.as_str() == text)
    }

    /// As written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V2024_11_05 => "2024-11-05",
            Version::V2025_03_26 => "2025-03-26",
            Version::V2025_06_18 => "2025-06-18",
            Version::V2025_11_25 => "2025-11-25",
            Version::V2026_07_28 => "2026-07-28",
        }
    }

    /// Whether it belongs to the stateless era.
    pub fn is_modern(self) -> bool {
        self >= Version::V2026_07_28
    }

    /// Whether it has JSON-RPC batches (only 2025-03-26).
    pub fn has_batches(self) -> bool {
        self == Version::V2025_03_26
    }

    /// Whether clients expect SSE streams primed with an event id.
    pub fn primes_streams(self) -> bool {
        self >= Version::V2025_11_25
    }
}

/// Versions of the handshake era (`initialize`, sessions).
pub const LEGACY_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// The newest handshake-era version, what Warden asks a legacy upstream for.
pub const LATEST_LEGACY: &str = "2025-11-25";
/// Versions of the stateless era.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];
/// The modern version Warden speaks.
pub const MODERN: &str = "2026-07-28";

/// Whether `version` is one of the stateless era's.
pub fn is_modern(version: &str) -> bool {
    Version::parse(version).is_some_and(Version::is_modern)
}

/// `_meta` keys of the modern era.
pub mod meta {
    /// The version a request uses.
    pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
    /// The client's capabilities for a request.
    pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
    /// The client's self-description.
    pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
    /// The server's self-description, on results.
    pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
    /// The `subscriptions/listen` request a notification belongs to.
    pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
    /// The per-request log level opt-in.
    pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
    /// What a modern request carries that a legacy session settled at `initialize`.
    pub const ENVELOPE: &[&str] = &[PROTOCOL_VERSION, CLIENT_CAPABILITIES, CLIENT_INFO, LOG_LEVEL];
}

/// Error codes the 2026-07-28 era defines (the standard JSON-RPC ones are in
/// [`crate::jsonrpc::code`]).
pub mod code {
    /// A mirrored header is missing, malformed or disagrees with the body.
    pub const HEADER_MISMATCH: i32 = -32020;
    /// The protocol version is not supported.
    pub const UNSUPPORTED_VERSION: i32 = -32022;
    /// Legacy "resource not found", retired in 2026-07-28.
    pub const LEGACY_RESOURCE_NOT_FOUND: i32 = -32002;
}

/// Mirrored request headers (names are case-insensitive).
pub mod header {
    /// The request's method.
    pub const METHOD: &str = "mcp-method";
    /// `params.name` or `params.uri` of the methods that name something.
    pub const NAME: &str = "mcp-name";
}

/// The param `Mcp-Name` mirrors for `method`, if any.
pub fn named_param(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// What a request says about itself, read from its body.
#[derive(Debug, Default)]
pub struct Facts {
    /// `method`.
    pub method: String,
    /// `params.name` / `params.uri`, for the methods `Mcp-Name` mirrors.
    pub name: Option<String>,
    /// `_meta` protocol version.
    pub version: Option<String>,
    /// `_meta` client capabilities, as JSON text.
    pub capabilities: Option<String>,
    /// `_meta` client info, as JSON text.
    pub client_info: Option<String>,
    /// `params.requestState` of a multi-round-trip retry.
    pub request_state: Option<String>,
    /// `params.inputResponses` of a retry, as JSON text.
    pub input_responses: Option<String>,
}

/// Reads the [`Facts`] of a request; `None` if it is not a JSON-RPC request body.
pub fn facts(message: &[u8]) -> Option<Facts> {
    #[derive(Deserialize)]
    struct Body<'a> {
        method: String,
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Params<'a> {
        #[serde(borrow)]
        name: Option<&'a RawValue>,
        #[serde(borrow)]
        uri: Option<&'a RawValue>,
        #[serde(rename = "_meta", borrow)]
        meta: Option<Meta<'a>>,
        request_state: Option<String>,
        #[serde(borrow)]
        input_responses: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Meta<'a> {
        #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
        version: Option<String>,
        #[serde(rename = "io.modelcontextprotocol/clientCapabilities", borrow)]
        capabilities: Option<&'a RawValue>,
        #[serde(rename = "io.modelcontextprotocol/clientInfo", borrow)]
        client_info: Option<&'a RawValue>,
    }
    let body: Body = serde_json::from_slice(message).ok()?;
    let mut facts = Facts { method: body.method, ..Facts::default() };
    let Some(params) = body.params else { return Some(facts) };
    let named = match named_param(&facts.method) {
        Some("name") => params.name,
        Some(_) => params.uri,
        None => None,
    };
    facts.name = named.and_then(|v| serde_json::from_str::<String>(v.get()).ok());
    if let Some(meta) = params.meta {
        facts.version = meta.version;
        facts.capabilities = meta.capabilities.map(|c| c.get().to_owned());
        facts.client_info = meta.client_info.map(|c| c.get().to_owned());
    }
    facts.request_state = params.request_state;
    facts.input_responses = params.input_responses.map(|r| r.get().to_owned());
    Some(facts)
}

const ENCODED_PREFIX: &str = "=?base64?";
const ENCODED_SUFFIX: &str = "?=";

/// A header value for `value`: as is when it is plain visible ASCII without
/// edge whitespace, else `=?base64?…?=` (also when the plain value looks encoded).
pub fn encode_header_value(value: &str) -> String {
    let looks_encoded = value.starts_with(ENCODED_PREFIX) && value.ends_with(ENCODED_SUFFIX);
    let plain = !value.is_empty()
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && !looks_encoded;
    if plain {
        value.to_owned()
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(value.as_bytes());
        format!("{ENCODED_PREFIX}{encoded}{ENCODED_SUFFIX}")
    }
}

/// The value a mirrored header stands for; `None` if it is malformed.
pub fn decode_header_value(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?;
    match text.strip_prefix(ENCODED_PREFIX).and_then(|t| t.strip_suffix(ENCODED_SUFFIX)) {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
            String::from_utf8(bytes).ok()
        }
        None if text.bytes().all(|b| (0x20..0x7f).contains(&b)) => Some(text.to_owned()),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_asked_what_they_allow() {
        for v in Version::ALL {
            assert_eq!(Version::parse(v.as_str()), Some(v));
        }
        assert_eq!(Version::parse("2025-13-01"), None);
        assert_eq!(Version::parse("2025-11-25 "), None, "no trimming, no prefix matching");
        assert!(Version::V2026_07_28.is_modern() && !Version::V2025_11_25.is_modern());
        let batches: Vec<Version> = Version::ALL.into_iter().filter(|v| v.has_batches()).collect();
        assert_eq!(batches, [Version::V2025_03_26]);
        assert!(Version::V2025_11_25.primes_streams() && !Version::V2025_06_18.primes_streams());
        let listed: Vec<&str> = LEGACY_VERSIONS.iter().chain(MODERN_VERSIONS).copied().collect();
        assert_eq!(listed, Version::ALL.map(Version::as_str), "the lists and the type agree");
    }

    #[test]
    fn facts_of_a_modern_request() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{},
            "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}}}}}"#;
        let call = facts(body).expect("a request");
        assert_eq!(call.method, "tools/call");
        assert_eq!(call.name.as_deref(), Some("echo"));
        assert_eq!(call.version.as_deref(), Some("2026-07-28"));
        assert_eq!(call.capabilities.as_deref(), Some(r#"{"sampling":{}}"#));
        let read = facts(br#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"a://b","name":"x"}}"#);
        assert_eq!(read.and_then(|f| f.name).as_deref(), Some("a://b"));
    }

    #[test]
    fn header_values_round_trip() {
        for value in ["echo", "tools/call", "naïve", " padded", "=?base64?abc?=", "line\nbreak"] {
            let encoded = encode_header_value(value);
            assert!(encoded.bytes().all(|b| (0x20..0x7f).contains(&b)), "{encoded}");
            assert_eq!(decode_header_value(encoded.as_bytes()).as_deref(), Some(value));
        }
        assert_eq!(encode_header_value("echo"), "echo");
        assert_eq!(decode_header_value(b"=?base64?bmHvdmU?="), None, "not UTF-8");
    }
}
