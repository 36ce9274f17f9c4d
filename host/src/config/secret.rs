//! Secrets in `warden.toml`: a value written out, or read from Warden's
//! environment or a file, optionally after a prefix; and credentials chosen
//! per caller, by the value of one of its claims.
//!
//! ```toml
//! [upstreams.remote.headers.Authorization]
//! claim = "groups"        # or "sub", or a dotted path such as "realm_access.roles"
//! values = { infra = { from-env = "INFRA_TOKEN", prefix = "Bearer " }, dev = { from-env = "DEV_TOKEN", prefix = "Bearer " } }
//! default = { from-env = "GUEST_TOKEN", prefix = "Bearer " }   # without it, a caller none fits is refused
//! ```
//!
//! A claim that is a list picks the first entry of `values`, in the order
//! the file gives them, that the list holds.

use std::path::PathBuf;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A value that may be a secret: written out, or read from the environment
/// or a file, optionally after a prefix (`"Bearer "`); or one per caller.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawSecret {
    /// The value itself.
    Plain(String),
    /// Where to read it.
    From(RawSecretSource),
    /// One per caller.
    ByCaller(RawByCaller),
}

/// `{ from-env = "VAR" }` or `{ from-file = "PATH" }`, with an optional `prefix`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSecretSource {
    /// An environment variable of Warden's.
    pub from_env: Option<String>,
    /// A file (relative to the config file); one trailing newline is dropped.
    pub from_file: Option<String>,
    /// Put before the value.
    pub prefix: Option<String>,
}

/// `{ claim = "groups", values = { … }, default = … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawByCaller {
    /// The claim whose value picks the secret.
    pub claim: String,
    /// Claim value → secret, in the file's order.
    pub values: Ordered<RawSecret>,
    /// For a caller no value fits; without it, such a caller is refused.
    pub default: Option<Box<RawSecret>>,
}

/// A table whose entries keep the order the file gives them.
#[derive(Debug)]
pub struct Ordered<T>(pub Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Entries<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered<T>, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, T>()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        deserializer.deserialize_map(Entries(std::marker::PhantomData))
    }
}

/// A value read from a secret source: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A header's or variable's value: one for everyone, or one per caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The same for every caller.
    Fixed(Secret),
    /// Chosen by the value of the caller's `claim`.
    ByCaller {
        /// A claim name, or a dotted path into the claims.
        claim: String,
        /// Claim value → secret, in the file's order.
        values: Vec<(String, Secret)>,
        /// For a caller no value fits.
        default: Option<Secret>,
    },
}

