#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then module hygiene
# (scripts/check-modules.sh), vet, format check, every test of both modules
# under the race detector (end-to-end ones run real plugin child processes), and each
# fuzz target briefly. Usage: scripts/test.sh [go test flags]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/check-modules.sh
go vet ./...
(cd sdk && go vet ./...) # the sdk is its own module
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed on: $unformatted" >&2
  exit 1
fi
# Every test under the race detector: the end-to-end tests' binaries are built without it,
# the tests themselves (and every in-process backend and relation) run with it.
go test -race -count=1 -timeout 20m "$@" ./...
(cd sdk && go test -race -count=1 -timeout 10m "$@" ./...)

# The group's invariants under 10,000 seeded random schedules (docs/SECURITY.md: about a
# minute on 2 cores), outside the race detector, which ran 300 of them above. A failing
# seed prints its shortened schedule and the command that replays it.
go test -count=1 -timeout 10m -run '^TestSimulate$' ./internal/sim -sim.schedules 10000

# Each fuzz target briefly, from its seeds (docs/SECURITY.md records longer runs).
# FUZZTIME=0 skips this step.
fuzztime="${FUZZTIME:-10s}"
if [ "$fuzztime" != "0" ]; then
  while read -r pkg target; do
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" </dev/null
  done <<'TARGETS'
./core/policy FuzzCheck
./core/protocol FuzzDecide
./core/config FuzzLoad
./plugins/barbican FuzzSecretParsing
TARGETS
fi
