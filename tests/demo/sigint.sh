#!/usr/bin/env bash
# Ctrl-C during the demo: emissions-demo starts no new orders, delivers what was committed,
# prints the summary of what ran (its checks must pass) and exits 130. Takes about 2 s.
#
#   bash tests/demo/sigint.sh [path/to/emissions-demo]   # default: the release preset's
#
# tests/package/run.sh calls it with the demo it built against the installed package.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
demo="${1:-$root/build/release/examples/demo/emissions-demo}"
[ -x "$demo" ] || { echo "sigint: no demo at $demo (build the release preset first)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# With job control a background command keeps SIGINT's disposition (without it, bash starts
# it with SIGINT ignored), as when a user presses Ctrl-C in a terminal.
set -m
# Far more events than one second allows (the commit log takes 8 bytes per event: 80 MB).
"$demo" --events 10000000 --out "$work/events.jsonl" >"$work/stdout" 2>"$work/stderr" &
pid=$!
sleep 1
kill -INT "$pid"
rc=0
wait "$pid" || rc=$?
set +m

fail() {
  echo "sigint: $1" >&2
  echo "--- stdout" >&2 && cat "$work/stdout" >&2
  echo "--- stderr" >&2 && tail -5 "$work/stderr" >&2
  exit 1
}
[ "$rc" -eq 130 ] || fail "exit status $rc, expected 130"
grep -q '^stopped *by Ctrl-C (SIGINT) after' "$work/stdout" || fail "no 'stopped' line in the summary"
grep -q '^checks *ok: every adapter accounted for all' "$work/stdout" ||
  fail "the summary's checks did not pass"
echo "sigint: the demo stopped on SIGINT, printed its summary (checks ok) and exited 130"