impl Credential {
    /// The value for a caller with this subject and claims (a JSON object);
    /// `None` when none fits and there is no default: the caller is refused.
    pub fn for_caller(&self, subject: Option<&str>, claims: &Value) -> Option<&Secret> {
        let (claim, values, default) = match self {
            Credential::Fixed(secret) => return Some(secret),
            Credential::ByCaller { claim, values, default } => (claim, values, default),
        };
        let mut found = claim.split('.').try_fold(claims, |v, part| v.get(part));
        let subject = subject.map(|s| Value::String(s.to_owned()));
        if found.is_none() && claim == "sub" {
            found = subject.as_ref();
        }
        let held: Vec<&str> = match found {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        values.iter().find(|(value, _)| held.contains(&value.as_str())).map(|(_, s)| s).or(default.as_ref())
    }

    /// Whether the value depends on who calls.
    pub fn per_caller(&self) -> bool {
        matches!(self, Credential::ByCaller { .. })
    }

    /// Every value it may take (to check each is usable where it goes).
    pub fn every(&self) -> Vec<&Secret> {
        match self {
            Credential::Fixed(secret) => vec![secret],
            Credential::ByCaller { values, default, .. } => values.iter().map(|(_, s)| s).chain(default).collect(),
        }
    }
}

/// Reads a secret's value; on failure, what is wrong and the fix (never the value).
pub(super) fn read_secret(
    value: &RawSecret,
    resolve: &dyn Fn(&str) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, (String, String)> {
    let source = match value {
        RawSecret::Plain(text) => return Ok(Secret(text.clone())),
        RawSecret::From(source) => source,
        RawSecret::ByCaller(_) => {
            return Err((
                "chooses by caller inside a choice by caller".into(),
                "give each claim value a string, { from-env = \"VAR\" } or { from-file = \"PATH\" }".into(),
            ))
        }
    };
    let prefix = source.prefix.clone().unwrap_or_default();
    let read = match (&source.from_env, &source.from_file) {
        (Some(var), None) => env(var).ok_or_else(|| {
            (format!("environment variable {var} is not set"), format!("set {var} in Warden's environment"))
        })?,
        (None, Some(path)) => {
            let path = resolve(path);
            let mut text = std::fs::read_to_string(&path).map_err(|e| {
                (format!("secret file {} cannot be read: {e}", path.display()), "create it or correct the path".into())
            })?;
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            text
        }
        _ => {
            return Err((
                "a secret needs exactly one of from-env and from-file".into(),
                "write { from-env = \"VAR\" } or { from-file = \"PATH\" }".into(),
            ))
        }
    };
    Ok(Secret(prefix + &read))
}

/// Reads a header's or variable's value, one per caller when it says so.
pub(super) fn read_credential(
    value: &RawSecret,
    resolve: &dyn Fn(&str) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Credential, (String, String)> {
    let RawSecret::ByCaller(by) = value else {
        return read_secret(value, resolve, env).map(Credential::Fixed);
    };
    if by.claim.is_empty() || by.claim.split('.').any(str::is_empty) {
        return Err(("names no claim".into(), "write claim = \"groups\", \"sub\" or a path such as \"a.b\"".into()));
    }
    if by.values.0.is_empty() {
        return Err((
            "has no values".into(),
            "map claim values to secrets: values = { infra = { from-env = \"VAR\" } }".into(),
        ));
    }
    let values = by
        .values
        .0
        .iter()
        .map(|(claim_value, secret)| Ok((claim_value.clone(), read_secret(secret, resolve, env)?)))
        .collect::<Result<Vec<_>, (String, String)>>()?;
    let default = by.default.as_deref().map(|d| read_secret(d, resolve, env)).transpose()?;
    Ok(Credential::ByCaller { claim: by.claim.clone(), values, default })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn by_groups(default: bool) -> Credential {
        Credential::ByCaller {
            claim: "groups".into(),
            values: vec![("infra".into(), Secret("tok-infra".into())), ("dev".into(), Secret("tok-dev".into()))],
            default: default.then(|| Secret("tok-guest".into())),
        }
    }

    fn pick(c: &Credential, subject: Option<&str>, claims: Value) -> Option<String> {
        c.for_caller(subject, &claims).map(|s| s.expose().to_owned())
    }

    #[test]
    fn the_callers_claim_picks_in_the_files_order() {
        let c = by_groups(false);
        assert_eq!(pick(&c, None, json!({"groups": "dev"})).as_deref(), Some("tok-dev"));
        // Both held: the first in the file's order.
        assert_eq!(pick(&c, None, json!({"groups": ["dev", "infra"]})).as_deref(), Some("tok-infra"));
        // None fits and no default: refused. Not strings: nothing fits.
        for claims in [json!({"groups": ["ops"]}), json!({}), json!({"groups": [{"infra": 1}]}), json!({"groups": 7})] {
            assert_eq!(pick(&c, None, claims), None);
        }
        assert_eq!(pick(&by_groups(true), None, json!({"groups": ["ops"]})).as_deref(), Some("tok-guest"));
        // The subject, and a dotted path.
        let c = Credential::ByCaller {
            claim: "sub".into(),
            values: vec![("ada".into(), Secret("tok-ada".into()))],
            default: None,
        };
        assert_eq!(pick(&c, Some("ada"), json!({})).as_deref(), Some("tok-ada"));
        assert_eq!(pick(&c, Some("ada"), json!({"sub": "bob"})), None, "the token's own sub counts");
        let c = Credential::ByCaller {
            claim: "realm_access.roles".into(),
            values: vec![("admin".into(), Secret("tok-admin".into()))],
            default: None,
        };
        assert_eq!(pick(&c, None, json!({"realm_access": {"roles": ["admin"]}})).as_deref(), Some("tok-admin"));
        assert_eq!(pick(&c, None, json!({"realm_access.roles": ["admin"]})), None);
    }

    #[test]
    fn the_files_order_is_kept() {
        #[derive(Deserialize)]
        struct T {
            t: Ordered<String>,
        }
        let parsed: T = toml::from_str("[t]\nz = \"1\"\na = \"2\"\nm = \"3\"\n").unwrap_or_else(|e| panic!("{e}"));
        let keys: Vec<&str> = parsed.t.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }
}
