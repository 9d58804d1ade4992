#!/usr/bin/env bash
# The spool's crash harness with N kills (default 50): a child commits from 4 threads and
# is killed with SIGKILL at random moments, restarted on the same spool, and finally
# drained; the history checker then verifies that nothing acknowledged was lost, nothing
# appeared that was not committed, no commit was delivered in part, order per adapter held,
# and duplicates stayed within their bound (docs/SPOOL.md). CI runs 10 kills (ctest).
#   scripts/crash-test.sh [N] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
kills="${1:-50}"
build="${EMISSIONS_CRASH_BUILD_DIR:-build/dev}"
if [ ! -d "$build" ]; then cmake --preset dev >/dev/null; fi
cmake --build "$build" --target emissions_spool_crash -j2
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
"$build/tests/emissions_spool_crash" run "$dir/spool" "$kills" ${2:+"$2"}
