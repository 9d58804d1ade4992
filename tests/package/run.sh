#!/usr/bin/env bash
# Packaging test, as a user: install the library into a temporary prefix, then build
# consumers against it and run them:
#   1. examples/ with find_package(emissions), GoogleTest hidden: the core needs no GTest;
#      then the demo built there is stopped with SIGINT (tests/demo/sigint.sh);
#   2. examples/quickstart.cpp with g++ and pkg-config, -Wall -Wextra -Werror, and the
#      README's quick start is that file;
#   3. a gtest consumer with find_package(emissions COMPONENTS testing), a Kafka consumer
#      with COMPONENTS kafka (no installed header includes librdkafka) and a webhooks
#      consumer with COMPONENTS webhooks (no installed header includes libcurl or OpenSSL);
#      then adversarial programs (tests/package/adversarial_consumer): static destruction
#      with work in flight to endpoints that never answer, and verify() on hostile input;
#      then an Emitter with a spool and an adapter that never settles, destroyed at exit
#      and made again on the same directory;
#   3b. the http component: examples/http, built in step 1 against the installed tree (Boost
#      and cpp-httplib found there), run; no installed header includes Boost or httplib.h
#      but emissions/http/beast.hpp and emissions/http/httplib.hpp;
#   4. find_package errors: an unknown component, testing without GoogleTest, kafka without
#      librdkafka, kafka from a tree installed without it, and webhooks without libcurl;
#   5. add_subdirectory() of the source tree;
#   6. the PostgreSQL outbox example with COMPONENTS postgres, run against a throw-away
#      PostgreSQL 15 (integrations/postgres/tests/pg_cluster.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cmake -S "$root" -B "$work/lib" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DEMISSIONS_BUILD_TESTS=OFF -DEMISSIONS_BUILD_BENCH=OFF -DEMISSIONS_BUILD_EXAMPLES=OFF \
  -DEMISSIONS_WITH_KAFKA=ON -DEMISSIONS_WITH_WEBHOOKS=ON -DEMISSIONS_WITH_POSTGRES=ON \
  -DEMISSIONS_WITH_HTTP=ON >/dev/null
cmake --build "$work/lib" -j2
cmake --install "$work/lib" --prefix "$work/prefix" >/dev/null
prefix="$work/prefix"

# 1. examples/ built on its own against the installed tree, with GoogleTest out of reach.
cmake -S "$root/examples" -B "$work/examples" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON >/dev/null
cmake --build "$work/examples" -j2
for example in "$work"/examples/example_*; do
  (cd "$work" && "$example" >/dev/null) || { echo "package: $(basename "$example") failed"; exit 1; }
done
echo "package: examples built against the installed package (no GoogleTest) and each ran"
# The demo just built (Release): Ctrl-C prints the partial summary and exits 130.
bash "$root/tests/demo/sigint.sh" "$work/examples/demo/emissions-demo"

# 2. pkg-config, and the README's quick start.
pc="$(find "$prefix" -name emissions.pc -path '*/pkgconfig/*')"
[ -n "$pc" ] || { echo "package: emissions.pc was not installed" >&2; exit 1; }
export PKG_CONFIG_PATH="$(dirname "$pc")"
# shellcheck disable=SC2046  # pkg-config prints several flags, split on purpose
g++ -std=c++20 -Wall -Wextra -Werror -o "$work/quickstart_pc" "$root/examples/quickstart.cpp" \
  $(pkg-config --cflags --libs emissions)
"$work/quickstart_pc" >"$work/quickstart.out"
grep -q '"name":"order_created"' "$work/quickstart.out" ||
  { echo "package: quickstart printed no order_created event" >&2; exit 1; }
# The README's first C++ block is examples/quickstart.cpp from its first #include on.
awk '/^```cpp$/ && !seen { inside = 1; seen = 1; next } inside && /^```$/ { exit } inside' \
  "$root/README.md" >"$work/readme_quickstart.cpp"
sed -n '/^#include/,$p' "$root/examples/quickstart.cpp" >"$work/example_quickstart.cpp"
if ! diff -u "$work/readme_quickstart.cpp" "$work/example_quickstart.cpp"; then
  echo "package: README's quick start differs from examples/quickstart.cpp (diff above)" >&2
  exit 1
