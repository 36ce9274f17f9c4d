#!/usr/bin/env bash
# Builds every Rust plugin (examples and test plugins) as a wasm32-wasip2 component.
# Output: target/wasm32-wasip2/plugin/<crate_name>.wasm
set -euo pipefail
cd "$(dirname "$0")/.."
# Nothing here reads stdin; /dev/null is emptied for cargo's rustc probe
# (on this machine it is a regular file: see scripts/test.sh).
exec < <(:)
if [ -f /dev/null ]; then : > /dev/null; fi
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "installing the wasm32-wasip2 target" >&2
    rustup target add wasm32-wasip2
fi
cargo build --locked --target wasm32-wasip2 --profile plugin \
    -p tool-policy -p secret-redact -p audit-log -p misbehave -p wit-0-1
