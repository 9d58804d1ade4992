#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine (as root): install what is needed, build the
# optimised tree, run the demo. Extra arguments go to emissions-demo (try --help).
#
# It builds what `cmake --install build/release` installs (the library, the test helpers
# and the integrations the presets turn on) besides the demo, so the README's install
# command works right after it. The demo's JSON-lines output goes to build/release/ unless
# --out says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j2 --target emissions emissions_testing emissions_kafka \
  emissions_webhooks emissions_postgres emissions_http emissions-demo
exec ./build/release/examples/demo/emissions-demo --out build/release/emissions-demo.jsonl "$@"
