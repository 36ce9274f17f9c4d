#!/usr/bin/env bash
# Runs every test: builds the plugins and the proxy, installs the official
# reference server from npm and the official Python SDK from PyPI (when npm and
# python3 are present), then `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
# On this machine /dev/null is a regular file that keeps what is written to
# it, and cargo's rustc probe reads /dev/null as its source: empty it before
# each cargo run (a real /dev/null is left as it is). Nothing here reads stdin.
exec < <(:)
empty_dev_null() { if [ -f /dev/null ]; then : > /dev/null; fi; }
empty_dev_null
scripts/build-plugins.sh
# The same package selection for build and test, so dependencies are built once.
cargo build --locked --workspace --exclude misbehave --exclude wit-0-1 --bins
if command -v npm >/dev/null 2>&1; then
    if [ ! -x target/npm/node_modules/.bin/mcp-server-everything ]; then
        mkdir -p target/npm
        npm install --prefix target/npm --no-audit --no-fund --silent \
            @modelcontextprotocol/server-everything@2026.8.31 >&2
    fi
    # The conformance suite and the SDK its upstream fixture is written on (package-lock.json).
    if [ ! -d tests/conformance/node_modules/@modelcontextprotocol/conformance ]; then
        npm ci --prefix tests/conformance --no-audit --no-fund --silent >&2
    fi
    # A real OpenID provider for the OAuth resource server's tests (package-lock.json).
    if [ ! -d tests/oidc/node_modules/oidc-provider ]; then
        npm ci --prefix tests/oidc --no-audit --no-fund --silent >&2
    fi
else
    echo "npm not found: the tests against @modelcontextprotocol/server-everything and the conformance suite are skipped" >&2
fi
if command -v python3 >/dev/null 2>&1; then
    if [ ! -x target/py/bin/python ] || ! target/py/bin/python -c 'import mcp' 2>/dev/null; then
        python3 -m venv target/py
        target/py/bin/pip install --quiet --disable-pip-version-check 'mcp==2.3.0' >&2
    fi
else
    echo "python3 not found: the tests with the official Python SDK client are skipped" >&2
fi
# Every plugin is precompiled into the tests' cache once, before the tests
# (which then load them in milliseconds) rather than inside a test's patience:
# the JavaScript and Python ones are 12-18 MB components that take seconds to
# compile, tool-policy and secret-redact seconds more on a busy machine. A
# plugin whose init refuses to start without its config is still compiled
# and cached, so a refusal here is not an error.
for plugin in target/wasm32-wasip2/plugin/*.wasm; do
    target/debug/warden plugin check "$plugin" --cache-dir target/warden-test-cache >/dev/null 2>&1 || true
done
empty_dev_null
cargo test --locked --workspace --exclude misbehave --exclude wit-0-1 "$@"
