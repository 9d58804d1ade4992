#!/usr/bin/env bash
# Installs the build and test dependencies from Debian 12's packages. Run as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  build-essential cmake ninja-build git ca-certificates pkg-config \
  nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev \
  clang-format doxygen >/dev/null
echo "dependencies installed"
