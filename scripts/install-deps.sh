#!/usr/bin/env bash
# Installs the build and test dependencies from Debian 12's packages. Run as root.
# clang and libclang-rt-14-dev (libFuzzer's runtime, only recommended by clang) are for
# scripts/fuzz.sh. librdkafka-dev (librdkafka 2.0.2, with its mock cluster's header) is for
# the Kafka integration, which the presets build with EMISSIONS_WITH_KAFKA=ON.
# libcurl4-openssl-dev and libssl-dev are for the webhooks integration
# (EMISSIONS_WITH_WEBHOOKS=ON); its tests also use libnghttp2-dev (an HTTP/2 server) and the
# openssl command (certificates, an independent HMAC).
# libpq-dev and libpqxx-dev (6.4) are for the PostgreSQL outbox (EMISSIONS_WITH_POSTGRES=ON);
# postgresql-15 is the server its tests start themselves (integrations/postgres/tests/pg_cluster.sh).
# The HTTP integration (EMISSIONS_WITH_HTTP=ON): libboost-dev (Beast, header-only);
# libcpp-httplib-dev, prometheus (promtool), chromium, Node.js and puppeteer-core (npm ci
# from integrations/http/tests/browser/package-lock.json) for its tests.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  build-essential cmake ninja-build git ca-certificates pkg-config \
  nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev \
  clang-format doxygen clang libclang-rt-14-dev librdkafka-dev \
  libcurl4-openssl-dev libssl-dev libnghttp2-dev openssl \
  libpq-dev libpqxx-dev postgresql-15 \
  libboost-dev libcpp-httplib-dev prometheus chromium >/dev/null
command -v npm >/dev/null || apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
# puppeteer-core drives the Chromium above; it downloads no browser of its own.
npm ci --prefix "$(dirname "$0")/../integrations/http/tests/browser" --ignore-scripts \
  --no-audit --no-fund >/dev/null
echo "dependencies installed"
