#!/usr/bin/env bash
# Sets everything up (wasm target, plugins, proxy) and shows Warden at work in
# front of a real MCP server: an allowed call, denied calls, a hidden tool, a
# redacted secret, and the audit lines it wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-plugins.sh >&2
cargo build --locked --workspace --exclude misbehave --exclude wit-0-1 --bins >&2

demo=target/demo
rm -rf "$demo" && mkdir -p "$demo/plugins"
for plugin in audit-log:00 tool-policy:10 secret-redact:20; do
    name=${plugin%%:*} order=${plugin##*:}
    cp "target/wasm32-wasip2/plugin/${name//-/_}.wasm" "$demo/plugins/$order-$name.wasm"
    cp "plugins/$name/sample.toml" "$demo/plugins/$order-$name.toml"
done
echo "plugins folder: $demo/plugins" >&2
ls "$demo/plugins" >&2
target/debug/demo-client target/debug/warden "$demo/plugins" "$demo/audit.jsonl" target/debug/mcp-fixture
