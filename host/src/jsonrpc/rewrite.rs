//! Edits of checked messages that keep every value they do not touch byte
//! for byte: an object is read as its members' raw texts, one member is
//! replaced, and it is written back. Numbers, strings and nesting anywhere
//! else stay exactly as their sender wrote them (no float rounding of a
//! 30-digit argument on its way through the gateway).
//!
//! Only messages the strict reader accepted come here: no duplicate keys, so
//! an object read as a map loses nothing.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::value::RawValue;

/// An object's members, each as its raw JSON text.
pub type Fields = BTreeMap<String, Box<RawValue>>;

/// The members of the object `raw` is, if it is one.
pub fn fields(raw: &[u8]) -> Option<Fields> {
    serde_json::from_slice(raw).ok()
}

/// The members of member `key`, if it is an object.
pub fn nested(f: &Fields, key: &str) -> Option<Fields> {
    f.get(key).and_then(|v| fields(v.get().as_bytes()))
}

/// Member `key` as a string, if it is one.
pub fn string(f: &Fields, key: &str) -> Option<String> {
    f.get(key).and_then(|v| serde_json::from_str::<String>(v.get()).ok())
}

/// Sets member `key` to `value` (serialized).
pub fn set(f: &mut Fields, key: &str, value: &impl serde::Serialize) {
    if let Some(raw) = serde_json::to_string(value).ok().and_then(|t| RawValue::from_string(t).ok()) {
        f.insert(key.to_owned(), raw);
    }
}

/// Sets member `key` to an object's members.
pub fn set_object(f: &mut Fields, key: &str, value: &Fields) {
    set(f, key, value);
}

/// Sets member `key` to JSON text already checked (an id as its sender wrote it).
pub fn set_raw(f: &mut Fields, key: &str, json: &str) {
    if let Ok(raw) = RawValue::from_string(json.to_owned()) {
        f.insert(key.to_owned(), raw);
    }
}

/// The object as one line of JSON.
pub fn to_bytes(f: &Fields) -> Bytes {
    Bytes::from(serde_json::to_vec(f).unwrap_or_default())
}

/// The message with its `id` replaced by `id` (JSON text).
pub fn with_id(raw: &[u8], id: &str) -> Option<Bytes> {
    with_id_rebuilt(raw, id)
}

/// [`with_id`] for a whole message: the new id spliced in where the old one
/// is, every other byte as it was (no second parse into members and back,
/// which a large answer would pay for); rebuilt when it has no id.
pub fn with_id_spliced(raw: &Bytes, id: &str) -> Option<Bytes> {
    match crate::jsonrpc::Message::parse(raw.clone()) {
        Ok(message) if message.head.raw_id.is_some() => Some(message.with_raw_id(id)),
        _ => with_id_rebuilt(raw, id),
    }
}

fn with_id_rebuilt(raw: &[u8], id: &str) -> Option<Bytes> {
    let mut f = fields(raw)?;
    set_raw(&mut f, "id", id);
    Some(to_bytes(&f))
}

/// The message with `params.<key>` (a string) replaced, and its id.
pub fn with_param(raw: &[u8], id: Option<&str>, path: &[&str], value: &str) -> Option<Bytes> {
    let mut f = fields(raw)?;
    if let Some(id) = id {
        set_raw(&mut f, "id", id);
    }
    let mut params = nested(&f, "params")?;
    set_path(&mut params, path, value)?;
    set_object(&mut f, "params", &params);
    Some(to_bytes(&f))
}

/// Sets the string at `path` inside `f`, each step an existing object.
fn set_path(f: &mut Fields, path: &[&str], value: &str) -> Option<()> {
    match path {
        [] => None,
        [last] => {
            set(f, last, &value);
            Some(())
        }
        [first, rest @ ..] => {
            let mut inner = nested(f, first)?;
            set_path(&mut inner, rest, value)?;
            set_object(f, first, &inner);
            Some(())
        }
    }
}

/// A string member at `path` inside `f`.
pub fn string_at(f: &Fields, path: &[&str]) -> Option<String> {
    match path {
        [] => None,
        [last] => string(f, last),
        [first, rest @ ..] => string_at(&nested(f, first)?, rest),
    }
}

/// `params._meta.traceparent` of a message, if it has a string there.
pub fn traceparent(raw: &[u8]) -> Option<String> {
    memchr::memmem::find(raw, b"traceparent")?;
    let f = fields(raw)?;
    let params = nested(&f, "params")?;
    let meta = nested(&params, "_meta")?;
    string(&meta, "traceparent")
}

/// The message with `params._meta.traceparent` set to `value` (`params` and
/// `_meta` made when missing), every other byte as it was: the value is
/// spliced in. `None` when `params` or `_meta` is there but not an object.
pub fn with_traceparent(raw: &[u8], value: &str) -> Option<Bytes> {
    let quoted = serde_json::to_string(value).ok()?;
    let top = object_span(raw, raw)?;
    let edit = match member(raw, top, "params") {
        None => {
            // `…}` becomes `…,"params":{"_meta":{"traceparent":…}}}`.
            let close = top.1 - 1;
            let comma = if raw.get(top.0..top.1).is_some_and(is_empty_object) { "" } else { "," };
            (close, close, format!("{comma}\"params\":{{\"_meta\":{{\"traceparent\":{quoted}}}}}"))
        }
        Some(params) => {
            let params = object_span(raw, raw.get(params.0..params.1)?)?;
            match member(raw, params, "_meta") {
                None => insert_first(raw, params, &format!("\"_meta\":{{\"traceparent\":{quoted}}}")),
                Some(meta) => {
                    let meta = object_span(raw, raw.get(meta.0..meta.1)?)?;
                    match member(raw, meta, "traceparent") {
                        Some(old) => (old.0, old.1, quoted),
                        None => insert_first(raw, meta, &format!("\"traceparent\":{quoted}")),
                    }
                }
            }
        }
    };
    let (from, to, text) = edit;
    let mut out = Vec::with_capacity(raw.len() + text.len());
    out.extend_from_slice(raw.get(..from)?);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(raw.get(to..)?);
    Some(Bytes::from(out))
}

