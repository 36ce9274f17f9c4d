//! Messages Warden writes itself: errors, results, and a value set at a path.

use bytes::Bytes;
use serde_json::value::RawValue;

use super::{code, one_line};

/// Builds an error response. `id` is JSON text; `None` becomes `null`.
pub fn error_response(id: Option<&str>, code: i32, message: &str, data: Option<&str>) -> Bytes {
    let id = id.unwrap_or("null");
    let message = serde_json::Value::from(message);
    let mut data = data.and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok());
    if let Some(tag) = code::tag(code) {
        match &mut data {
            None => data = Some(serde_json::json!({ "warden": tag })),
            Some(serde_json::Value::Object(fields)) => {
                fields.entry("warden").or_insert_with(|| tag.into());
            }
            Some(_) => {}
        }
    }
    let text = match data {
        Some(data) => {
            format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message},"data":{data}}}}}"#)
        }
        None => format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message}}}}}"#),
    };
    Bytes::from(text)
}

/// Builds a result response from a JSON text the caller has checked.
pub fn result_response(id: &str, result: &RawValue) -> Bytes {
    // A plugin's result may be pretty-printed: one line, as every message.
    one_line(Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{}}}"#, result.get())))
}

/// Sets `value` at `path` (object keys), making the objects on the way where
/// they are missing or `null`. Total on input from outside: where something
/// on the path is not an object (params given as an array, say), nothing is
/// changed and `false` comes back; serde_json's `value[k] = …` would panic.
pub fn set_in(target: &mut serde_json::Value, path: &[&str], value: serde_json::Value) -> bool {
    use serde_json::Value;
    let Some((last, parents)) = path.split_last() else { return false };
    let mut at = target;
    for key in parents {
        if at.is_null() {
            *at = Value::Object(Default::default());
        }
        let Some(object) = at.as_object_mut() else { return false };
        at = object.entry(key.to_string()).or_insert(Value::Null);
    }
    if at.is_null() {
        *at = Value::Object(Default::default());
    }
    match at.as_object_mut() {
        Some(object) => {
            object.insert(last.to_string(), value);
            true
        }
        None => false,
    }
}
