//! What the gateway answers for many upstreams at once: the union of their
//! `initialize` results, merged lists with prefixed names, and cursors that
//! carry each upstream's own.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::rewrite::{self, Fields};
use crate::config::gateway::tool_name_byte;

/// Longest tool or prompt name clients are promised (SEP-986).
pub const MAX_NAME: usize = 128;

/// The lists the gateway merges, and the key of their items.
pub fn list_key(method: &str) -> Option<&'static str> {
    Some(match method {
        "tools/list" => "tools",
        "prompts/list" => "prompts",
        "resources/list" => "resources",
        "resources/templates/list" => "resourceTemplates",
        "tasks/list" => "tasks",
        _ => return None,
    })
}

/// The capability an upstream must have for a list to be asked of it.
pub fn capability_of(method: &str) -> Option<&'static str> {
    Some(match method {
        "tools/list" => "tools",
        "prompts/list" => "prompts",
        "resources/list" | "resources/templates/list" => "resources",
        "logging/setLevel" => "logging",
        "completion/complete" => "completions",
        "tasks/list" => "tasks",
        _ => return None,
    })
}

/// Whether items of this list are named (and so prefixed).
pub fn named(method: &str) -> bool {
    matches!(method, "tools/list" | "prompts/list")
}

/// `upstream` + separator + `name`, if that is a valid name.
pub fn prefixed(upstream: &str, separator: &str, name: &str) -> Option<String> {
    let full = format!("{upstream}{separator}{name}");
    (full.len() <= MAX_NAME && full.bytes().all(tool_name_byte)).then_some(full)
}

/// One upstream's answer to `initialize`, as far as the union needs it.
#[derive(Debug, Clone, Default)]
pub struct Introduced {
    /// Its `capabilities`.
    pub capabilities: Map<String, Value>,
    /// Its `instructions`.
    pub instructions: Option<String>,
    /// The version it chose.
    pub version: Option<String>,
}

impl Introduced {
    /// Reads an `initialize` result.
    pub fn read(result: &Value) -> Introduced {
        Introduced {
            capabilities: result.get("capabilities").and_then(Value::as_object).cloned().unwrap_or_default(),
            instructions: result.get("instructions").and_then(Value::as_str).map(str::to_owned),
            version: result.get("protocolVersion").and_then(Value::as_str).map(str::to_owned),
        }
    }

    /// Whether it has capability `name`.
    pub fn has(&self, name: &str) -> bool {
        self.capabilities.contains_key(name)
    }
}