fi
echo "package: pkg-config build of quickstart.cpp (-Wall -Wextra -Werror) ran; README matches it"

# 3. A consumer using the installed test helpers.
cmake -S "$root/tests/package/testing_consumer" -B "$work/testing_consumer" -G Ninja \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/testing_consumer" -j2
"$work/testing_consumer/consumer_test"
echo "package: emissions::testing consumer passed"

# The Kafka component: librdkafka stays behind emissions::kafka.
if grep -rlE '#[[:space:]]*include[[:space:]]*[<"]librdkafka/|rd_kafka_' "$prefix/include"; then
  echo "package: an installed header (above) includes or uses librdkafka" >&2
  exit 1
fi
cmake -S "$root/tests/package/kafka_consumer" -B "$work/kafka_consumer" -G Ninja \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/kafka_consumer" -j2
"$work/kafka_consumer/kafka_consumer"
echo "package: emissions::kafka consumer passed; no installed header includes librdkafka"

# The webhooks component: libcurl and OpenSSL stay behind emissions::webhooks.
if grep -rlE '#[[:space:]]*include[[:space:]]*[<"](curl|openssl)/|curl_easy_|EVP_' "$prefix/include"; then
  echo "package: an installed header (above) includes or uses libcurl or OpenSSL" >&2
  exit 1
fi
cmake -S "$root/tests/package/webhooks_consumer" -B "$work/webhooks_consumer" -G Ninja \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/webhooks_consumer" -j2
"$work/webhooks_consumer/webhooks_consumer"
echo "package: emissions::webhooks consumer passed; no installed header includes libcurl or OpenSSL"
# Adversarial programs against the installed tree: static destruction with requests hanging
# on a silent endpoint and with an unreachable Kafka broker (each must exit 0 within its
# bound: `timeout` catches a hang), and verify() fed hostile input.
cmake -S "$root/tests/package/adversarial_consumer" -B "$work/adversarial_consumer" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/adversarial_consumer" -j2
for program in verify_hostile_input webhook_static_exit kafka_static_exit; do
  timeout 60 "$work/adversarial_consumer/$program" ||
    { echo "package: adversarial program $program failed (exit $?)" >&2; exit 1; }
done
for phase in write recover; do
  timeout 60 "$work/adversarial_consumer/spool_static_exit" "$phase" "$work/adversarial-spool" ||
    { echo "package: adversarial program spool_static_exit $phase failed (exit $?)" >&2; exit 1; }
done
echo "package: adversarial programs (static destruction mid-flight, hostile input) passed"
# The http component: Boost stays behind emissions::http but for the Beast helper's header,
# cpp-httplib but for the httplib helper's.
if grep -rlE '#[[:space:]]*include[[:space:]]*<boost/' "$prefix/include" | grep -v '/emissions/http/beast\.hpp$'; then
  echo "package: an installed header (above) other than emissions/http/beast.hpp includes Boost" >&2
  exit 1
fi
if grep -rlE '#[[:space:]]*include[[:space:]]*<httplib\.h>' "$prefix/include" | grep -v '/emissions/http/httplib\.hpp$'; then
  echo "package: an installed header (above) other than emissions/http/httplib.hpp includes httplib.h" >&2
  exit 1
fi
for example in example_http_viewer example_http_beast_orders example_http_httplib_orders; do
  [ -x "$work/examples/http/$example" ] || { echo "package: $example was not built" >&2; exit 1; }
  (cd "$work" && "$work/examples/http/$example" >/dev/null) ||
    { echo "package: $example failed" >&2; exit 1; }
done
echo "package: emissions::http examples built against the installed package and ran"

