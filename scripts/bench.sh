#!/usr/bin/env bash
# The relay benchmark (release build): direct vs byte relay vs Warden with
# no, idle and the example plugins; 100 B and 1 MiB; latency and pipelined.
set -euo pipefail
cd "$(dirname "$0")/.."
# Nothing here reads stdin; a stray stdin once leaked into cargo's rustc probe.
exec < /dev/null
scripts/build-plugins.sh >&2
cargo build --locked --release -p warden >&2
cargo bench --locked -p warden-tests --bench relay
