#!/usr/bin/env bash
# Builds {{name}}.wasm (needs clang, lld, wasi-libc and warden-c-build).
set -euo pipefail
cd "$(dirname "$0")"
tool=${WARDEN_C_BUILD:-{{c_build}}}
mkdir -p gen
"$tool" bindings wit gen
clang --target=wasm32-wasi -O2 -mexec-model=reactor -Igen -o gen/core.wasm plugin.c gen/interceptor.c gen/interceptor_component_type.o
"$tool" component gen/core.wasm {{name}}.wasm
echo "built {{name}}.wasm: copy it (and a {{name}}.toml) into Warden's plugins folder" >&2