/// The gateway's `initialize` result: capabilities at least one upstream has
/// (lists always announce `listChanged`: upstreams come and go), the
/// instructions of each under its name, the oldest version any chose (what
/// every one of them speaks; versions Warden does not know are ignored), and
/// Warden's own server info. An upstream's instructions cannot open a section
/// of their own: their `## ` headings are pushed down a level.
pub fn initialize_result(introduced: &[(&str, &Introduced)], requested: Option<&str>) -> Value {
    let mut capabilities = Map::new();
    for (_, intro) in introduced {
        for (key, value) in &intro.capabilities {
            let entry = capabilities.entry(key.clone()).or_insert_with(|| json!({}));
            if let (Some(into), Some(from)) = (entry.as_object_mut(), value.as_object()) {
                for (k, v) in from {
                    // Flags are true if any upstream's is.
                    let keep = into.get(k).and_then(Value::as_bool) == Some(true);
                    if !keep {
                        into.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
    for list in ["tools", "prompts", "resources"] {
        if let Some(Value::Object(cap)) = capabilities.get_mut(list) {
            cap.insert("listChanged".into(), Value::Bool(true));
        }
    }
    let instructions: Vec<String> = introduced
        .iter()
        .filter_map(|(name, intro)| intro.instructions.as_ref().map(|i| format!("## {name}\n{}", demote(i))))
        .collect();
    // Only versions Warden knows: an upstream cannot make the session speak one it made up.
    let known = |v: &str| crate::era::LEGACY_VERSIONS.contains(&v);
    let version = introduced
        .iter()
        .filter_map(|(_, i)| i.version.clone())
        .filter(|v| known(v))
        .min()
        .or(requested.filter(|v| known(v)).map(str::to_owned))
        .unwrap_or_else(|| crate::era::LATEST_LEGACY.to_owned());
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": {"name": "warden", "title": "Warden gateway", "version": env!("CARGO_PKG_VERSION")},
    });
    if !instructions.is_empty() {
        result["instructions"] = Value::String(instructions.join("\n\n"));
    }
    result
}

/// Text whose lines cannot pass for one of the gateway's `## NAME` headings.
fn demote(text: &str) -> String {
    text.lines()
        .map(|l| if l.trim_start().starts_with("## ") { format!("#{}", l.trim_start()) } else { l.to_owned() })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A list page as one upstream gave it.
pub struct Page {
    /// The upstream's name.
    pub upstream: String,
    /// Its items, each as its members.
    pub items: Vec<Fields>,
    /// Its cursor for the next page.
    pub next: Option<String>,
    /// Its names are shown as it gives them (`prefix = false`).
    pub bare: bool,
}

impl Page {
    /// Reads one upstream's list result.
    pub fn read(upstream: &str, key: &str, result: &[u8]) -> Option<Page> {
        let f = rewrite::fields(result)?;
        let items: Vec<Fields> = f.get(key).and_then(|v| serde_json::from_str(v.get()).ok()).unwrap_or_default();
        Some(Page { upstream: upstream.to_owned(), items, next: rewrite::string(&f, "nextCursor"), bare: false })
    }
}

/// Merges pages in upstream order: named items prefixed (those whose
/// prefixed name would be invalid are left out, with a warning), and one
/// cursor covering every upstream that has more.
pub fn merge_pages(method: &str, key: &str, separator: &str, pages: Vec<Page>) -> Value {
    let mut items = Vec::new();
    let mut more = BTreeMap::new();
    for page in pages {
        for mut item in page.items {
            if named(method) && !page.bare {
                let Some(name) = rewrite::string(&item, "name") else { continue };
                match prefixed(&page.upstream, separator, &name) {
                    Some(full) => rewrite::set(&mut item, "name", &full),
                    None => {
                        tracing::warn!(upstream = %page.upstream, "an item is left out: its prefixed name is no valid name");
                        continue;
                    }
                }
            }
            items.push(item);
        }
        if let Some(next) = page.next {
            more.insert(page.upstream, next);
        }
    }
    let mut result = json!({ key: items });
    if !more.is_empty() {
        result["nextCursor"] = Value::String(encode_cursor(&more));
    }
    result
}

/// The gateway's cursor: each upstream's own, by name.
pub fn encode_cursor(cursors: &BTreeMap<String, String>) -> String {
    let text = serde_json::to_string(cursors).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// Reads a cursor the gateway gave out; `None` for anything else.
pub fn decode_cursor(cursor: &str) -> Option<BTreeMap<String, String>> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_and_invalid_ones_left_out() {
        let page = |upstream: &str, names: &[&str], next: Option<&str>| Page {
            upstream: upstream.into(),
            items: names.iter().map(|n| rewrite::fields(json!({"name": n}).to_string().as_bytes()).unwrap()).collect(),
            next: next.map(str::to_owned),
            bare: false,
        };
        let long = "x".repeat(130);
        let merged = merge_pages(
            "tools/list",
            "tools",
            "__",
            vec![page("fs", &["read", "bad name", &long], Some("c1")), page("gh", &["get"], None)],
        );
        let names: Vec<&str> =
            merged["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["fs__read", "gh__get"]);
        let cursor = decode_cursor(merged["nextCursor"].as_str().unwrap()).unwrap();
        assert_eq!(cursor.get("fs").map(String::as_str), Some("c1"));
        assert!(decode_cursor("not ours").is_none());
    }

    #[test]
    fn capabilities_are_the_union() {
        let a = Introduced::read(
            &json!({"capabilities": {"tools": {}}, "protocolVersion": "2025-06-18", "instructions": "A"}),
        );
        let b = Introduced::read(
            &json!({"capabilities": {"prompts": {"listChanged": false}, "logging": {}}, "protocolVersion": "2025-03-26"}),
        );
        let r = initialize_result(&[("a", &a), ("b", &b)], Some("2025-06-18"));
        assert_eq!(r["capabilities"]["tools"]["listChanged"], true);
        assert_eq!(r["capabilities"]["prompts"]["listChanged"], true);
        assert!(r["capabilities"]["logging"].is_object() && r["capabilities"].get("resources").is_none());
        assert_eq!(r["protocolVersion"], "2025-03-26");
        assert_eq!(r["instructions"], "## a\nA");
        assert_eq!(r["serverInfo"]["name"], "warden");
    }
}
