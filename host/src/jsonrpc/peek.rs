//! Single fields read out of messages routing has already checked: the
//! negotiated version, a progress token, the request a cancellation names, an
//! error's code.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{id_key, reader};

/// The protocol version an `initialize` answer settles on (`result.protocolVersion`).
pub fn negotiated_version(answer: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Init {
        result: Option<InitResult>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct InitResult {
        protocol_version: Option<String>,
    }
    // Most messages are not `initialize` answers: no parse for them.
    memchr::memmem::find(answer, b"\"protocolVersion\"")?;
    serde_json::from_slice::<Init>(answer).ok()?.result?.protocol_version
}

/// The progress token a message carries, as JSON text: `params._meta.progressToken`
/// of a request that asks for progress, or `params.progressToken` of a
/// `notifications/progress`. Messages without the word are not parsed.
pub fn progress_token(message: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Outer<'a> {
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Params<'a> {
        #[serde(borrow, rename = "_meta")]
        meta: Option<Meta<'a>>,
        #[serde(borrow)]
        progress_token: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta<'a> {
        #[serde(borrow)]
        progress_token: Option<&'a RawValue>,
    }
    memchr::memmem::find(message, b"progressToken")?;
    let params = serde_json::from_slice::<Outer>(message).ok()?.params?;
    let token = params.progress_token.or(params.meta.and_then(|m| m.progress_token))?;
    Some(id_key(token.get()).unwrap_or_else(|| token.get().to_owned()))
}

/// `params.requestId` of a `notifications/cancelled`, by value (the key
/// [`Head::id`] gives the request it cancels).
pub fn cancelled_request(message: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Cancelled<'a> {
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Params<'a> {
        #[serde(borrow)]
        request_id: Option<&'a RawValue>,
    }
    let id = serde_json::from_slice::<Cancelled>(message).ok()?.params?.request_id?;
    reader::id_key(id.get().as_bytes()).ok()
}

/// `error.code` of an error answer, read as a number (never searched for in
/// the text: a tool named `-32601` is no unknown method).
pub fn error_code(message: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct Answer {
        error: Option<Error>,
    }
    #[derive(Deserialize)]
    struct Error {
        code: Option<i64>,
    }
    serde_json::from_slice::<Answer>(message).ok()?.error?.code
}
