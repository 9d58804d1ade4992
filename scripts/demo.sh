#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine (as root): install what is needed, build the
# optimised tree, run the demo. Extra arguments go to emissions-demo (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j2 --target emissions-demo
./build/release/examples/demo/emissions-demo "$@"
