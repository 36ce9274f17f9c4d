#!/usr/bin/env bash
# Builds {{name}}.wasm (needs Python 3.10+; installs componentize-py in .venv).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/componentize-py ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet componentize-py==0.25.1
fi
.venv/bin/componentize-py -d wit -w interceptor componentize -p . app -o {{name}}.wasm
echo "built {{name}}.wasm: copy it (and a {{name}}.toml) into Warden's plugins folder" >&2
