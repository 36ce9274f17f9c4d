#!/usr/bin/env bash
# Builds every plugin from source into target/wasm32-wasip2/plugin/:
# - the Rust ones (examples and test plugins) as wasm32-wasip2 components: <crate_name>.wasm
# - plugins/pii-redact-js with componentize-js (npm):  pii_redact_js.wasm
# - plugins/rate-limit-py with componentize-py (PyPI): rate_limit_py.wasm
# - plugins/allowlist-c with clang + wasi-libc and warden-c-build: allowlist_c.wasm
# The JavaScript and Python ones are rebuilt only when their source or the WIT
# changed (a stamp beside the output), and skipped with a note when node,
# python3 or clang is missing (unless WARDEN_REQUIRE_NPM / _PY / _C is set).
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
out=target/wasm32-wasip2/plugin

# Whether $1 (an output) is older than the sources listed after it.
stale() {
    local output=$1 stamp
    shift
    stamp=$(cat "$@" wit/interceptor.wit | sha256sum | cut -d' ' -f1)
    if [ -f "$output" ] && [ "$(cat "$output.stamp" 2>/dev/null)" = "$stamp" ]; then
        return 1
    fi
    echo "$stamp" > "$output.stamp.next"
}
mark() { mv "$1.stamp.next" "$1.stamp"; }

if command -v npm >/dev/null 2>&1; then
    js=plugins/pii-redact-js
    if stale "$out/pii_redact_js.wasm" "$js/pii-redact.js" "$js/build.mjs" "$js/package-lock.json"; then
        echo "building $js with componentize-js" >&2
        npm ci --prefix "$js" --no-audit --no-fund --silent >&2
        node "$js/build.mjs" "$out/pii_redact_js.wasm"
        mark "$out/pii_redact_js.wasm"
    fi
elif [ -n "${WARDEN_REQUIRE_NPM:-}" ]; then
    echo "npm is missing and WARDEN_REQUIRE_NPM is set" >&2
    exit 1
else
    echo "npm not found: the JavaScript plugin is not built" >&2
fi

if command -v python3 >/dev/null 2>&1; then
    py=plugins/rate-limit-py
    if stale "$out/rate_limit_py.wasm" "$py/app.py"; then
        echo "building $py with componentize-py" >&2
        if [ ! -x target/componentize-py/bin/componentize-py ]; then
            python3 -m venv target/componentize-py
            target/componentize-py/bin/pip install --quiet --disable-pip-version-check 'componentize-py==0.25.1' >&2
        fi
        target/componentize-py/bin/componentize-py -d wit -w interceptor componentize -p "$py" app \
            -o "$out/rate_limit_py.wasm" >&2
        mark "$out/rate_limit_py.wasm"
    fi
elif [ -n "${WARDEN_REQUIRE_PY:-}" ]; then
    echo "python3 is missing and WARDEN_REQUIRE_PY is set" >&2
    exit 1
else
    echo "python3 not found: the Python plugin is not built" >&2
fi

if command -v clang >/dev/null 2>&1 && [ -d /usr/lib/wasm32-wasi ]; then
    c=plugins/allowlist-c
    if stale "$out/allowlist_c.wasm" "$c/allowlist.c" "$c/build.sh"; then
        echo "building $c with clang and warden-c-build" >&2
        cargo build --locked -p warden-c-build >&2
        "$c/build.sh" "$out/allowlist_c.wasm"
        mark "$out/allowlist_c.wasm"
    fi
elif [ -n "${WARDEN_REQUIRE_C:-}" ]; then
    echo "clang or wasi-libc is missing and WARDEN_REQUIRE_C is set" >&2
    exit 1
else
    echo "clang or wasi-libc not found: the C plugin is not built" >&2
fi
