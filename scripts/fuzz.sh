#!/usr/bin/env bash
# Fuzzes the spool's decoders for SECONDS (default 60): configures a clang build with
# libFuzzer, ASan and UBSan in build/fuzz (EMISSIONS_FUZZ_BUILD_DIR overrides it), builds
# emissions_spool_decode_fuzz and runs it over a scratch copy of the seed corpus
# (tests/fuzz/corpus/spool_decode/; nothing new is written into the repo). Fails on any
# crash, leak, sanitizer report, timeout or out-of-memory; the input that caused it is
# kept as build/fuzz/artifacts/<kind>-<sha1> (reproduce: run the fuzz binary on that file).
#
#   bash scripts/fuzz.sh        # 60 s
#   bash scripts/fuzz.sh 600
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
build="${EMISSIONS_FUZZ_BUILD_DIR:-build/fuzz}"

echo "=== fuzz: configure and build ($build)"
cmake -S . -B "$build" -G Ninja \
  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DEMISSIONS_BUILD_FUZZ=ON -DEMISSIONS_SANITIZE="address;undefined" \
  -DEMISSIONS_BUILD_TESTS=OFF -DEMISSIONS_BUILD_BENCH=OFF -DEMISSIONS_BUILD_EXAMPLES=OFF \
  -DEMISSIONS_BUILD_TESTING_LIB=OFF -DEMISSIONS_INSTALL=OFF >/dev/null
cmake --build "$build" -j2 --target emissions_spool_decode_fuzz

corpus="$(mktemp -d)"
trap 'rm -rf "$corpus"' EXIT
cp tests/fuzz/corpus/spool_decode/* "$corpus/"
mkdir -p "$build/artifacts"

echo "=== fuzz: spool decoders for ${seconds} s"
"$build/tests/fuzz/emissions_spool_decode_fuzz" "$corpus" \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$build/artifacts/"
echo "fuzz: ${seconds} s without a crash"