/// Where `part` (a slice of `whole`) sits in it, if it is an object: start and end offsets.
fn object_span(whole: &[u8], part: &[u8]) -> Option<(usize, usize)> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let text = std::str::from_utf8(part).ok()?;
    let lead = text.len() - text.trim_start().len();
    let trimmed = text.trim();
    (trimmed.starts_with('{') && trimmed.ends_with('}')).then_some((start + lead, start + lead + trimmed.len()))
}

fn is_empty_object(object: &[u8]) -> bool {
    object.get(1..object.len().saturating_sub(1)).is_some_and(|inner| inner.iter().all(u8::is_ascii_whitespace))
}

/// The span of member `key`'s value in the object at `object` (offsets in `raw`).
fn member(raw: &[u8], object: (usize, usize), key: &str) -> Option<(usize, usize)> {
    let text = raw.get(object.0..object.1)?;
    let members: std::collections::BTreeMap<std::borrow::Cow<'_, str>, &RawValue> =
        serde_json::from_slice(text).ok()?;
    let value = members.get(key)?.get().as_bytes();
    let start = (value.as_ptr() as usize).checked_sub(raw.as_ptr() as usize)?;
    Some((start, start + value.len()))
}

/// Inserts `member` as the first member of the object at `object`.
fn insert_first(raw: &[u8], object: (usize, usize), member: &str) -> (usize, usize, String) {
    let open = object.0 + 1;
    let comma = if raw.get(object.0..object.1).is_some_and(is_empty_object) { "" } else { "," };
    (open, open, format!("{member}{comma}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_keeps_every_other_value_as_written() {
        let raw = br#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"fs__read","arguments":{"n":123456789012345678901234567890,"s":"\u0041"}}}"#;
        let out = with_param(raw, Some("7"), &["name"], "read").expect("edited");
        let text = std::str::from_utf8(&out).expect("utf-8");
        assert!(text.contains(r#""n":123456789012345678901234567890"#), "{text}");
        assert!(text.contains(r#""s":"\u0041""#), "{text}");
        assert!(text.contains(r#""name":"read""#) && text.contains(r#""id":7"#), "{text}");
    }

    #[test]
    fn params_that_are_no_object_are_not_edited() {
        assert!(with_param(br#"{"id":1,"method":"tools/call","params":["x"]}"#, None, &["name"], "y").is_none());
        assert!(with_param(
            br#"{"id":1,"method":"completion/complete","params":{"ref":1}}"#,
            None,
            &["ref", "name"],
            "y"
        )
        .is_none());
    }

    #[test]
    fn a_traceparent_goes_in_without_touching_the_rest() {
        let raw = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"n":1E5, "z":[1, 2]}}}"#;
        let out = with_traceparent(raw, "00-aa-bb-01").expect("stamped");
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"traceparent":"00-aa-bb-01"},"name":"x","arguments":{"n":1E5, "z":[1, 2]}}}"#
        );
        let again = with_traceparent(&out, "00-cc-dd-01").expect("replaced");
        assert_eq!(
            std::str::from_utf8(&again).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"traceparent":"00-cc-dd-01"},"name":"x","arguments":{"n":1E5, "z":[1, 2]}}}"#
        );
        let meta = with_traceparent(br#"{"id":1,"method":"m","params":{"_meta":{"k":1}}}"#, "t").unwrap();
        assert_eq!(&meta[..], br#"{"id":1,"method":"m","params":{"_meta":{"traceparent":"t","k":1}}}"#);
        let bare = with_traceparent(br#"{"id":1,"method":"ping"}"#, "t").unwrap();
        assert_eq!(&bare[..], br#"{"id":1,"method":"ping","params":{"_meta":{"traceparent":"t"}}}"#);
        let empty = with_traceparent(br#"{"id":1,"method":"m","params":{ }}"#, "t").unwrap();
        assert_eq!(&empty[..], br#"{"id":1,"method":"m","params":{"_meta":{"traceparent":"t"} }}"#);
        let escaped = with_traceparent(br#"{"id":1,"method":"m","params":{"_meta":{}}}"#, "t").unwrap();
        assert_eq!(&escaped[..], br#"{"id":1,"method":"m","params":{"_meta":{"traceparent":"t"}}}"#);
        assert!(with_traceparent(br#"{"id":1,"method":"m","params":[1]}"#, "t").is_none());
        assert!(with_traceparent(br#"{"id":1,"method":"m","params":{"_meta":3}}"#, "t").is_none());
        assert!(traceparent(br#"{"id":1,"method":"m","params":{"_meta":{"traceparent":7}}}"#).is_none());
    }
}
