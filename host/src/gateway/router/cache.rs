//! The session's merged lists, kept between `list_changed`s: a `tools/list`
//! (or any list) asked again is answered at once, without asking the
//! upstreams. Only a list every contributing upstream promised to announce
//! changes of (`listChanged`) is kept; any `list_changed` for it (from an
//! upstream, or the gateway's own when upstreams come and go), a reload and
//! a changed pin let it go.

use super::*;

/// Most list pages one session keeps.
const MAX_PAGES: usize = 64;

/// Merged list results by method and the client's cursor, and how many
/// times they were let go of (a list asked before a `list_changed` and
/// answered after it is not kept).
#[derive(Default)]
pub(super) struct Lists(std::sync::Mutex<HashMap<(String, Option<String>), Value>>, std::sync::atomic::AtomicU64);

impl Lists {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Option<String>), Value>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many times lists were let go of so far.
    pub(super) fn generation(&self) -> u64 {
        self.1.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The page kept for `method` at `cursor`.
    pub(super) fn get(&self, method: &str, cursor: Option<&str>) -> Option<Value> {
        self.lock().get(&(method.to_owned(), cursor.map(str::to_owned))).cloned()
    }

    /// Keeps a page asked for at `generation` (unless lists were let go of
    /// since, or [`MAX_PAGES`] are kept).
    pub(super) fn keep(&self, method: &str, cursor: Option<String>, page: &Value, generation: u64) {
        let mut lists = self.lock();
        if lists.len() < MAX_PAGES && self.generation() == generation {
            lists.insert((method.to_owned(), cursor), page.clone());
        }
    }

    /// Lets go of the lists of `capability` (`tools`, `prompts`, `resources`), or all.
    pub(super) fn forget(&self, capability: Option<&str>) {
        let mut lists = self.lock();
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match capability {
            None => lists.clear(),
            Some(capability) => lists.retain(|(method, _), _| merge::capability_of(method) != Some(capability)),
        }
    }
}

impl Router {
    /// Whether the merged answer to `method` from these lanes may be kept:
    /// each promised `listChanged` for it.
    pub(super) fn keepable(&self, method: &str, lanes: &[usize]) -> bool {
        let Some(capability) = merge::capability_of(method) else { return false };
        !lanes.is_empty()
            && lanes.iter().all(|&l| {
                self.upstreams[l].introduced.as_ref().is_some_and(|intro| {
                    intro.capabilities.get(capability).and_then(|c| c.get("listChanged")) == Some(&Value::Bool(true))
                })
            })
    }

    /// A `list_changed` going to the client: what it names is no longer kept.
    pub(super) fn heard_list_changed(&self, method: &str) {
        let capability = method.strip_prefix("notifications/").and_then(|m| m.strip_suffix("/list_changed"));
        if let Some(capability) = capability {
            self.lists.forget(Some(capability));
        }
    }
}
