//! {{name}}: a Warden plugin. It denies the tools named in its config and
//! forwards everything else. Build: ./build.sh
use warden_sdk::{export_plugin, mcp, Config, Context, Interest, Plugin, Verdict};

struct Denylist {
    deny: Vec<String>,
}

impl Plugin for Denylist {
    fn init(config: Config) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Settings {
            #[serde(default)]
            deny: Vec<String>,
        }
        let settings: Settings = config.parse()?;
        Ok(Denylist { deny: settings.deny })
    }

    // Calls from the client, decided on the tool name in the context alone:
    // Warden hands this hook no message text.
    fn requests(&self) -> Interest {
        Interest::new(vec!["tools/call".into()]).from_client().context_only()
    }

    // No answers: Warden never calls on_response.
    fn responses(&self) -> Interest {
        Interest::new(Vec::new())
    }

    fn on_request(&mut self, ctx: &Context, _message: &str) -> Verdict {
        match &ctx.tool {
            Some(tool) if self.deny.contains(tool) => mcp::deny(format!("{tool} is denied by {{name}}")),
            _ => Verdict::Forward,
        }
    }
}

export_plugin!(Denylist);
