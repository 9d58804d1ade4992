#!/usr/bin/env bash
# The issues' benchmark targets, one after another, on the release build: the spool
# (emissions-bench --only spool), the Kafka adapter and source, the webhook adapter and the
# PostgreSQL outbox. Each binary measures its own baseline in the same run; this script only
# runs them in a row and prints the load average around each, so that a quiet moment on a
# shared machine is used for all four. Full outputs go to OUT_DIR (default a temporary one).
#
#   bench/scripts/targets.sh                # build (release preset), then run all four
#   SKIP_BUILD=1 bench/scripts/targets.sh   # use the binaries already built
#   ONLY="spool kafka" bench/scripts/targets.sh
#
# About 4 minutes on 2 cores. Run it on a machine doing nothing else: under load the
# ratios measure the scheduler (docs/BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT_DIR:-$(mktemp -d -t emissions-targets-XXXXXX)}
mkdir -p "$out"
only=${ONLY:-"spool kafka webhooks postgres"}
if [[ -z ${SKIP_BUILD:-} ]]; then
  cmake --preset release >/dev/null
  cmake --build build/release -j2 --target emissions-bench emissions-kafka-bench \
    emissions-webhooks-bench emissions-postgres-bench
fi
load() { cut -d' ' -f1-3 /proc/loadavg; }
run() {
  local name=$1
  shift
  echo "=== $name (load average $(load)): $*"
  "$@" >"$out/$name.txt" 2>"$out/$name.err" || {
    echo "$name exited $? (see $out/$name.err)"
    return 0
  }
  echo "--- $name done (load average $(load))"
}
for what in $only; do
  case $what in
    spool) run spool ./build/release/bench/emissions-bench --only spool --reps 3 ;;
    kafka)
      run kafka ./build/release/integrations/kafka/emissions-kafka-bench --events 200000 --reps 3
      ;;
    webhooks) run webhooks ./build/release/integrations/webhooks/emissions-webhooks-bench ;;
    postgres) run postgres ./build/release/integrations/postgres/emissions-postgres-bench ;;
    *)
      echo "unknown benchmark: $what (spool, kafka, webhooks, postgres)" >&2
      exit 64
      ;;
  esac
done
echo
echo "=== summary (full outputs in $out)"
for what in $only; do
  [[ -f $out/$what.txt ]] || continue
  echo "--- $what"
  case $what in
    spool) grep -E "^spool|^  (ratio|in memory|commit|the disk|fdatasync)" "$out/spool.txt" || true ;;
    *) grep -iE "vs_raw|ratio|median|staging|relay|commit_to_delivery|target" "$out/$what.txt" |
      head -20 || true ;;
  esac
done
