#!/usr/bin/env bash
# Same-run comparison of two emissions-bench binaries (e.g. main before and after a change).
# Runs them alternately ROUNDS times (default 3) so machine noise hits both alike, then prints,
# per figure, the median of each and the ratio new/base.
#
#   bench/scripts/compare.sh BASE_BIN NEW_BIN [ROUNDS] [-- extra emissions-bench flags]
#
# NEW_FLAGS (environment) adds flags for the new binary only (e.g. NEW_FLAGS="--idle-spin 200"
# when the baseline predates that flag but had that default).
#
# Build a baseline from an older commit with:
#   git worktree add /tmp/base <commit> && cmake -S /tmp/base -B /tmp/base/build \
#     -DCMAKE_BUILD_TYPE=Release && cmake --build /tmp/base/build --target emissions-bench
set -euo pipefail
base=${1:?base binary}; new=${2:?new binary}; rounds=${3:-3}
shift 2; [[ $# -gt 0 && $1 != -- ]] && shift
[[ ${1:-} == -- ]] && shift
extra=("$@")
[[ ${#extra[@]} -eq 0 ]] && extra=(--only emit,throughput)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for ((i = 1; i <= rounds; i++)); do
  echo "round $i/$rounds: base" >&2
  "$base" --json "${extra[@]}" >"$out/base.$i.json" 2>/dev/null
  echo "round $i/$rounds: new" >&2
  "$new" --json "${extra[@]}" ${NEW_FLAGS:-} >"$out/new.$i.json" 2>/dev/null
done
/usr/bin/python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
def load(kind):
    runs = [json.load(open(f"{d}/{kind}.{i}.json")) for i in range(1, n + 1)]
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return {k: statistics.median(r[k] for r in runs if k in r) for k in keys if all(k in r for r in runs)}
b, w = load("base"), load("new")
print(f"{'figure':55} {'base':>14} {'new':>14} {'new/base':>9}")
for k in b:
    if k in w and b[k]:
        print(f"{k:55} {b[k]:14.1f} {w[k]:14.1f} {w[k] / b[k]:9.3f}")
PY
