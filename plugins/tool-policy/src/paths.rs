//! The forms of an argument value a rule is matched against.
//!
//! A server resolves `//etc/passwd`, `/tmp/../etc/passwd` or `/etc/./passwd`
//! to `/etc/passwd`, so a rule written as `/etc/**` must see that form too. A
//! rule denies when its pattern matches the value as sent *or* any form here:
//! extra forms can only add denials, never lift one, so a value that is not a
//! path (it has no separator and does not start with `~` or `.`) is matched as
//! it is.
//!
//! What a normal form does, lexically (no file system is consulted):
//! - `/` and `\` are both separators; repeated ones collapse, trailing ones go;
//! - `.` segments are dropped; `..` removes the segment before it and never
//!   climbs above `/` or a drive (`C:`), as the kernel resolves it;
//! - a relative or `~` path whose `..` climb above where it starts could end up
//!   anywhere, so it is also matched as if it had climbed to `/`
//!   (`../../etc/passwd` and `~/../../etc/passwd` as `/etc/passwd`);
//! - everything after a NUL is cut (the operating system never sees it);
//! - `%XX` escapes are decoded once, for servers that take URIs;
//! - a URI keeps its `scheme://authority` and has its path normalized; a
//!   `file:` URI is also matched as the bare path it names.

/// The value itself, then each distinct normal form of it.
pub fn forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_owned()];
    if !looks_like_path(value) {
        return forms;
    }
    let visible = value.split('\0').next().unwrap_or_default();
    let decoded = percent_decoded(visible);
    for candidate in [Some(visible), decoded.as_deref()].into_iter().flatten() {
        let (prefix, path, is_file) = split_uri(candidate);
        let normal = normalize(path);
        if let Some(through) = through_proc(&normal.path) {
            add(&mut forms, through);
        }
        add(&mut forms, format!("{prefix}{}", normal.path));
        if is_file {
            // `file:///etc/passwd?x` names `/etc/passwd`.
            add(&mut forms, normalize(path.split(['?', '#']).next().unwrap_or_default()).path);
        }
        if let Some(rooted) = normal.rooted {
            add(&mut forms, rooted);
        }
    }
    forms
}

/// Linux's `/proc/<pid>/root` is a link to that process's root and
/// `/proc/<pid>/cwd` to its working folder: `/proc/self/root/etc/passwd` is
/// `/etc/passwd`, and a path under `cwd` could be anywhere, so it is also
/// matched as if rooted there.
fn through_proc(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/proc/")?;
    let (process, rest) = rest.split_once('/')?;
    let is_process = matches!(process, "self" | "thread-self") || process.bytes().all(|b| b.is_ascii_digit());
    let below = rest.strip_prefix("root").or_else(|| rest.strip_prefix("cwd"))?;
    if !is_process || !(below.is_empty() || below.starts_with('/')) {
        return None;
    }
    Some(if below.is_empty() { "/".to_owned() } else { below.to_owned() })
}

fn add(forms: &mut Vec<String>, form: String) {
    if !forms.contains(&form) {
        forms.push(form);
    }
}

fn looks_like_path(value: &str) -> bool {
    value.contains(['/', '\\', '\0', '%']) || value.starts_with(['~', '.'])
}

/// A path in normal form, and for one that climbs above its start, where it
/// lands if the climb reached `/`.
struct Normal {
    path: String,
    rooted: Option<String>,
}

fn normalize(path: &str) -> Normal {
    let absolute = path.starts_with(['/', '\\']);
    let mut segments: Vec<&str> = Vec::new();
    // A first segment `~`/`~user` (a home) or `C:` (a drive) is never removed by `..`.
    let mut anchor: Option<&str> = None;
    let mut climbed_from = None;
    for (i, segment) in path.split(['/', '\\']).enumerate() {
        match segment {
            "" | "." => {}
            ".." => match segments.last() {
                Some(&top) if top != ".." => {
                    segments.pop();
                }
                // Above `/` or a drive is `/` or the drive itself.
                _ if absolute || anchor.is_some_and(is_drive) => {}
                _ => {
                    segments.push("..");
                    climbed_from = Some(segments.len());
                }
            },
            s if i == 0 && !absolute && (s.starts_with('~') || is_drive(s)) => anchor = Some(s),
            s => segments.push(s),
        }
    }
    let body = segments.join("/");
    let path = match (absolute, anchor) {
        (true, _) => format!("/{body}"),
        (false, Some(anchor)) if body.is_empty() => anchor.to_owned(),
        (false, Some(anchor)) => format!("{anchor}/{body}"),
        (false, None) if body.is_empty() => ".".to_owned(),
        (false, None) => body,
    };
    let rooted = climbed_from.map(|after| format!("/{}", segments[after..].join("/")));
    Normal { path, rooted }
}

