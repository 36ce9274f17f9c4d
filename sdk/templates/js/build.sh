#!/usr/bin/env bash
# Builds {{name}}.wasm (needs Node.js 20+ and npm).
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules ] || npm install --no-audit --no-fund --silent
node build.mjs
echo "built {{name}}.wasm: copy it (and a {{name}}.toml) into Warden's plugins folder" >&2
