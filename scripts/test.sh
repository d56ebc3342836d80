#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then module hygiene
# (scripts/check-modules.sh), vet, format check, every test of both modules
# under the race detector (end-to-end ones run real plugin child processes), 10,000
# simulated schedules of the group's invariants, and each fuzz target briefly; each
# step's end is timed on stderr. Usage: scripts/test.sh [go test flags]
set -euo pipefail
cd "$(dirname "$0")/.."

# phase says how long the suite has run when a step ends, for finding where time goes.
phase() { printf 'test.sh: %s done at %dm%02ds\n' "$1" $((SECONDS / 60)) $((SECONDS % 60)) >&2; }

scripts/install-deps.sh
phase install-deps
scripts/check-modules.sh
phase check-modules
go vet ./...
(cd sdk && go vet ./...) # the sdk is its own module
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed on: $unformatted" >&2
  exit 1
fi
phase "vet and gofmt"
# The sdk module's tests, the simulated schedules and the fuzz targets run beside the
# main module's tests, whose end-to-end package (cmd/tlsrelay) is most of the suite's
# time and mostly waits on processes and timers; the side's output follows the main's.
side_log=$(mktemp)
trap 'rm -f "$side_log"' EXIT
side() {
  set -e
  (cd sdk && go test -race -count=1 -timeout 10m "$@" ./...)
  phase "sdk: go test -race ./..."

  # The group's invariants under 10,000 seeded random schedules (docs/SECURITY.md: about
  # a minute on 2 cores), outside the race detector, which ran 300 of them in
  # ./internal/sim. A failing seed prints its shortened schedule and the command that
  # replays it.
  go test -count=1 -timeout 10m -run '^TestSimulate$' ./internal/sim -sim.schedules 10000
  phase "10,000 simulated schedules"

  # Each fuzz target briefly, from its seeds (docs/SECURITY.md records longer runs): a
  # count of inputs each (a few seconds on a quiet machine), not a time, since Go 1.26's
  # fuzzing reports a time's end under load as a failure, "context deadline exceeded"
  # (go.dev/issue/75804, fixed in Go 1.27). FUZZTIME (10s, 5000x) sets one budget for
  # every target; FUZZTIME=0 skips this step.
  local fuzztime="${FUZZTIME:-}"
  if [ "$fuzztime" != "0" ]; then
    while read -r pkg target count; do
      go test -run '^$' -fuzz "^${target}\$" -fuzztime "${fuzztime:-$count}" "$pkg" </dev/null
    done <<'TARGETS'
./core/policy FuzzCheck 10000x
./core/protocol FuzzDecide 40000x
./core/config FuzzLoad 1000x
./plugins/barbican FuzzSecretParsing 100000x
TARGETS
    phase "fuzz targets"
  fi
}
side "$@" >"$side_log" 2>&1 &
side_pid=$!

# Every test under the race detector: the end-to-end tests' binaries are built without it,
# the tests themselves (and every in-process backend and relation) run with it.
main_rc=0
go test -race -count=1 -timeout 20m "$@" ./... || main_rc=$?
phase "go test -race ./..."
side_rc=0
wait "$side_pid" || side_rc=$?
cat "$side_log"
if [ "$main_rc" != 0 ] || [ "$side_rc" != 0 ]; then
  echo "test.sh: FAILED (main module's tests exit $main_rc; sdk, simulation and fuzzing exit $side_rc)" >&2
  exit 1
fi
phase "everything"
