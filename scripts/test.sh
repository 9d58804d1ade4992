#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine (as root): installs what is needed,
# checks formatting and the API reference (doxygen), then builds and runs the tests in
# three configurations (Debug with warnings as errors, ASan+UBSan, TSan), fuzzes the spool's
# decoders for 60 s (scripts/fuzz.sh), and builds the examples against an installed package
# as a user would (and stops the demo with Ctrl-C).
# CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
# Each stage prints how long it took and the time so far: CI must stay under 60 minutes.
stage_start=$SECONDS
stage_done() {
  echo "=== $1: done in $((SECONDS - stage_start)) s ($((SECONDS / 60)) min so far)"
  stage_start=$SECONDS
}
bash scripts/install-deps.sh
stage_done install
bash scripts/check-format.sh
bash scripts/check-docs.sh
stage_done "format and docs"
for preset in dev asan tsan; do
  echo "=== $preset: build"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j2
  stage_done "$preset build"
  echo "=== $preset: test"
  ctest --preset "$preset"
  stage_done "$preset test"
done
echo "=== fuzz: the spool decoders, 60 s (clang, libFuzzer, ASan+UBSan)"
bash scripts/fuzz.sh 60
stage_done fuzz
echo "=== package: install, then build examples/ against the installed tree"
bash tests/package/run.sh
stage_done package
echo "all test stages passed"
