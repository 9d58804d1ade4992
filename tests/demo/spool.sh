#!/usr/bin/env bash
# emissions-demo --spool DIR, three cases (CTest runs each as its own test):
#
#   two-runs   a short run with --spool on a new directory exits 0, shows the spool's
#              progress line and leaves no events on disk; a second run on the same
#              directory starts (the first released its lock) and exits 0 too
#   bad-dir    --spool naming a path under a regular file exits 1 with a message that
#              names the directory
#   restart    a run killed (SIGKILL) while the slow adapter is behind leaves its backlog
#              in the spool; the next run on the directory delivers it before its first
#              order and its checks pass. Exits 77 (skipped) when the demo never gets
#              ahead of the slow adapter within the deadline (a slow sanitizer build).
#
#   bash tests/demo/spool.sh CASE [path/to/emissions-demo]   # default: the release preset's
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
case_name="${1:?usage: spool.sh two-runs|bad-dir|restart [path/to/emissions-demo]}"
demo="${2:-$root/build/release/examples/demo/emissions-demo}"
[ -x "$demo" ] || { echo "spool: no demo at $demo (build the release preset first)" >&2; exit 1; }
work="$(mktemp -d)"
killed=""
cleanup() {
  if [ -n "$killed" ]; then kill -KILL "$killed" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "spool $case_name: $1" >&2
  for f in "$work"/*.stdout "$work"/*.stderr; do
    [ -f "$f" ] && { echo "--- ${f##*/}" >&2; tail -15 "$f" >&2; }
  done
  exit 1
}

# run NAME ARGS...: the demo's stdout and stderr go to $work/NAME.stdout and .stderr; its
# exit status to $rc.
run() {
  local name="$1"
  shift
  rc=0
  "$demo" --out "$work/$name.jsonl" "$@" >"$work/$name.stdout" 2>"$work/$name.stderr" || rc=$?
}

case "$case_name" in
  two-runs)
    # The slow adapter delivers at most 20,000 events/s, so the run lasts well over the
    # second after which the progress lines start (on a pipe, one pair per second).
    run first --slow --events 60000 --spool "$work/spool"
    [ "$rc" -eq 0 ] || fail "the first run exited $rc, expected 0"
    grep -q '^emissions-demo: spool .* on disk  backlog ' "$work/first.stderr" ||
      fail "no spool progress line on stderr"
    grep -q '^spool  *'"$work/spool"': ' "$work/first.stdout" || fail "no spool line in the summary"
    grep -q '^ *left on disk: no events' "$work/first.stdout" ||
      fail "the first run left events on disk"
    grep -q '^checks *ok' "$work/first.stdout" || fail "the first run's checks did not pass"

    run second --events 2000 --slow --spool "$work/spool"
    [ "$rc" -eq 0 ] || fail "the second run on the same directory exited $rc, expected 0"
    grep -q '^checks *ok' "$work/second.stdout" || fail "the second run's checks did not pass"
    echo "spool two-runs: two runs on one directory exited 0 and showed the spool"
    ;;

  bad-dir)
    touch "$work/file"
    run bad --events 1000 --spool "$work/file/spool"
    [ "$rc" -ne 0 ] || fail "a spool under a regular file exited 0"
    grep -qF "$work/file/spool" "$work/bad.stderr" || fail "the error does not name the directory"
    echo "spool bad-dir: exit $rc, and the error names the directory: $(head -1 "$work/bad.stderr")"
    ;;

  restart)
    # Far more events than the deadline allows; killed once the slow adapter is behind (one
    # request thread: a backlog the restart delivers in seconds).
    "$demo" --slow --threads 1 --events 10000000 --out "$work/killed.jsonl" --spool "$work/spool" \
      >"$work/killed.stdout" 2>"$work/killed.stderr" &
    killed=$!
    behind=0
    for _ in $(seq 600); do  # 60 s
      behind="$(sed -n 's/^emissions-demo: spool .*backlog .*slow_archive \([0-9,]*\).*/\1/p' \
        "$work/killed.stderr" | tail -1 | tr -d ,)"
      [ "${behind:-0}" -ge 20000 ] && break
      kill -0 "$killed" 2>/dev/null || fail "the run to be killed ended by itself"
      sleep 0.1
    done
    kill -KILL "$killed" 2>/dev/null || true
    wait "$killed" 2>/dev/null || true
    killed=""
    if [ "${behind:-0}" -lt 20000 ]; then
      echo "spool restart: skipped: the slow adapter was not 20,000 events behind within 60 s"
      exit 77
    fi

    run restarted --slow --events 2000 --spool "$work/spool"
    [ "$rc" -eq 0 ] || fail "the run after the kill exited $rc, expected 0"
    grep -q '^ *an earlier run left events, delivered before the first order: .*slow_archive' \
      "$work/restarted.stdout" || fail "the slow adapter's backlog was not delivered after the kill"
    grep -q '^ *left on disk: no events' "$work/restarted.stdout" ||
      fail "the run after the kill left events on disk"
    grep -q '^checks *ok: .* and those an earlier run left' "$work/restarted.stdout" ||
      fail "the run after the kill did not pass its checks"
    echo "spool restart: killed with slow_archive $behind events behind; the next run delivered" \
      "them: $(grep "an earlier run left events" "$work/restarted.stdout" | sed "s/^ *//")"
    ;;

  *)
    echo "spool: unknown case '$case_name' (two-runs, bad-dir or restart)" >&2
    exit 2
    ;;
esac
