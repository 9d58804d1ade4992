#!/usr/bin/env bash
# Installs the build and test dependencies from Debian 12's packages. Run as root.
# clang and libclang-rt-14-dev (libFuzzer's runtime, only recommended by clang) are for
# scripts/fuzz.sh. librdkafka-dev (librdkafka 2.0.2, with its mock cluster's header) is for
# the Kafka integration, which the presets build with EMISSIONS_WITH_KAFKA=ON.
# libcurl4-openssl-dev and libssl-dev are for the webhooks integration
# (EMISSIONS_WITH_WEBHOOKS=ON); its tests also use libnghttp2-dev (an HTTP/2 server) and the
# openssl command (certificates, an independent HMAC).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  build-essential cmake ninja-build git ca-certificates pkg-config \
  nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev \
  clang-format doxygen clang libclang-rt-14-dev librdkafka-dev \
  libcurl4-openssl-dev libssl-dev libnghttp2-dev openssl >/dev/null
echo "dependencies installed"