# 4. What find_package(emissions) accepts and how it refuses. Configure only.
find_consumer() {  # <name> <components> [cmake args...]: configure, output in $work/<name>.log
  local name="$1" components="$2"
  shift 2
  cmake -S "$root/tests/package/find_consumer" -B "$work/$name" -DCMAKE_PREFIX_PATH="$prefix" \
    -DEMISSIONS_COMPONENTS="$components" "$@" >"$work/$name.log" 2>&1
}
expect_refusal() {  # <name> <text the error must contain>
  if grep -qF -- "$2" "$work/$1.log"; then return 0; fi
  cat "$work/$1.log" >&2
  echo "package: $1: the error does not say '$2'" >&2
  exit 1
}
find_consumer plain "" -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON ||
  { cat "$work/plain.log" >&2; echo "package: plain find_package failed" >&2; exit 1; }
if find_consumer unknown "testing;nosuch"; then
  echo "package: COMPONENTS nosuch was accepted" >&2
  exit 1
fi
expect_refusal unknown "component 'nosuch': there is no such component"
if find_consumer no_gtest testing -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON; then
  echo "package: COMPONENTS testing was accepted without GoogleTest" >&2
  exit 1
fi
expect_refusal no_gtest "component 'testing': it needs GoogleTest"
# kafka where pkg-config finds no librdkafka.
mkdir -p "$work/no-pkgconfig"
if (export PKG_CONFIG_LIBDIR="$work/no-pkgconfig" PKG_CONFIG_PATH=""; find_consumer no_rdkafka kafka); then
  echo "package: COMPONENTS kafka was accepted without librdkafka" >&2
  exit 1
fi
expect_refusal no_rdkafka "component 'kafka': it needs librdkafka"
if (export PKG_CONFIG_LIBDIR="$work/no-pkgconfig" PKG_CONFIG_PATH=""; find_consumer no_curl webhooks); then
  echo "package: COMPONENTS webhooks was accepted without libcurl" >&2
  exit 1
fi
expect_refusal no_curl "component 'webhooks': it needs libcurl and OpenSSL"
# kafka from a tree installed without it (EMISSIONS_WITH_KAFKA=OFF installs no component
# file): the same tree with the component's files removed.
cp -a "$prefix" "$work/prefix-no-kafka"
find "$work/prefix-no-kafka" \( -name 'emissions-component-kafka.cmake' -o \
  -name 'emissionsKafkaTargets*.cmake' \) -delete
if find_consumer no_kafka kafka -DCMAKE_PREFIX_PATH="$work/prefix-no-kafka"; then
  echo "package: COMPONENTS kafka was accepted from a tree without it" >&2
  exit 1
fi
expect_refusal no_kafka "component 'kafka': it was not installed with this copy of emissions"
echo "package: find_package without GoogleTest works; unknown or unusable components are refused"

# 5. add_subdirectory() of the source tree.
cmake -S "$root/tests/package/subdirectory_consumer" -B "$work/subdir" -G Ninja \
  -DEMISSIONS_SOURCE_DIR="$root" >/dev/null
cmake --build "$work/subdir" -j2
"$work/subdir/subdir_consumer"
echo "package: add_subdirectory consumer ran"

# 6. The PostgreSQL outbox: libpq's header only where the API takes a PGconn*, and the
# example (find_package(emissions COMPONENTS postgres)) against a server of our own.
if grep -rlE '#[[:space:]]*include[[:space:]]*[<"]libpq-fe.h' "$prefix/include" |
  grep -v 'emissions/outbox/postgres_outbox.hpp$'; then
  echo "package: an installed header (above) other than postgres_outbox.hpp includes libpq" >&2
  exit 1
fi
cmake -S "$root/examples/postgres_outbox" -B "$work/postgres_outbox" -G Ninja \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/postgres_outbox" -j2
cluster="$work/pg"
bash "$root/integrations/postgres/tests/pg_cluster.sh" start "$cluster" >/dev/null
trap 'bash "$root/integrations/postgres/tests/pg_cluster.sh" stop "$cluster"; rm -rf "$work"' EXIT
"$work/postgres_outbox/example_postgres_outbox" "$(cat "$cluster/conninfo")" >"$work/outbox.out"
grep -q '"name":"order_created"' "$work/outbox.out" && ! grep -q order_cancelled "$work/outbox.out" ||
  { cat "$work/outbox.out" >&2; echo "package: the outbox example published the wrong events" >&2; exit 1; }
echo "package: the postgres outbox example ran against PostgreSQL 15 (committed published, rolled back not)"
