#!/usr/bin/env bash
# Builds allowlist.wasm: ./build.sh [OUT]
# Needs clang, lld and wasi-libc (Debian: apt-get install clang lld wasi-libc
# libclang-rt-dev-wasm32) and warden-c-build (cargo build -p warden-c-build).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$here/../..
out=${1:-$here/allowlist.wasm}
tool=${WARDEN_C_BUILD:-$root/target/debug/warden-c-build}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$tool" bindings "$root/wit" "$work"
clang --target=wasm32-wasi -O2 -mexec-model=reactor -Wall -Werror -Wno-unused-parameter \
    -I"$work" -o "$work/core.wasm" \
    "$here/allowlist.c" "$work/interceptor.c" "$work/interceptor_component_type.o"
"$tool" component "$work/core.wasm" "$out"
echo "wrote $out ($(wc -c < "$out") bytes)" >&2
