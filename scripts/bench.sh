#!/usr/bin/env bash
# The relay benchmark (release build): direct vs byte relay vs Warden with
# no, idle and the example plugins; 100 B and 1 MiB; latency and pipelined.
#
# It runs twice. First with every process on one core (`taskset -c 1`): a round
# trip is then the sum of the work each process does, with no cross-core
# wake-ups, and the figures repeat to within a few percent from run to run, so
# this is the run that shows what Warden adds. Then on both cores, as a client
# would run it: closer to real use, but on a small virtual machine the idle
# states and wake-ups of two cores move medians by ±20 µs from run to run.
set -euo pipefail
cd "$(dirname "$0")/.."
# Nothing here reads stdin; /dev/null is emptied for cargo's rustc probe
# (on this machine it is a regular file: see scripts/test.sh).
exec < <(:)
if [ -f /dev/null ]; then : > /dev/null; fi
scripts/build-plugins.sh >&2
cargo build --locked --release -p warden >&2
cargo bench --locked -p warden-tests --bench relay --no-run >&2
echo "### One core (taskset -c 1)"
taskset -c 1 cargo bench --locked -p warden-tests --bench relay -- "$@"
echo
echo "### Two cores"
cargo bench --locked -p warden-tests --bench relay -- "$@"
echo
# The HTTP bench also fronts a server on the official TypeScript SDK (the conformance upstream).
if [ ! -d tests/conformance/node_modules/@modelcontextprotocol/sdk ] && command -v npm >/dev/null; then
    npm ci --prefix tests/conformance --no-audit --no-fund --silent >&2
fi
echo "### HTTP paths (two cores)"
cargo bench --locked -p warden-tests --bench http
echo
echo "### Plugin reloads"
cargo bench --locked -p warden-tests --bench reload
echo
echo "### Plugin languages (one core: per-message figures repeat; cold loads compile on one core)"
taskset -c 1 cargo bench --locked -p warden-tests --bench languages
