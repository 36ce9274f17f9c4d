#!/usr/bin/env bash
# Runs every test: builds the plugins and the proxy, installs the official
# reference server from npm (when npm is present), then `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-plugins.sh
# The same package selection for build and test, so dependencies are built once.
cargo build --locked --workspace --exclude misbehave --bins
if command -v npm >/dev/null 2>&1; then
    if [ ! -x target/npm/node_modules/.bin/mcp-server-everything ]; then
        mkdir -p target/npm
        npm install --prefix target/npm --no-audit --no-fund --silent \
            @modelcontextprotocol/server-everything@2026.8.31 >&2
    fi
else
    echo "npm not found: the test against @modelcontextprotocol/server-everything is skipped" >&2
fi
cargo test --locked --workspace --exclude misbehave "$@"
