#!/usr/bin/env bash
# Packaging test, as a user: install the library, then build consumer projects against it
# with find_package(emissions) (examples/ and a gtest consumer of emissions::testing), and
# one that pulls the source tree in with add_subdirectory(). Runs each consumer.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cmake -S "$root" -B "$work/lib" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DEMISSIONS_BUILD_TESTS=OFF -DEMISSIONS_BUILD_BENCH=OFF -DEMISSIONS_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$work/lib" -j2
cmake --install "$work/lib" --prefix "$work/prefix" >/dev/null

# 1. examples/ built on its own against the installed tree.
cmake -S "$root/examples" -B "$work/examples" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/examples" -j2
"$work/examples/example_quickstart" >/dev/null
echo "package: examples built against the installed package and quickstart ran"

# 2. A consumer using the installed test helpers.
cmake -S "$root/tests/package/testing_consumer" -B "$work/testing_consumer" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/testing_consumer" -j2
"$work/testing_consumer/consumer_test"
echo "package: emissions::testing consumer passed"

# 3. add_subdirectory() of the source tree.
cmake -S "$root/tests/package/subdirectory_consumer" -B "$work/subdir" -G Ninja \
  -DEMISSIONS_SOURCE_DIR="$root" >/dev/null
cmake --build "$work/subdir" -j2
"$work/subdir/subdir_consumer"
echo "package: add_subdirectory consumer ran"
