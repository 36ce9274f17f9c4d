//! Tasks (2025-11-25): a task lives at the upstream that created it. The
//! client knows it as `<upstream>:<its id>` (upstream names have no `:`),
//! so two upstreams' ids cannot collide and `tasks/get`, `tasks/result` and
//! `tasks/cancel` go back to the upstream that made it under the id it gave.
//! Only ids the session was given are taken: a forged one never reaches an
//! upstream (nor one this endpoint does not serve).

use super::*;

/// Where a task id appears in an answer: `result.taskId` (a task's state),
/// `result.task.taskId` (a task just created), and the related-task `_meta`
/// of `tasks/result`.
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// Most task ids one session remembers having given.
const MAX_TASKS: usize = 10_000;

impl Router {
    /// The upstream a client's task id is for, and the id it gave.
    pub(super) fn task_lane(&self, task: &str) -> Option<(usize, String)> {
        if !self.tasks_given.contains(task) {
            return None;
        }
        let (name, inner) = task.split_once(':')?;
        let lane = *self.by_name.get(name)?;
        (!self.upstreams[lane].removed).then(|| (lane, inner.to_owned()))
    }

    /// `inner`, an id of `lane`'s upstream, as the client knows it.
    fn task_id(&self, lane: usize, inner: &str) -> String {
        format!("{}:{inner}", self.upstreams[lane].name)
    }

    /// An answer of `lane`'s with every task id it carries renamed for the
    /// client; the answer as it is when it carries none.
    pub(super) fn tasks_out(&mut self, lane: usize, answer: &[u8]) -> Option<Bytes> {
        memchr::memmem::find(answer, b"taskId")?;
        let mut f = rewrite::fields(answer)?;
        let mut result = rewrite::nested(&f, "result")?;
        let mut changed = self.rename(lane, &mut result);
        if let Some(mut task) = rewrite::nested(&result, "task") {
            if self.rename(lane, &mut task) {
                rewrite::set_object(&mut result, "task", &task);
                changed = true;
            }
        }
        if let Some(mut meta) = rewrite::nested(&result, "_meta") {
            if let Some(mut related) = rewrite::nested(&meta, RELATED_TASK) {
                if self.rename(lane, &mut related) {
                    rewrite::set_object(&mut meta, RELATED_TASK, &related);
                    rewrite::set_object(&mut result, "_meta", &meta);
                    changed = true;
                }
            }
        }
        changed.then(|| {
            rewrite::set_object(&mut f, "result", &result);
            rewrite::to_bytes(&f)
        })
    }

    /// `notifications/tasks/status` of `lane`'s, its task id renamed.
    pub(super) fn task_status_out(&mut self, lane: usize, raw: &[u8]) -> Option<Bytes> {
        let mut f = rewrite::fields(raw)?;
        let mut params = rewrite::nested(&f, "params")?;
        if !self.rename(lane, &mut params) {
            return None;
        }
        rewrite::set_object(&mut f, "params", &params);
        Some(rewrite::to_bytes(&f))
    }

    /// The items of a `tasks/list` page of `lane`'s, renamed.
    pub(super) fn tasks_listed(&mut self, lane: usize, items: &mut [rewrite::Fields]) {
        for item in items {
            self.rename(lane, item);
        }
    }

    /// Renames `taskId` in `f`, if it has a string one.
    fn rename(&mut self, lane: usize, f: &mut rewrite::Fields) -> bool {
        let Some(inner) = rewrite::string(f, "taskId") else { return false };
        let id = self.task_id(lane, &inner);
        if self.tasks_given.len() < MAX_TASKS {
            self.tasks_given.insert(id.clone());
        } else if !self.tasks_given.contains(&id) {
            tracing::warn!("the session's task ids are full; a task cannot be asked about");
        }
        rewrite::set(f, "taskId", &id);
        true
    }
}