fn is_drive(segment: &str) -> bool {
    let b = segment.as_bytes();
    b.len() == 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// `value` with its `%XX` escapes decoded, when it has any.
fn percent_decoded(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let mut changed = false;
    while i < bytes.len() {
        let escape = (bytes[i] == b'%').then(|| Some((hex(*bytes.get(i + 1)?)?, hex(*bytes.get(i + 2)?)?))).flatten();
        match escape {
            Some((hi, lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                changed = true;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    changed.then(|| {
        let text = String::from_utf8_lossy(&out);
        text.split('\0').next().unwrap_or_default().to_owned()
    })
}

/// Splits `scheme://authority` (or `scheme:`) off a URI: (prefix, path, is a `file:` URI).
/// A value without a scheme is all path.
fn split_uri(value: &str) -> (&str, &str, bool) {
    let Some(colon) = value.find(':') else { return ("", value, false) };
    let scheme = &value[..colon];
    let is_scheme = scheme.len() > 1 // `C:` is a drive, not a scheme
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_scheme {
        return ("", value, false);
    }
    let rest = &value[colon + 1..];
    let split = match rest.strip_prefix("//") {
        Some(after) => colon + 3 + after.find(['/', '\\']).unwrap_or(after.len()),
        None => colon + 1,
    };
    (&value[..split], &value[split..], scheme.eq_ignore_ascii_case("file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(value: &str, form: &str) -> bool {
        forms(value).iter().any(|f| f == form)
    }

    #[test]
    fn proc_links_to_a_root_are_followed() {
        assert!(has("/proc/self/root/etc/passwd", "/etc/passwd"));
        assert!(has("/proc/1/root/etc/shadow", "/etc/shadow"));
        assert!(has("/proc/thread-self/cwd/etc/x", "/etc/x"));
        assert!(!has("/proc/self/rootless/etc/x", "/etc/x"));
    }

    #[test]
    fn tricks_on_absolute_paths_resolve_to_the_real_path() {
        for trick in [
            "//etc/passwd",
            "/./etc/passwd",
            "/tmp/../etc/passwd",
            "/etc//passwd",
            "/etc/./passwd",
            "/etc/passwd/",
            "/etc/passwd//.",
            "/../../etc/passwd",
            "\\etc\\passwd",
            "/etc/passwd\0.txt",
            "/etc/%70asswd",
            "/tmp%2f..%2fetc/passwd",
            "file:///etc/passwd",
            "FILE://localhost/tmp/../etc/passwd",
        ] {
            assert!(has(trick, "/etc/passwd"), "{trick:?}: {:?}", forms(trick));
        }
    }

    #[test]
    fn climbing_out_of_a_relative_or_home_path_may_reach_the_root() {
        assert!(has("../../etc/passwd", "/etc/passwd"));
        assert!(has("a/../../etc/shadow", "/etc/shadow"));
        assert!(has("~/../../etc/passwd", "/etc/passwd"));
        assert!(has("~/.ssh/../.ssh/id_rsa", "~/.ssh/id_rsa"));
        assert!(!has("a/b/../c", "/c"), "no climb, no rooted form: {:?}", forms("a/b/../c"));
        assert!(has("a/b/../c", "a/c"));
    }

    #[test]
    fn drives_and_uris_keep_their_anchor() {
        assert!(has("C:\\Windows\\..\\..\\Windows\\System32", "C:/Windows/System32"));
        assert!(has("https://host//a/../b", "https://host/b"));
        assert!(!has("https://host/etc/passwd", "/etc/passwd"), "only file: URIs name a local path");
    }

    #[test]
    fn values_that_are_not_paths_are_left_as_they_are() {
        for plain in ["hello world", "delete_repo", "a.b.c", "", "x:y"] {
            assert_eq!(forms(plain), vec![plain.to_owned()], "{plain:?}");
        }
        assert_eq!(forms("/tmp/notes.txt"), vec!["/tmp/notes.txt".to_owned()]);
        assert!(has(".", "."));
        assert!(has("/", "/"));
    }
}
