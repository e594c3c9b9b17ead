#!/usr/bin/env bash
# Runs every go test -fuzz target in the module, one after another, each for
# FUZZTIME, and prints a table: target, time, executions, new corpus entries,
# result. CI runs it short (scripts/test.sh, 10s a target); `make fuzz` runs it
# long (5m a target).
#
#   scripts/fuzz.sh                      every target, FUZZTIME (default 10s)
#   FUZZTIME=5m scripts/fuzz.sh          longer
#   scripts/fuzz.sh FuzzDecode           only targets matching a regexp
#   FUZZPARALLEL=1 scripts/fuzz.sh       fewer fuzzing workers (default: GOMAXPROCS)
#   FUZZMINIMIZETIME=60s scripts/fuzz.sh time to shrink each new input (default 1s)
#
# Each input that reaches new code is shrunk before fuzzing goes on, for up
# to -fuzzminimizetime (go test's default: 60s). In a 10-second run that
# budget is the whole run: FuzzJSONHandlerSameAsSlog stopped at 0 execs/sec
# after 3 seconds while it shrank its first finds. A failing input is
# written however far it was shrunk.
#
# A failing input is written by go test under the package's
# testdata/fuzz/<Target>/ and fails the run (exit 1): commit it, it is a
# regression seed from then on, and every plain `go test` replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
match=${1:-.}
flags=(-fuzzminimizetime "${FUZZMINIMIZETIME:-1s}")
[ -n "${FUZZPARALLEL:-}" ] && flags+=(-parallel "$FUZZPARALLEL")
log=$(mktemp)
trap 'rm -f "$log"' EXIT

rows=()
failed=0
# go test -fuzz takes one target in one package at a time.
while read -r pkg dir; do
  while read -r target; do
    [[ $target =~ $match ]] || continue
    echo "-- $pkg $target ($fuzztime)"
    start=$SECONDS
    result=ok
    if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "${flags[@]}" "$pkg" 2>&1 | tee "$log"; then
      # The fuzzing engine itself sometimes gives up on a worker that does
      # not stop in time on a loaded machine ("context deadline exceeded",
      # no input written): not a finding, so the target runs once more.
      if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log" &&
        go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "${flags[@]}" "$pkg" 2>&1 | tee "$log"; then
        result="ok (retried)"
      else
        result=FAILED
        failed=1
      fi
    fi
    # The last progress line holds the totals:
    # "fuzz: elapsed: 10s, execs: 123456 (12345/sec), new interesting: 3 (total: 120)"
    last=$(grep -E '^fuzz: elapsed: .*execs:' "$log" | tail -n1 || true)
    execs=$(sed -nE 's/.*execs: ([0-9]+) .*/\1/p' <<<"$last")
    fresh=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")
    corpus=$(sed -nE 's/.*\(total: ([0-9]+)\).*/\1/p' <<<"$last")
    rows+=("$(printf '%-22s %-40s %6ss %12s %6s %7s  %s' "$target" "${pkg#mcpguard.dev/mcpguard/}" "$((SECONDS - start))" "${execs:-?}" "${fresh:-?}" "${corpus:-?}" "$result")")
  done < <(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u)
done < <(go list -f '{{.ImportPath}} {{.Dir}}' ./...)

echo
printf '%-22s %-40s %7s %12s %6s %7s  %s\n' target package time execs new corpus result
printf '%s\n' "${rows[@]}"
if [ "$failed" -ne 0 ]; then
  echo "a fuzz target failed: its input is under that package's testdata/fuzz/; fix the bug and commit the input as a regression seed" >&2
  exit 1
fi
