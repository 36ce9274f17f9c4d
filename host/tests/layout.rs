//! The house's one-way road: no import cycle between the modules of `host/src`
//! (top-level modules, and the files of one folder among themselves).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `serve/http.rs` is `["serve", "http"]`.
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).expect("under root").with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code of a file without its tests and comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The identifiers following each `prefix` in `text`.
fn names_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.match_indices(prefix)
        .filter_map(|(at, _)| {
            let rest = &text[at + prefix.len()..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            (end > 0).then(|| &rest[..end])
        })
        .collect()
}

fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, edges, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut tops: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut siblings: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&root, file);
        let Some(top) = module.first().filter(|t| *t != "lib" && *t != "main") else { continue };
        let text = code(&std::fs::read_to_string(file).expect("read"));
        for used in names_after(&text, "crate::") {
            if used != top {
                tops.entry(top.clone()).or_default().insert(used.to_owned());
            }
        }
        // Files of one folder among themselves (`super::x` from a child, `crate::top::x`).
        if let Some(own) = module.get(1) {
            let me = format!("{top}/{own}");
            let mut used = names_after(&text, "super::");
            used.extend(names_after(&text, &format!("crate::{top}::")));
            for other in used {
                let sibling = files.iter().any(|f| module_of(&root, f) == [top.clone(), other.to_owned()]);
                if other != own && sibling {
                    siblings.entry(me.clone()).or_default().insert(format!("{top}/{other}"));
                }
            }
        }
    }
    assert!(!tops.is_empty() && !siblings.is_empty(), "the sources were read");
    assert_eq!(cycle(&tops), None, "an import cycle between modules: {tops:#?}");
    assert_eq!(cycle(&siblings), None, "an import cycle inside a folder: {siblings:#?}");
}
