//! Built against the frozen `warden:interceptor@0.1.0` contract with
//! wit-bindgen directly, as a plugin released before 0.2.0 was. It denies the
//! tools named in its config (a JSON array of names), logs through the 0.1.0
//! `log` import and counts its denials in the 0.1.0 `state` import.

wit_bindgen::generate!({
    world: "interceptor",
    path: "../../../wit/frozen/v0.1.0",
});

use std::cell::RefCell;

use warden::interceptor::types::RpcError;
use warden::interceptor::{log, state};

thread_local! {
    static DENIED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

struct Plugin;

impl Guest for Plugin {
    fn init(config: String) -> Result<Registration, String> {
        // `{"deny": ["a", "b"]}`, parsed by hand to keep the component small.
        let names: Vec<String> =
            config.split('"').skip(1).step_by(2).filter(|s| *s != "deny").map(str::to_owned).collect();
        DENIED.with(|d| *d.borrow_mut() = names);
        Ok(Registration { requests: vec!["tools/call".into()], responses: Vec::new() })
    }

    fn on_request(ctx: Context, _message: String) -> Verdict {
        let tool = ctx.tool.unwrap_or_default();
        if !DENIED.with(|d| d.borrow().contains(&tool)) {
            return Verdict::Forward;
        }
        let count = state::increment("denials", 1, None);
        log::write(log::Level::Info, &format!("denied {tool} ({count} so far)"));
        Verdict::Reject(RpcError {
            code: -32001,
            message: format!("{tool} is denied by a plugin built for warden:interceptor@0.1.0 (denial #{count})"),
            data: None,
        })
    }

    fn on_response(_ctx: Context, _message: String) -> Verdict {
        Verdict::Forward
    }
}

export!(Plugin);
